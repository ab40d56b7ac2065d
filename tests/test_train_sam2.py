"""Fine-tuning on SAM 2.1 Hiera: last_n trains the last Hiera blocks and the neck only, the band adapter
works on Hiera's patch embedding for 4 bands, and the bundles load and run (random-init Hiera-T)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from geosam.config import RunConfig
from geosam.models.bundle import load_bundle
from geosam.models.sam2_encoder import SAM2_PIXEL_MEAN
from geosam.train.config import TrainConfig
from geosam.train.data import ChipData
from geosam.train.engine import train

if importlib.util.find_spec("sam2") is None:  # find_spec: importing sam2 would initialise Hydra globally
    pytest.skip("SAM 2 tests need the sam2 package (pip install -e '.[sam2]')", allow_module_level=True)


def chips(bands=("red", "green", "blue"), n_per_class=6, size=64, seed=0) -> ChipData:
    rng = np.random.default_rng(seed)
    c = len(bands)
    bright = rng.integers(150, 255, (n_per_class, c, size, size))
    dark = rng.integers(0, 100, (n_per_class, c, size, size))
    return ChipData(
        np.concatenate([bright, dark]).astype(np.uint8),
        np.array([0] * n_per_class + [1] * n_per_class),
        ("bright", "dark"),
        tuple(bands),
        np.zeros(c),
        np.full(c, 255.0),
        provenance={"source": "synthetic"},
    )


def _cfg(tmp_path, ckpt, **kw):
    base = {
        "backbone": str(ckpt),
        "epochs": 1,
        "batch_size": 4,
        "lr": 1e-3,
        "warmup_steps": 0,
        "patience": 0,
        "val_fraction": 0.34,
        "threads": 1,
        "device": "cpu",
        "augment": False,
        "out": tmp_path / "m",
    }
    return TrainConfig(**{**base, **kw})


def test_last_n_trains_the_last_hiera_blocks_and_the_bundle_runs(tmp_path, sam2_tiny_checkpoint):
    from geosam.models.sam2 import load_sam2
    from geosam.models.sam_family import SAM2_VARIANTS

    cfg = _cfg(tmp_path, sam2_tiny_checkpoint, mode="last_n", last_n=2)
    res = train(cfg, chips())
    meta = res.meta
    assert meta.encoder.family == "sam2" and meta.encoder.source == "bundle"
    assert meta.encoder.config == {
        "variant": "sam2.1_hiera_tiny",
        "in_chans": 3,
        "img_size": 64,
        "level": "fpn16",
    }
    assert meta.mean[0] == pytest.approx(SAM2_PIXEL_MEAN[0])
    bundle = load_bundle(cfg.out)
    stock = load_sam2(sam2_tiny_checkpoint, SAM2_VARIANTS["sam2.1_hiera_tiny"], 64).image_encoder.state_dict()
    tuned = bundle.model.encoder.image_encoder.state_dict()
    changed = {k.split(".")[2] if k.startswith("trunk.blocks.") else k.split(".")[0] for k in stock
               if not torch.equal(stock[k], tuned[k])}  # fmt: skip
    assert changed == {"10", "11", "neck"}  # Hiera-T has 12 blocks: the last 2 and the neck trained
    # the fine-tuned bundle classifies on its own (chip path, no SAM checkpoint needed)
    with torch.no_grad():
        assert bundle.model(torch.rand(2, 3, 64, 64)).shape == (2, 2)


def test_band_adapter_on_hiera_patch_embedding(tmp_path, sam2_tiny_checkpoint):
    from geosam.predict import predict_scene
    from geosam.runtime import load_models
    from geosam.testing import make_raster

    bands = ("blue", "green", "red", "nir")
    cfg = _cfg(tmp_path, sam2_tiny_checkpoint, mode="probe", band_init="mean")
    res = train(cfg, chips(bands))
    assert res.meta.encoder.band_adapter == "mean" and res.meta.encoder.config["in_chans"] == 4
    bundle = load_bundle(cfg.out, sam_checkpoint=sam2_tiny_checkpoint)
    proj = bundle.model.encoder.patch_embed.proj
    assert proj.weight.shape == (96, 4, 7, 7) and proj.stride == (4, 4)
    stored = json.loads((cfg.out / "model.json").read_text())["encoder"]
    assert stored["family"] == "sam2"
    # a 4-band scene runs end to end with SAM 2.1 regions on the adapted, shared encoder
    scene = make_raster(tmp_path / "s.tif", 100, 90, count=4, dtype="uint16", fill="random")
    run_cfg = RunConfig.model_validate(
        {
            "tiling": {"tile_size": 64, "halo": 8},
            "segment": {"points_per_side": 2, "pred_iou_thresh": 0, "stability_score_thresh": 0},
        }
    )
    models = load_models(cfg.out, sam2_tiny_checkpoint, run_cfg)
    own = models.bundle.model.encoder.patch_embed.proj
    assert models.sam.shared and models.sam.model.image_encoder.trunk.patch_embed.proj is own
    assert torch.equal(own.weight, proj.weight)  # the stored adapted embedding
    out = predict_scene(scene, tmp_path / "out", models, run_cfg)
    assert out.region_source == "sam2.1" and out.n_regions >= 1
