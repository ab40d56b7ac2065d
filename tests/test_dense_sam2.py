"""Dense heads with SAM 2.1 regions (random-init Hiera-T in Meta's format, thresholds lowered).

* own pass: a dense bundle with its own encoder (tiny ViT) and SAM 2.1 regions from SAM 2's own pass;
  the regions and the tile take the dense head's mean pixel probabilities, the class map is the refined
  one, and a head on the pixels alone never runs its encoder;
* shared pass: ``geosam train polygons --backbone <sam2.1 checkpoint>`` trains a dense head on Hiera's
  four trunk levels; run with the same checkpoint, one Hiera pass per tile feeds SAM 2's mask decoder
  and the dense head, whose probabilities equal the head applied to ``multiscale_features`` of the tile;
* SAM 3 hybrid regions with a dense bundle, and the one refusal left (a Hiera-level dense head without
  SAM 2 regions).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from helpers_sam2 import count_calls, run_counting_encoders
from rasterio.features import rasterize
from shapely.geometry import box

from geosam.config import RunConfig
from geosam.dense import mean_probabilities
from geosam.errors import ConfigError
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing import DEFAULT_TRANSFORM, make_raster
from geosam.testing_models import make_dense_bundle

if importlib.util.find_spec("sam2") is None:  # find_spec: importing sam2 would initialise Hydra globally
    pytest.skip("SAM 2 tests need the sam2 package (pip install -e '.[sam2]')", allow_module_level=True)

CLASSES = ("field", "roof", "water")


def _scene(d: Path) -> tuple[Path, Path]:
    """128 x 128 px RGB: a noisy field, a red roof block, a lake; one label polygon per class."""
    rng = np.random.default_rng(0)
    h = w = 128
    img = np.empty((3, h, w), np.float32)
    img[0], img[1], img[2] = 0.25, 0.55, 0.20
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    img[:, 80:, :50] = np.array([0.05, 0.10, 0.30], np.float32)[:, None, None]
    img[:, :40, 70:] = np.array([0.60, 0.30, 0.30], np.float32)[:, None, None]
    fill = (np.clip(img, 0, 1) * 1000).astype(np.uint16)
    where = np.zeros((h, w), bool)
    where[:6, :6] = True  # a nodata corner
    scene = make_raster(
        d / "scene.tif", w, h, 3, "uint16", fill=fill, nodata=0, nodata_where=where,
        band_names=["red", "green", "blue"],
    )  # fmt: skip
    a, _, c, _, e, f = DEFAULT_TRANSFORM

    def px(c0: int, r0: int, c1: int, r1: int) -> object:
        return box(c + c0 * a, f + r1 * e, c + c1 * a, f + r0 * e)

    polys = gpd.GeoDataFrame(
        {"cover": ["field", "water", "roof"]},
        geometry=[px(5, 50, 60, 75), px(5, 90, 40, 120), px(80, 5, 120, 35)],
        crs="EPSG:32633",
    )
    labels = d / "labels.gpkg"
    polys.to_file(labels, driver="GPKG")
    return scene, labels


def _cfg(**dense: object) -> RunConfig:
    return RunConfig.model_validate(
        {
            "precision": "fp32",  # the reference computations below are float32
            "tiling": {"tile_size": 128, "halo": 16},
            "segment": {
                "points_per_side": 4,
                "pred_iou_thresh": 0.0,
                "stability_score_thresh": 0.0,
                "box_nms_thresh": 1.0,  # random weights: keep every distinct mask
                "min_region_area": 8,
            },
            "dense": {"probabilities": True, **dense},
        }
    )


def _check_dense_run(res, scene: Path) -> dict:
    """sam2.1 regions, the dense head's outputs, and the refined class map (a region's class inside it)."""
    assert res.region_source == "sam2.1" and res.n_regions > 1
    rec = json.loads(res.outputs["record"].read_text())
    assert rec["region_source"] == "sam2.1" and rec["sam"]["family"] == "sam2.1"
    assert rec["classes_from"]["head"] == "dense"
    assert rec["classes_from"]["class_map"].startswith("region class (arg-max of the mean pixel")
    with rasterio.open(res.outputs["probabilities"]) as ds:
        assert ds.count == len(CLASSES) and ds.descriptions == tuple(f"p_{c}" for c in CLASSES)
        p = ds.read()
    with rasterio.open(res.outputs["classes"]) as ds:
        assert ds.tags()["GEOSAM_REGION_SOURCE"] == "sam2.1"
        c = ds.read(1)
    gdf = gpd.read_file(res.outputs["regions_gpkg"])
    assert len(gdf) == res.n_regions and gdf["region_source"].eq("sam2.1").all()
    with rasterio.open(scene) as src:
        ids = rasterize(
            zip(gdf.geometry, gdf["region_id"], strict=True),
            out_shape=src.shape,
            transform=src.transform,
            dtype="int32",
        )
        invalid = src.read(1) == 0
    assert (c[invalid] == 255).all() and (p[:, invalid] == 255).all()
    for rid, cid in zip(gdf["region_id"], gdf["class_id"], strict=True):
        assert (c[ids == rid] == cid).all()  # refine: regions: the region's class, not each pixel's
    return rec


def _tile(scene: Path, models, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray, object]:
    """The first 128 px tile of the scene as a run reads and stretches it."""
    from geosam.io.read import open_scene, read_window
    from geosam.predict import plan_scene
    from geosam.tiling import plan_tiles

    prep = plan_scene(scene, models, cfg).preprocessing
    plan = plan_tiles(open_scene(scene), cfg.tiling.resolved(128))
    spec = plan.tiles[0]
    data, valid = read_window(str(scene), spec.window, (1, 2, 3))
    return prep.apply(data, valid), valid, spec


# ------------------------------------------------------------------------ own pass (the bundle's encoder)


@pytest.fixture(scope="module")
def own_pass(tmp_path_factory, sam2_tiny_checkpoint):
    d = tmp_path_factory.mktemp("dense_own")
    scene, _ = _scene(d)
    bundle = make_dense_bundle(d / "bundle", classes=CLASSES, backbone="tiny", chip_size=16, tile_size=128)
    cfg = _cfg()
    models, res, hiera, clf = run_counting_encoders(bundle, sam2_tiny_checkpoint, scene, d / "out", cfg)
    return scene, models, cfg, res, hiera, clf


def test_dense_bundle_with_sam2_own_pass_regions_runs_end_to_end(own_pass):
    scene, models, _, res, hiera, clf = own_pass
    assert not models.sam.shared and models.dense
    rec = _check_dense_run(res, scene)
    assert rec["sam"]["encoder_pass"].startswith("own pass")
    assert sum(hiera) == res.n_tiles  # SAM 2: one pass per tile, for the regions
    assert sum(clf) == res.n_tiles * (128 // 16) ** 2  # the dense head's encoder: its chips, once each


def test_own_pass_regions_take_the_mean_pixel_probabilities(own_pass):
    from geosam.encode import plan_encoder
    from geosam.inference import TileInference, tile_inference
    from geosam.io.read import open_scene

    scene, models, cfg, _, _, _ = own_pass
    plan = plan_encoder(models, open_scene(scene), match_resolution=True, tile_size=128)
    ti = tile_inference(models, plan, cfg.segment)
    assert isinstance(ti, TileInference) and ti.encode  # the head reads the ViT's features
    tile, valid, spec = _tile(scene, models, cfg)
    r = ti(tile, valid, spec)
    assert r.dense_probs is not None and r.dense_probs.shape == (len(CLASSES), *valid.shape)
    assert r.labels.max() > 1
    assert np.all(r.dense_probs[:, ~valid] == 0)
    np.testing.assert_allclose(
        r.region_probs, mean_probabilities(r.dense_probs, r.labels, len(r.region_probs))
    )
    np.testing.assert_allclose(r.tile_probs, mean_probabilities(r.dense_probs, valid.astype(np.int32), 1)[0])


def test_pixel_only_dense_head_with_sam2_regions_never_runs_its_encoder(tmp_path, sam2_tiny_checkpoint):
    scene, _ = _scene(tmp_path)
    bundle = make_dense_bundle(
        tmp_path / "bundle", classes=CLASSES, backbone="tiny", chip_size=16, tile_size=128, use_encoder=False
    )
    _models, res, hiera, clf = run_counting_encoders(
        bundle, sam2_tiny_checkpoint, scene, tmp_path / "out", _cfg()
    )
    rec = _check_dense_run(res, scene)
    assert sum(hiera) == res.n_tiles and clf == []  # SAM 2 regions only; the head reads the pixels
    assert rec["sam"]["encoder_pass"].startswith("own pass") and "does not run" in rec["sam"]["encoder_pass"]


# ------------------------------------------------------------------- shared pass (a head on Hiera levels)


@pytest.fixture(scope="module")
def hiera_dense(tmp_path_factory, sam2_tiny_checkpoint):
    """``geosam train polygons --backbone <sam2.1 checkpoint>`` (the default dense head), a few steps."""
    from geosam.cli.main import main

    d = tmp_path_factory.mktemp("dense_hiera")
    scene, labels = _scene(d)
    out = d / "model"
    rc = main(["train", "polygons", str(scene), str(labels), "--field", "cover",
               "--backbone", str(sam2_tiny_checkpoint), "--dense-steps", "4", "--dense-patches", "8",
               "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert rc == 0
    return d, scene, out


def test_train_polygons_on_hiera_records_a_sam2_encoder_and_four_levels(hiera_dense, sam2_tiny_checkpoint):
    from safetensors import safe_open

    from geosam.hashing import sha256_file
    from geosam.models.bundle import read_bundle_meta

    _, _, bundle = hiera_dense
    meta = read_bundle_meta(bundle)
    assert meta.head is None and meta.training["head"] == "dense"
    assert meta.encoder.family == "sam2" and meta.encoder.source == "sam_checkpoint"
    assert meta.encoder.config["variant"] == "sam2.1_hiera_tiny"
    assert meta.encoder.checkpoint_sha256 == sha256_file(sam2_tiny_checkpoint)
    assert meta.dense is not None
    assert meta.dense["in_channels"] == [96, 192, 384, 768] and meta.dense["strides"] == [4, 8, 16, 32]
    # --backbone <checkpoint> asks for its features: the polygons default (pixels only) does not apply
    assert meta.dense["use_encoder"] is True and meta.training["config"]["dense"]["use_encoder"] is True
    assert meta.input_size == 64 and meta.chip_size == 32 and meta.recommended_tile_size == 256
    with safe_open(str(bundle / "weights.safetensors"), framework="pt") as f:
        assert not [k for k in f.keys() if k.startswith("encoder.")]  # noqa: SIM118  the frozen Hiera stays out


@pytest.fixture(scope="module")
def shared_run(hiera_dense, sam2_tiny_checkpoint):
    d, scene, bundle = hiera_dense
    cfg = _cfg()
    models = load_models(bundle, sam2_tiny_checkpoint, cfg)
    trunk, h = count_calls(models.bundle.model.encoder.image_encoder.trunk)
    res = predict_scene(scene, d / "out", models, cfg)
    h.remove()
    return scene, models, cfg, res, trunk


def test_shared_pass_feeds_sam2_masks_and_the_dense_head(shared_run):
    scene, models, _, res, trunk = shared_run
    assert models.sam.shared and models.sam.model.image_encoder is models.bundle.model.encoder.image_encoder
    assert sum(trunk) == res.n_tiles  # the only encoder pass: masks and dense head share it
    rec = _check_dense_run(res, scene)
    assert rec["sam"]["encoder_pass"].startswith("shared")


def test_shared_dense_probabilities_are_the_head_on_multiscale_features(shared_run):
    from geosam.encode import EncoderPlan, fill_invalid
    from geosam.infer_sam2 import Sam2SharedInference
    from geosam.inference import tile_inference
    from geosam.models.sam2_encoder import multiscale_features

    scene, models, cfg, _, _ = shared_run
    ti = tile_inference(models, EncoderPlan(128, 128, 128, 8), cfg.segment)
    assert isinstance(ti, Sam2SharedInference)
    tile, valid, spec = _tile(scene, models, cfg)
    assert not valid.all()  # the nodata corner: filled before encoding, 0 in the probabilities
    trunk, h = count_calls(models.bundle.model.encoder.image_encoder.trunk)
    r = ti(tile, valid, spec)
    h.remove()
    assert trunk == [1]  # one Hiera pass for the tile's masks and its pixel classes
    assert r.dense_probs is not None and r.labels.max() > 1
    # the head called directly on Hiera's four levels of the same (filled, normalised) tile
    model = models.bundle.model
    x = torch.from_numpy(fill_invalid(tile, valid, model.get_buffer("mean").reshape(-1).numpy()))[None]
    with torch.inference_mode():
        levels = multiscale_features(model.encoder, model.normalize(x))
        assert [tuple(f.shape[1:]) for f in levels] == [(96, 32, 32), (192, 16, 16), (384, 8, 8), (768, 4, 4)]
        want = torch.softmax(model.dense(levels, model.normalize(x)), dim=1)[0].numpy()
    want[:, ~valid] = 0
    np.testing.assert_allclose(r.dense_probs, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        r.region_probs, mean_probabilities(want, r.labels, len(r.region_probs)), atol=1e-6
    )
    np.testing.assert_allclose(
        r.tile_probs, mean_probabilities(want, valid.astype(np.int32), 1)[0], atol=1e-6
    )


def test_cli_run_with_the_training_checkpoint_and_the_refusal(hiera_dense, sam2_tiny_checkpoint, capsys):
    from geosam.cli.main import main
    from geosam.predict import output_paths

    d, scene, bundle = hiera_dense
    lowered = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    common = ["--model", str(bundle), "--sam-checkpoint", str(sam2_tiny_checkpoint), "--tile-size", "128"]
    common += lowered
    rc = main(["run", str(scene), *common, "--probabilities", "--out", str(d / "cli")])
    assert rc == 0
    paths = output_paths(scene, d / "cli")
    rec = json.loads(paths["record"].read_text())
    assert rec["region_source"] == "sam2.1" and rec["sam"]["encoder_pass"].startswith("shared")
    assert rec["classes_from"]["head"] == "dense" and paths["probabilities"].is_file()
    capsys.readouterr()
    rc = main(["run", str(scene), *common, "--regions", "felzenszwalb", "--out", str(d / "felz")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "four feature levels" in err, err


# ---------------------------------------------------------------------------- SAM 3 hybrid and refusals


def test_hiera_dense_head_without_sam2_regions_is_refused_in_one_line(shared_run, hiera_dense):
    from geosam.encode import plan_encoder
    from geosam.inference import tile_inference
    from geosam.io.read import open_scene

    scene, models, cfg, _, _ = shared_run
    _, _, bundle = hiera_dense
    felz = cfg.with_overrides(**{"segment.source": "felzenszwalb"})
    other = load_models(bundle, models.sam_checkpoint, felz)
    plan = plan_encoder(other, open_scene(scene), match_resolution=True, tile_size=None)
    with pytest.raises(ConfigError, match="four feature levels of a SAM 2 Hiera pass") as err:
        tile_inference(other, plan, felz.segment)
    assert "\n" not in str(err.value) and "--sam-checkpoint" in str(err.value)


def test_dense_bundle_with_sam3_hybrid_regions(tmp_path, monkeypatch):
    from helpers_sam3 import patch_sam3

    patch_sam3(monkeypatch)
    ckpt = tmp_path / "sam3.pt"
    ckpt.write_bytes(b"stand-in weights")
    scene, _ = _scene(tmp_path)
    bundle = make_dense_bundle(tmp_path / "b", classes=CLASSES, backbone="tiny", chip_size=16, tile_size=64)
    cfg = RunConfig.model_validate(
        {
            "tiling": {"tile_size": 64, "halo": 8},
            "segment": {"concepts": "water=water|lake,forest,building", "source": "sam3"},
            "dense": {"probabilities": True},
        }
    )
    models = load_models(bundle, None, cfg, sam3_checkpoint=ckpt)
    res = predict_scene(scene, tmp_path / "out", models, cfg)
    rec = json.loads(res.outputs["record"].read_text())
    assert rec["region_source"] == "sam3" and rec["sam"]["mode"].startswith("hybrid")
    assert rec["classes_from"]["head"] == "dense" and res.outputs["probabilities"].is_file()
