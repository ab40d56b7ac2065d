"""Encoders to train on: geosam's small/tiny SAM configurations, the packaged model's encoder, Meta's SAM.

One function, :func:`build_backbone`, used by the chip trainer (:mod:`geosam.train.engine`) and the
dense trainer (:mod:`geosam.train.dense`):

* ``small`` / ``tiny``: randomly initialised SAM ``ImageEncoderViT`` configurations, any bands.
* ``default``: the encoder of the packaged default model (a ``small`` SAM ViT trained on EuroSAT
  RGB, 64 px chips at 10 m), with its band adapter for non-RGB scenes (:mod:`geosam.models.band_adapter`):
  red/green/blue keep their trained kernels, other bands start at zero weight. Its red/green/blue
  inputs are normalised with the packaged model's own statistics, so the encoder sees what it was
  trained on.
* a path: an official SAM checkpoint (``sam_vit_b_01ec64.pth``...), band-adapted likewise, RGB
  normalised with SAM's pixel statistics.

SAM 2.x checkpoints (Hiera) are built by :func:`geosam.models.sam2_bundle.training_encoder`;
:func:`sam2_backbone` tells them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from geosam.errors import DataError
from geosam.models.bundle import EncoderMeta
from geosam.models.sam_config import SamConfig

__all__ = ["Backbone", "build_backbone", "rgb_normalisation", "sam2_backbone"]


@dataclass(frozen=True)
class Backbone:
    """A built encoder with what the bundle records about it.

    Attributes:
        encoder: The ``ImageEncoderViT`` (band-adapted to the training bands).
        config: Its SAM configuration (``in_chans`` = number of bands).
        meta: Bundle metadata of the encoder.
        rgb_stats: ``band name -> (mean, std)`` on the 0..1 scale that the encoder's pretrained red,
            green and blue kernels expect (empty for randomly initialised encoders).
    """

    encoder: nn.Module
    config: SamConfig
    meta: EncoderMeta
    rgb_stats: dict[str, tuple[float, float]]


def build_backbone(
    backbone: str,
    bands: Sequence[str],
    input_size: int,
    *,
    frozen: bool,
    band_init: str = "zero",
    seed: int = 0,
) -> Backbone:
    """Build the encoder named by ``backbone`` for ``bands`` at ``input_size`` pixels.

    Args:
        backbone: ``small``, ``tiny``, ``default`` or a SAM checkpoint path.
        bands: Canonical band names in input order.
        input_size: Encoder input edge in pixels (position embeddings are interpolated).
        frozen: Whether training keeps the encoder frozen (then a SAM checkpoint's encoder is not
            stored in the bundle, only its band-adapted patch embedding).
        band_init: Initialisation of non-RGB bands of the band adapter (``zero`` or ``mean``).
        seed: Seed of random initialisation.

    Raises:
        DataError: ``input_size`` not a multiple of the patch size.
        WeightsNotFoundError, CheckpointError, BundleError: From loading weights.
    """
    from geosam.hashing import sha256_file
    from geosam.models.band_adapter import RGB, adapt_patch_embed
    from geosam.models.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD, build_encoder, load_sam

    bands = list(bands)
    if backbone in ("small", "tiny"):
        cfg = SamConfig.preset(backbone, img_size=input_size, in_chans=len(bands))
        _check_patch(input_size, cfg)
        torch.manual_seed(seed)
        encoder = build_encoder(cfg)
        meta = EncoderMeta(source="bundle", config=cfg.to_dict(), band_adapter="none")
        return Backbone(encoder, cfg, meta, {})
    adapter = "none"
    if backbone == "default":
        from geosam.models.bundle import load_bundle
        from geosam.models.sam import resize_encoder_state

        packaged = load_bundle(None)
        cfg = SamConfig.from_dict(dict(packaged.meta.encoder.config)).with_img_size(input_size)
        _check_patch(input_size, cfg)
        encoder = build_encoder(cfg)
        state = resize_encoder_state(packaged.model.encoder.state_dict(), cfg, prefix="")
        encoder.load_state_dict(state)
        stats = {
            b: (float(m), float(s))
            for b, m, s in zip(packaged.meta.bands, packaged.meta.mean, packaged.meta.std, strict=True)
        }
        source_bands = tuple(packaged.meta.bands)
    else:
        encoder, cfg = load_sam(backbone, img_size=input_size, encoder_only=True)
        stats = {
            b: (m / 255.0, s / 255.0) for b, m, s in zip(RGB, SAM_PIXEL_MEAN, SAM_PIXEL_STD, strict=True)
        }
        source_bands = RGB
    if tuple(bands) != source_bands:
        adapt_patch_embed(encoder, bands, source_bands=source_bands, init=band_init)  # type: ignore[arg-type]
        cfg = SamConfig.from_dict({**cfg.to_dict(), "in_chans": len(bands)})
        adapter = band_init if frozen else "trained"
    if backbone == "default" or not frozen:
        meta = EncoderMeta(source="bundle", config={**cfg.to_dict(), "name": cfg.name}, band_adapter=adapter)  # type: ignore[arg-type]
    else:
        meta = EncoderMeta(
            source="sam_checkpoint",
            config={**cfg.to_dict(), "name": cfg.name},
            checkpoint_sha256=sha256_file(backbone),
            band_adapter=adapter,  # type: ignore[arg-type]
        )
    return Backbone(encoder, cfg, meta, {b: v for b, v in stats.items() if b in bands})


def sam2_backbone(backbone: str) -> Any:
    """The :class:`~geosam.models.sam_family.SamModelId` of a SAM 2.x checkpoint given as ``backbone``.

    ``None`` for geosam's own encoders (``default``, ``small``, ``tiny``) and SAM 1 checkpoints. Only the
    checkpoint's tensor names and shapes are read.

    Raises:
        WeightsNotFoundError, CheckpointError: A path that is not a readable SAM checkpoint.
    """
    if backbone in ("default", "small", "tiny"):
        return None
    from geosam.models.sam_family import identify_sam_checkpoint

    found = identify_sam_checkpoint(backbone)
    return found if found.family != "sam" else None


def rgb_normalisation(
    bands: Sequence[str], mean: np.ndarray, std: np.ndarray, rgb_stats: dict[str, tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean/std where the pretrained bands take the encoder's own statistics, others the data's."""
    m, s = np.array(mean, np.float64), np.array(std, np.float64)
    for i, b in enumerate(bands):
        if b in rgb_stats:
            m[i], s[i] = rgb_stats[b]
    return m, s


def _check_patch(input_size: int, cfg: SamConfig) -> None:
    if input_size % cfg.patch_size:
        raise DataError(f"input size {input_size} is not a multiple of the patch size {cfg.patch_size}")


def trainable_parameters(encoder: Any, mode: str, last_n: int) -> None:
    """Set ``requires_grad`` on the encoder for ``mode`` (probe: none; last_n: last blocks + neck; full)."""
    for p in encoder.parameters():
        p.requires_grad_(mode == "full")
    if mode == "last_n":
        n = min(last_n, len(encoder.blocks))
        for blk in list(encoder.blocks)[-n:]:
            blk.requires_grad_(True)
        encoder.neck.requires_grad_(True)
