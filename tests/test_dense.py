"""The dense ("sam-seg") head: architecture, sparse loss, object-based refinement, bundles, and a road.

The road scene: a field with a 3-pixel-wide road across it, labelled by polygons on part of the road
and on the field. The dense head must map the *held-out* part of the road as road; chip (tile)
classification of the same labels loses it (a 3-pixel road is a minority of every chip).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from helpers_runs import assert_same_outputs
from shapely.geometry import box

from geosam.dense import mean_probabilities, pixel_classes
from geosam.errors import BundleError
from geosam.models.dense_config import DenseHeadConfig
from geosam.models.dense_head import DenseHead, pyramid_scales
from geosam.testing import DEFAULT_TRANSFORM, make_raster
from geosam.train.config import TrainConfig
from geosam.train.dense import encode_chips, sparse_loss

# ------------------------------------------------------------------------------------------ the head


@pytest.mark.parametrize("decoder", ["upernet", "fpn"])
@pytest.mark.parametrize(
    ("channels", "strides"), [((32,), (2.0,)), ((32,), (16.0,)), ((8, 16, 32, 64), (4.0, 8.0, 16.0, 32.0))]
)
def test_dense_head_logits_at_pixel_resolution(decoder, channels, strides):
    cfg = DenseHeadConfig(channels, strides, num_classes=5, num_bands=4, decoder=decoder, decoder_channels=32)
    head = DenseHead(cfg).eval()
    size = 64
    feats = [torch.randn(2, c, int(size / s), int(size / s)) for c, s in zip(channels, strides, strict=True)]
    out = head(feats, torch.randn(2, 4, size, size))
    assert out.shape == (2, 5, size, size)
    assert torch.isfinite(out).all()


def test_pyramid_scales_cap_the_finest_level_at_one_pixel():
    assert pyramid_scales(16.0) == (4.0, 2.0, 1.0, 0.5)  # ViTDet for a patch-16 ViT
    assert pyramid_scales(2.0) == (2.0, 1.0, 0.5, 0.25)
    assert pyramid_scales(0.5) == (1.0, 0.5, 0.25, 0.125)


def test_pixel_branch_only_head_ignores_features():
    cfg = DenseHeadConfig((32,), (2.0,), num_classes=3, num_bands=2, use_encoder=False)
    head = DenseHead(cfg).eval()
    x = torch.randn(1, 2, 10, 13)
    a = head([torch.randn(1, 32, 5, 7)], x)
    b = head([torch.zeros(1, 32, 5, 7)], x)
    assert a.shape == (1, 3, 10, 13) and torch.equal(a, b)


def test_encode_chips_matches_the_run_time_encoder():
    from geosam.encode import EncoderPlan, encode_tiles
    from geosam.models.classifier import LandCoverModel
    from geosam.models.sam import build_encoder
    from geosam.models.sam_config import SamConfig

    torch.manual_seed(0)
    cfg = SamConfig.preset("tiny", img_size=32, in_chans=3)
    model = LandCoverModel(build_encoder(cfg), None, [0.5] * 3, [0.2] * 3).eval()
    x = torch.rand(1, 3, 32, 32)
    want = encode_tiles(model, x, EncoderPlan(32, 16, 32, 2))
    with torch.no_grad():
        got = encode_chips(model, x, 16, 32)
    torch.testing.assert_close(got, want)


# -------------------------------------------------------------------------------------- sparse loss


def test_sparse_loss_ignores_unlabelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), -1)
    target[0, 1, 1], target[0, 2, 3] = 0, 2
    loss = sparse_loss(logits, target, None, 0.0)
    loss.backward()
    grad = logits.grad[0]
    labelled = target[0] >= 0
    assert torch.count_nonzero(grad[:, ~labelled]) == 0  # unlabelled pixels get no gradient
    assert torch.count_nonzero(grad[:, labelled]) > 0
    # and the value is the mean cross-entropy over the two labelled pixels alone
    flat = logits.detach()[0].permute(1, 2, 0)[labelled]
    want = torch.nn.functional.cross_entropy(flat, target[0][labelled])
    torch.testing.assert_close(loss.detach(), want)
    # changing what the unlabelled pixels predict changes nothing
    other = logits.detach().clone()
    other[0, :, ~labelled] = 100.0 * torch.randn(3, int((~labelled).sum()))
    torch.testing.assert_close(sparse_loss(other, target, None, 0.0), loss.detach())


# --------------------------------------------------------------------------- object-based refinement


def test_region_takes_the_dense_majority_class():
    # 3 classes; region 1 = left half (70 % of its pixels favour class 2), region 2 = right half
    probs = np.zeros((3, 4, 10), np.float32)
    probs[2, :, :5] = 0.8
    probs[0, :, :5] = 0.2
    probs[:, :, :2] = 0.0
    probs[1, :, :2] = 0.9  # 2 columns of 5 say class 1
    probs[0, :, :2] = 0.1
    probs[0, :, 5:] = 0.6
    probs[1, :, 5:] = 0.4
    regions = np.zeros((4, 10), np.int32)
    regions[:, :5], regions[:, 5:9] = 1, 2  # column 9 is in no region
    rp = mean_probabilities(probs, regions, 2)
    np.testing.assert_allclose(rp[0], [0.16, 0.36, 0.48], atol=1e-6)
    np.testing.assert_allclose(rp[1], [0.6, 0.4, 0.0], atol=1e-6)
    invalid = np.zeros((4, 10), bool)
    invalid[0, 0] = True
    cls, conf = pixel_classes(probs, regions, rp.argmax(1), rp.max(1), invalid, refine=True, nodata=255)
    assert (cls[1:, :5] == 2).all()  # the whole region, including its class-1 minority
    assert (cls[:, 5:9] == 0).all()
    assert (cls[:, 9] == 0).all() and conf[1, 9] == pytest.approx(0.6)  # own class outside regions
    assert cls[0, 0] == 255 and np.isnan(conf[0, 0])
    own, _ = pixel_classes(probs, regions, rp.argmax(1), rp.max(1), invalid, refine=False, nodata=255)
    assert (own[1:, :2] == 1).all()  # without refinement the minority keeps its class


# ---------------------------------------------------------------------------------- bundles and run


def _road_scene(tmp_path: Path) -> tuple[Path, Path]:
    """96 x 96 px, 3 bands: noisy field, a 3 px wide vertical road (cols 45-47), a lake corner."""
    rng = np.random.default_rng(0)
    h = w = 96
    img = np.empty((3, h, w), np.float32)
    img[0], img[1], img[2] = 0.25, 0.55, 0.20  # field (red, green, blue order below)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    img[:, :, 45:48] = np.array([0.62, 0.60, 0.58], np.float32)[:, None, None]
    img[:, 70:, :20] = np.array([0.05, 0.10, 0.30], np.float32)[:, None, None]
    img = np.clip(img, 0, 1) * 1000
    scene = make_raster(
        tmp_path / "road.tif",
        w,
        h,
        3,
        "uint16",
        fill=img.astype(np.uint16),
        band_names=["red", "green", "blue"],
    )
    a, _, c, _, e, f = DEFAULT_TRANSFORM

    def px(c0, r0, c1, r1):
        return box(c + c0 * a, f + r1 * e, c + c1 * a, f + r0 * e)

    polys = gpd.GeoDataFrame(
        {"cover": ["road", "field", "field", "water"]},
        geometry=[px(45, 0, 48, 40), px(5, 5, 35, 60), px(55, 5, 90, 60), px(2, 75, 18, 94)],
        crs="EPSG:32633",
    )
    labels = tmp_path / "labels.gpkg"
    polys.to_file(labels, driver="GPKG")
    return scene, labels


def _recall_on_held_out_road(classes_tif: Path, names: tuple[str, ...]) -> tuple[float, float]:
    with rasterio.open(classes_tif) as ds:
        cls = ds.read(1)
    road = cls[50:90, 45:48]  # the road below the labelled part
    field = np.concatenate([cls[62:90, 25:40].ravel(), cls[62:90, 55:90].ravel()])
    return float((road == names.index("road")).mean()), float((field == names.index("field")).mean())


@pytest.fixture(scope="module")
def road(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("road")
    scene, labels = _road_scene(tmp)
    from geosam.train.workflows import train_polygons

    cfg = TrainConfig(
        head="dense",
        backbone="tiny",
        out=tmp / "dense_model",
        seed=0,
        # 48 px training patches: with 32 px ones the encoder's context around the lake was never seen
        # beside field, and held-out field near it came out as road (field 0.70, measured)
        dense={"steps": 40, "patches": 24, "patch_size": 48, "decoder_channels": 32},
    )
    res = train_polygons(scene, labels, class_column="cover", cfg=cfg)
    return tmp, scene, labels, res


def test_dense_bundle_round_trip(road):
    from geosam.models.bundle import load_bundle, read_bundle_meta

    _, _, _, res = road
    meta = read_bundle_meta(res.bundle)
    assert meta.head is None and meta.dense is not None
    assert meta.training["head"] == "dense" and meta.classes["names"] == ["field", "road", "water"]
    b = load_bundle(res.bundle)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        f = encode_chips(b.model, x, 16, b.meta.input_size)
        out = b.model.dense_logits(f, x)
    assert out.shape == (1, 3, 32, 32)


def test_dense_bundle_refuses_a_dense_config_that_does_not_fit(road, tmp_path):
    import json
    import shutil

    from geosam.models.bundle import load_bundle

    _, _, _, res = road
    copy = tmp_path / "edited"
    shutil.copytree(res.bundle, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["dense"]["pixel_channels"] = 64
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="dense head"):
        load_bundle(copy)


def test_dense_head_maps_a_3px_road_that_chip_classification_loses(road):
    from geosam.config import RunConfig
    from geosam.predict import predict_scene
    from geosam.runtime import load_models
    from geosam.train.workflows import train_polygons

    tmp, scene, labels, res = road
    cfg = RunConfig().with_overrides(
        **{"dense.refine": "none", "dense.probabilities": True, "output.regions": False}
    )
    models = load_models(res.bundle, None, cfg)
    out = predict_scene(scene, tmp / "dense_run", models, cfg)
    names = models.bundle.meta.class_scheme.names
    road_recall, field_ok = _recall_on_held_out_road(out.outputs["classes"], names)
    assert road_recall >= 0.9, road_recall
    assert field_ok >= 0.9, field_ok
    assert out.record.classes_from is not None and out.record.classes_from["head"] == "dense"
    with rasterio.open(out.outputs["probabilities"]) as ds:
        assert ds.count == 3 and ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.descriptions == ("p_field", "p_road", "p_water")
        p = ds.read()
    total = p.astype(int).sum(axis=0)
    assert np.all(np.abs(total - 100) <= 3)  # percent of each pixel sums to 100 (rounding)
    # chip classification of the same labels: the road is a minority of every 16 px chip
    chip_cfg = TrainConfig(
        head="chip", backbone="tiny", mode="full", epochs=3, batch_size=16, out=tmp / "chip_model"
    )
    chip = train_polygons(scene, labels, class_column="cover", cfg=chip_cfg, chip_size=16, spacing=4)
    run_cfg = RunConfig().with_overrides(**{"segment.source": "tiles", "output.regions": False})
    chip_models = load_models(chip.bundle, None, run_cfg)
    chip_out = predict_scene(scene, tmp / "chip_run", chip_models, run_cfg)
    chip_recall, _ = _recall_on_held_out_road(
        chip_out.outputs["classes"], chip_models.bundle.meta.class_scheme.names
    )
    assert chip_recall <= 0.3, chip_recall


def test_a_tiny_block_cache_writes_the_same_dense_outputs(road, monkeypatch):
    """The dense head's probability scratch (written during inference, read back when finishing) and
    the probability COG come out the same when GDAL's block cache is far below one block row."""
    import geosam.io.block_cache as block_cache
    from geosam.config import RunConfig
    from geosam.predict import predict_scene
    from geosam.runtime import load_models

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    tmp, scene, _labels, res = road
    cfg = RunConfig().with_overrides(**{"dense.probabilities": True})
    models = load_models(res.bundle, None, cfg)
    default = predict_scene(scene, tmp / "cache_default", models, cfg)
    monkeypatch.setattr(block_cache, "streaming_cache_bytes", lambda width, column: 64 * 2**10)
    tiny = predict_scene(scene, tmp / "cache_tiny", models, cfg)
    assert_same_outputs(default, tiny, ("classes", "confidence", "probabilities"))


