"""GeoJSON (RFC 7946, EPSG:4326) and GeoPackage (native CRS) writers."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import MultiPolygon, Polygon, box

from geosam.errors import OutputError
from geosam.io.atomic import TEMP_PREFIX
from geosam.io.style import categorized_fill_qml, outline_labels_qml
from geosam.io.vector import write_geojson, write_gpkg
from geosam.types import ClassScheme

SCHEME = ClassScheme(("water", "forest", "urban"))
# UTM 33N, near 15°E 45.15°N; the central meridian is 15°E so x=500000 maps to lon 15.0 exactly.
X0, Y0 = 500000.0, 5000000.0


def regions() -> gpd.GeoDataFrame:
    hole = Polygon(
        [(X0, Y0), (X0 + 300, Y0), (X0 + 300, Y0 + 300), (X0, Y0 + 300)],
        holes=[[(X0 + 100, Y0 + 100), (X0 + 100, Y0 + 200), (X0 + 200, Y0 + 200), (X0 + 200, Y0 + 100)]],
    )
    return gpd.GeoDataFrame(
        {
            "class_id": np.array([0, 1, 2], dtype="int32"),
            "class_name": ["water", "forest", "urban"],
            "score": np.array([0.5, 0.9, 0.75]),
            "area_m2": np.array([80000.0, 10000.0, 20000.0]),
            "scene_id": ["s1", "s1", "s1"],
        },
        geometry=[
            hole,
            box(X0 + 300, Y0, X0 + 400, Y0 + 100),
            MultiPolygon([box(X0, Y0 - 100, X0 + 100, Y0), box(X0 + 200, Y0 - 100, X0 + 300, Y0)]),
        ],
        crs="EPSG:32633",
    )


def test_geojson_is_rfc7946_lonlat(tmp_path):
    path = write_geojson(regions(), tmp_path / "s1_regions.geojson", qml=categorized_fill_qml(SCHEME))
    assert sorted(os.listdir(tmp_path)) == ["s1_regions.geojson", "s1_regions.qml"]
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert doc["name"] == "s1_regions"  # not the temporary file's name
    coords = np.array(doc["features"][0]["geometry"]["coordinates"][0])
    # lon/lat order, in degrees: x=500000 on the zone's central meridian is exactly 15°E.
    assert np.allclose(coords[:, 0].min(), 15.0, atol=1e-7)
    assert (coords[:, 1] > 44.9).all() and (coords[:, 1] < 45.3).all()
    # 7 decimals at most (about 1 cm), as written in the file
    raw = json.loads(path.read_text(), parse_float=str)["features"][0]["geometry"]["coordinates"][0]
    assert max(len(v.split(".")[-1]) for pt in raw for v in pt) == 7
    # RFC 7946: exterior rings counter-clockwise, holes clockwise
    assert Polygon(coords).exterior.is_ccw
    hole = np.array(doc["features"][0]["geometry"]["coordinates"][1])
    assert not Polygon(hole).exterior.is_ccw
    props = doc["features"][1]["properties"]
    assert props == {
        "class_id": 1,
        "class_name": "forest",
        "score": 0.9,
        "area_m2": 10000.0,
        "scene_id": "s1",
    }
    back = gpd.read_file(path)
    assert back.crs.to_epsg() == 4326 and list(back.columns[:-1]) == list(regions().columns[:-1])
    assert back.geometry.iloc[2].geom_type == "MultiPolygon"


def test_gpkg_native_crs_layer_and_spatial_index(tmp_path):
    path = write_gpkg(
        regions(), tmp_path / "s1_regions.gpkg", layer="regions", qml=categorized_fill_qml(SCHEME)
    )
    assert sorted(os.listdir(tmp_path)) == ["s1_regions.gpkg", "s1_regions.qml"]
    info = pyogrio.read_info(path, layer="regions")
    assert info["crs"] == "EPSG:32633" and info["features"] == 3
    assert info["geometry_type"] == "MultiPolygon"  # promoted: one stable geometry type
    assert list(info["fields"]) == ["class_id", "class_name", "score", "area_m2", "scene_id"]
    assert info["ogr_types"] == ["OFTInteger", "OFTString", "OFTReal", "OFTReal", "OFTString"]
    assert pyogrio.list_layers(path)[:, 0].tolist() == ["regions"]
    with sqlite3.connect(path) as db:
        assert (
            db.execute("select count(*) from sqlite_master where name = 'rtree_regions_geom'").fetchone()[0]
            == 1
        )
        assert db.execute("pragma user_version").fetchone()[0] == 10200  # GeoPackage 1.2
    back = gpd.read_file(path, layer="regions")
    assert back.geometry.iloc[1].equals(MultiPolygon([regions().geometry.iloc[1]]))
    assert np.isclose(back.geometry.area.iloc[0], 80000.0)  # metres, untouched


def test_empty_frames_keep_schema(tmp_path):
    empty = regions().iloc[:0]
    gpkg = write_gpkg(empty, tmp_path / "e.gpkg", layer="regions", geometry_type="MultiPolygon")
    info = pyogrio.read_info(gpkg, layer="regions")
    assert info["features"] == 0 and info["geometry_type"] == "MultiPolygon" and info["crs"] == "EPSG:32633"
    assert list(info["fields"]) == ["class_id", "class_name", "score", "area_m2", "scene_id"]
    assert info["ogr_types"] == ["OFTInteger", "OFTString", "OFTReal", "OFTReal", "OFTString"]
    geojson = write_geojson(empty, tmp_path / "e.geojson")
    doc = json.loads(geojson.read_text())
    assert doc["type"] == "FeatureCollection" and doc["features"] == []


def test_ogrinfo_reads_both(tmp_path):
    ogrinfo = shutil.which("ogrinfo")
    if ogrinfo is None:
        pytest.skip("ogrinfo not installed")
    write_gpkg(regions(), tmp_path / "r.gpkg", layer="regions")
    write_geojson(regions(), tmp_path / "r.geojson")
    out = subprocess.run(
        [ogrinfo, "-so", str(tmp_path / "r.gpkg"), "regions"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "Feature Count: 3" in out.stdout and "Multi Polygon" in out.stdout
    assert "class_name: String" in out.stdout
    assert "Warning" not in out.stderr  # the system GDAL (QGIS's) fully supports the GeoPackage version
    out = subprocess.run([ogrinfo, "-so", "-al", str(tmp_path / "r.geojson")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Feature Count: 3" in out.stdout and 'ID["EPSG",4326]' in out.stdout


def test_tiles_layer_with_outline_style(tmp_path):
    tiles = gpd.GeoDataFrame(
        {"tile_id": ["r000_c000", "r000_c001"]},
        geometry=[box(X0, Y0, X0 + 5120, Y0 + 5120), box(X0 + 5120, Y0, X0 + 10240, Y0 + 5120)],
        crs="EPSG:32633",
    )
    write_gpkg(
        tiles, tmp_path / "s1_tiles.gpkg", layer="tiles", qml=outline_labels_qml(label_field="tile_id")
    )
    assert 'fieldName="tile_id"' in (tmp_path / "s1_tiles.qml").read_text()


def test_overwrite_replaces_whole_file(tmp_path):
    path = tmp_path / "r.gpkg"
    write_gpkg(regions(), path, layer="regions")
    write_gpkg(regions().iloc[:1], path, layer="regions")
    assert pyogrio.read_info(path, layer="regions")["features"] == 1
    with pytest.raises(OutputError, match="already exists"):
        write_gpkg(regions(), path, layer="regions", overwrite=False)


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    import geosam.io.rfc7946 as rfc7946

    def half_write(path, *args, **kwargs):
        with open(path, "w") as f:
            f.write("{ partial")
        raise RuntimeError("driver crashed")

    monkeypatch.setattr(pyogrio, "write_dataframe", lambda df, path, **kw: half_write(path))
    with pytest.raises(RuntimeError, match="driver crashed"):
        write_gpkg(regions(), tmp_path / "r.gpkg", layer="regions", qml=categorized_fill_qml(SCHEME))
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(rfc7946, "write_feature_collection", half_write)
    with pytest.raises(RuntimeError, match="driver crashed"):
        write_geojson(regions(), tmp_path / "r.geojson", qml=categorized_fill_qml(SCHEME))
    assert os.listdir(tmp_path) == []


def test_bad_input(tmp_path):
    no_crs = regions().set_crs(None, allow_override=True)
    with pytest.raises(ValueError, match="no CRS"):
        write_geojson(no_crs, tmp_path / "r.geojson")
    with pytest.raises(ValueError, match="needs a name"):
        write_gpkg(regions(), tmp_path / "r.gpkg", layer=" ")
    with pytest.raises(TypeError, match="GeoDataFrame"):
        write_gpkg(pd.DataFrame({"a": [1]}), tmp_path / "r.gpkg", layer="x")
    assert [n for n in os.listdir(tmp_path) if n.startswith(TEMP_PREFIX)] == []
