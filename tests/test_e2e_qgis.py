"""The outputs of a real run open in real QGIS (PyQGIS, offscreen) and in GDAL's tools.

Runs `predict_scene` on the real sample scene (sample_tiles, Landsat-7 over Raleigh, EPSG:32119) with
the packaged default model when it is installed (else a tiny random model: the check is about the
files, not the classes), then loads every output layer and the QGIS project with PyQGIS.
"""

from __future__ import annotations

import shutil
import subprocess

import geopandas as gpd
import numpy as np
import pytest

from geosam.config import RunConfig
from geosam.models.bundle import default_bundle_path
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing_models import make_dense_bundle, make_tiny_bundle
from geosam.types import ClassScheme

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, sample_data):
    d = tmp_path_factory.mktemp("e2e")
    if (default_bundle_path() / "model.json").is_file():
        bundle, cfg = None, RunConfig()
    else:
        bundle = make_tiny_bundle(
            d / "bundle", classes=("water", "forest", "developed"), input_size=32, tile_size=128
        )
        cfg = RunConfig.model_validate({"tiling": {"tile_size": 128, "halo": 16}})
    models = load_models(bundle, None, cfg)
    res = predict_scene(sample_data / "raleigh_landsat7_2000.vrt", d / "out", models, cfg)
    return res, models


def _area_legend(class_map, scheme: ClassScheme) -> tuple[np.ndarray, list[str]]:
    """A class map's pixels per class, and its default legend (classes present, largest area first)."""
    from geosam.io.legend import class_pixel_counts, legend_entries

    counts = class_pixel_counts(class_map, len(scheme))
    return counts, [label for _, label in legend_entries(scheme, counts, "area")]


def test_outputs_open_styled_in_qgis(real_run, tmp_path):
    from helpers_qgis import qgis_python, run_qgis_check

    qgis_python()  # skips without PyQGIS
    res, models = real_run
    scheme = models.bundle.meta.class_scheme
    counts, names = _area_legend(res.outputs["classes"], scheme)
    assert len(names) == int((counts > 0).sum()) and names[0].startswith(scheme.names[int(counts.argmax())])
    n_regions = len(gpd.read_file(res.outputs["regions_gpkg"]))
    n_tiles = len(gpd.read_file(res.outputs["tiles_gpkg"]))
    o = res.outputs
    spec = {
        "layers": [
            {
                "path": str(o["classes"]),
                "kind": "raster",
                "expect": {
                    "crs": "EPSG:32119",
                    "renderer": "paletted",
                    "legend": names,
                    "style_loaded": True,
                    "band_count": 1,
                },
            },
            {
                "path": str(o["confidence"]),
                "kind": "raster",
                "expect": {"crs": "EPSG:32119", "renderer": "singlebandpseudocolor", "style_loaded": True},
            },
            {
                "path": str(o["regions_gpkg"]),
                "kind": "vector",
                "layer": "regions",
                "expect": {
                    "crs": "EPSG:32119",
                    "renderer": "categorizedSymbol",
                    "feature_count": n_regions,
                    "geometry": "Polygon",
                    "legend": names,
                },
            },
            {
                "path": str(o["regions_geojson"]),
                "kind": "vector",
                "expect": {
                    "crs": "EPSG:4326",
                    "renderer": "categorizedSymbol",
                    "feature_count": n_regions,
                    "geometry": "Polygon",
                },
            },
            {
                "path": str(o["tiles_gpkg"]),
                "kind": "vector",
                "layer": "tiles",
                "expect": {"crs": "EPSG:32119", "feature_count": n_tiles, "geometry": "Polygon"},
            },
        ],
        "projects": [
            {
                "path": str(o["qgis_project"]),
                "expect": {
                    "crs": "EPSG:32119",
                    "layer_count": 4,
                    "layers": {
                        "classes": {"renderer": "paletted", "legend": names},
                        "regions": {"renderer": "categorizedSymbol"},
                    },
                },
            },
        ],
    }
    report = run_qgis_check(spec, tmp_path)
    assert report["ok"]
    assert n_regions > 0


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdalinfo not installed")
def test_gdal_reads_outputs(real_run):
    res, models = real_run
    info = subprocess.run(
        ["gdalinfo", str(res.outputs["classes"])], capture_output=True, text=True, check=True
    )
    assert "EPSG" in info.stdout or "32119" in info.stdout
    assert "Categories:" in info.stdout
    for name in models.bundle.meta.class_scheme.names:
        assert name in info.stdout
    assert "Overviews" in info.stdout or "LAYOUT=COG" in info.stdout
    for kind in ("regions_gpkg", "regions_geojson", "tiles_gpkg"):
        out = subprocess.run(
            ["ogrinfo", "-so", "-al", str(res.outputs[kind])], capture_output=True, text=True, check=True
        )
        assert "Feature Count" in out.stdout


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory, sample_data):
    """A dense-head model (untrained head: the check is about the files) with the probability COG."""
    d = tmp_path_factory.mktemp("e2e_dense")
    classes = ("agriculture", "developed", "forest", "water")
    bundle = make_dense_bundle(
        d / "bundle", classes=classes, bands=("blue", "green", "red", "nir", "swir1"), tile_size=128
    )
    cfg = RunConfig.model_validate(
        {"tiling": {"tile_size": 128, "halo": 16}, "dense": {"probabilities": True}}
    )
    models = load_models(bundle, None, cfg)
    res = predict_scene(sample_data / "raleigh_landsat7_2000_5band.vrt", d / "out", models, cfg)
    return res, classes


def test_probability_cog_opens_styled_in_qgis(dense_run, tmp_path):
    from helpers_qgis import qgis_python, run_qgis_check

    qgis_python()  # skips without PyQGIS
    res, classes = dense_run
    o = res.outputs
    _, legend = _area_legend(o["classes"], ClassScheme.from_dict({"names": list(classes)}))
    spec = {
        "layers": [
            {
                "path": str(o["probabilities"]),
                "kind": "raster",
                "expect": {
                    "crs": "EPSG:32119",
                    "renderer": "singlebandpseudocolor",
                    "style_loaded": True,
                    "band_count": len(classes),
                    "band_names": [f"Band {i}: p_{c}" for i, c in enumerate(classes, start=1)],
                },
            },
            {
                "path": str(o["classes"]),
                "kind": "raster",
                "expect": {"crs": "EPSG:32119", "renderer": "paletted", "legend": legend},
            },
        ],
        "projects": [
            {
                "path": str(o["qgis_project"]),
                "expect": {
                    "crs": "EPSG:32119",
                    "layer_count": 5,
                    "layers": {
                        "class probabilities": {"renderer": "singlebandpseudocolor", "visible": False},
                        "classes": {"renderer": "paletted", "legend": legend},
                    },
                },
            },
        ],
    }
    report = run_qgis_check(spec, tmp_path)
    assert report["ok"], report
    import rasterio

    with rasterio.open(o["probabilities"]) as ds:  # data bands, no RGB(A) interpretation
        assert {ci.name for ci in ds.colorinterp} <= {"gray", "undefined"}
    layer = report["layers"][0]
    assert layer["legend"][0].startswith("0") and layer["legend"][-1].startswith("100"), layer["legend"]
