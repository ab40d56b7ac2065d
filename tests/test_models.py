"""SAM backbone: official checkpoint format, safe loading, input-size interpolation, band adapter, pooling."""

from __future__ import annotations

import pytest
import torch

from geosam.errors import BundleError, CheckpointError, WeightsNotFoundError
from geosam.models.band_adapter import adapt_patch_embed, adapt_patch_embed_weight
from geosam.models.classifier import ClassifierHead, LandCoverModel
from geosam.models.pooling import mask_weights, pool_regions, pool_tile
from geosam.models.sam import build_encoder, build_sam, infer_config, load_sam, load_state_dict, save_sam
from geosam.models.sam_config import SamConfig


@pytest.fixture(scope="module")
def tiny_cfg() -> SamConfig:
    return SamConfig.preset("tiny")


@pytest.fixture(scope="module")
def tiny_sam(tiny_cfg):
    torch.manual_seed(0)
    return build_sam(tiny_cfg)


def test_official_format_round_trip(tmp_path, tiny_sam, tiny_cfg):
    path = tmp_path / "sam_tiny.pth"
    save_sam(tiny_sam, path)
    raw = torch.load(path, weights_only=True)
    # Meta's layout: a flat state dict with the three component prefixes.
    assert {k.split(".")[0] for k in raw} == {"image_encoder", "prompt_encoder", "mask_decoder"}
    model, cfg = load_sam(path)
    assert cfg.embed_dim == tiny_cfg.embed_dim and cfg.depth == tiny_cfg.depth
    assert cfg.global_attn_indexes == tiny_cfg.global_attn_indexes and cfg.window_size == tiny_cfg.window_size
    assert cfg.num_heads == tiny_cfg.num_heads and cfg.out_chans == tiny_cfg.out_chans
    for k, v in tiny_sam.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(tiny_sam.image_encoder(x), model.image_encoder(x))


def test_infer_config_of_official_architectures():
    for name in ("vit_b", "vit_l"):
        cfg = SamConfig.preset(name)
        # shapes only: build the meta-tensor state dict without allocating memory
        with torch.device("meta"):
            state = {f"image_encoder.{k}": v for k, v in build_encoder(cfg).state_dict().items()}
        got = infer_config(state)
        assert (
            got.embed_dim,
            got.depth,
            got.num_heads,
            got.global_attn_indexes,
            got.window_size,
            got.img_size,
        ) == (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.global_attn_indexes, cfg.window_size, cfg.img_size)


def test_missing_checkpoint_says_where_to_get_it(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"dl\.fbaipublicfiles\.com"):
        load_sam(tmp_path / "sam_vit_b_01ec64.pth")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_bearing_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1), "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_state_dict(path)
    assert "pwned" not in capsys.readouterr().out


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "x.pth"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError):
        load_state_dict(bad)
    lst = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], lst)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_state_dict(lst)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        load_sam(other)


def test_same_size_load_equals_stock_encoder(tmp_path, tiny_sam):
    """Loading at the checkpoint's own size (the 1024 case for Meta's models) is the stock encoder."""
    path = tmp_path / "t.pth"
    save_sam(tiny_sam, path)
    enc, _ = load_sam(path, img_size=128, encoder_only=True)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(enc(x), tiny_sam.image_encoder(x))


def test_resized_encoder_matches_sam_runtime_interpolation(tmp_path, tiny_sam):
    """At a new size our resized rel-pos tables equal what SAM's get_rel_pos interpolates on the fly."""
    path = tmp_path / "t.pth"
    save_sam(tiny_sam, path)
    enc, _ = load_sam(path, img_size=64, encoder_only=True)
    assert enc.pos_embed.shape[1:3] == (4, 4)
    stock = tiny_sam.image_encoder
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        # stock encoder with only its absolute pos-embed resized: SAM interpolates rel-pos internally
        saved = stock.pos_embed.data.clone()
        stock.pos_embed.data = enc.pos_embed.data.clone()
        try:
            want = stock(x)
        finally:
            stock.pos_embed.data = saved
        got = enc(x)
    assert got.shape == (1, 32, 4, 4)
    assert torch.allclose(got, want, atol=1e-5)


def test_interpolated_pos_embed_is_smooth_resample():
    from geosam.models.sam import _resize_pos_embed

    g = torch.linspace(0, 1, 8)
    pos = (g[:, None] + g[None, :])[None, :, :, None].repeat(1, 1, 1, 4)  # a linear ramp
    out = _resize_pos_embed(pos, 16)
    assert out.shape == (1, 16, 16, 4)
    assert out.min() >= -0.05 and out.max() <= 2.05
    assert torch.all(out[0, 1:, :, 0] >= out[0, :-1, :, 0] - 1e-4)  # monotone along rows


def test_band_adapter_copies_rgb_by_name_and_preserves_rgb_output(tiny_cfg):
    torch.manual_seed(0)
    enc = build_encoder(tiny_cfg).eval()
    w = enc.patch_embed.proj.weight.detach().clone()
    x_rgb = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        ref = enc(x_rgb)
    bands = ["B02", "B03", "B04", "B08"]  # blue, green, red, nir (Sentinel-2 names)
    new_w = adapt_patch_embed_weight(w, bands)
    assert (
        torch.equal(new_w[:, 2], w[:, 0])
        and torch.equal(new_w[:, 1], w[:, 1])
        and torch.equal(new_w[:, 0], w[:, 2])
    )
    assert torch.count_nonzero(new_w[:, 3]) == 0
    adapt_patch_embed(enc, bands)
    x4 = torch.cat([x_rgb[:, [2, 1, 0]], torch.randn(1, 1, 128, 128)], dim=1)
    with torch.no_grad():
        assert torch.allclose(enc(x4), ref, atol=1e-5)  # zero-init NIR: same output as RGB model
    mean_w = adapt_patch_embed_weight(w, ["red", "green", "blue"] + [f"b{i}" for i in range(10)], init="mean")
    assert mean_w.shape[1] == 13
    assert torch.allclose(mean_w[:, 3], w.mean(1) * 3 / 13)
    assert torch.allclose(mean_w[:, 0], w[:, 0] * 3 / 13)


