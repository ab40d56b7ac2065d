"""Region polygons streamed during the finishing pass: every region once, whole, in both layers."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from geosam.config import RunConfig
from geosam.io.region_stream import completion_positions
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle


@settings(max_examples=50, deadline=None)
@given(
    n_tiles=st.integers(1, 6),
    pieces=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 7)), min_size=0, max_size=30),
    seed=st.integers(0, 1000),
)
def test_completion_is_the_last_tile_of_any_piece(n_tiles, pieces, seed):
    rng = np.random.default_rng(seed)
    order = [int(t) for t in rng.permutation(np.arange(10, 10 + n_tiles))]  # tile indices, visit order
    lookup = np.zeros(len(pieces) + 1, np.int32)
    piece_tiles = np.full(len(pieces) + 1, -1, np.int64)
    for p, (tile_pos, region) in enumerate(pieces, start=1):
        piece_tiles[p] = order[tile_pos % n_tiles]
        lookup[p] = region  # 0 = dropped piece
    count = 7
    got = completion_positions(lookup, piece_tiles, order, count)
    want = np.full(count + 1, -1)
    for p in range(1, len(pieces) + 1):
        if lookup[p]:
            want[lookup[p]] = max(want[lookup[p]], order.index(int(piece_tiles[p])))
    np.testing.assert_array_equal(got, want)


CFG = {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}}


def _scene(path, h=300, w=420):
    """Flat blocks, several crossing tile seams in both directions, plus one spanning three tiles."""
    rng = np.random.default_rng(1)
    img = np.full((3, h, w), 1000, np.uint16)
    img[:, 20:90, 40:330] = np.array([3000, 500, 500])[:, None, None]  # across two vertical seams
    img[:, 80:260, 100:180] = np.array([500, 3000, 800])[:, None, None]  # across a horizontal seam
    img[:, 100:140, 10:60] = np.array([400, 700, 3500])[:, None, None]
    img[:, 200:290, 250:410] = np.array([2500, 2500, 300])[:, None, None]
    img = img + rng.integers(0, 20, img.shape).astype(np.uint16)
    return make_raster(path, w, h, count=3, dtype="uint16", fill=img, nodata=0)


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    bundle = make_tiny_bundle(d / "bundle", input_size=32, tile_size=128)
    scene = _scene(d / "scene.tif")
    cfg = RunConfig.model_validate(
        {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}}
    )
    models = load_models(bundle, None, cfg)
    return predict_scene(scene, d / "out", models, cfg)


def test_every_region_once_and_whole(streamed):
    res = streamed
    gdf = gpd.read_file(res.outputs["regions_gpkg"])
    assert len(gdf) == res.n_regions > 0
    assert gdf["region_id"].is_unique
    assert set(gdf["region_id"]) == set(range(1, res.n_regions + 1))
    # whole regions: each polygon covers exactly the region's pixels (a region cut short by an early
    # write would show up twice, each part smaller than its area_px)
    with rasterio.open(res.scene) as ds:
        pixel_area = abs(ds.transform.a * ds.transform.e)
    np.testing.assert_allclose(gdf.geometry.area / pixel_area, gdf["area_px"], rtol=1e-9)
    assert (gdf["pieces"] > 1).any(), "the scene should have regions merged across seams"
    assert gdf.geometry.is_valid.all()


def test_geojson_has_the_same_regions(streamed):
    res = streamed
    text = res.outputs["regions_geojson"].read_text(encoding="utf-8")
    fc = json.loads(text)
    assert fc["type"] == "FeatureCollection" and fc["name"] == res.outputs["regions_geojson"].stem
    ids = [f["properties"]["region_id"] for f in fc["features"]]
    assert sorted(ids) == list(range(1, res.n_regions + 1))
    gj = gpd.read_file(res.outputs["regions_geojson"])
    gp = gpd.read_file(res.outputs["regions_gpkg"]).to_crs(4326)
    gj = gj.set_index("region_id").sort_index()
    gp = gp.set_index("region_id").sort_index()
    assert list(gj["class_name"]) == list(gp["class_name"])
    np.testing.assert_allclose(gj.to_crs(3857).area, gp.to_crs(3857).area, rtol=1e-3)
    assert res.outputs["regions_gpkg"].with_name(res.outputs["regions_gpkg"].stem + ".qml").exists()


def test_small_batches_give_the_same_layers(tmp_path, streamed, monkeypatch):
    """Writing every region on its own gives the same features as the default batches."""
    import geosam.io.region_stream as rs

    res0 = streamed
    bundle = tmp_path / "bundle"
    make_tiny_bundle(bundle, input_size=32, tile_size=128)
    cfg = RunConfig.model_validate(
        {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}}
    )
    models = load_models(bundle, None, cfg)
    orig_init = rs.RegionLayerStream.__init__

    def init(self, *a, **kw):
        kw["batch"] = 1
        orig_init(self, *a, **kw)

    monkeypatch.setattr(rs.RegionLayerStream, "__init__", init)
    res1 = predict_scene(res0.scene, tmp_path / "out", models, cfg)
    a = gpd.read_file(res0.outputs["regions_gpkg"]).set_index("region_id").sort_index()
    b = gpd.read_file(res1.outputs["regions_gpkg"]).set_index("region_id").sort_index()
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
    assert all(ga.equals(gb) for ga, gb in zip(a.geometry, b.geometry, strict=True))


def test_no_regions_gives_empty_layers(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "bundle", input_size=32, tile_size=128)
    scene = make_raster(tmp_path / "flat.tif", 200, 150, count=3, dtype="uint8", fill=7, nodata=0)
    cfg = RunConfig.model_validate({"tiling": {"tile_size": 128}, "segment": {"min_region_area": 10**9}})
    res = predict_scene(scene, tmp_path / "out", load_models(bundle, None, cfg), cfg)
    assert res.n_regions == 0
    assert len(gpd.read_file(res.outputs["regions_gpkg"])) == 0
    assert json.loads(res.outputs["regions_geojson"].read_text())["features"] == []
