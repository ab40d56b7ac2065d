"""SAM's automatic masks for one crop, without run-length encoding, in memory-bounded decoder batches.

:func:`generate_single_crop` is segment-anything's ``SamAutomaticMaskGenerator.generate`` for
``crop_n_layers=0`` (the single-crop path geosam uses: the tile is encoded once) minus its RLE round trip.
Its memory is bounded: the mask decoder takes :func:`prompts_per_call` prompts per call (a budget on
a CPU, as many as fit on a GPU) and full-resolution logits are post-processed a few prompts at a time.
Candidate masks are kept bit-packed (:func:`pack_bits`, on the GPU when the model is there) until NMS.
:mod:`geosam.segment` turns the masks into a tile's regions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from segment_anything import SamAutomaticMaskGenerator

__all__ = [
    "CPU_DECODER_BYTES",
    "POSTPROCESS_PROMPTS",
    "decoder_bytes_per_prompt",
    "generate_single_crop",
    "keep_masks_on_device",
    "pack_bits",
    "prompts_per_call",
    "unpack_bits",
]

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