def test_regions_take_the_dense_majority_in_a_run(road):
    from geosam.config import RunConfig
    from geosam.io.read import open_scene, read_window
    from geosam.predict import plan_scene, process_tile
    from geosam.runtime import load_models
    from geosam.tiling import plan_tiles

    _, scene, _, res = road
    cfg = RunConfig()
    models = load_models(res.bundle, None, cfg)
    info = open_scene(scene)
    prep = plan_scene(scene, models, cfg).preprocessing  # the bundle's preprocessing for this scene
    plan = plan_tiles(info, cfg.tiling.model_copy(update={"tile_size": 96}).resolved(96))
    spec = plan.tiles[0]
    data, valid = read_window(str(scene), spec.window, (1, 2, 3))
    tile = prep.apply(data, valid)
    with torch.no_grad():
        r = process_tile(models, tile, valid, spec, cfg, chip_size=16)
    assert r.dense_probs is not None and r.labels.max() > 1
    np.testing.assert_allclose(
        r.region_probs, mean_probabilities(r.dense_probs, r.labels, len(r.region_probs))
    )


def test_pixel_only_dense_head_skips_the_encoder_and_maps_the_same(road, tmp_path, monkeypatch):
    """A dense head on the pixels alone (the ``train polygons`` default) reads no encoder features:
    ``geosam run`` skips the encoder pass, and the maps equal those of a run that computes it."""
    import geosam.encode
    import geosam.inference
    from geosam.config import RunConfig
    from geosam.predict import predict_scene
    from geosam.runtime import load_models
    from geosam.train.workflows import train_polygons

    _, scene, labels, _ = road
    cfg = TrainConfig(
        head="dense",
        backbone="tiny",
        out=tmp_path / "pixel_model",
        seed=0,
        dense={"steps": 20, "patches": 16, "use_encoder": False, "context": (), "keep": "last"},
    )
    res = train_polygons(scene, labels, class_column="cover", cfg=cfg)
    run_cfg = RunConfig().with_overrides(**{"dense.probabilities": True, "output.regions": False})
    models = load_models(res.bundle, None, run_cfg)
    assert models.region_source == "felzenszwalb" and models.bundle.domain is None
    from geosam.segment import FelzenszwalbRegions, NoRegions, SamRegions

    pixels = FelzenszwalbRegions(run_cfg.segment)
    assert geosam.inference.needs_features(models.bundle.model, pixels, None) is False
    assert geosam.inference.needs_features(models.bundle.model, NoRegions(), None) is False
    sam = SamRegions.__new__(SamRegions)  # what matters is the class: SAM masks come from the embedding
    assert geosam.inference.needs_features(models.bundle.model, sam, None) is True

    calls = []
    real = geosam.encode.encode_tiles

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(geosam.encode, "encode_tiles", counting)
    skipped = predict_scene(scene, tmp_path / "skipped", models, run_cfg)
    assert calls == []
    monkeypatch.setattr(geosam.inference, "needs_features", lambda *a: True)
    encoded = predict_scene(scene, tmp_path / "encoded", models, run_cfg)
    assert calls  # the control really ran the encoder
    for key in ("classes", "confidence", "probabilities"):
        with rasterio.open(skipped.outputs[key]) as a, rasterio.open(encoded.outputs[key]) as b:
            np.testing.assert_array_equal(a.read(), b.read())
