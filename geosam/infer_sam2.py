"""Tile inference with SAM 2.x (Hiera): the run's region model, tile plans and per-tile compute.

Two set-ups, both with every encoder running once per tile:

* **shared** (a bundle trained with ``--backbone <sam2 checkpoint>``, chip or dense head): the
  classifier's Hiera *is* the SAM 2 model's image encoder, so one pass feeds the mask decoder, the
  chip classifier or the dense head (Hiera's four trunk levels). Tiles are encoded whole at the tile
  size (any multiple of 32).
* **own pass** (a bundle with its own encoder, e.g. the packaged default model or a dense bundle on
  the ``default``/``small`` encoders): SAM 2 makes the regions from its own pass over the tile's red,
  green and blue bands (resized to the SAM 2 input size when the tile is not already that size), and
  the classifier encodes the tile as it always does (chips, resolution matching; not at all for a
  dense head on the pixels alone, :func:`geosam.inference.needs_features`).

:func:`geosam.region_loading.load_sam2_models` loads a run's :class:`Sam2MaskDecoder`;
:func:`plan_encoder_sam2` and :func:`sam2_tile_inference` are what :func:`geosam.encode.plan_encoder` and
:func:`geosam.inference.tile_inference` call for it (through the decoder's methods). A bundle with a
Hiera encoder and no SAM regions (superpixels, tile labels) needs nothing from here: its encoder works
in geosam's chip path.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import SegmentConfig
from geosam.models.sam_family import SamModelId

if TYPE_CHECKING:
    import torch

    from geosam.encode import EncoderPlan
    from geosam.inference import TileInference, TileResult
    from geosam.models.classifier import LandCoverModel
    from geosam.runtime import Models
    from geosam.types import SceneInfo, TileSpec

__all__ = [
    "SAM2_SOURCES",
    "Sam2MaskDecoder",
    "Sam2SharedInference",
    "plan_encoder_sam2",
    "plan_own_pass",
    "sam2_tile_inference",
]

log = logging.getLogger(__name__)

#: ``region_source`` values of SAM 2.x regions.
SAM2_SOURCES = ("sam2.1", "sam2")


@dataclass(frozen=True)
class Sam2MaskDecoder:
    """SAM 2's prompt encoder and mask decoder for a run.

    Two ways to get a tile's features: ``shared`` (the classifier's encoder *is* ``model.image_encoder``,
    a bundle trained on this checkpoint: the classifier's single pass feeds the decoder), or the
    decoder's own pass (:meth:`own_features`, when the classifier has an encoder of its own, such as the
    packaged default model): then each encoder still runs once per tile. As a run's region model it
    provides its own encoder plan and tile inference (:meth:`plan_encoder`, :meth:`tile_inference`),
    which :mod:`geosam.encode` and :mod:`geosam.inference` call without importing this module.

    Attributes:
        model: The ``SAM2Base``.
        model_id: What the checkpoint is (``region_source`` of the outputs is ``model_id.family``).
        shared: Whether the classifier's encoder is ``model.image_encoder``.
        rgb: Indices of the red, green and blue bands in the tile (own pass only).
    """

    model: Any
    model_id: SamModelId
    shared: bool = True
    rgb: tuple[int, int, int] = (0, 1, 2)

    def new_predictor(self) -> Any:
        """A fresh ``SAM2ImagePredictor`` for this model, sized for its input (one per scene)."""
        from geosam.models.sam2 import image_predictor

        with warnings.catch_warnings():
            # SAM2Transforms scripts its resize/normalise with torch.jit (deprecated in torch 2.14); geosam
            # never calls them (tiles arrive normalised at the model's size)
            warnings.simplefilter("ignore", FutureWarning)
            return image_predictor(self.model)

    def own_features(self, tile: Any) -> Any:
        """The decoder's own encoder pass over a ``(1, N, T, T)`` 0..1 float tile.

        The red, green and blue bands are normalised with SAM 2's statistics and, when ``T`` is not the
        model's ``image_size``, resized to it (bilinear), as ``SAM2Transforms`` does; masks come back at
        ``T`` (the predictor upsamples them to the tile). Returns :class:`~geosam.models.sam2.Sam2Features`.
        """
        import torch
        import torch.nn.functional as F

        from geosam.models.sam2_encoder import SAM2_PIXEL_MEAN, SAM2_PIXEL_STD, Sam2Encoder

        x = tile[:, list(self.rgb)].float()
        size = self.image_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        mean = torch.tensor(SAM2_PIXEL_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(SAM2_PIXEL_STD, device=x.device).view(1, 3, 1, 1)
        enc = Sam2Encoder(self.model.image_encoder, self.model_id.variant)  # type: ignore[arg-type]
        with torch.inference_mode():
            return enc.forward_features((x - mean) / std)

    def plan_encoder(
        self, models: Models, info: SceneInfo, *, match_resolution: bool, tile_size: int | None
    ) -> EncoderPlan:
        """This run's encoder plan (for :func:`geosam.encode.plan_encoder`): :func:`plan_encoder_sam2`."""
        return plan_encoder_sam2(models, info, match_resolution=match_resolution, tile_size=tile_size)

    def tile_inference(
        self, models: Models, encoder: EncoderPlan, segment: SegmentConfig, *, batch_size: int = 1
    ) -> TileInference | Sam2SharedInference:
        """A scene's tile inference (called by :func:`geosam.inference.tile_inference`)."""
        return sam2_tile_inference(models, encoder, segment, batch_size=batch_size)

    @property
    def region_source(self) -> str:
        """``sam2.1`` or ``sam2``."""
        return self.model_id.region_source

    @property
    def image_size(self) -> int:
        """Tile edge the decoder was built for, in pixels."""
        return int(self.model.image_size)


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
        models: From :func:`geosam.runtime.load_models` (a SAM 2 checkpoint).
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

    The sizes are :func:`geosam.scene_plan.own_pass_encoding`'s (the tile keeps the region model's
    size; the classifier's chips are matched to its training resolution), the rule ``geosam info``
    shows.
    """
    from geosam.encode import EncoderPlan, patch_size
    from geosam.scene_plan import own_pass_encoding

    grid = models.input_size // patch_size(models.bundle.model.encoder)
    enc = own_pass_encoding(
        int(models.chip_size),
        int(models.tile_size),
        models.bundle.meta.gsd_m,
        info.gsd_m,
        match_resolution=match_resolution,
    )
    if enc.matched:
        log.info(
            "%s: %.3g m pixels, model trained at %.3g m: classifier chips of %d px resampled to %d px",
            Path(info.path).name,
            info.gsd_m,
            models.bundle.meta.gsd_m,
            enc.chip_size,
            models.input_size,
        )
    return EncoderPlan(enc.tile_size, enc.chip_size, models.input_size, grid)


@dataclass(frozen=True)
class Sam2SharedInference:
    """Per-tile compute when the classifier's encoder is SAM 2's: one Hiera pass, three consumers.

    The pass's :class:`~geosam.models.sam2_encoder.Sam2Features` feed SAM 2's mask decoder
    (:func:`~geosam.segment_sam2.sam2_regions`) and the classifier: a chip head pools its level; a dense
    head reads Hiera's four trunk maps of the same pass (what
    :func:`~geosam.models.sam2_encoder.multiscale_features` returns) and the pixels, and the tile and its
    regions take the mean of their pixels' probabilities (:func:`geosam.dense.dense_tile_classes`, as
    :class:`~geosam.inference.TileInference` does), so ``TileResult.dense_probs`` is set.

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
        filled = fill_invalid(tile_data, valid, fill)
        x = torch.from_numpy(filled)[None].to(self.device)
        encoder: Any = self.model.encoder
        dense = self.model.dense is not None
        with torch.inference_mode(), autocast_context(self.device, self.precision):
            feats = encoder.forward_features((x - model_mean) / model_std)
            cls_map = None if dense else encoder.classifier_map(feats).float()
        t1 = time.perf_counter()
        secs["encode"] = t1 - t0
        if valid.any():
            regions = sam2_regions(self.decoder, self.predictor, feats, valid, self.segment)
        else:
            regions = Regions.empty(valid.shape)
        t2 = time.perf_counter()
        secs["segment"] = t2 - t1
        probs = None
        if dense:  # the dense head on the pass's trunk levels; tile and regions take the pixel means
            from geosam.dense import dense_tile_classes

            levels = [f.float() for f in feats.trunk]  # multiscale_features of this very pass
            probs, classes = dense_tile_classes(
                self.model, levels, filled, valid, regions.labels, regions.count
            )
        else:
            assert cls_map is not None
            classes = classify_tile(self.model, cls_map[0], valid, regions.labels, regions.count)
        secs["classify"] = time.perf_counter() - t2
        return TileResult.from_regions(spec, valid, regions, classes, secs, dense_probs=probs)


