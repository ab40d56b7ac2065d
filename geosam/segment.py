"""Regions of a tile: SAM automatic masks from a precomputed embedding, or an honest fallback.

``sam_regions`` runs segment-anything's own ``SamAutomaticMaskGenerator`` (its point grid, batching,
predicted-IoU and stability-score filters and box NMS, with its argument names and defaults) on an image
embedding the caller has already computed, so the encoder runs once per tile and the same embedding
also feeds the classifier. Only single-crop generation is supported (``crop_n_layers=0``): extra crop
layers would need new encoder passes. :func:`generate_single_crop` (:mod:`geosam.sam_masks`) is that
generator's single-crop path without its run-length-encoding round trip (same masks, scores and order).

``felzenszwalb_regions`` is the fallback when no SAM mask decoder is available: graph-based
superpixels (scikit-image) of the stretched tile pixels. Outputs say which source made the regions;
their SAM scores are NaN.

A run builds one :class:`RegionMaker` per scene with :func:`region_maker` (:class:`SamRegions`, which
holds the one mask generator of the scene; :class:`FelzenszwalbRegions`; :class:`NoRegions`) and calls
it per tile. All return :class:`Regions`: a non-overlapping label image (0 = no region) plus per-region
arrays. Overlapping SAM masks are painted largest first, so smaller masks (objects within objects) stay
visible on top; masks left with fewer than ``min_region_area`` visible valid pixels are dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from geosam.config import SegmentConfig
from geosam.sam_masks import generate_single_crop

if TYPE_CHECKING:
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.modeling import Sam

__all__ = [
    "ChipRegions",
    "FelzenszwalbRegions",
    "NoRegions",
    "RegionMaker",
    "Regions",
    "SamRegions",
    "felzenszwalb_regions",
    "generate_single_crop",
    "mask_generator",
    "paint_in_order",
    "paint_masks",
    "region_maker",
    "sam_regions",
]


@dataclass(frozen=True)
class Regions:
    """Regions of one tile.

    Attributes:
        labels: ``(H, W)`` int32 label image; 0 = no region, ``1..R`` = region ``i - 1``.
        predicted_iou: ``(R,)`` SAM's predicted IoU (NaN for non-SAM sources).
        stability_score: ``(R,)`` SAM's stability score (NaN for non-SAM sources).
        source: ``sam``, ``felzenszwalb`` or ``none``.
    """

    labels: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    source: str

    @property
    def count(self) -> int:
        """Number of regions ``R``."""
        return len(self.predicted_iou)

    @classmethod
    def empty(cls, shape: tuple[int, int], source: str = "none") -> Regions:
        """No regions at all."""
        z = np.zeros(0, np.float32)
        return cls(np.zeros(shape, np.int32), z, z.copy(), source)


def paint_masks(
    masks: list[np.ndarray], scores: list[tuple[float, float]], valid: np.ndarray, min_area: int, source: str
) -> Regions:
    """Turn possibly overlapping boolean masks into a partition (largest painted first).

    Args:
        masks: ``(H, W)`` boolean masks.
        scores: ``(predicted_iou, stability_score)`` per mask.
        valid: ``(H, W)`` valid-pixel mask; invalid pixels never belong to a region.
        min_area: Masks with fewer visible valid pixels after painting are dropped.
        source: Recorded in the result.
    """
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    labels, kept = paint_in_order(masks, order, valid, min_area)
    iou = np.array([scores[i][0] for i in kept], np.float32)
    stab = np.array([scores[i][1] for i in kept], np.float32)
    return Regions(labels, iou, stab, source)


def paint_in_order(
    masks: Sequence[np.ndarray] | np.ndarray,
    order: Sequence[int] | np.ndarray,
    valid: np.ndarray,
    min_area: int,
) -> tuple[np.ndarray, list[int]]:
    """Paint ``masks[order[0]]``, then ``masks[order[1]]``... (a later mask wins a pixel) into a partition.

    Invalid pixels belong to no mask; masks left with fewer than ``min_area`` (at least 1) visible pixels
    are dropped. Returns the ``(H, W)`` int32 label image (``i`` = the ``i``-th mask kept, 0 = none) and
    the index into ``masks`` of each mask kept, in label order.
    """
    canvas = np.zeros(valid.shape, np.int32)
    for rank, i in enumerate(order, start=1):
        canvas[masks[i]] = rank
    canvas[~valid] = 0
    counts = np.bincount(canvas.ravel(), minlength=len(order) + 1)
    keep = [r for r in range(1, len(order) + 1) if counts[r] >= max(1, min_area)]
    remap = np.zeros(len(order) + 1, np.int32)
    remap[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return remap[canvas], [int(order[r - 1]) for r in keep]


class SamRegions:
    """SAM automatic masks of a tile from its precomputed embedding, with one generator per scene.

    The ``SamAutomaticMaskGenerator`` (its point grid and settings) is built once, when this object is
    made, and reused for every tile; each call installs the tile's embedding on the generator's
    predictor (:func:`geosam.models.sam.predictor_embedding`) and runs :func:`generate_single_crop`.

    Args:
        sam: A ``segment_anything.modeling.Sam`` whose encoder input size equals the tile size.
        cfg: Generator thresholds (segment-anything's argument names) and ``min_region_area``.
    """

    source = "sam"
    reads_embedding = True

    def __init__(self, sam: Sam, cfg: SegmentConfig, *, precision: str = "fp32") -> None:
        self.generator = mask_generator(sam, cfg)
        self.min_region_area = cfg.min_region_area
        self.precision = precision

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor | None, valid: np.ndarray) -> Regions:
        """Regions of one tile.

        Args:
            tile: ``(N, H, W)`` stretched pixels (unused: the masks come from the embedding).
            embedding: ``(1, C, h, w)`` tensor from ``sam.image_encoder`` (or a classifier sharing it).
            valid: ``(H, W)`` valid pixels of the tile (``H, W`` = the encoder input size).
        """
        import torch

        from geosam.models.sam import predictor_embedding

        if embedding is None:
            raise ValueError("SAM regions need the tile's SAM image embedding")
        h, w = valid.shape
        with predictor_embedding(self.generator.predictor, embedding, (h, w)), torch.inference_mode():
            masks, scores = generate_single_crop(self.generator, h, w, precision=self.precision)
        return paint_masks(masks, scores, valid, self.min_region_area, "sam")


class FelzenszwalbRegions:
    """Graph-based superpixels of the tile's pixels (:func:`felzenszwalb_regions`); ignores the embedding."""

    source = "felzenszwalb"
    reads_embedding = False

    def __init__(self, cfg: SegmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor | None, valid: np.ndarray) -> Regions:
        """Regions of one ``(N, H, W)`` 0..1 tile."""
        return felzenszwalb_regions(tile, valid, self.cfg)


class NoRegions:
    """No regions: every tile is classified as a whole (region source ``tiles``)."""

    source = "tiles"
    reads_embedding = False

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor | None, valid: np.ndarray) -> Regions:
        """An empty partition of the tile."""
        return Regions.empty(valid.shape, "tiles")


