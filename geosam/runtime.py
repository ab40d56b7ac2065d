"""Run-time choices: device, numeric precision, and loading the models a run needs (once per process).

:func:`load_models` returns a :class:`Models` holding the classifier bundle and, when SAM makes the
regions, SAM's prompt encoder and mask decoder wired to the *same* image encoder, so a tile is encoded
once for both. Batch workers keep one :class:`Models` per process (see :func:`cached_models`).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosam.config import RunConfig
from geosam.errors import ConfigError, InputMismatchError
from geosam.models.bundle import LoadedBundle

if TYPE_CHECKING:
    import torch
    from segment_anything.modeling import Sam
    from torch import nn

__all__ = [
    "Models",
    "cached_models",
    "cpu_supports_bf16",
    "load_models",
    "resolve_device",
    "resolve_precision",
]

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX), Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; other names are passed to ``torch.device``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CPUs with native bf16 and on GPUs that support it, else ``fp32``/``fp16``."""
    import torch

    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


@dataclass(frozen=True)
class Models:
    """Everything a run needs on the model side.

    Attributes:
        bundle: The classifier (encoder + head) and its metadata.
        sam: A ``segment_anything`` ``Sam`` sharing ``bundle.model.encoder`` (or ``None``).
        region_source: ``sam``, ``felzenszwalb`` or ``tiles``.
        tile_size: Tile edge in scene pixels.
        chip_size: Encoder chip edge in scene pixels.
        input_size: Encoder input edge in pixels.
        device: Torch device.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        sam_checkpoint: Path of the SAM checkpoint used for masks (or ``None``).
    """

    bundle: LoadedBundle
    sam: Sam | None
    region_source: str
    tile_size: int
    chip_size: int
    input_size: int
    device: torch.device
    precision: str
    sam_checkpoint: str | None


def load_models(
    model: str | os.PathLike[str] | None,
    sam_checkpoint: str | os.PathLike[str] | None,
    cfg: RunConfig,
) -> Models:
    """Load the classifier bundle (default: the packaged model) and, if needed, SAM's mask decoder.

    Region source (``cfg.segment.source``): ``auto`` means ``sam`` when a SAM checkpoint is given and
    ``felzenszwalb`` otherwise. SAM masks need the checkpoint's image encoder to be the classifier's
    encoder (a bundle trained with ``--backbone <checkpoint>``), because the tile is encoded once.

    Raises:
        ConfigError: ``source=sam`` without a checkpoint, or a tile size that does not fit the model.
        InputMismatchError: The bundle's encoder is not the SAM checkpoint's architecture.
        WeightsNotFoundError, CheckpointError, BundleError: From loading.
    """
    from geosam.models.bundle import load_bundle, read_bundle_meta
    from geosam.models.sam import load_sam
    from geosam.models.sam_config import SamConfig

    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    source = cfg.segment.source
    if source == "auto":
        source = "sam" if sam_checkpoint is not None else "felzenszwalb"
    if source == "sam" and sam_checkpoint is None:
        raise ConfigError(
            "segment.source is 'sam' but no SAM checkpoint was given: pass --sam-checkpoint "
            "(Meta's sam_vit_b_01ec64.pth...), or use --regions felzenszwalb"
        )
    meta = read_bundle_meta(model if model is not None else _default_model())
    chip = meta.chip_size or meta.input_size
    sam = None
    if source == "sam":
        tile = cfg.tiling.tile_size or 1024
        enc_cfg = SamConfig.from_dict(dict(meta.encoder.config))
        if tile % enc_cfg.patch_size:
            raise ConfigError(
                f"tile size {tile} must be a multiple of the encoder patch size {enc_cfg.patch_size}"
            )
        sam, sam_cfg = load_sam(sam_checkpoint, img_size=tile, map_location="cpu")  # type: ignore[arg-type]
        if (sam_cfg.embed_dim, sam_cfg.depth, sam_cfg.out_chans, sam_cfg.patch_size) != (
            enc_cfg.embed_dim,
            enc_cfg.depth,
            enc_cfg.out_chans,
            enc_cfg.patch_size,
        ):
            raise InputMismatchError(
                f"the model bundle's encoder ({enc_cfg.name}: width {enc_cfg.embed_dim}, "
                f"depth {enc_cfg.depth}) is not the SAM checkpoint's ({sam_cfg.embed_dim}, {sam_cfg.depth}); "
                "SAM masks and classes share one encoder pass, so use a bundle trained on this checkpoint "
                "(geosam train ... --backbone <checkpoint>), or run without --sam-checkpoint "
                "for felzenszwalb regions",
                str(model) if model is not None else None,
            )
        # a bundle on the frozen checkpoint takes the encoder just loaded (one copy of the weights)
        shared: nn.Module | None = None
        if meta.encoder.source == "sam_checkpoint":
            shared = sam.get_submodule("image_encoder")
        bundle = load_bundle(
            model, sam_checkpoint=sam_checkpoint, device="cpu", img_size=tile, sam_encoder=shared
        )
        if bundle.meta.encoder.source == "bundle":
            log.warning(
                "the bundle's encoder was fine-tuned: SAM's mask decoder runs on its embedding "
                "(one encoder pass); masks may differ from stock SAM"
            )
        sam.image_encoder = bundle.model.encoder  # one encoder for masks and classes
        sam.to(device).eval()
        chip, input_size = tile, tile
    else:
        bundle = load_bundle(model, sam_checkpoint=sam_checkpoint, device="cpu")
        input_size = meta.input_size
        tile = cfg.tiling.tile_size or meta.recommended_tile_size
        if tile % chip:
            raise ConfigError(
                f"tile size {tile} must be a multiple of the model's chip size {chip} "
                f"(for example {max(chip, round(tile / chip) * chip)})"
            )
    bundle.model.to(device).eval()
    return Models(
        bundle,
        sam,
        source,
        tile,
        chip,
        input_size,
        device,
        precision,
        None if sam_checkpoint is None else os.fspath(sam_checkpoint),
    )


def _default_model() -> Path:
    from geosam.errors import WeightsNotFoundError
    from geosam.models.bundle import META_FILE, default_bundle_path

    path = default_bundle_path()
    if not (path / META_FILE).is_file():
        # a development checkout before the packaged model is trained: say so, not "bundle not found"
        raise WeightsNotFoundError(
            "the packaged default model is not installed here; pass a model bundle with --model "
            "(train one with `geosam train`, see docs/training.md)",
            path,
        )
    return path


_CACHE: dict[tuple[Any, ...], Models] = {}
_CACHE_LOCK = threading.Lock()


def cached_models(
    model: str | os.PathLike[str] | None, sam_checkpoint: str | os.PathLike[str] | None, cfg: RunConfig
) -> Models:
    """:func:`load_models`, memoised per process (dask workers load each model once, not per task)."""
    key = (
        None if model is None else os.path.abspath(model),
        None if sam_checkpoint is None else os.path.abspath(sam_checkpoint),
        cfg.segment.source,
        cfg.tiling.tile_size,
        cfg.device,
        cfg.precision,
    )
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_models(model, sam_checkpoint, cfg)
        return _CACHE[key]
