"""End-to-end `predict_scene` on synthetic scenes with tiny random models: structure, georeferencing,
nodata, seams, one encoder pass per tile, and the SAM mask-decoder path."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.features import rasterize
from rio_cogeo.cogeo import cog_validate

from geosam.config import RunConfig
from geosam.io.cog import read_class_scheme
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle, make_tiny_sam_checkpoint

CLASSES = ("water", "forest", "field")


def blocky_scene(path, h=300, w=260, nodata_corner=True):
    """Flat colour blocks (easy, exact superpixels) + a nodata corner; one block crosses tile seams."""
    rng = np.random.default_rng(0)
    img = np.zeros((3, h, w), np.uint16)
    img[:] = 1000
    img[:, 20:90, 40:200] = np.array([3000, 500, 500])[:, None, None]  # crosses the core edge at x=112
    img[:, 150:260, 100:180] = np.array([500, 3000, 800])[:, None, None]
    img[:, 100:140, 10:60] = np.array([400, 700, 3500])[:, None, None]
    img = img + rng.integers(0, 20, img.shape).astype(np.uint16)
    where = np.zeros((h, w), bool)
    if nodata_corner:
        where[:40, :40] = True
    return make_raster(path, w, h, count=3, dtype="uint16", fill=img, nodata=0, nodata_where=where)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return make_tiny_bundle(
        tmp_path_factory.mktemp("b") / "bundle", classes=CLASSES, input_size=32, tile_size=128
    )


@pytest.fixture(scope="module")
def run_default(tmp_path_factory, tiny_bundle):
    d = tmp_path_factory.mktemp("run")
    scene = blocky_scene(d / "scene.tif")
    cfg = RunConfig.model_validate(
        {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}}
    )
    models = load_models(tiny_bundle, None, cfg)
    calls = {"n": 0}
    hook = models.bundle.model.encoder.register_forward_hook(
        lambda m, i, o: calls.__setitem__("n", calls["n"] + i[0].shape[0])
    )
    res = predict_scene(scene, d / "out", models, cfg)
    hook.remove()
    return scene, res, calls["n"], models


def test_outputs_complete_and_valid(run_default):
    _scene, res, _, _ = run_default
    for kind in (
        "classes",
        "confidence",
        "regions_geojson",
        "regions_gpkg",
        "tiles_gpkg",
        "qgis_project",
        "record",
    ):
        assert res.outputs[kind].is_file(), kind
    for kind in ("classes", "confidence"):
        valid, errors, _ = cog_validate(str(res.outputs[kind]))
        assert valid and not errors, (kind, errors)
    out_dir = res.outputs["classes"].parent
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert read_class_scheme(res.outputs["classes"]).names == CLASSES


def test_class_map_georeferenced_with_nodata(run_default):
    scene, res, _, _ = run_default
    with (
        rasterio.open(scene) as src,
        rasterio.open(res.outputs["classes"]) as cls,
        rasterio.open(res.outputs["confidence"]) as conf,
    ):
        assert cls.crs == src.crs and cls.transform == src.transform and cls.shape == src.shape
        c = cls.read(1)
        p = conf.read(1)
        inp = src.read(1)
        assert cls.nodata == 255 and conf.nodata == -1
        assert (c[inp == 0] == 255).all() and (p[inp == 0] == -1).all()
        assert set(np.unique(c[inp != 0])) <= {0, 1, 2}
        assert ((p[inp != 0] > 0) & (p[inp != 0] <= 1)).all()
        assert cls.colormap(1)[0][:3] == tuple(read_class_scheme(res.outputs["classes"]).colors[0])


def test_regions_partition_the_scene_and_match_the_class_map(run_default):
    scene, res, _, _ = run_default
    gdf = gpd.read_file(res.outputs["regions_gpkg"])
    with rasterio.open(scene) as src:
        assert gdf.crs == src.crs
        shape, transform = src.shape, src.transform
    assert gdf["region_id"].is_unique and len(gdf) == res.n_regions > 3
    # no overlaps: summed areas equal the union's area
    assert gdf.geometry.area.sum() == pytest.approx(gdf.geometry.union_all().area, rel=1e-9)
    # area_m2 is the ground area: 10 m UTM pixels at the central meridian (scale factor 0.9996) cover
    # 100 / 0.9996^2 m2 of ellipsoid each, and the polygons' geodesic areas say the same
    from pyproj import Geod

    assert np.allclose(gdf["area_m2"], gdf["area_px"] * 100 / 0.9996**2, rtol=2e-6)
    geod = Geod(ellps="WGS84")
    ellipsoidal = [abs(geod.geometry_area_perimeter(g)[0]) for g in gdf.to_crs(4326).geometry]
    assert np.allclose(gdf["area_m2"], ellipsoidal, rtol=1e-6)
    # class map under each region = the region's class
    ids = rasterize(
        zip(gdf.geometry, gdf["region_id"], strict=True), out_shape=shape, transform=transform, dtype="int32"
    )
    with rasterio.open(res.outputs["classes"]) as cls:
        c = cls.read(1)
    lookup = dict(zip(gdf["region_id"], gdf["class_id"], strict=True))
    for rid, cid in lookup.items():
        assert (c[ids == rid] == cid).all()
    for col in (
        "class_name",
        "probability",
        "class_2",
        "probability_2",
        "top3",
        "predicted_iou",
        "stability_score",
        "tile_id",
        "area_m2",
    ):
        assert col in gdf.columns
    assert gdf["region_source"].eq("felzenszwalb").all() and gdf["predicted_iou"].isna().all()
    # numeric fields are Real in the GeoPackage also when every value is NULL (no SAM scores here)
    import pyogrio

    info = pyogrio.read_info(res.outputs["regions_gpkg"])
    types = dict(zip(info["fields"], info["dtypes"], strict=True))
    for col in ("probability", "probability_2", "predicted_iou", "stability_score", "area_m2"):
        assert types[col] == "float64", (col, types[col])


def test_seam_crossing_block_is_one_region(run_default):
    scene, res, _, _ = run_default
    gdf = gpd.read_file(res.outputs["regions_gpkg"])
    with rasterio.open(scene) as src:
        t = src.transform
    # the red block spans cols 40..200, rows 20..90: it crosses the core edge at col 112 (stride 96)
    x, y = t @ (150, 55)
    x2, y2 = t @ (60, 55)
    from shapely.geometry import Point

    hit = gdf[gdf.contains(Point(x, y))]
    hit2 = gdf[gdf.contains(Point(x2, y2))]
    assert len(hit) == 1 and len(hit2) == 1
    assert hit.iloc[0]["region_id"] == hit2.iloc[0]["region_id"]
    assert hit.iloc[0]["pieces"] >= 2
    # the block's interior is one region across the seams (felzenszwalb may split off its 1 px outline,
    # 2 * (70 + 160) px, as it does on this scene at 160 px tiles whatever the preprocessing)
    assert 68 * 158 - 20 <= hit.iloc[0]["area_px"] <= 70 * 160 + 20


def test_geojson_is_wgs84(run_default):
    _, res, _, _ = run_default
    from shapely.geometry import shape

    data = json.loads(res.outputs["regions_geojson"].read_text())
    bounds = np.array([shape(f["geometry"]).bounds for f in data["features"]])
    xs, ys = bounds[:, [0, 2]].ravel(), bounds[:, [1, 3]].ravel()
    # EPSG:32633 at (500000, 5000000) is about 15 E, 45 N
    assert min(xs) > 14 and max(xs) < 16 and min(ys) > 44 and max(ys) < 46
    assert "crs" not in data  # RFC 7946


def test_one_encoder_pass_per_tile(run_default):
    _, res, chips, models = run_default
    tile = json.loads(res.outputs["record"].read_text())["tiling"]["tile_size"]
    assert chips == res.n_tiles * (tile // models.chip_size) ** 2


def test_tiles_layer_and_run_record(run_default):
    _scene, res, _, _ = run_default
    tiles = gpd.read_file(res.outputs["tiles_gpkg"])
    assert len(tiles) == res.n_tiles
    assert {"tile_id", "class_name", "probability", "p_water", "p_forest", "p_field"} <= set(tiles.columns)
    rec = json.loads(res.outputs["record"].read_text())
    assert rec["region_source"] == "felzenszwalb" and "superpixels" in rec["region_source_note"]
    assert rec["model"]["weights_sha256"] and rec["scene"]["sha256"]
    # chip model (32 px chips): the halo is rounded up to a whole chip and the tile grown to hold it
    assert rec["tiling"]["tile_size"] == 160 and rec["tiling"]["halo"] == 32
    assert rec["timings_s"]["encode"] > 0 and rec["versions"]["torch"] == torch.__version__
    assert rec["results"]["regions"] == res.n_regions


def test_sam_mask_decoder_path(tmp_path):
    ckpt = make_tiny_sam_checkpoint(tmp_path / "sam_tiny.pth")
    bundle = make_tiny_bundle(tmp_path / "probe_bundle", classes=CLASSES, sam_checkpoint=ckpt)
    scene = blocky_scene(tmp_path / "scene.tif", h=150, w=170)
    cfg = RunConfig.model_validate(
        {
            "tiling": {"tile_size": 128, "halo": 16},
            "segment": {
                "points_per_side": 6,
                "pred_iou_thresh": 0.0,
                "stability_score_thresh": 0.0,
                "min_region_area": 4,
            },
        }
    )
    models = load_models(bundle, ckpt, cfg)
    assert models.sam.image_encoder is models.bundle.model.encoder  # one encoder for masks and classes
    calls = []
    hook = models.bundle.model.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    res = predict_scene(scene, tmp_path / "out", models, cfg)
    hook.remove()
    assert sum(calls) == res.n_tiles  # SAM decoder did not re-encode
    gdf = gpd.read_file(res.outputs["regions_gpkg"])
    assert res.region_source == "sam" and len(gdf) > 0
    assert gdf["predicted_iou"].notna().all() and gdf["region_source"].eq("sam").all()
    assert gdf.geometry.area.sum() == pytest.approx(gdf.geometry.union_all().area, rel=1e-9)


def test_bundle_without_sam_encoder_refuses_sam_regions(tmp_path, tiny_bundle):
    from geosam.errors import InputMismatchError

    ckpt = make_tiny_sam_checkpoint(tmp_path / "sam_tiny.pth")
    other = make_tiny_bundle(tmp_path / "b", input_size=64)  # own encoder (tiny), width differs? same arch
    big = tmp_path / "sam_big.pth"
    import geosam.models.sam as gs
    from geosam.models.sam_config import SamConfig

    gs.save_sam(gs.build_sam(SamConfig.preset("tiny", embed_dim=96, img_size=128)), big)
    with pytest.raises(InputMismatchError, match="one encoder pass"):
        load_models(other, big, RunConfig.model_validate({"tiling": {"tile_size": 128, "halo": 16}}))
    assert ckpt.exists()


def test_scene_is_encoded_at_the_models_ground_resolution(tmp_path):
    """A 10 m model on a 20 m scene: chips of 16 scene px (= 32 px at 10 m) resampled to the 32 px input."""
    bundle = make_tiny_bundle(tmp_path / "b", classes=CLASSES, input_size=32, tile_size=128, gsd_m=10.0)
    scene = make_raster(
        tmp_path / "s20.tif",
        100,
        90,
        count=3,
        dtype="uint16",
        fill="random",
        transform=(20.0, 0.0, 500000.0, 0.0, -20.0, 5000000.0),
    )
    cfg = RunConfig()
    models = load_models(bundle, None, cfg)
    sizes = []
    hook = models.bundle.model.encoder.register_forward_hook(lambda m, i, o: sizes.append(tuple(i[0].shape)))
    res = predict_scene(scene, tmp_path / "out", models, cfg)
    hook.remove()
    rec = json.loads(res.outputs["record"].read_text())
    # 16 px chips; the 100 x 90 scene fits one tile of 7 x 7 whole chips (112 px), so no halo
    assert rec["tiling"]["chip_size"] == 16 and rec["tiling"]["tile_size"] == 112
    assert rec["tiling"]["halo"] == 0 and res.n_tiles == 1
    assert rec["tiling"]["scene_gsd_m"] == pytest.approx(20 / 0.9996, abs=0.005)  # on the ground
    assert all(s[-2:] == (32, 32) for s in sizes)
    assert sum(s[0] for s in sizes) == res.n_tiles * 49
    off = predict_scene(scene, tmp_path / "out2", models, cfg.model_copy(update={"match_resolution": False}))
    assert json.loads(off.outputs["record"].read_text())["tiling"]["chip_size"] == 32
