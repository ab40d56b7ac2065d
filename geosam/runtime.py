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
from geosam.errors import ConfigError
from geosam.models.bundle import LoadedBundle

if TYPE_CHECKING:
    import torch
    from segment_anything.modeling import Sam
    from torch import nn

    from geosam.infer_sam2 import Sam2MaskDecoder
    from geosam.infer_sam3 import Sam3Concepts

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
        sam: A ``segment_anything`` ``Sam`` sharing ``bundle.model.encoder``, a
            :class:`geosam.infer_sam2.Sam2MaskDecoder` for SAM 2.x checkpoints, a
            :class:`geosam.infer_sam3.Sam3Concepts` for SAM 3 concepts, or ``None``. SAM 2/3 region
            models bring their own encoder plan and tile inference (``plan_encoder``,
            ``tile_inference`` methods).
        region_source: ``sam``, ``sam2.1``, ``sam2``, ``sam3``, ``felzenszwalb`` or ``tiles``.
        tile_size: Tile edge in scene pixels.
        chip_size: Encoder chip edge in scene pixels.
        input_size: Encoder input edge in pixels.
        device: Torch device.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        sam_checkpoint: Path of the SAM checkpoint used for masks (or ``None``).
        sam_info: What the run record says about the SAM model (family, configuration, checkpoint sha256,
            package version, how the tile is encoded), or ``None``.
    """

    bundle: LoadedBundle
    sam: Sam | Sam2MaskDecoder | Sam3Concepts | None
    region_source: str
    tile_size: int
    chip_size: int
    input_size: int
    device: torch.device
    precision: str
    sam_checkpoint: str | None
    sam_info: dict[str, Any] | None = None

    @property
    def dense(self) -> bool:
        """Whether the classifier has a dense (per-pixel) head (SAM 3 zero-shot runs have no bundle)."""
        bundle: LoadedBundle | None = self.bundle
        model = None if bundle is None else bundle.model
        return model is not None and model.dense is not None


def load_models(
    model: str | os.PathLike[str] | None,
    sam_checkpoint: str | os.PathLike[str] | None,
    cfg: RunConfig,
    *,
    sam3_checkpoint: str | os.PathLike[str] | None = None,
) -> Models:
    """Load the classifier bundle (default: the packaged model) and, if needed, SAM's mask decoder.

    Region source (``cfg.segment.source``): ``auto`` means ``sam`` when a SAM checkpoint is given and
    ``felzenszwalb`` otherwise. SAM 1 masks need the checkpoint's image encoder to be the classifier's
    encoder (a bundle trained with ``--backbone <checkpoint>``), because the tile is encoded once; SAM 2.x
    checkpoints (recognised from their weights) also run with a bundle that has its own encoder
    (:func:`geosam.region_loading.load_sam2_models`). With ``sam3_checkpoint`` the regions are SAM 3 concept
    masks: zero-shot classes, or a bundle's classes with ``source`` ``sam3``
    (:func:`geosam.infer_sam3.load_sam3_models`).

    Raises:
        ConfigError: ``source=sam`` without a checkpoint, ``sam3`` without a SAM 3 checkpoint, or a tile
            size that does not fit the model.
        InputMismatchError: The bundle's encoder is not the SAM checkpoint's architecture.
        WeightsNotFoundError, CheckpointError, BundleError: From loading.
    """
    from geosam.models.bundle import default_bundle_path, load_bundle, read_bundle_meta
    from geosam.models.sam import load_sam
    from geosam.models.sam_config import SamConfig
    from geosam.scene_plan import model_geometry, sam1_encoder_mismatch

    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if sam3_checkpoint is not None:
        if sam_checkpoint is not None:
            raise ConfigError("pass either --sam-checkpoint (SAM 1/2 masks) or --sam3-checkpoint, not both")
        from geosam.infer_sam3 import load_sam3_models

        r = load_sam3_models(model, sam3_checkpoint, cfg, device)
        return Models(
            r.bundle, r.region_model, r.region_source, r.tile_size, r.chip_size, r.input_size, device,
            precision, os.fspath(sam3_checkpoint), r.info,
        )  # fmt: skip
    if cfg.segment.source == "sam3":
        raise ConfigError("--regions sam3 needs SAM 3: pass --sam3-checkpoint sam3.pt and --concepts")
    meta = read_bundle_meta(model if model is not None else default_bundle_path(required=True))
    # region source, chip and tile sizes: the same decision `geosam info` shows (geosam.scene_plan)
    geom = model_geometry(meta, cfg, sam_checkpoint=sam_checkpoint is not None)
    source, chip, tile, input_size = geom.region_source, geom.chip_size, geom.tile_size, geom.input_size
    sam = None
    if source == "sam":
        from geosam.models.sam_family import identify_sam_checkpoint

        found = identify_sam_checkpoint(sam_checkpoint, named=cfg.segment.sam_model)  # type: ignore[arg-type]
        log.info("SAM checkpoint %s: %s", Path(sam_checkpoint).name, found.label)  # type: ignore[arg-type]
        if found.family != "sam" or meta.encoder.family != "sam":
            from geosam.region_loading import load_sam2_models

            r = load_sam2_models(model, sam_checkpoint, found, meta, cfg, device)  # type: ignore[arg-type]
            return Models(
                r.bundle, r.region_model, r.region_source, r.tile_size, r.chip_size, r.input_size, device,
                precision, os.fspath(sam_checkpoint), r.info,  # type: ignore[arg-type]
            )  # fmt: skip
        enc_cfg = SamConfig.from_dict(dict(meta.encoder.config))
        sam, sam_cfg = load_sam(sam_checkpoint, img_size=tile, map_location="cpu")  # type: ignore[arg-type]
        if (sam_cfg.embed_dim, sam_cfg.depth, sam_cfg.out_chans, sam_cfg.patch_size) != (
            enc_cfg.embed_dim,
            enc_cfg.depth,
            enc_cfg.out_chans,
            enc_cfg.patch_size,
        ):
            raise sam1_encoder_mismatch(
                enc_cfg, f"{sam_cfg.embed_dim}, {sam_cfg.depth}", str(model) if model is not None else None
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
    else:
        bundle = load_bundle(model, sam_checkpoint=sam_checkpoint, device="cpu")
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
        cfg.segment.sam_model,
        cfg.tiling.tile_size,
        cfg.device,
        cfg.precision,
    )
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_models(model, sam_checkpoint, cfg)
        return _CACHE[key]
