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
:func:`plan_encoder_sam2` and :func:`sam2_tile_inference` are what :func:`geosam.encode.plan_encoder` and
:func:`geosam.inference.tile_inference` call for it. A bundle with a Hiera encoder and no SAM regions
(superpixels, tile labels) needs nothing from here: its encoder works in geosam's chip path.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import RunConfig, SegmentConfig
from geosam.errors import CheckpointError, InputMismatchError
from geosam.models.sam_family import SamModelId
from geosam.segment_sam2 import Sam2MaskDecoder

if TYPE_CHECKING:
    import torch

    from geosam.encode import EncoderPlan
    from geosam.inference import TileInference, TileResult
    from geosam.models.bundle import BundleMeta
    from geosam.models.classifier import LandCoverModel
    from geosam.runtime import Models
    from geosam.types import SceneInfo, TileSpec

__all__ = [
    "SAM2_SOURCES",
    "Sam2SharedInference",
    "load_sam2_models",
    "plan_encoder_sam2",
    "plan_own_pass",
    "rgb_indices",
    "sam2_tile_inference",
]

log = logging.getLogger(__name__)

#: ``region_source`` values of SAM 2.x regions.
SAM2_SOURCES = ("sam2.1", "sam2")


def rgb_indices(bands: list[str], where: str | os.PathLike[str] | None) -> tuple[int, int, int]:
    """Positions of the red, green and blue bands among a model's bands (for a SAM region pass).

    Raises:
        InputMismatchError: One of them is missing.
    """
    from geosam.bands import canonical_band_name

    names = [canonical_band_name(b) for b in bands]
    try:
        return (names.index("red"), names.index("green"), names.index("blue"))
    except ValueError:
        raise InputMismatchError(
            f"SAM masks need red, green and blue bands, but the model's bands are {', '.join(names)}; "
            "use a bundle trained with --backbone <sam2 checkpoint>, or --regions felzenszwalb",
            where,
        ) from None


def load_sam2_models(
    model: str | os.PathLike[str] | None,
    sam_checkpoint: str | os.PathLike[str],
    found: SamModelId,
    meta: BundleMeta,
    cfg: RunConfig,
    device: torch.device,
    precision: str,
) -> Models:
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
    from geosam.models.sam2 import check_input_size, load_sam2, sam2_version
    from geosam.models.sam2_bundle import check_checkpoint_for_bundle
    from geosam.runtime import Models

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
        check_input_size(tile)
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
        sam2_model.image_encoder = bundle.model.encoder.image_encoder  # one encoder: masks and classes
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
        rgb = rgb_indices(list(bundle.meta.bands), bundle_path)
        chip = meta.chip_size or meta.input_size
        input_size = meta.input_size
        log.info(
            "regions: %s (its own encoder pass per tile); classes: %s (its own encoder)",
            found.label,
            bundle.meta.name,
        )
    bundle.model.to(device).eval()
    sam2_model.to(device).eval()
    decoder = Sam2MaskDecoder(sam2_model, found, shared, rgb)
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


def plan_encoder_sam2(
    models: Models, info: SceneInfo, *, match_resolution: bool, tile_size: int | None
) -> EncoderPlan:
    """How a scene's tiles are encoded when SAM 2 makes the regions (:func:`geosam.encode.plan_encoder`).

    Shared mode encodes whole tiles at SAM 2's input size (no resampling). In own-pass mode the tile
    keeps SAM 2's size (``models.tile_size``) and the classifier's chips are matched to its training
    resolution as :func:`geosam.encode.plan_encoder` does, ``chip = round(model_chip * model_gsd /
    scene_gsd)``; the tile becomes the nearest multiple of that chip, and SAM 2 resizes it to its input
    size (a few pixels at most).

    Args:
        models: From :func:`load_sam2_models`.
        info: The scene (its ``gsd_m``).
        match_resolution: Resample classifier chips to the model's ground resolution.
        tile_size: The user's tile size (already in ``models.tile_size``).
    """
    from geosam.encode import EncoderPlan, patch_size

    dec = models.sam
    if not isinstance(dec, Sam2MaskDecoder) or dec.shared:
        grid = models.input_size // patch_size(models.bundle.model.encoder)
        return EncoderPlan(int(models.tile_size), int(models.chip_size), models.input_size, grid)
    return plan_own_pass(models, info, match_resolution=match_resolution)


def plan_own_pass(models: Models, info: SceneInfo, *, match_resolution: bool) -> EncoderPlan:
    """Encoder plan of a classifier that encodes tiles with its own encoder next to a SAM region pass.

    The tile keeps the region model's size (``models.tile_size``); the classifier's chips are matched to
    its training resolution (``chip = round(model_chip * model_gsd / scene_gsd)``, the rule of
    :func:`geosam.encode.plan_encoder`) and the tile becomes the nearest multiple of that chip.
    """
    from geosam.encode import EncoderPlan, patch_size

    grid = models.input_size // patch_size(models.bundle.model.encoder)
    chip, tile = int(models.chip_size), int(models.tile_size)
    gsd = models.bundle.meta.gsd_m
    scene_gsd = info.gsd_m
    if match_resolution and gsd and scene_gsd and abs(scene_gsd - gsd) / gsd >= 0.05:
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
    return EncoderPlan(chip * max(1, round(tile / chip)), chip, models.input_size, grid)


