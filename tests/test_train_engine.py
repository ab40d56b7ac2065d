"""Training engine: probe mode on a SAM checkpoint with an on-disk embedding cache, resume, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geosam.models.bundle import load_bundle
from geosam.models.sam import SAM_PIXEL_MEAN
from geosam.testing_models import make_tiny_sam_checkpoint
from geosam.train.config import TrainConfig
from geosam.train.data import ChipData, stratified_split
from geosam.train.engine import dihedral, train


def separable_chips(n_per_class=24, size=32, seed=0) -> ChipData:
    """Two classes a frozen random encoder can tell apart: bright vs dark chips with noise."""
    rng = np.random.default_rng(seed)
    bright = rng.integers(150, 255, (n_per_class, 3, size, size))
    dark = rng.integers(0, 100, (n_per_class, 3, size, size))
    images = np.concatenate([bright, dark]).astype(np.uint8)
    labels = np.array([0] * n_per_class + [1] * n_per_class)
    return ChipData(
        images,
        labels,
        ("bright", "dark"),
        ("red", "green", "blue"),
        np.zeros(3),
        np.full(3, 255.0),
        provenance={"source": "synthetic"},
    )


def test_probe_mode_uses_the_frozen_sam_encoder_and_caches_embeddings(tmp_path):
    ckpt = make_tiny_sam_checkpoint(tmp_path / "sam_tiny.pth", img_size=128)
    data = separable_chips()
    cfg = TrainConfig(
        backbone=str(ckpt),
        mode="probe",
        input_size=32,
        epochs=8,
        batch_size=8,
        lr=5e-2,
        warmup_steps=1,
        patience=0,
        out=tmp_path / "probe",
        cache_dir=tmp_path / "cache",
        threads=1,
    )
    res = train(cfg, data)
    assert res.metrics["overall_accuracy"] >= 0.8  # linearly separable through a random frozen encoder
    cached = list((tmp_path / "cache").glob("probe-*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (48, 32)
    meta = json.loads((tmp_path / "probe" / "model.json").read_text())
    assert meta["encoder"]["source"] == "sam_checkpoint" and meta["encoder"]["checkpoint_sha256"]
    assert meta["mean"][0] == pytest.approx(SAM_PIXEL_MEAN[0] / 255)  # SAM's own normalisation
    # head-only bundle: needs the checkpoint to load, and the frozen encoder equals the checkpoint's
    bundle = load_bundle(tmp_path / "probe", sam_checkpoint=ckpt, img_size=32)
    sd = torch.load(ckpt, weights_only=True)
    assert torch.equal(
        bundle.model.encoder.blocks[0].attn.qkv.weight, sd["image_encoder.blocks.0.attn.qkv.weight"]
    )
    # second run: embeddings come from the cache (file untouched)
    mtime = cached[0].stat().st_mtime_ns
    train(cfg.model_copy(update={"out": tmp_path / "probe2"}), data)
    assert cached[0].stat().st_mtime_ns == mtime


def test_full_training_resumes(tmp_path):
    data = separable_chips(n_per_class=16)
    cfg = TrainConfig(
        backbone="tiny",
        input_size=32,
        epochs=2,
        batch_size=8,
        warmup_steps=1,
        patience=0,
        out=tmp_path / "m",
        threads=1,
    )
    first = train(cfg, data)
    assert [h["epoch"] for h in first.history] == [1, 2]
    again = train(cfg.model_copy(update={"epochs": 3, "resume": True}), data)
    assert [h["epoch"] for h in again.history] == [1, 2, 3]  # continued, not restarted
    for f in ("metrics.json", "confusion_matrix.png", "confusion_matrix.json", "learning_curve.png"):
        assert (tmp_path / "m" / "report" / f).is_file()
    metrics = json.loads((tmp_path / "m" / "report" / "metrics.json").read_text())
    assert set(metrics) >= {"overall_accuracy", "macro_f1", "kappa", "per_class", "confusion_matrix"}


def test_dihedral_group_and_grouped_split():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    outs = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8  # eight distinct symmetries
    labels = np.array([0] * 10 + [1] * 10)
    groups = np.repeat(np.arange(5), 4)
    tr, va = stratified_split(labels, 0.3, 0, groups)
    assert set(groups[tr]).isdisjoint(groups[va]) and len(va) > 0
    assert set(labels[va]) == {0, 1}