def sam2_tile_inference(
    models: Models, encoder: EncoderPlan, segment: SegmentConfig, *, batch_size: int = 1
) -> TileInference | Sam2SharedInference:
    """The per-tile compute of a scene with SAM 2 regions, built once (the predictor included).

    Shared mode gives a :class:`Sam2SharedInference`; own-pass mode the standard
    :class:`~geosam.inference.TileInference` (the classifier's chips, or its dense head:
    :func:`~geosam.inference.bundle_tile_inference`) with a :class:`~geosam.segment_sam2.Sam2Regions`
    region maker (SAM 2's own pass).

    Args:
        models: From :func:`geosam.runtime.load_models` (a SAM 2 checkpoint).
        encoder: The scene's encoder plan (:func:`plan_encoder_sam2`).
        segment: Generator settings.
        batch_size: ``RunConfig.batch_size`` (classifier chips per call: ``16 x batch_size``).
    """
    from geosam.inference import bundle_tile_inference
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
    regions = Sam2Regions(dec, segment, fill, models.precision)
    # the classifier encodes chips matched to its training resolution (plan_own_pass), as in training:
    # they are scored against the bundle's domain statistics like any chip run's
    return bundle_tile_inference(models, encoder, regions, batch_size=batch_size, domain=models.bundle.domain)