class RegionMaker(Protocol):
    """Makes the regions of one tile from its stretched pixels and/or its encoder embedding.

    ``reads_embedding``: whether the regions come from the embedding (SAM); makers that do not are
    called with ``None`` when nothing else needs the encoder (:func:`geosam.inference.needs_features`).
    """

    source: str
    reads_embedding: bool

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor | None, valid: np.ndarray) -> Regions:
        """Regions of a tile: ``tile`` (N, H, W) 0..1, ``embedding`` (1, C, h, w), ``valid`` (H, W)."""
        ...


@dataclass
class ChipRegions:
    """One region per encoder chip of a chip model (``--regions chips``, :mod:`geosam.chip_grid`).

    The class map then gives each pixel the class of its chip, pooled over the chip's own features:
    what the training/validation path predicts for a training chip.
    """

    chip: int
    source: str = "chips"
    reads_embedding: bool = False

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor | None, valid: np.ndarray) -> Regions:
        """Regions of a tile's read window (whole chips, starting on the scene's chip grid)."""
        from geosam.chip_grid import chip_regions

        labels = chip_regions(valid, self.chip)
        n = int(labels.max()) if labels.size else 0
        nan = np.full(n, np.nan, np.float32)
        return Regions(labels, nan, nan.copy(), "chips")


