"""Tile inference: encode a tile once, make its regions, classify the tile and every region (no I/O).

A model with a dense head (:mod:`geosam.models.dense_head`) also classifies every pixel; its tile and
regions then take the mean of their pixels' probabilities (:mod:`geosam.dense`).

:func:`tile_inference` builds a :class:`TileInference` once per scene from the loaded models, the
scene's :class:`~geosam.encode.EncoderPlan` and the segmentation settings (the SAM mask generator
included); calling it on a tile's stretched pixels returns a :class:`TileResult`. It receives
sub-configurations only (:class:`~geosam.config.SegmentConfig` and the encoder batch size), never the
whole run configuration.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from geosam.config import SegmentConfig

if TYPE_CHECKING:
    import torch

    from geosam.classify import TileClasses
    from geosam.domain import DomainStats
    from geosam.encode import EncoderPlan
    from geosam.infer_sam2 import Sam2SharedInference
    from geosam.infer_sam3 import Sam3ZeroShotInference
    from geosam.models.classifier import LandCoverModel
    from geosam.runtime import Models
    from geosam.segment import RegionMaker, Regions
    from geosam.types import TileSpec

__all__ = ["TileInference", "TileResult", "bundle_tile_inference", "needs_features", "tile_inference"]


@dataclass(frozen=True)
class TileResult:
    """What one tile produced (arrays are over the tile's read window, ``(T, T)`` or ``(R, ...)``).

    Attributes:
        spec: The tile.
        labels: ``(T, T)`` int32 region labels (0 = no region, ``1..R``).
        valid: ``(T, T)`` bool valid pixels.
        region_probs: ``(R, K)`` float32 class probabilities of each region.
        predicted_iou: ``(R,)`` SAM predicted IoU (NaN for other sources).
        stability_score: ``(R,)`` SAM stability score (NaN for other sources).
        tile_probs: ``(K,)`` float32 class probabilities of the whole tile (its valid pixels).
        seconds: Seconds spent per stage on this tile (``encode``, ``segment``, ``classify``).
        domain_scores: ``(n,)`` domain scores of the tile's encoder chips (:mod:`geosam.domain`); empty
            when the model has no domain statistics or the run does not encode training-like chips.
        dense_probs: ``(K, T, T)`` float32 pixel probabilities of a model with a dense head
            (:mod:`geosam.dense`; 0 on invalid pixels), ``None`` for other models.
    """

    spec: TileSpec
    labels: np.ndarray
    valid: np.ndarray
    region_probs: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    tile_probs: np.ndarray
    seconds: dict[str, float]
    domain_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dense_probs: np.ndarray | None = None

    @classmethod
    def from_regions(
        cls,
        spec: TileSpec,
        valid: np.ndarray,
        regions: Regions,
        classes: TileClasses,
        seconds: dict[str, float],
        *,
        domain_scores: np.ndarray | None = None,
        dense_probs: np.ndarray | None = None,
    ) -> TileResult:
        """The result of a tile from its regions and their classes (what every tile inference returns)."""
        return cls(
            spec,
            regions.labels,
            valid,
            classes.regions,
            regions.predicted_iou,
            regions.stability_score,
            classes.tile,
            seconds,
            np.zeros(0) if domain_scores is None else domain_scores,
            dense_probs,
        )


@dataclass(frozen=True)
class TileInference:
    """Per-tile compute of one scene: one encoder pass, regions, classes.

    Attributes:
        model: The classifier (encoder + head), on ``device``.
        encoder: How tiles are cut into encoder chips.
        regions: The scene's region maker (built once; for SAM it holds the mask generator).
        device: Torch device of the model.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        chip_batch: Encoder inputs per forward call.
        fill: Per-band 0..1 value of invalid pixels (the bundle preprocessing's nodata fill); ``None``:
            the model mean.
        domain: The bundle's domain statistics, to score each encoder chip (``None``: no scores).
        encode: Run the encoder. ``False`` when nothing reads its features (:func:`needs_features`):
            a dense head on the pixels alone, regions that are not SAM's and no domain statistics;
            the tile then costs the pixel head and the regions only.
    """

    model: LandCoverModel
    encoder: EncoderPlan
    regions: RegionMaker
    device: torch.device
    precision: str
    chip_batch: int
    fill: np.ndarray | None = None
    domain: DomainStats | None = None
    encode: bool = True

    def __call__(self, tile_data: np.ndarray, valid: np.ndarray, spec: TileSpec) -> TileResult:
        """Encode once, make regions, classify tile and regions.

        Args:
            tile_data: ``(N, T, T)`` float32 stretched 0..1 pixels of the model bands (invalid pixels
                any value; they get the preprocessing's nodata fill before encoding).
            valid: ``(T, T)`` valid pixels.
            spec: The tile (``T = encoder.tile_size``).
        """
        return self.run_batch([(tile_data, valid, spec)])[0]

    def run_batch(self, tiles: Sequence[tuple[np.ndarray, np.ndarray, TileSpec]]) -> list[TileResult]:
        """:meth:`__call__` for several tiles, encoded by one encoder call (a GPU's batch).

        The tiles' embeddings come from one :func:`~geosam.encode.encode_tiles` call (``chip_batch``
        inputs per forward pass); regions and classes then follow tile by tile. Each result's
        ``encode`` seconds are the batch's share.

        Args:
            tiles: ``(tile_data, valid, spec)`` per tile, as for :meth:`__call__`.
        """
        import torch

        from geosam.classify import classify_tile
        from geosam.encode import encode_tiles, fill_invalid
        from geosam.segment import Regions

        if not tiles:
            return []
        t0 = time.perf_counter()
        fill = self.fill
        if fill is None:
            model_mean: torch.Tensor = self.model.mean  # type: ignore[assignment]  # a registered buffer
            fill = model_mean.detach().cpu().numpy().reshape(-1)
        x = np.stack([fill_invalid(data, valid, fill) for data, valid, _ in tiles])
        feats = domain_maps = None
        if self.encode:
            from geosam.domain import capture_block
            from geosam.encode import chips_to_tiles

            xt = torch.from_numpy(x).to(self.device, non_blocking=True)
            block = self.domain.block if self.domain is not None else None
            with capture_block(self.model.encoder, block) as captured:
                feats = encode_tiles(
                    self.model, xt, self.encoder, precision=self.precision, chip_batch=self.chip_batch
                )
            del xt
            # what the domain statistics score: a middle block's output, or the encoder's (geosam.domain)
            k = self.encoder.chips_per_side
            domain_maps = chips_to_tiles(torch.cat(captured), len(tiles), k) if captured else feats
            del captured
        encode_s = (time.perf_counter() - t0) / len(tiles)
        out = []
        for i, (data, valid, spec) in enumerate(tiles):
            t1 = time.perf_counter()
            emb = feats[i : i + 1] if feats is not None else None
            regions = self.regions(data, emb, valid) if valid.any() else Regions.empty(valid.shape)
            t2 = time.perf_counter()
            dense = None
            if self.model.dense is not None:  # per-pixel classes; regions and tile take their mean
                from geosam.dense import dense_tile_classes

                dense, classes = dense_tile_classes(
                    self.model, emb, x[i], valid, regions.labels, regions.count
                )
            else:
                assert emb is not None  # needs_features: a chip head reads the features
                classes = classify_tile(self.model, emb[0], valid, regions.labels, regions.count)
            domain_scores = np.zeros(0)
            if self.domain is not None and domain_maps is not None and valid.any():
                from geosam.domain import tile_scores

                domain_scores = tile_scores(self.domain, domain_maps[i], valid, self.encoder.grid)
            secs = {"encode": encode_s, "segment": t2 - t1, "classify": time.perf_counter() - t2}
            out.append(
                TileResult.from_regions(
                    spec, valid, regions, classes, secs, domain_scores=domain_scores, dense_probs=dense
                )
            )
        return out


def tile_inference(
    models: Models, encoder: EncoderPlan, segment: SegmentConfig, *, batch_size: int = 1
) -> TileInference | Sam2SharedInference | Sam3ZeroShotInference:
    """The tile inference of one scene, built once (the SAM mask generator included).

    Args:
        models: From :func:`geosam.runtime.load_models` (its ``region_source`` picks the regions;
            region models with a ``tile_inference`` method, SAM 2.x and SAM 3, build their own:
            :func:`geosam.infer_sam2.sam2_tile_inference`, :func:`geosam.infer_sam3.sam3_tile_inference`).
        encoder: The scene's encoder plan (:func:`geosam.encode.plan_encoder`).
        segment: Segmentation settings.
        batch_size: ``RunConfig.batch_size``: chip models encode ``16 x batch_size`` chips per call.
    """
    from geosam.segment import region_maker

    own = getattr(models.sam, "tile_inference", None)
    if own is not None:  # SAM 2/3 region models bring their own (geosam.infer_sam2/3)
        made: TileInference | Sam2SharedInference | Sam3ZeroShotInference = own(
            models, encoder, segment, batch_size=batch_size
        )
        return made
    regions = region_maker(
        models.region_source,
        models.sam,
        segment,
        chip_size=encoder.chip_size,
        # the mask decoder follows the encoder's precision on GPUs; on CPUs it stays float32
        precision=models.precision if models.device.type == "cuda" else "fp32",
    )
    # SAM-region runs encode whole tiles at SAM's input size: their features are not comparable to the
    # training chips' statistics, so they are not scored
    domain = models.bundle.domain if models.region_source != "sam" else None
    return bundle_tile_inference(models, encoder, regions, batch_size=batch_size, domain=domain)


def bundle_tile_inference(
    models: Models,
    encoder: EncoderPlan,
    regions: RegionMaker,
    *,
    batch_size: int = 1,
    domain: DomainStats | None = None,
) -> TileInference:
    """The :class:`TileInference` of the classifier bundle's own encoder pass with ``regions``.

    What SAM 1, superpixel, tile and chip regions use, and SAM 2's and SAM 3's region passes when the
    classifier has an encoder of its own: invalid pixels get the bundle preprocessing's nodata fill, the
    encoder runs only when something reads its features (:func:`needs_features`), and a dense head
    classifies every pixel (:func:`geosam.dense.dense_tile_classes`).

    Args:
        models: From :func:`geosam.runtime.load_models`.
        encoder: The scene's encoder plan.
        regions: The scene's region maker.
        batch_size: ``RunConfig.batch_size``: chip models encode ``16 x batch_size`` chips per call.
        domain: Domain statistics to score each encoder chip with (``None``: no scores).

    Raises:
        ConfigError: A dense head on SAM 2 Hiera's four feature levels: only a shared SAM 2 pass
            (:class:`geosam.infer_sam2.Sam2SharedInference`) gives them, not the encoder's chips.
    """
    from geosam.preprocess import fill_values, model_preprocessing

    model = models.bundle.model
    cfg = getattr(model.dense, "cfg", None)
    if cfg is not None and cfg.use_encoder and len(cfg.in_channels) > 1:
        from geosam.errors import ConfigError

        raise ConfigError(
            "this model's dense head reads the four feature levels of a SAM 2 Hiera pass over the whole "
            f"tile, which {models.region_source} regions do not give: run it with --sam-checkpoint "
            "<the SAM 2 checkpoint it was trained on> and without --regions (SAM 2 regions, one shared "
            "pass)",
            models.bundle.path,
        )
    mean: torch.Tensor = model.mean  # type: ignore[assignment]  # a registered buffer
    fill = fill_values(model_preprocessing(models.bundle.meta), mean.detach().cpu().numpy().reshape(-1))
    return TileInference(
        model=model,
        encoder=encoder,
        regions=regions,
        device=models.device,
        precision=models.precision,
        chip_batch=max(1, batch_size) * 16,
        fill=fill,
        domain=domain,
        encode=needs_features(model, regions, domain),
    )


def needs_features(model: LandCoverModel, regions: RegionMaker, domain: DomainStats | None) -> bool:
    """Whether a run reads the encoder's features.

    A chip head (it pools them), a dense head that uses them, regions made from the embedding (SAM's
    mask decoder: ``regions.reads_embedding``) and domain statistics (scored on them) do. ``False``
    only for a dense head on the pixels alone (``use_encoder: false``, the ``geosam train polygons``
    default) with regions made from the pixels and no domain statistics.
    """
    from geosam.models.dense_head import DenseHead

    dense = model.dense
    if not isinstance(dense, DenseHead) or dense.cfg.use_encoder or domain is not None:
        return True
    return regions.reads_embedding
