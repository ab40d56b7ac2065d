"""End to end with SAM 2.1 regions (random-init Hiera-T in Meta's format, thresholds lowered): every output,
region_source sam2.1 everywhere, seams, one encoder pass per tile, and the refusals."""

from __future__ import annotations

import importlib.util
import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from helpers_sam2 import count_calls, run_counting_encoders
from rasterio.features import rasterize
from rio_cogeo.cogeo import cog_validate

from geosam.config import RunConfig
from geosam.errors import BundleError, CheckpointError, InputMismatchError
from geosam.hashing import sha256_file
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle, make_tiny_sam2_bundle, make_tiny_sam_checkpoint

if importlib.util.find_spec("sam2") is None:  # find_spec: importing sam2 would initialise Hydra globally
    pytest.skip("SAM 2 tests need the sam2 package (pip install -e '.[sam2]')", allow_module_level=True)

CLASSES = ("water", "forest", "field")
OUTPUTS = ("classes", "confidence", "regions_geojson", "regions_gpkg", "tiles_gpkg", "qgis_project", "record")


def blocky_scene(path, h=200, w=230):
    rng = np.random.default_rng(0)
    img = np.full((3, h, w), 1000, np.uint16)
    img[:, 20:90, 40:200] = np.array([3000, 500, 500])[:, None, None]
    img[:, 120:190, 100:180] = np.array([500, 3000, 800])[:, None, None]
    img = img + rng.integers(0, 20, img.shape).astype(np.uint16)
    where = np.zeros((h, w), bool)
    where[:30, :30] = True
    return make_raster(path, w, h, count=3, dtype="uint16", fill=img, nodata=0, nodata_where=where)


def _cfg(tile=128, halo=16):
    return RunConfig.model_validate(
        {
            "tiling": {"tile_size": tile, "halo": halo},
            "segment": {
                "points_per_side": 4,
                "pred_iou_thresh": 0.0,
                "stability_score_thresh": 0.0,
                "box_nms_thresh": 1.0,  # random weights: keep every distinct mask
                "min_region_area": 8,
            },
        }
    )


def _check_outputs(res, scene, ckpt):
    for kind in OUTPUTS:
        assert res.outputs[kind].is_file(), kind
    for kind in ("classes", "confidence"):
        valid, errors, _ = cog_validate(str(res.outputs[kind]))
        assert valid and not errors, (kind, errors)
        with rasterio.open(res.outputs[kind]) as ds:
            assert ds.tags()["GEOSAM_REGION_SOURCE"] == "sam2.1"
    assert res.region_source == "sam2.1"
    rec = json.loads(res.outputs["record"].read_text())
    assert rec["region_source"] == "sam2.1" and "SAM 2.1" in rec["region_source_note"]
    assert rec["sam"]["model"] == "sam2.1_hiera_tiny" and rec["sam"]["family"] == "sam2.1"
    assert rec["sam"]["checkpoint_sha256"] == sha256_file(ckpt)
    assert rec["sam"]["package"].startswith("sam2 ")
    gdf = gpd.read_file(res.outputs["regions_gpkg"])
    assert len(gdf) == res.n_regions > 1
    assert gdf["region_source"].eq("sam2.1").all() and gdf["predicted_iou"].notna().all()
    geo = json.loads(res.outputs["regions_geojson"].read_text())
    assert {f["properties"]["region_source"] for f in geo["features"]} == {"sam2.1"}
    # a partition: no overlaps, and the class map under each region is the region's class
    assert gdf.geometry.area.sum() == pytest.approx(gdf.geometry.union_all().area, rel=1e-9)
    with rasterio.open(scene) as src, rasterio.open(res.outputs["classes"]) as cls:
        ids = rasterize(
            zip(gdf.geometry, gdf["region_id"], strict=True),
            out_shape=src.shape,
            transform=src.transform,
            dtype="int32",
        )
        c = cls.read(1)
        assert (c[src.read(1) == 0] == 255).all()
    for rid, cid in zip(gdf["region_id"], gdf["class_id"], strict=True):
        assert (c[ids == rid] == cid).all()
    # seams: regions continue across tile cores
    assert rec["results"]["seam_matches"] > 0 and (gdf["pieces"] >= 2).any()
    return rec, gdf


