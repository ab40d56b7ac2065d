"""Regions of a tile: SAM automatic masks from a precomputed embedding, or an honest fallback.

``sam_regions`` runs segment-anything's own ``SamAutomaticMaskGenerator`` (its point grid, batching,
predicted-IoU and stability-score filters and box NMS, with its argument names and defaults) on an image
embedding the caller has already computed, so the encoder runs once per tile and the same embedding
also feeds the classifier. Only single-crop generation is supported (``crop_n_layers=0``): extra crop
layers would need new encoder passes. :func:`generate_single_crop` is that generator's single-crop path
without its run-length-encoding round trip (same masks, scores and order).

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from geosam.config import SegmentConfig

if TYPE_CHECKING:
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.modeling import Sam

__all__ = [
    "FelzenszwalbRegions",
    "NoRegions",
    "RegionMaker",
    "Regions",
    "SamRegions",
    "felzenszwalb_regions",
    "generate_single_crop",
    "keep_masks_on_device",
    "mask_generator",
    "pack_bits",
    "paint_masks",
    "region_maker",
    "sam_regions",
    "unpack_bits",
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
    h, w = valid.shape
    canvas = np.zeros((h, w), np.int32)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for rank, i in enumerate(order, start=1):
        canvas[masks[i]] = rank
    canvas[~valid] = 0
    counts = np.bincount(canvas.ravel(), minlength=len(order) + 1)
    keep = [r for r in range(1, len(order) + 1) if counts[r] >= max(1, min_area)]
    remap = np.zeros(len(order) + 1, np.int32)
    remap[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    labels = remap[canvas]
    kept = [order[r - 1] for r in keep]
    iou = np.array([scores[i][0] for i in kept], np.float32)
    stab = np.array([scores[i][1] for i in kept], np.float32)
    return Regions(labels, iou, stab, source)


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

    def __init__(self, sam: Sam, cfg: SegmentConfig, *, precision: str = "fp32") -> None:
        self.generator = mask_generator(sam, cfg)
        self.min_region_area = cfg.min_region_area
        self.precision = precision

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor, valid: np.ndarray) -> Regions:
        """Regions of one tile.

        Args:
            tile: ``(N, H, W)`` stretched pixels (unused: the masks come from the embedding).
            embedding: ``(1, C, h, w)`` tensor from ``sam.image_encoder`` (or a classifier sharing it).
            valid: ``(H, W)`` valid pixels of the tile (``H, W`` = the encoder input size).
        """
        import torch

        from geosam.models.sam import predictor_embedding

        h, w = valid.shape
        with predictor_embedding(self.generator.predictor, embedding, (h, w)), torch.inference_mode():
            masks, scores = generate_single_crop(self.generator, h, w, precision=self.precision)
        return paint_masks(masks, scores, valid, self.min_region_area, "sam")


class FelzenszwalbRegions:
    """Graph-based superpixels of the tile's pixels (:func:`felzenszwalb_regions`); ignores the embedding."""

    source = "felzenszwalb"

    def __init__(self, cfg: SegmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor, valid: np.ndarray) -> Regions:
        """Regions of one ``(N, H, W)`` 0..1 tile."""
        return felzenszwalb_regions(tile, valid, self.cfg)


class NoRegions:
    """No regions: every tile is classified as a whole (region source ``tiles``)."""

    source = "tiles"

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor, valid: np.ndarray) -> Regions:
        """An empty partition of the tile."""
        return Regions.empty(valid.shape, "tiles")


class RegionMaker(Protocol):
    """Makes the regions of one tile from its stretched pixels and/or its encoder embedding."""

    source: str

    def __call__(self, tile: np.ndarray, embedding: torch.Tensor, valid: np.ndarray) -> Regions:
        """Regions of a tile: ``tile`` (N, H, W) 0..1, ``embedding`` (1, C, h, w), ``valid`` (H, W)."""
        ...


def region_maker(source: str, sam: Sam | None, cfg: SegmentConfig, *, precision: str = "fp32") -> RegionMaker:
    """The region maker for a resolved region source (``sam``, ``felzenszwalb`` or ``tiles``), built once.

    ``precision`` is the SAM mask decoder's (:func:`generate_single_crop`).

    Raises:
        ValueError: ``sam`` without a SAM model, or an unknown source.
    """
    if source == "sam":
        if sam is None:
            raise ValueError("region source 'sam' needs a SAM model")
        return SamRegions(sam, cfg, precision=precision)
    if source == "felzenszwalb":
        return FelzenszwalbRegions(cfg)
    if source == "tiles":
        return NoRegions()
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


