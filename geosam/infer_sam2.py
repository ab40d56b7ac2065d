"""Tile inference with SAM 2.x (Hiera): loading a run's models and processing one tile.

Two set-ups, both with every encoder running once per tile:

* **shared** (a bundle trained with ``--backbone <sam2 checkpoint>``): the classifier's Hiera *is* the
  SAM 2 model's image encoder, so one pass feeds the mask decoder, the classifier and (later) a dense
  head. Tiles are encoded whole at the tile size (any multiple of 32).
* **own pass** (a bundle with its own encoder, e.g. the packaged default model): SAM 2 makes the
  regions from its own pass over the tile's red, green and blue bands (resized to the SAM 2 input size
  when the tile is not already that size), and the classifier encodes the tile as it always does
  (chips, resolution matching).

:func:`load_sam2_models` is what :func:`geosam.runtime.load_models` calls for a SAM 2.x checkpoint;
:func:`process_tile_sam2` and :func:`scene_encoding_sam2` are what :mod:`geosam.predict` calls for it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from geosam.config import RunConfig
from geosam.errors import CheckpointError, InputMismatchError
from geosam.models.sam_family import SamModelId
from geosam.types import SceneInfo, TileSpec

__all__ = ["SAM2_SOURCES", "load_sam2_models", "process_tile_sam2", "scene_encoding_sam2", "uses_sam2"]

log = logging.getLogger(__name__)

#: ``region_source`` values of SAM 2.x regions.
SAM2_SOURCES = ("sam2.1", "sam2")


def uses_sam2(models: Any) -> bool:
    """Whether a run's tiles go through this module (SAM 2 regions, or a bundle with a Hiera encoder)."""
    return bool(models.region_source in SAM2_SOURCES or models.bundle.meta.encoder.family == "sam2")


def _rgb_indices(bands: list[str], where: str | os.PathLike[str] | None) -> tuple[int, int, int]:
    from geosam.bands import canonical_band_name

    names = [canonical_band_name(b) for b in bands]
    try:
        return (names.index("red"), names.index("green"), names.index("blue"))
    except ValueError:
        raise InputMismatchError(
            f"SAM 2 masks need red, green and blue bands, but the model's bands are {', '.join(names)}; "
            "use a bundle trained with --backbone <sam2 checkpoint>, or --regions felzenszwalb",
            where,
        ) from None


