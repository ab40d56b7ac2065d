"""QGIS legends of a run: only the classes present, largest first with their share (or as configured),
no "Band 1: class (Palette)" header in the project, distinguishable default colours, tile labels that
do not pile up when zoomed out."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from geosam.config import RunConfig
from geosam.io.legend import class_pixel_counts, legend_entries
from geosam.io.style import outline_labels_qml
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle
from geosam.types import ClassScheme

SCHEME = ClassScheme(("water", "forest", "field", "urban"))


def test_legend_entries_for_each_mode():
    counts = [0, 300, 600, 100]
    assert legend_entries(SCHEME, counts, "all") == list(enumerate(SCHEME.names))
    assert legend_entries(SCHEME, counts, "present") == [(1, "forest"), (2, "field"), (3, "urban")]
    assert legend_entries(SCHEME, counts, "area") == [(2, "field (60.0 %)"), (1, "forest (30.0 %)"),
                                                      (3, "urban (10.0 %)")]  # fmt: skip
    assert legend_entries(SCHEME, [1, 0, 0, 99_999], "area")[1] == (0, "water (< 0.1 %)")
    assert legend_entries(SCHEME, [0, 5, 5, 0], "area") == [(1, "forest (50.0 %)"), (2, "field (50.0 %)")]
    assert legend_entries(SCHEME, [0, 0, 0, 0], "area") == list(enumerate(SCHEME.names))  # nothing mapped
    with pytest.raises(ValueError, match="3 counts for 4 classes"):
        legend_entries(SCHEME, [1, 2, 3], "area")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("legend")
    bundle = make_tiny_bundle(d / "bundle", classes=SCHEME.names, input_size=32, tile_size=128)
    scene = make_raster(d / "scene.tif", 200, 200, count=3, dtype="uint8", fill="random")
    out = {}
    for mode in ("area", "all"):
        cfg = RunConfig.model_validate({"tiling": {"tile_size": 128, "halo": 16}, "output": {"legend": mode}})
        out[mode] = predict_scene(scene, d / mode, load_models(bundle, None, cfg), cfg)
    return out


def palette(qml_path) -> list[tuple[str, str]]:
    root = ET.parse(qml_path).getroot()
    return [(e.get("value"), e.get("label")) for e in root.iter("paletteEntry")]


def categories(qml_path) -> list[tuple[str, str]]:
    root = ET.parse(qml_path).getroot()
    return [(c.get("value"), c.get("label")) for c in root.iter("category")]


def test_run_styles_list_present_classes_by_area(run):
    res = run["area"]
    counts = class_pixel_counts(res.outputs["classes"], len(SCHEME))
    # the counts are the class map's own: a brute-force count of every pixel
    import rasterio

    with rasterio.open(res.outputs["classes"]) as ds:
        pixels = ds.read(1)
    assert counts.tolist() == [int((pixels == i).sum()) for i in range(len(SCHEME))]
    total = counts.sum()
    present = sorted((i for i in range(len(SCHEME)) if counts[i]), key=lambda i: -counts[i])
    want = [(str(i), f"{SCHEME.names[i]} ({100 * counts[i] / total:.1f} %)") for i in present]
    assert palette(res.outputs["classes"].with_suffix(".qml")) == want
    regions_qml = res.outputs["regions_gpkg"].with_suffix(".qml")
    assert categories(regions_qml) == [(SCHEME.names[int(i)], label) for i, label in want]
    # every region's class has a category, so no region goes undrawn
    import geopandas as gpd

    assert set(gpd.read_file(res.outputs["regions_gpkg"])["class_name"]) <= {SCHEME.names[i] for i in present}
    # 'all' keeps every class in id order, labelled by name
    full = run["all"]
    assert palette(full.outputs["classes"].with_suffix(".qml")) == [
        (str(i), n) for i, n in enumerate(SCHEME.names)
    ]


def test_project_legends_in_qgis_have_no_band_header_and_tile_labels_do_not_pile_up(run, tmp_path):
    from helpers_qgis import qgis_python, run_qgis_check

    qgis_python()  # skips without PyQGIS
    res = run["area"]
    labels = [label for _, label in palette(res.outputs["classes"].with_suffix(".qml"))]
    spec = {
        "layers": [
            {"path": str(res.outputs["tiles_gpkg"]), "kind": "vector", "layer": "tiles",
             "expect": {"labels_field": "class_name", "labels_display_all": False,
                        "labels_fit_in_polygon": True}},
        ],
        "projects": [
            {"path": str(res.outputs["qgis_project"]),
             "expect": {"layers": {"classes": {"panel_legend": labels, "legend": labels},
                                   "regions": {"legend": labels}}}},
        ],
    }  # fmt: skip
    report = run_qgis_check(spec, tmp_path)
    confidence = report["projects"][0]["layers"]["confidence"]["panel_legend"]
    assert len(confidence) == 1 and not confidence[0]  # the ramp alone, no "Band 1: ..." text


def test_default_model_colours_are_distinguishable():
    """CIEDE2000 between every two default classes >= 19 (HerbaceousVegetation/Pasture were 7.9)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    from geosam.models.bundle import default_bundle_path, read_bundle_meta

    if not (default_bundle_path() / "model.json").is_file():
        pytest.skip("the packaged default model is not installed")
    scheme = read_bundle_meta(default_bundle_path()).class_scheme
    lab = rgb2lab(np.array(scheme.colors, dtype=float)[None] / 255)[0]
    worst = min(
        (float(deltaE_ciede2000(lab[i], lab[j])), scheme.names[i], scheme.names[j])
        for i, j in itertools.combinations(range(len(scheme)), 2)
    )
    assert worst[0] >= 19.0, worst


def test_tile_labels_hide_collisions():
    root = ET.fromstring(outline_labels_qml().split("\n", 1)[1])
    assert root.find(".//rendering").get("displayAll") == "0"
    assert root.find(".//placement").get("fitInPolygonOnly") == "1"