@dataclass(frozen=True)
class Sam2SharedInference:
    """Per-tile compute when the classifier's encoder is SAM 2's: one Hiera pass, three consumers.

    The pass's :class:`~geosam.models.sam2.Sam2Features` feed SAM 2's mask decoder
    (:func:`~geosam.segment_sam2.sam2_regions`) and the classifier (its pooled level); a dense head
    takes :func:`~geosam.models.sam2.multiscale_features` of the same pass.

    Attributes:
        model: The classifier (a :class:`~geosam.models.sam2.Sam2Encoder` and a head), on ``device``.
        encoder: The tile plan (whole tiles: chip = tile = SAM 2's input size).
        decoder: SAM 2's mask decoder, sharing the classifier's image encoder.
        predictor: The scene's ``SAM2ImagePredictor`` (:meth:`Sam2MaskDecoder.new_predictor`).
        segment: Generator settings.
        device: Torch device.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast of the encoder pass).
    """

    model: LandCoverModel
    encoder: EncoderPlan
    decoder: Sam2MaskDecoder
    predictor: Any
    segment: SegmentConfig
    device: torch.device
    precision: str

    def __call__(self, tile_data: np.ndarray, valid: np.ndarray, spec: TileSpec) -> TileResult:
        """Encode once, make SAM 2 regions, classify tile and regions.

        Args:
            tile_data: ``(N, T, T)`` float32 stretched 0..1 pixels of the model bands.
            valid: ``(T, T)`` valid pixels.
            spec: The tile (``T`` = SAM 2's input size).
        """
        import torch

        from geosam.classify import classify_tile
        from geosam.encode import autocast_context, fill_invalid
        from geosam.inference import TileResult
        from geosam.segment import Regions
        from geosam.segment_sam2 import sam2_regions

        secs: dict[str, float] = {}
        t0 = time.perf_counter()
        model_mean: torch.Tensor = self.model.mean  # type: ignore[assignment]  # registered buffers
        model_std: torch.Tensor = self.model.std  # type: ignore[assignment]
        fill = model_mean.detach().cpu().numpy().reshape(-1)
        x = torch.from_numpy(fill_invalid(tile_data, valid, fill))[None].to(self.device)
        encoder: Any = self.model.encoder
        with torch.inference_mode(), autocast_context(self.device, self.precision):
            feats = encoder.forward_features((x - model_mean) / model_std)
            cls_map = encoder.classifier_map(feats).float()
        t1 = time.perf_counter()
        secs["encode"] = t1 - t0
        if valid.any():
            regions = sam2_regions(self.decoder, self.predictor, feats, valid, self.segment)
        else:
            regions = Regions.empty(valid.shape)
        t2 = time.perf_counter()
        secs["segment"] = t2 - t1
        classes = classify_tile(self.model, cls_map[0], valid, regions.labels, regions.count)
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


def sam2_tile_inference(
    models: Models, encoder: EncoderPlan, segment: SegmentConfig, *, batch_size: int = 1
) -> TileInference | Sam2SharedInference:
    """The per-tile compute of a scene with SAM 2 regions, built once (the predictor included).

    Shared mode gives a :class:`Sam2SharedInference`; own-pass mode the standard
    :class:`~geosam.inference.TileInference` (the classifier's chips) with a
    :class:`~geosam.segment_sam2.Sam2Regions` region maker (SAM 2's own pass).

    Args:
        models: From :func:`load_sam2_models`.
        encoder: The scene's encoder plan (:func:`plan_encoder_sam2`).
        segment: Generator settings.
        batch_size: ``RunConfig.batch_size`` (classifier chips per call: ``16 x batch_size``).
    """
    from geosam.inference import TileInference
    from geosam.segment_sam2 import Sam2Regions

    dec = models.sam
    if not isinstance(dec, Sam2MaskDecoder):
        raise TypeError("SAM 2 regions need a Sam2MaskDecoder (load the models with load_models)")
    model = models.bundle.model
    if dec.shared:
        return Sam2SharedInference(
            model, encoder, dec, dec.new_predictor(), segment, models.device, models.precision
        )
    model_mean: torch.Tensor = model.mean  # type: ignore[assignment]
    fill = model_mean.detach().cpu().numpy().reshape(-1)
    return TileInference(
        model=model,
        encoder=encoder,
        regions=Sam2Regions(dec, segment, fill, models.precision),
        device=models.device,
        precision=models.precision,
        chip_batch=max(1, batch_size) * 16,
    )
