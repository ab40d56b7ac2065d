"""geosam outputs opened in real QGIS (PyQGIS of the system Python, see tests/qgis_check.py).

The QGIS tests skip cleanly when the system Python cannot import ``qgis.core``.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from helpers_qgis import run_qgis_check
from shapely.geometry import box

from geosam.errors import OutputError
from geosam.io.cog import class_map_writer, confidence_writer, encode_confidence
from geosam.io.qgis_project import QgisLayer, write_qgis_project
from geosam.io.style import categorized_fill_qml, outline_labels_qml
from geosam.io.vector import write_geojson, write_gpkg
from geosam.types import ClassScheme, PixelWindow

SCHEME = ClassScheme(("water", "forest", "built-up"), colors=((31, 120, 180), (51, 160, 44), (227, 26, 28)))
COLORS = [SCHEME.hex_color(i) for i in range(len(SCHEME))]
X0, Y0, RES, W, H = 500000.0, 5000000.0, 10.0, 600, 400
TRANSFORM = Affine(RES, 0.0, X0, 0.0, -RES, Y0)
GRID = {"width": W, "height": H, "transform": TRANSFORM, "crs": "EPSG:32633"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """One scene's outputs, written with the public writers, as the pipeline will."""
    out = tmp_path_factory.mktemp("scene")
    rows, cols = np.indices((H, W))
    classes = ((rows // 100 + cols // 150) % 3).astype(np.uint8)
    with class_map_writer(out / "s1_classes.tif", scheme=SCHEME, compress="zstd", **GRID) as w:
        for r0 in (200, 0):
            for c0 in (300, 0):
                w.write(PixelWindow(c0, r0, 300, 200), classes[r0 : r0 + 200, c0 : c0 + 300])
    prob = (cols / W).astype(np.float32)
    for dtype, compress in (("float32", "lzw"), ("uint8", "deflate")):  # every compression QGIS must read
        with confidence_writer(
            out / f"s1_confidence_{dtype}.tif", dtype=dtype, compress=compress, **GRID
        ) as w:
            w.write(PixelWindow(0, 0, W, H), encode_confidence(prob, dtype))
    regions = gpd.GeoDataFrame(
        {"class_id": np.array([0, 2], "int32"), "class_name": ["water", "built-up"], "score": [0.8, 0.6]},
        geometry=[box(X0, Y0 - 1000, X0 + 1500, Y0), box(X0 + 1500, Y0 - 1000, X0 + 3000, Y0)],
        crs="EPSG:32633",
    )
    style = categorized_fill_qml(SCHEME)
    write_gpkg(regions, out / "s1_regions.gpkg", layer="regions", qml=style)
    write_geojson(regions, out / "s1_regions.geojson", qml=style)
    write_gpkg(
        regions.iloc[:0], out / "s1_empty.gpkg", layer="regions", qml=style, geometry_type="MultiPolygon"
    )
    write_geojson(regions.iloc[:0], out / "s1_empty.geojson", qml=style)
    tiles = gpd.GeoDataFrame(
        {"tile_id": ["r000_c000", "r000_c001"]},
        geometry=[box(X0, Y0 - 4000, X0 + 3000, Y0), box(X0 + 3000, Y0 - 4000, X0 + 6000, Y0)],
        crs="EPSG:32633",
    )
    write_gpkg(tiles, out / "s1_tiles.gpkg", layer="tiles", qml=outline_labels_qml(label_field="tile_id"))
    return out


def project_layers() -> list[QgisLayer]:
    return [
        QgisLayer("s1_tiles.gpkg", "tiles", "vector", layer_name="tiles", style="s1_tiles.qml"),
        QgisLayer("s1_regions.gpkg", "regions", "vector", layer_name="regions", style="s1_regions.qml"),
        QgisLayer("s1_regions.geojson", "regions (WGS 84)", "vector", style="s1_regions.qml", visible=False),
        QgisLayer("s1_classes.tif", "land cover", "raster", style="s1_classes.qml"),
        QgisLayer(
            "s1_confidence_uint8.tif", "confidence", "raster", style="s1_confidence_uint8.qml", visible=False
        ),
    ]


CLASSES = {"renderer": "paletted", "legend": list(SCHEME.names), "colors": COLORS, "band_count": 1}
REGIONS = {
    "renderer": "categorizedSymbol",
    "legend": list(SCHEME.names),
    "colors": COLORS,
    "geometry": "Polygon",
}
TILES = {"renderer": "singleSymbol", "labels_field": "tile_id", "geometry": "Polygon", "feature_count": 2}
PERCENT = ["0 %", "10 %", "20 %", "30 %", "40 %", "50 %", "60 %", "70 %", "80 %", "90 %", "100 %"]
PROBABILITY = ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"]


@pytest.mark.qgis
def test_every_output_loads_styled_by_default(outputs, tmp_path):
    """QGIS finds each ``.qml`` by itself (default-style lookup) and shows the class names."""
    utm, loaded = {"crs": "EPSG:32633", "style_loaded": True}, {"style_loaded": True}
    spec = {
        "layers": [
            {"path": str(outputs / "s1_classes.tif"), "kind": "raster", "expect": {**utm, **CLASSES}},
            {
                "path": str(outputs / "s1_confidence_float32.tif"),
                "kind": "raster",
                "expect": {**utm, "renderer": "singlebandpseudocolor", "legend": PROBABILITY},
            },
            {
                "path": str(outputs / "s1_confidence_uint8.tif"),
                "kind": "raster",
                "expect": {**utm, "renderer": "singlebandpseudocolor", "legend": PERCENT},
            },
            {
                "path": str(outputs / "s1_regions.gpkg"),
                "kind": "vector",
                "layer": "regions",
                "expect": {**utm, **REGIONS, "feature_count": 2},
            },
            {
                "path": str(outputs / "s1_regions.geojson"),
                "kind": "vector",
                "expect": {**loaded, **REGIONS, "crs": "EPSG:4326", "feature_count": 2},
            },
            {
                "path": str(outputs / "s1_tiles.gpkg"),
                "kind": "vector",
                "layer": "tiles",
                "expect": {**utm, **TILES},
            },
            {
                "path": str(outputs / "s1_empty.gpkg"),
                "kind": "vector",
                "layer": "regions",
                "expect": {
                    **utm,
                    **REGIONS,
                    "feature_count": 0,
                    "fields": ["fid", "class_id", "class_name", "score"],
                },
            },
            # GeoJSON cannot declare a schema: an empty one opens as an empty table without geometry.
            {"path": str(outputs / "s1_empty.geojson"), "kind": "vector", "expect": {"feature_count": 0}},
        ]
    }
    report = run_qgis_check(spec, tmp_path)
    assert len(report["layers"]) == 8 and all(entry["valid"] for entry in report["layers"])


@pytest.mark.qgis
def test_project_opens_every_layer_styled_after_moving_the_folder(outputs, tmp_path):
    project = write_qgis_project(outputs / "s1.qgs", project_layers(), crs="EPSG:32633")
    moved = tmp_path / "shared" / "scene"
    shutil.copytree(outputs, moved)  # relative paths: the folder can move or be shared
    expect_layers = {
        "tiles": {**TILES, "crs": "EPSG:32633", "visible": True},
        "regions": {**REGIONS, "crs": "EPSG:32633", "feature_count": 2, "visible": True},
        "regions (WGS 84)": {**REGIONS, "crs": "EPSG:4326", "visible": False},
        "land cover": {**CLASSES, "crs": "EPSG:32633", "visible": True},
        "confidence": {"renderer": "singlebandpseudocolor", "legend": PERCENT, "visible": False},
    }
    spec = {
        "projects": [
            {
                "path": str(moved / project.name),
                "expect": {
                    "crs": "EPSG:32633",
                    "layer_count": 5,
                    "tree": ["tiles", "regions", "regions (WGS 84)", "land cover", "confidence"],
                    "layers": expect_layers,
                },
            }
        ]
    }
    report = run_qgis_check(spec, tmp_path)
    result = report["projects"][0]
    for info in result["layers"].values():
        assert info["source"].startswith(str(moved)), info["source"]
    xmin, ymin, xmax, ymax = result["extent"]  # the union of the layers, in the project CRS
    assert xmin == pytest.approx(X0) and xmax == pytest.approx(X0 + 6000)
    assert ymin == pytest.approx(Y0 - 4000) and ymax == pytest.approx(Y0)


@pytest.mark.qgis
def test_checker_fails_on_wrong_expectations(outputs, tmp_path):
    spec = {
        "layers": [
            {
                "path": str(outputs / "s1_classes.tif"),
                "kind": "raster",
                "expect": {"legend": ["a", "b", "c"]},
            },
            {"path": str(outputs / "missing.tif"), "kind": "raster"},
        ]
    }
    report = run_qgis_check(spec, tmp_path, expect_ok=False)
    assert not report["ok"]
    first, second = report["layers"]
    assert first["failures"] == [f"legend: expected ['a', 'b', 'c'], QGIS reports {list(SCHEME.names)!r}"]
    assert second["failures"] == ["layer is not valid (QGIS could not open it)"]


def test_project_xml_is_relative_and_embeds_styles(outputs, tmp_path):
    project = write_qgis_project(outputs / "s1_xml.qgs", project_layers(), crs="EPSG:32633", title="Scene 1")
    root = ET.parse(project).getroot()
    assert root.tag == "qgis" and root.get("projectname") == "Scene 1"
    assert root.find("properties/Paths/Absolute").text == "false"
    sources = [m.find("datasource").text for m in root.iter("maplayer")]
    assert sources[:2] == ["./s1_tiles.gpkg|layername=tiles", "./s1_regions.gpkg|layername=regions"]
    assert all(s.startswith("./") for s in sources)
    assert root.find("projectCrs/spatialrefsys/authid").text == "EPSG:32633"
    tiles = next(root.iter("maplayer"))
    assert tiles.get("labelsEnabled") == "1" and tiles.find("labeling") is not None  # style embedded
    assert [float(root.find(f"mapcanvas/extent/{k}").text) for k in ("xmin", "xmax")] == [X0, X0 + 6000]
    ids = [m.find("id").text for m in root.iter("maplayer")]
    assert len(set(ids)) == 5 and ids == [n.get("id") for n in root.iter("layer-tree-layer")]


def test_project_errors(outputs, tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_qgis_project(tmp_path / "p.qgs", [QgisLayer("nope.tif", "x", "raster")], crs="EPSG:32633")
    bad_style = tmp_path / "bad.qml"
    bad_style.write_text("<notqgis/>")
    layer = QgisLayer(str(outputs / "s1_classes.tif"), "x", "raster", style=str(bad_style))
    with pytest.raises(ValueError, match="not a QGIS style"):
        write_qgis_project(tmp_path / "p.qgs", [layer], crs="EPSG:32633")
    with pytest.raises(ValueError, match="kind"):
        QgisLayer("x.tif", "x", "mesh")  # type: ignore[arg-type]
    assert not (tmp_path / "p.qgs").exists()
