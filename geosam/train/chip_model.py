"""The chip classifier's model and optimiser set-up: normalisation, encoder plus head, what trains, AdamW.

:func:`build_model` builds the encoder from ``cfg.backbone`` (geosam's ``small``/``tiny`` SAM
configurations from scratch, or an official SAM 1 / SAM 2.x checkpoint with a band adapter for non-RGB
bands) and a fresh :class:`~geosam.models.classifier.ClassifierHead`; :func:`trainable_parameters`,
:func:`param_groups` and :func:`lr_lambda` are what :mod:`geosam.train.engine` (and the dense head's
loop, :mod:`geosam.train.dense`) optimise with; :func:`input_stats` and :func:`sam_normalisation` the
model's input normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from geosam.errors import DataError
from geosam.models.bundle import EncoderMeta
from geosam.models.classifier import ClassifierHead, LandCoverModel
from geosam.models.sam_config import SamConfig
from geosam.train.config import TrainConfig
from geosam.train.data import ChipData

__all__ = [
    "build_model",
    "input_stats",
    "lr_lambda",
    "param_groups",
    "patch_embed_prefix",
    "sam_normalisation",
    "trainable_parameters",
]


def build_model(
    cfg: TrainConfig, data: ChipData, mean: np.ndarray, std: np.ndarray
) -> tuple[LandCoverModel, EncoderMeta]:
    """Build the encoder (random small/tiny SAM config, or an official checkpoint) and a fresh head."""
    from geosam.bands import canonical_band_name
    from geosam.hashing import sha256_file
    from geosam.models.band_adapter import RGB, adapt_patch_embed
    from geosam.models.sam import build_encoder, load_sam
    from geosam.train.backbones import sam2_backbone

    input_size = cfg.input_size or data.chip_size
    bands = [canonical_band_name(b) for b in data.bands]
    if cfg.backbone in ("small", "tiny"):
        sam_cfg = SamConfig.preset(cfg.backbone, img_size=input_size, in_chans=len(bands))
        if input_size % sam_cfg.patch_size:
            raise DataError(
                f"input size {input_size} is not a multiple of the patch size {sam_cfg.patch_size}"
            )
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(sam_cfg)
        enc_meta = EncoderMeta(source="bundle", config=sam_cfg.to_dict(), band_adapter="none")
    elif (sam2 := sam2_backbone(cfg.backbone)) is not None:
        from geosam.models.sam2_bundle import training_encoder

        encoder, fields = training_encoder(
            cfg.backbone,
            sam2,
            bands,
            input_size,
            mode=cfg.mode,
            band_init=cfg.band_init,
            level=cfg.feature_level,
        )
        enc_meta = EncoderMeta(**fields)
        torch.manual_seed(cfg.seed + 1)
        head = ClassifierHead(encoder.out_chans, len(data.classes), cfg.head_hidden, cfg.dropout)
        return LandCoverModel(encoder, head, mean.tolist(), std.tolist()), enc_meta
    else:
        encoder, sam_cfg = load_sam(cfg.backbone, img_size=input_size, encoder_only=True)
        adapter = "none"
        if tuple(bands) != RGB:
            adapt_patch_embed(encoder, bands, init=cfg.band_init)
            sam_cfg = SamConfig.from_dict({**sam_cfg.to_dict(), "in_chans": len(bands)})
            adapter = cfg.band_init if cfg.mode == "probe" else "trained"
        frozen = cfg.mode == "probe"
        enc_meta = EncoderMeta(
            source="sam_checkpoint" if frozen else "bundle",
            config={**sam_cfg.to_dict(), "name": sam_cfg.name},
            checkpoint_sha256=sha256_file(cfg.backbone) if frozen else None,
            band_adapter=adapter,  # type: ignore[arg-type]
        )
    torch.manual_seed(cfg.seed + 1)
    head = ClassifierHead(sam_cfg.out_chans, len(data.classes), cfg.head_hidden, cfg.dropout)
    return LandCoverModel(encoder, head, mean.tolist(), std.tolist()), enc_meta


def patch_embed_prefix(model: LandCoverModel) -> str:
    """State-dict prefix of the encoder's patch embedding (SAM 1 ViT or SAM 2 Hiera)."""
    proj = model.encoder.patch_embed.proj  # type: ignore[union-attr]
    for name, module in model.named_modules():
        if module is proj:
            return str(name[: -len("proj")])
    return "encoder.patch_embed."  # pragma: no cover


def trainable_parameters(model: LandCoverModel, cfg: TrainConfig) -> list[nn.Parameter]:
    """Switch gradients on for what ``cfg.mode`` trains (all, the last blocks and neck, or the head)."""
    for p in model.parameters():
        p.requires_grad_(cfg.mode == "full")
    enc: Any = model.encoder
    if cfg.mode == "last_n":
        n = min(cfg.last_n, len(enc.blocks))
        for blk in list(enc.blocks)[-n:]:
            blk.requires_grad_(True)
        enc.neck.requires_grad_(True)
    model.classifier.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weights, none on norms, biases and position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or "pos_embed" in name or "rel_pos" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up over ``warmup`` steps, cosine decay over ``total``."""

    def f(step: int) -> float:
        w = min(1.0, (step + 1) / max(1, warmup))
        return w * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))

    return f


def input_stats(data: ChipData, idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation (at least 1e-3) of the 0..1 inputs of up to 2000 chips."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(idx, size=min(2000, len(idx)), replace=False))
    x = data.to_unit(sample).transpose(1, 0, 2, 3).reshape(len(data.bands), -1)
    x = x[:, ~np.isnan(x).any(axis=0)]  # invalid pixels do not count
    return x.mean(axis=1), np.maximum(x.std(axis=1), 1e-3)


def sam_normalisation(
    bands: tuple[str, ...], mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """SAM's own pixel statistics for red/green/blue (so a pretrained encoder sees what it was trained on).

    Other bands keep the data set's statistics.
    """
    from geosam.bands import canonical_band_name
    from geosam.models.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD

    sam_mean = dict(zip(("red", "green", "blue"), SAM_PIXEL_MEAN, strict=True))
    sam_std = dict(zip(("red", "green", "blue"), SAM_PIXEL_STD, strict=True))
    m, s = mean.copy(), std.copy()
    for i, b in enumerate(bands):
        name = canonical_band_name(b)
        if name in sam_mean:
            m[i], s[i] = sam_mean[name] / 255.0, sam_std[name] / 255.0
    return m, s