@pytest.fixture(scope="module")
def own_pass_run(tmp_path_factory, sam2_tiny_checkpoint):
    """A bundle with its own (tiny ViT, 32 px chip) encoder; SAM 2.1 regions from their own pass."""
    d = tmp_path_factory.mktemp("own")
    bundle = make_tiny_bundle(d / "bundle", classes=CLASSES, input_size=32, tile_size=128)
    scene = blocky_scene(d / "scene.tif")
    models, res, hiera, clf = run_counting_encoders(bundle, sam2_tiny_checkpoint, scene, d / "out", _cfg())
    return scene, res, models, hiera, clf


def test_own_pass_outputs(own_pass_run, sam2_tiny_checkpoint):
    scene, res, models, _, _ = own_pass_run
    rec, _ = _check_outputs(res, scene, sam2_tiny_checkpoint)
    assert not models.sam.shared and rec["sam"]["encoder_pass"].startswith("own pass")


def test_own_pass_encodes_each_tile_once_per_encoder(own_pass_run):
    _, res, _models, hiera, clf = own_pass_run
    assert sum(hiera) == res.n_tiles  # Hiera: one pass per tile (regions)
    assert sum(clf) == res.n_tiles * (128 // 32) ** 2  # classifier: its chips, once each


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, sam2_tiny_checkpoint):
    """A head trained on the checkpoint's frozen Hiera: one pass feeds masks and classes."""
    d = tmp_path_factory.mktemp("shared")
    bundle = make_tiny_sam2_bundle(d / "bundle", sam2_tiny_checkpoint, classes=CLASSES)
    scene = blocky_scene(d / "scene.tif")
    cfg = _cfg()
    models = load_models(bundle, sam2_tiny_checkpoint, cfg)
    trunk, h = count_calls(models.bundle.model.encoder.image_encoder.trunk)
    res = predict_scene(scene, d / "out", models, cfg)
    h.remove()
    return scene, res, models, trunk


def test_shared_pass_outputs_and_hook_count(shared_run, sam2_tiny_checkpoint):
    scene, res, models, trunk = shared_run
    assert models.sam.shared and models.sam.model.image_encoder is models.bundle.model.encoder.image_encoder
    assert sum(trunk) == res.n_tiles  # the only encoder pass: masks and classes share it
    rec, gdf = _check_outputs(res, scene, sam2_tiny_checkpoint)
    assert rec["tiling"]["tile_size"] == 128 and rec["tiling"]["encoder_input_size"] == 128
    assert set(gdf["class_name"]) <= set(CLASSES)


def test_sam2_bundle_refuses_other_checkpoints(tmp_path, sam2_tiny_checkpoint):
    from geosam.models.bundle import read_bundle_meta
    from geosam.models.sam2_bundle import check_checkpoint_for_bundle
    from geosam.models.sam_family import SAM2_VARIANTS, SamModelId
    from geosam.testing_models import make_tiny_sam2_checkpoint

    bundle = make_tiny_sam2_bundle(tmp_path / "b", sam2_tiny_checkpoint, classes=CLASSES)
    cfg = _cfg()
    sam1 = make_tiny_sam_checkpoint(tmp_path / "sam1.pth")
    with pytest.raises(InputMismatchError, match=r"SAM 2\.1 Hiera-T but the SAM checkpoint is SAM 1"):
        load_models(bundle, sam1, cfg)
    meta = read_bundle_meta(bundle)
    small = SAM2_VARIANTS["sam2.1_hiera_small"]
    with pytest.raises(InputMismatchError, match=r"sam2\.1_hiera_tiny\.pt"):
        check_checkpoint_for_bundle(meta, SamModelId("sam2.1", small.name, small), bundle)
    other = make_tiny_sam2_checkpoint(tmp_path / "other.pt", seed=1)  # same architecture, other weights
    with pytest.raises(BundleError, match="sha256 differs"):
        load_models(bundle, other, cfg)
    with pytest.raises(Exception, match="multiple of 32"):
        load_models(bundle, sam2_tiny_checkpoint, _cfg(tile=100, halo=8))


