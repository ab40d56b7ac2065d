"""SAM 2 (Hiera) encoders in model bundles: recorded, built for training, rebuilt for runs, checked.

``model.json`` records the encoder; training builds it from a checkpoint; a run rebuilds it and accepts
only a SAM checkpoint of the bundle's family and size.

A bundle trained with ``geosam train ... --backbone sam2.1_hiera_small.pt`` records
``encoder.family = "sam2"`` and ``encoder.config`` = :class:`Sam2EncoderConfig` (the SAM 2
configuration, input bands, training input size and the pooled feature level). With ``--mode probe`` the
encoder stays the checkpoint's (``source: sam_checkpoint``, its sha256 recorded, only a band-adapted
patch embedding stored); with ``last_n``/``full`` the fine-tuned Hiera travels in the bundle
(``encoder.image_encoder.*`` tensors, Meta's ``image_encoder.*`` names under an ``encoder.`` prefix).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from geosam.errors import BundleError, InputMismatchError, WeightsNotFoundError
from geosam.models.sam_family import SamModelId, resolve_sam2_variant

__all__ = [
    "Sam2EncoderConfig",
    "bundle_encoder",
    "check_checkpoint_for_bundle",
    "training_encoder",
]


@dataclass(frozen=True)
class Sam2EncoderConfig:
    """A bundle's SAM 2 encoder.

    Attributes:
        variant: SAM 2 configuration name (``sam2.1_hiera_tiny``...).
        in_chans: Input bands (3, or more with the band adapter on Hiera's patch embedding).
        img_size: Input size in pixels the encoder was trained at (any multiple of 32 runs).
        level: Feature level(s) the head pools (:data:`geosam.models.sam2.LEVELS`).
    """

    variant: str
    in_chans: int = 3
    img_size: int = 1024
    level: str = "fpn16"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str | os.PathLike[str] | None = None
    ) -> Sam2EncoderConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            BundleError: Unknown keys or an unknown SAM 2 configuration.
        """
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise BundleError(f"unknown SAM 2 encoder keys: {', '.join(sorted(unknown))}", source)
        try:
            cfg = cls(**data)
            resolve_sam2_variant(cfg.variant)
        except (TypeError, ValueError) as err:
            raise BundleError(f"invalid SAM 2 encoder configuration ({err})", source) from None
        return cfg


def training_encoder(
    checkpoint: str | os.PathLike[str],
    model_id: SamModelId,
    bands: Sequence[str],
    input_size: int,
    *,
    mode: str,
    band_init: str = "zero",
    level: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The Hiera encoder and its ``EncoderMeta`` fields for ``geosam train --backbone <sam2 checkpoint>``.

    Returns ``(encoder, fields)``: ``EncoderMeta(**fields)`` records it in the bundle (this module does
    not import :mod:`geosam.models.bundle`, which imports it).

    Args:
        checkpoint: Meta's ``sam2[.1]_hiera_*.pt``.
        model_id: What it is (:func:`~geosam.models.sam_family.identify_sam_checkpoint`).
        bands: Canonical band names of the training chips, in order.
        input_size: Encoder input size (chips are resized to it; a multiple of 32).
        mode: ``probe`` (frozen: the bundle refers to the checkpoint by sha256), ``last_n`` or ``full``.
        band_init: Initialisation of non-RGB bands in the band adapter (``zero`` or ``mean``).
        level: Pooled feature level (default :data:`geosam.models.sam2.DEFAULT_LEVEL`).

    Raises:
        ConfigError: ``input_size`` is not a multiple of 32.
        CheckpointError: See :func:`geosam.models.sam2.load_sam2`.
    """
    from geosam.hashing import sha256_file
    from geosam.models.band_adapter import RGB, adapt_patch_embed
    from geosam.models.sam2 import check_input_size, load_sam2
    from geosam.models.sam2_encoder import DEFAULT_LEVEL, Sam2Encoder

    check_input_size(input_size)
    variant = model_id.variant
    if variant is None:  # pragma: no cover - callers pass SAM 2 ids only
        raise InputMismatchError(f"{model_id.label} is not a SAM 2 checkpoint", checkpoint)
    sam2_model = load_sam2(checkpoint, variant, input_size)
    encoder = Sam2Encoder(sam2_model.image_encoder, variant, level or DEFAULT_LEVEL)
    adapter = "none"
    if tuple(bands) != RGB:
        adapt_patch_embed(encoder, bands, init=band_init)  # type: ignore[arg-type]
        adapter = band_init if mode == "probe" else "trained"
    frozen = mode == "probe"
    cfg = Sam2EncoderConfig(variant.name, len(bands), input_size, encoder.level)
    fields = {
        "family": "sam2",
        "source": "sam_checkpoint" if frozen else "bundle",
        "config": cfg.to_dict(),
        "checkpoint_sha256": sha256_file(checkpoint) if frozen else None,
        "band_adapter": adapter,
    }
    return encoder, fields


def bundle_encoder(
    meta: Any,
    state: dict[str, Any],
    folder: Path,
    *,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    sam2_model: Any = None,
) -> Any:
    """Rebuild a bundle's :class:`~geosam.models.sam2.Sam2Encoder` (called by ``load_bundle``).

    Args:
        meta: The bundle's :class:`~geosam.models.bundle.BundleMeta` (``encoder.family == "sam2"``).
        state: The bundle's tensors (``encoder.*`` and the head's).
        folder: Bundle folder (for messages).
        sam_checkpoint: The SAM 2 checkpoint, required for ``source: sam_checkpoint`` bundles.
        sam2_model: That checkpoint already loaded (a ``SAM2Base``); read from ``sam_checkpoint`` if
            ``None``.

    Raises:
        WeightsNotFoundError: A frozen-encoder bundle without its checkpoint.
        BundleError: Inconsistent metadata or weights, or a checkpoint whose sha256 differs.
    """
    from geosam.hashing import sha256_file
    from geosam.models.band_adapter import adapt_patch_embed
    from geosam.models.sam2 import build_image_encoder, load_sam2
    from geosam.models.sam2_encoder import Sam2Encoder
    from geosam.models.sam_family import identify_sam_checkpoint

    cfg = Sam2EncoderConfig.from_dict(dict(meta.encoder.config), folder)
    variant = resolve_sam2_variant(cfg.variant)
    if cfg.in_chans != len(meta.bands):
        raise BundleError(f"encoder takes {cfg.in_chans} bands but metadata lists {len(meta.bands)}", folder)
    enc_state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    if meta.encoder.source == "sam_checkpoint":
        if sam_checkpoint is None:
            raise WeightsNotFoundError(
                f"this bundle uses the frozen encoder of {variant.name}.pt; pass that checkpoint with "
                "--sam-checkpoint",
                folder,
            )
        if meta.encoder.checkpoint_sha256 and sha256_file(sam_checkpoint) != meta.encoder.checkpoint_sha256:
            raise BundleError(
                f"the SAM checkpoint is not the {variant.name} checkpoint this bundle was trained on "
                "(sha256 differs); pass that checkpoint",
                sam_checkpoint,
            )
        if sam2_model is None:
            check_checkpoint_for_bundle(meta, identify_sam_checkpoint(sam_checkpoint), folder)
            sam2_model = load_sam2(sam_checkpoint, variant, cfg.img_size)
        encoder = Sam2Encoder(sam2_model.image_encoder, variant, cfg.level)
        strict = False  # only a band-adapted patch embedding is stored
    else:
        encoder = Sam2Encoder(build_image_encoder(variant), variant, cfg.level)
        strict = True
    if cfg.in_chans != 3:
        adapt_patch_embed(encoder, meta.bands, init="zero")
    if enc_state or strict:
        try:
            _, unexpected = encoder.load_state_dict(enc_state, strict=strict)
        except RuntimeError as err:
            first = " ".join(str(err).split())[:300]
            raise BundleError(f"encoder weights do not fit {variant.name} ({first})", folder) from None
        if unexpected:
            raise BundleError(f"encoder tensors {unexpected[:3]} do not fit {variant.name}", folder)
    if meta.head is not None and meta.head.in_dim != encoder.out_chans:
        raise BundleError(
            f"the head takes {meta.head.in_dim} features but {variant.name} level {cfg.level} gives "
            f"{encoder.out_chans}",
            folder,
        )
    return encoder


def check_checkpoint_for_bundle(meta: Any, found: SamModelId, where: str | os.PathLike[str] | None) -> None:
    """Refuse a SAM checkpoint that is not the family and size of the bundle's SAM 2 encoder.

    Raises:
        InputMismatchError: SAM 1 checkpoint for a Hiera bundle, another Hiera size, or SAM 2.0 for a
            bundle trained on SAM 2.1 (or the reverse); the message names the checkpoint to use.
    """
    cfg = Sam2EncoderConfig.from_dict(dict(meta.encoder.config), where)
    want = resolve_sam2_variant(cfg.variant)
    if found.variant is None or found.variant.name != want.name:
        raise InputMismatchError(
            f"the model bundle's encoder is {want.label} but the SAM checkpoint is {found.label}; "
            f"SAM masks and classes share one encoder pass, so pass Meta's {want.name}.pt "
            "(the checkpoint the bundle was trained with)",
            where,
        )