def test_mask_pooling_full_mask_equals_tile_pooling():
    torch.manual_seed(0)
    feats = torch.randn(8, 16, 16)
    full = torch.ones(1, 256, 256, dtype=torch.bool)
    pooled = pool_regions(feats, mask_weights(full, (16, 16)))
    assert torch.allclose(pooled[0], feats.mean(dim=(1, 2)), atol=1e-6)
    assert torch.allclose(pool_tile(feats[None])[0], pooled[0], atol=1e-6)
    # a region inside one feature cell picks exactly that cell's feature
    m = torch.zeros(1, 256, 256, dtype=torch.bool)
    m[0, 16:20, 32:40] = True
    assert torch.allclose(pool_regions(feats, mask_weights(m, (16, 16)))[0], feats[:, 1, 2], atol=1e-6)
    # invalid pixels excluded from tile pooling
    valid = torch.zeros(1, 256, 256, dtype=torch.bool)
    valid[0, :, :128] = True
    assert torch.allclose(pool_tile(feats[None], valid)[0], feats[:, :, :8].mean(dim=(1, 2)), atol=1e-6)


def test_classifier_regions_consistent_with_tiles(tiny_cfg):
    torch.manual_seed(0)
    model = LandCoverModel(build_encoder(tiny_cfg), ClassifierHead(32, 5), [0.5] * 3, [0.25] * 3).eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        f = model.features(x)
        tile = model.classify_tiles(f)
        region = model.classify_regions(f[0], torch.ones(1, 128, 128, dtype=torch.bool))
    assert torch.allclose(tile, region, atol=1e-5)
    assert tile.shape == (1, 5)


def test_bundle_round_trip_and_tamper_detection(tmp_path, tiny_cfg):
    from geosam.models.bundle import BundleMeta, EncoderMeta, HeadMeta, load_bundle, save_bundle

    torch.manual_seed(0)
    model = LandCoverModel(build_encoder(tiny_cfg), ClassifierHead(32, 3), [0.4] * 3, [0.2] * 3)
    meta = BundleMeta(
        name="t",
        classes={"names": ["a", "b", "c"]},
        bands=["red", "green", "blue"],
        mean=[0.4] * 3,
        std=[0.2] * 3,
        input_size=128,
        recommended_tile_size=256,
        encoder=EncoderMeta(config=tiny_cfg.to_dict()),
        head=HeadMeta(in_dim=32, num_classes=3),
    )
    out = tmp_path / "bundle"
    written = save_bundle(out, model, meta, dtype="float16", extra_files={"report/x.json": b"{}"})
    assert (out / "report" / "x.json").is_file()
    loaded = load_bundle(out)
    assert loaded.classes.names == ("a", "b", "c") and written.weights_dtype == "float16"
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), model(x), atol=2e-2)
    # tampered weights
    data = bytearray((out / "weights.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (out / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(out)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("bands"), "bands"),
        (lambda d: d.update(extra_key=1), "unknown key 'extra_key'"),
        (lambda d: d.update(format="x"), "not a geosam model bundle"),
        (lambda d: d["head"].update(num_classes=7), "class names but the head"),
    ],
)
def test_bundle_metadata_validation(tmp_path, tiny_cfg, edit, match):
    import json

    from geosam.models.bundle import BundleMeta, EncoderMeta, HeadMeta, load_bundle, save_bundle

    model = LandCoverModel(build_encoder(tiny_cfg), ClassifierHead(32, 3), [0.4] * 3, [0.2] * 3)
    meta = BundleMeta(
        name="t",
        classes={"names": ["a", "b", "c"]},
        bands=["red", "green", "blue"],
        mean=[0.4] * 3,
        std=[0.2] * 3,
        input_size=128,
        recommended_tile_size=128,
        encoder=EncoderMeta(config=tiny_cfg.to_dict()),
        head=HeadMeta(in_dim=32, num_classes=3),
    )
    out = tmp_path / "b"
    save_bundle(out, model, meta)
    d = json.loads((out / "model.json").read_text())
    edit(d)
    (out / "model.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match=match):
        load_bundle(out)


def test_missing_bundle(tmp_path):
    from geosam.models.bundle import load_bundle

    with pytest.raises(WeightsNotFoundError):
        load_bundle(tmp_path / "nope")


def test_builders_match_segment_anything_registry():
    """geosam's vit_b is segment-anything's own vit_b: same keys and shapes, so Meta's .pth loads strictly."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    stock = sam_model_registry["vit_b"](checkpoint=None).state_dict()
    with torch.device("meta"):
        ours = build_sam(SamConfig.preset("vit_b")).state_dict()
    assert {k: tuple(v.shape) for k, v in stock.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    from dataclasses import replace

    assert infer_config(stock) == replace(SamConfig.preset("vit_b"), name="custom")