def test_encoder_only_checkpoint_cannot_make_masks(tmp_path, sam2_tiny_checkpoint):
    sd = torch.load(sam2_tiny_checkpoint, map_location="cpu", weights_only=True)["model"]
    enc = tmp_path / "enc.pt"
    torch.save({"model": {k: v for k, v in sd.items() if k.startswith("image_encoder.")}}, enc)
    bundle = make_tiny_bundle(tmp_path / "b", classes=CLASSES, input_size=32, tile_size=128)
    with pytest.raises(CheckpointError, match="no mask decoder"):
        load_models(bundle, enc, _cfg())


def test_each_scene_gets_its_own_predictor(shared_run):
    """The predictor holds image state: scenes (threads of one worker) must not share one."""
    from geosam.encode import EncoderPlan
    from geosam.inference import tile_inference

    _, _, models, _ = shared_run
    plan = EncoderPlan(128, 128, 128, 8)
    a = tile_inference(models, plan, _cfg().segment)
    b = tile_inference(models, plan, _cfg().segment)
    assert a.predictor is not b.predictor and a.decoder is b.decoder


def test_own_pass_chips_are_scored_for_the_domain_check_and_shared_tiles_are_not(
    tmp_path, sam2_tiny_checkpoint, own_pass_run, shared_run
):
    """SAM 2 own pass: the classifier's chips are matched to training and scored; shared: whole tiles."""
    import json as _json

    import torch as _torch

    from geosam.domain import DOMAIN_FILE, fit_domain
    from geosam.models.bundle import META_FILE, load_bundle, read_bundle_meta

    bundle = make_tiny_bundle(tmp_path / "bundle", classes=CLASSES, input_size=32, tile_size=128)
    model = load_bundle(bundle).model
    with _torch.no_grad():
        f = model.features(_torch.rand(60, 3, 32, 32)).mean(dim=(2, 3)).double().numpy()
    stats = fit_domain(f[:40], np.arange(40) % 3, 3).with_threshold(f[40:])
    meta = read_bundle_meta(bundle).model_copy(update={"domain": stats.meta(40, 20, "random test chips")})
    (bundle / META_FILE).write_text(_json.dumps(meta.model_dump(), indent=2))
    (bundle / DOMAIN_FILE).write_bytes(stats.to_bytes())
    scene, _res, _m, _h, _c = own_pass_run
    cfg = _cfg()
    res = predict_scene(scene, tmp_path / "out", load_models(bundle, sam2_tiny_checkpoint, cfg), cfg)
    dom = json.loads(res.outputs["record"].read_text())["domain"]
    # chips at least half inside the scene (edge tiles reach past it), each scored once
    assert 0 < dom["chips"] <= res.n_tiles * (128 // 32) ** 2 and dom["verdict"] in (
        "in_domain",
        "partly_out_of_domain",
        "out_of_domain",
    )
    _scene, shared_res, _models, _trunk = shared_run
    shared_dom = json.loads(shared_res.outputs["record"].read_text())["domain"]
    assert shared_dom["out_of_domain"] is None
    assert "whole SAM tiles" in shared_dom["note"] or "no domain statistics" in shared_dom["note"]


def test_a_scene_without_any_mask_says_so_once(tmp_path, sam2_tiny_checkpoint, own_pass_run, caplog):
    """Thresholds no random mask passes: empty regions layers, one WARNING saying why and what to do."""
    import logging

    scene, _res, _m, _h, _c = own_pass_run
    bundle = make_tiny_bundle(tmp_path / "bundle", classes=CLASSES, input_size=32, tile_size=128)
    cfg = _cfg().model_copy(update={"segment": _cfg().segment.model_copy(update={"pred_iou_thresh": 0.999})})
    with caplog.at_level(logging.WARNING, logger="geosam"):
        res = predict_scene(scene, tmp_path / "out", load_models(bundle, sam2_tiny_checkpoint, cfg), cfg)
    assert res.n_regions == 0
    said = [m for m in caplog.messages if "made no region on any tile" in m]
    assert (
        len(said) == 1
        and "sam2.1" in said[0]
        and "--pred-iou-thresh" in said[0]
        and "tile's class" in said[0]
    )
    assert len(gpd.read_file(res.outputs["regions_gpkg"])) == 0