def region_maker(
    source: str, sam: Sam | None, cfg: SegmentConfig, *, chip_size: int | None = None, precision: str = "fp32"
) -> RegionMaker:
    """The region maker for a resolved region source (``sam``, ``felzenszwalb``, ``tiles``, ``chips``).

    Built once per scene; ``chips`` (one region per encoder chip, :mod:`geosam.chip_grid`) needs the
    scene's ``chip_size``.

    ``precision`` is the SAM mask decoder's (:func:`generate_single_crop`).

    Raises:
        ValueError: ``sam`` without a SAM model, ``chips`` without a chip size, or an unknown source.
    """
    if source == "sam":
        if sam is None:
            raise ValueError("region source 'sam' needs a SAM model")
        return SamRegions(sam, cfg, precision=precision)
    if source == "felzenszwalb":
        return FelzenszwalbRegions(cfg)
    if source == "tiles":
        return NoRegions()
    if source == "chips":
        if chip_size is None:
            raise ValueError("region source 'chips' needs the chip size")
        return ChipRegions(chip_size)
    raise ValueError(f"unknown region source {source!r}")


def sam_regions(sam: Sam, embedding: torch.Tensor, valid: np.ndarray, cfg: SegmentConfig) -> Regions:
    """SAM automatic masks for one tile from its precomputed image embedding (one-off :class:`SamRegions`).

    Args:
        sam: A ``segment_anything.modeling.Sam`` whose encoder input size equals the tile size.
        embedding: ``(1, C, h, w)`` tensor from ``sam.image_encoder`` (or a classifier sharing it).
        valid: ``(H, W)`` valid pixels of the tile (``H, W`` = the encoder input size).
        cfg: Generator thresholds (segment-anything's argument names).
    """
    return SamRegions(sam, cfg)(np.zeros((0, *valid.shape), np.float32), embedding, valid)


def mask_generator(sam: Sam, cfg: SegmentConfig) -> SamAutomaticMaskGenerator:
    """segment-anything's ``SamAutomaticMaskGenerator`` with ``cfg``'s thresholds; one crop, binary masks."""
    from segment_anything import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(
        sam,
        points_per_side=cfg.points_per_side,
        points_per_batch=cfg.points_per_batch,
        pred_iou_thresh=cfg.pred_iou_thresh,
        stability_score_thresh=cfg.stability_score_thresh,
        stability_score_offset=cfg.stability_score_offset,
        box_nms_thresh=cfg.box_nms_thresh,
        crop_n_layers=0,
        min_mask_region_area=0,
        output_mode="binary_mask",
    )


def felzenszwalb_regions(image: np.ndarray, valid: np.ndarray, cfg: SegmentConfig) -> Regions:
    """Graph-based superpixels of a ``(N, H, W)`` 0..1 tile (scikit-image ``felzenszwalb``).

    ``scale``/``sigma``/``min_size`` come from ``cfg.felzenszwalb_*``. Regions get NaN SAM scores.
    """
    from skimage.segmentation import felzenszwalb

    if not valid.any():
        return Regions.empty(valid.shape, "felzenszwalb")
    img = np.moveaxis(np.asarray(image, dtype=np.float32), 0, -1)
    with warnings.catch_warnings():
        # scikit-image warns about any image of more than 4 channels even with channel_axis given;
        # multispectral tiles are intended (and the warning would reach users' terminals)
        warnings.filterwarnings("ignore", "Got image with third dimension", RuntimeWarning)
        labels0 = felzenszwalb(
            img,
            scale=cfg.felzenszwalb_scale,
            sigma=cfg.felzenszwalb_sigma,
            min_size=cfg.felzenszwalb_min_size,
            channel_axis=-1,
        )
    seg = labels0.astype(np.int32) + 1
    seg[~valid] = 0
    # split labels that nodata cut into pieces? keep: a superpixel is one region even if split by nodata
    counts = np.bincount(seg.ravel())
    keep = np.flatnonzero(counts >= max(1, cfg.min_region_area))
    keep = keep[keep > 0]
    remap = np.zeros(len(counts), np.int32)
    remap[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    labels = remap[seg]
    nan = np.full(len(keep), np.nan, np.float32)
    return Regions(labels, nan, nan.copy(), "felzenszwalb")