def load_sam2_models(
    model: str | os.PathLike[str] | None,
    sam_checkpoint: str | os.PathLike[str],
    found: SamModelId,
    meta: Any,
    cfg: RunConfig,
    device: Any,
    precision: str,
) -> Any:
    """Load the classifier bundle and SAM 2's mask decoder for a run (once per process).

    Args:
        model: Bundle folder (``None``: the packaged default model).
        sam_checkpoint: The SAM checkpoint given with ``--sam-checkpoint``.
        found: What the checkpoint is (:func:`geosam.models.sam_family.identify_sam_checkpoint`).
        meta: The bundle's metadata.
        cfg: Run configuration (tile size, segment settings).
        device: Torch device.
        precision: ``fp32``, ``bf16`` or ``fp16``.

    Returns:
        :class:`geosam.runtime.Models` with ``sam`` a :class:`~geosam.segment_sam2.Sam2MaskDecoder` and
        ``region_source`` ``sam2.1``/``sam2``.

    Raises:
        InputMismatchError: A bundle trained on another SAM family or size than the checkpoint, or one
            without red/green/blue bands for SAM 2's own pass.
        CheckpointError: An encoder-only checkpoint (no mask decoder), or weights that do not load.
        ConfigError: A tile size SAM 2 cannot run at (shared mode: multiples of 32).
    """
    from geosam.hashing import sha256_file
    from geosam.models.bundle import load_bundle
    from geosam.models.sam2 import _check_size, load_sam2, sam2_version
    from geosam.models.sam2_bundle import check_checkpoint_for_bundle
    from geosam.runtime import Models
    from geosam.segment_sam2 import Sam2MaskDecoder

    bundle_path = model if model is not None else None
    shared = meta.encoder.family == "sam2"
    if shared or found.family == "sam":
        # a Hiera bundle takes only its own family and size; a SAM 1 checkpoint never reaches here otherwise
        check_checkpoint_for_bundle(meta, found, bundle_path)
    if not found.has_decoder or found.variant is None:
        raise CheckpointError(
            f"the checkpoint holds only {found.label}'s image encoder, no mask decoder: it cannot make SAM "
            "masks; pass Meta's full checkpoint",
            sam_checkpoint,
        )
    tile = cfg.tiling.tile_size or 1024
    if shared:
        _check_size(tile)
        image_size = tile
    else:
        image_size = max(64, round(tile / 32) * 32)
    digest = sha256_file(sam_checkpoint)
    sam2_model = load_sam2(sam_checkpoint, found.variant, image_size)
    if shared:
        bundle = load_bundle(model, sam_checkpoint=sam_checkpoint, device="cpu", sam2_model=sam2_model)
        if bundle.meta.encoder.source == "bundle":
            log.warning(
                "the bundle's Hiera encoder was fine-tuned: SAM 2's mask decoder runs on its features "
                "(one encoder pass); masks may differ from stock SAM 2"
            )
        sam2_model.image_encoder = bundle.model.encoder.image_encoder  # one encoder for masks and classes
        chip = input_size = tile
        rgb = (0, 1, 2)
    else:
        if meta.encoder.source == "sam_checkpoint":
            raise InputMismatchError(
                f"the model bundle was trained on the frozen encoder of a SAM 1 checkpoint, but the SAM "
                f"checkpoint given is {found.label}: run that bundle with its SAM 1 checkpoint, or train one "
                f"on this checkpoint (geosam train ... --backbone {Path(sam_checkpoint).name})",
                bundle_path,
            )
        bundle = load_bundle(model, device="cpu")
        rgb = _rgb_indices(list(bundle.meta.bands), bundle_path)
        chip = meta.chip_size or meta.input_size
        input_size = meta.input_size
        log.info(
            "regions: %s (its own encoder pass per tile); classes: %s (its own encoder)",
            found.label,
            bundle.meta.name,
        )
    bundle.model.to(device).eval()
    sam2_model.to(device).eval()
    decoder = Sam2MaskDecoder.for_model(sam2_model, found, shared=shared, rgb=rgb)
    info = {
        "family": found.family,
        "model": found.name,
        "label": found.label,
        "checkpoint": os.path.abspath(sam_checkpoint),
        "checkpoint_sha256": digest,
        "package": f"sam2 {sam2_version()}",
        "input_size": image_size,
        "encoder_pass": "shared with the classifier (one pass per tile)"
        if shared
        else "own pass per tile (the classifier encodes the tile with its own encoder)",
    }
    return Models(
        bundle,
        decoder,
        found.region_source,
        tile,
        chip,
        input_size,
        device,
        precision,
        os.fspath(sam_checkpoint),
        info,
    )


def scene_encoding_sam2(models: Any, info: SceneInfo, cfg: RunConfig) -> tuple[int, int]:
    """Chip and tile size in scene pixels for a run with SAM 2 regions.

    Shared mode encodes whole tiles at SAM 2's input size (no resampling). In own-pass mode the tile
    keeps SAM 2's size and the classifier's chips are matched to its training resolution as
    :func:`geosam.predict.scene_encoding` does: ``chip = round(model_chip * model_gsd / scene_gsd)``, and the
    tile becomes the nearest multiple of the chip (SAM 2 resizes that tile to its input size).
    """
    dec = models.sam
    if dec is None or dec.shared:
        return int(models.chip_size), int(models.tile_size)
    chip, tile = int(models.chip_size), int(models.tile_size)
    gsd = models.bundle.meta.gsd_m
    scene_gsd = info.gsd_m
    if cfg.match_resolution and gsd and scene_gsd and abs(scene_gsd - gsd) / gsd >= 0.05:
        new_chip = max(4, round(chip * gsd / scene_gsd))
        log.info(
            "%s: %.3g m pixels, model trained at %.3g m: classifier chips of %d px resampled to %d px",
            Path(info.path).name,
            scene_gsd,
            gsd,
            new_chip,
            models.input_size,
        )
        chip = new_chip
    return chip, chip * max(1, round(tile / chip))