#: Memory the SAM mask decoder may use per call on a CPU (bytes): ViT-B's decoder at 1024 px needs about
#: 32 MB per prompt (the embedding repeated per prompt through the two-way transformer, the upscaled
#: mask features), so 16 prompts per call. Measured with the CLI's allocator settings: 16 prompts
#: 466 MB, 32 prompts 1,042 MB, 64 (segment-anything's default) 1.8 GB above the weights, at the same
#: CPU time per tile (``docs/performance.md``).
CPU_DECODER_BYTES = 2**29
#: Prompts whose full-resolution logits are post-processed together (upsampling, stability score,
#: thresholding): 3 masks per prompt, float32, at the tile size.
POSTPROCESS_PROMPTS = 4


def decoder_bytes_per_prompt(channels: int, grid: tuple[int, int]) -> int:
    """Estimated peak bytes of SAM's mask decoder per prompt: 8 float32 copies of the ``(C, h, w)`` embedding.

    ViT-B at 1024 px (``C = 256``, 64 x 64): 32 MiB per prompt, an upper bound of what was measured
    (16 prompts 466-685 MB, 32 prompts 980-1,042 MB, 64 prompts 1.8 GB above the weights).
    """
    return 8 * channels * grid[0] * grid[1] * 4


def prompts_per_call(points_per_batch: int, n_points: int, embedding: torch.Tensor) -> int:
    """How many point prompts the mask decoder takes per call on ``embedding``'s device.

    On a CPU, ``points_per_batch`` lowered to what fits :data:`CPU_DECODER_BYTES`; on a GPU, as many
    prompts of the grid as fit half of the device's free memory (at least ``points_per_batch`` when
    that fits), since large batches keep a GPU busy. The masks do not depend on it: every prompt is
    decoded on its own and NMS runs once over all of them.

    Args:
        points_per_batch: segment-anything's ``points_per_batch``.
        n_points: Prompts in the grid.
        embedding: ``(1, C, h, w)`` image embedding.
    """
    import torch

    c, gh, gw = (int(v) for v in embedding.shape[1:4])
    per = decoder_bytes_per_prompt(c, (gh, gw))
    if embedding.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(embedding.device)
        fit = max(1, (free // 2) // per)
        return int(max(1, min(n_points, max(fit, 1))))
    return int(max(1, min(points_per_batch, CPU_DECODER_BYTES // per)))


_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def keep_masks_on_device(device: torch.device) -> bool:
    """Whether candidate masks are packed and filtered on ``device`` (GPUs) instead of on the host."""
    return device.type != "cpu"


def pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """``np.packbits(masks, axis=1)`` on the tensor's device: ``(n, L)`` bool -> ``(n, ceil(L / 8))`` uint8.

    Bits are big-endian within each byte, as numpy's; the last byte is zero-padded.
    """
    import torch
    import torch.nn.functional as F

    n, length = masks.shape
    pad = (-length) % 8
    x = masks.to(torch.uint8)
    if pad:
        x = F.pad(x, (0, pad))
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=masks.device)
    return (x.view(n, -1, 8) * weights).sum(dim=2, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: ``(n, B)`` uint8 -> ``(n, length)`` bool on the same device."""
    import torch

    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) & weights) != 0
    return bits.reshape(packed.shape[0], -1)[:, :length]


def generate_single_crop(
    gen: SamAutomaticMaskGenerator, h: int, w: int, *, precision: str = "fp32"
) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """segment-anything's ``generate`` for ``crop_n_layers=0`` and ``min_mask_region_area=0``, minus RLE.

    The same steps, functions and order as segment-anything's ``_process_crop``/``_process_batch``: the
    point grid in batches, three masks per point, the predicted-IoU filter, stability score and its
    filter, thresholding, boxes, the crop-edge filter, and box NMS over all batches. segment-anything
    then run-length encodes every surviving mask of every batch, deep-copies the RLE lists when it
    concatenates batches, and decodes the NMS survivors back to arrays for
    ``output_mode="binary_mask"``; on a 2-core CPU that round trip costs more than the mask decoder
    itself (noisy masks have long RLEs). Here masks are kept bit-packed (1 bit per pixel: 128 KiB for a
    1024 px tile; on a GPU packed on the GPU by :func:`pack_bits`, so candidates never cross to the
    host) and only the NMS survivors are unpacked. The result equals ``generate``'s masks and
    scores, in its order (``tests/test_segment.py`` compares them).

    Memory: the decoder takes :func:`prompts_per_call` prompts per call (what ``SamPredictor.predict_torch``
    does for one batch: prompt encoder, mask decoder, ``postprocess_masks``), and the full-resolution
    logits are post-processed :data:`POSTPROCESS_PROMPTS` prompts at a time, so a 1024 px tile never
    holds 64 prompts x 3 full-size float masks (800 MB) at once. Neither changes any mask: each prompt
    is decoded and post-processed on its own.

    Precision: with ``bf16``/``fp16`` the prompt encoder and mask decoder run under autocast (what a
    GPU is fast at); their low-resolution logits and scores are cast to float32 before the upsampling,
    thresholds and NMS, which always run in float32.

    Args:
        gen: A generator whose ``predictor`` has the tile's embedding set.
        h: Tile height in pixels (the encoder input).
        w: Tile width in pixels.
        precision: ``fp32`` (default), ``bf16`` or ``fp16`` for the decoder.

    Returns:
        Boolean ``(h, w)`` masks and their ``(predicted_iou, stability_score)``.
    """
    import torch
    from segment_anything.utils.amg import (
        batch_iterator,
        batched_mask_to_box,
        calculate_stability_score,
        is_box_near_crop_edge,
    )
    from torchvision.ops.boxes import batched_nms

    from geosam.encode import autocast_context

    pred = gen.predictor
    model = pred.model
    threshold = model.mask_threshold
    crop_box = [0, 0, w, h]
    points_for_image = gen.point_grids[0] * np.array((h, w))[None, ::-1]
    per_call = prompts_per_call(gen.points_per_batch, len(points_for_image), pred.features)
    on_gpu = keep_masks_on_device(pred.features.device)
    packed: list[np.ndarray] = []
    packed_dev: list[torch.Tensor] = []  # on a GPU the masks stay there, packed, until NMS
    ious, stabs, boxes = [], [], []
    dense_pe = model.prompt_encoder.get_dense_pe()
    for (points,) in batch_iterator(per_call, points_for_image):
        in_points = torch.as_tensor(pred.transform.apply_coords(points, (h, w)), device=pred.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        # SamPredictor.predict_torch, with the upsampling to the tile deferred to the chunks below
        with autocast_context(pred.features.device, precision):
            sparse, dense = model.prompt_encoder(
                points=(in_points[:, None, :], in_labels[:, None]), boxes=None, masks=None
            )
            low_res, iou_preds = model.mask_decoder(
                image_embeddings=pred.features,
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
        low_res, iou_preds = low_res.float(), iou_preds.float()
        del sparse, dense
        for c in range(0, len(low_res), POSTPROCESS_PROMPTS):
            logits = model.postprocess_masks(
                low_res[c : c + POSTPROCESS_PROMPTS], pred.input_size, pred.original_size
            ).flatten(0, 1)
            iou = iou_preds[c : c + POSTPROCESS_PROMPTS].flatten(0, 1)
            if gen.pred_iou_thresh > 0.0:
                keep = iou > gen.pred_iou_thresh
                logits, iou = logits[keep], iou[keep]
            stab = calculate_stability_score(logits, threshold, gen.stability_score_offset)
            if gen.stability_score_thresh > 0.0:
                keep = stab >= gen.stability_score_thresh
                logits, iou, stab = logits[keep], iou[keep], stab[keep]
            binary = logits > threshold
            del logits
            box = batched_mask_to_box(binary)
            keep = ~is_box_near_crop_edge(box, crop_box, [0, 0, w, h])
            if not torch.all(keep):
                binary, iou, stab, box = binary[keep], iou[keep], stab[keep], box[keep]
            if on_gpu:
                packed_dev.append(pack_bits(binary.reshape(len(binary), h * w)))
            else:
                packed.extend(np.packbits(binary.cpu().numpy().reshape(len(binary), h * w), axis=1))
            ious.append(iou.cpu())
            stabs.append(stab.cpu())
            boxes.append(box.cpu())
        del low_res, iou_preds
    if not packed and not any(len(p) for p in packed_dev):
        return [], []
    iou_all, stab_all, box_all = torch.cat(ious), torch.cat(stabs), torch.cat(boxes)
    order = batched_nms(
        box_all.float(), iou_all, torch.zeros(len(box_all)), iou_threshold=gen.box_nms_thresh
    ).tolist()
    if on_gpu:
        kept = torch.cat(packed_dev)[torch.as_tensor(order, dtype=torch.long, device=pred.device)]
        bits = unpack_bits(kept, h * w).cpu().numpy()
        masks = [bits[j].reshape(h, w) for j in range(len(order))]
    else:
        masks = [np.unpackbits(packed[i], count=h * w).reshape(h, w).astype(bool) for i in order]
    scores = [(float(iou_all[i]), float(stab_all[i])) for i in order]
    return masks, scores


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