def _feature_stride(encoder: Any) -> int:
    """Input pixels per feature cell of a classifier encoder (SAM 1 ViT patch, or the Hiera level)."""
    level = getattr(encoder, "level", None)
    if level is not None:
        first = level.split("+")[0]
        return int(first[len("trunk") :] if first.startswith("trunk") else first[len("fpn") :])
    return int(encoder.patch_embed.proj.kernel_size[0])


def process_tile_sam2(
    models: Any,
    tile_data: np.ndarray,
    valid: np.ndarray,
    spec: TileSpec,
    cfg: RunConfig,
    *,
    chip_size: int | None = None,
) -> Any:
    """Encode once (per encoder), make SAM 2 regions, classify the tile and its regions.

    Args:
        models: From :func:`load_sam2_models` (or a run whose bundle has a Hiera encoder).
        tile_data: ``(N, T, T)`` stretched 0..1 pixels of the model bands.
        valid: ``(T, T)`` valid pixels.
        spec: The tile.
        cfg: Run configuration (segment settings).
        chip_size: Classifier chip edge in scene pixels (own-pass and chip modes).

    Returns:
        :class:`geosam.predict.TileResult`.
    """
    import torch

    from geosam.classify import classify_tile
    from geosam.encode import EncoderPlan, autocast_context, encode_tiles, fill_invalid
    from geosam.predict import TileResult
    from geosam.segment import Regions, felzenszwalb_regions
    from geosam.segment_sam2 import sam2_regions

    secs: dict[str, float] = {}
    model = models.bundle.model
    dec = models.sam if models.region_source in SAM2_SOURCES else None
    t0 = time.perf_counter()
    mean = model.mean.detach().cpu().numpy().reshape(-1)
    x = torch.from_numpy(fill_invalid(tile_data, valid, mean))[None].to(models.device)
    feats = None
    if dec is not None and dec.shared:
        with torch.inference_mode(), autocast_context(x.device, models.precision):
            feats = model.encoder.forward_features((x - model.mean) / model.std)
            cls_map = model.encoder.classifier_map(feats).float()
    else:
        chip = chip_size or models.chip_size
        grid = models.input_size // _feature_stride(model.encoder)
        plan = EncoderPlan(tile_data.shape[-1], chip, models.input_size, grid)
        cls_map = encode_tiles(
            model, x, plan, precision=models.precision, chip_batch=max(1, cfg.batch_size) * 16
        )
        if dec is not None and valid.any():
            with autocast_context(x.device, models.precision):
                feats = dec.own_features(x)
    t1 = time.perf_counter()
    secs["encode"] = t1 - t0
    if not valid.any():
        regions = Regions.empty(valid.shape)
    elif dec is not None:
        regions = sam2_regions(dec, feats, valid, cfg.segment)
    elif models.region_source == "felzenszwalb":
        regions = felzenszwalb_regions(tile_data, valid, cfg.segment)
    else:
        regions = Regions.empty(valid.shape, "tiles")
    t2 = time.perf_counter()
    secs["segment"] = t2 - t1
    classes = classify_tile(model, cls_map[0], valid, regions.labels, regions.count)
    secs["classify"] = time.perf_counter() - t2
    return TileResult(
        spec,
        regions.labels,
        valid,
        classes.regions,
        regions.predicted_iou,
        regions.stability_score,
        classes.tile,
        secs,
    )
