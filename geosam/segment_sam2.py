"""SAM 2 automatic masks for one tile from its precomputed features (one encoder pass per tile).

:func:`generate_single_crop_sam2` is ``sam2``'s ``SAM2AutomaticMaskGenerator.generate`` for one crop
(``crop_n_layers=0``, ``min_mask_region_area=0``, ``use_m2m=False``) without its run-length-encoding
round trip: the same point grid, batches of ``points_per_batch`` prompts through
``SAM2ImagePredictor._predict`` (multimask), the predicted-IoU filter, ``calculate_stability_score``
and its filter, thresholding at ``mask_threshold``, boxes, the crop-edge filter and box NMS, all from
``sam2.utils.amg`` and in the same order; surviving masks are kept bit-packed and only NMS survivors
are unpacked. Masks, scores and order equal ``generate``'s (``tests/test_segment_sam2.py``). This is
:func:`geosam.segment.generate_single_crop` (SAM 1) ported to SAM 2's predictor, which also feeds the
mask decoder two high-resolution feature maps.

:class:`geosam.infer_sam2.Sam2MaskDecoder` holds the SAM 2 model of a run (loaded once per process).
The predictor that drives its decoder keeps the image state in attributes, so each scene gets its own
(built once per scene, not per tile: scenes processed by threads of one worker never share one);
:func:`sam2_regions` installs a tile's features on it (what ``set_image`` would leave) and turns the
masks into a :class:`geosam.segment.Regions` partition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import SegmentConfig
from geosam.segment import Regions, paint_masks

if TYPE_CHECKING:
    from geosam.infer_sam2 import Sam2MaskDecoder

__all__ = ["Sam2Regions", "generate_single_crop_sam2", "sam2_regions"]

#: Logit threshold of a mask: SAM2AutomaticMaskGenerator's ``mask_threshold`` default (0.0), as SAM 1's
#: ``Sam.mask_threshold``; geosam's config has no such option (schema version 2 removed it).
MASK_THRESHOLD = 0.0


def generate_single_crop_sam2(
    predictor: Any, cfg: SegmentConfig, h: int, w: int
) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """SAM 2's automatic masks for a predictor whose tile features are set, without RLE.

    Args:
        predictor: A ``SAM2ImagePredictor`` with ``_features`` and ``_orig_hw`` of the tile set.
        cfg: ``points_per_side``, ``points_per_batch``, ``pred_iou_thresh``, ``stability_score_thresh``,
            ``stability_score_offset`` and ``box_nms_thresh`` (the generator's names).
        h: Tile height in pixels.
        w: Tile width in pixels.

    Returns:
        Boolean ``(h, w)`` masks and their ``(predicted_iou, stability_score)``, in ``generate``'s order.
    """
    import torch
    from torchvision.ops.boxes import batched_nms

    from geosam.models.sam2 import sam2_amg

    amg = sam2_amg()
    crop_box = [0, 0, w, h]
    grid = amg.build_all_layer_point_grids(cfg.points_per_side, 0, 1)[0]
    points_for_image = grid * np.array((h, w))[None, ::-1]
    packed: list[np.ndarray] = []
    ious, stabs, boxes = [], [], []
    for (points,) in amg.batch_iterator(cfg.points_per_batch, points_for_image):
        pts = torch.as_tensor(points, dtype=torch.float32, device=predictor.device)
        in_points = predictor._transforms.transform_coords(pts, normalize=True, orig_hw=(h, w))
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        masks, iou_preds, _low = predictor._predict(
            in_points[:, None, :], in_labels[:, None], multimask_output=True, return_logits=True
        )
        logits, iou = masks.flatten(0, 1), iou_preds.flatten(0, 1)
        del masks, iou_preds, _low
        if cfg.pred_iou_thresh > 0.0:
            keep = iou > cfg.pred_iou_thresh
            logits, iou = logits[keep], iou[keep]
        stab = amg.calculate_stability_score(logits, MASK_THRESHOLD, cfg.stability_score_offset)
        if cfg.stability_score_thresh > 0.0:
            keep = stab >= cfg.stability_score_thresh
            logits, iou, stab = logits[keep], iou[keep], stab[keep]
        binary = logits > MASK_THRESHOLD
        del logits
        box = amg.batched_mask_to_box(binary)
        keep = ~amg.is_box_near_crop_edge(box, crop_box, [0, 0, w, h])
        if not torch.all(keep):
            binary, iou, stab, box = binary[keep], iou[keep], stab[keep], box[keep]
        packed.extend(np.packbits(binary.cpu().numpy().reshape(len(binary), h * w), axis=1))
        ious.append(iou.float().cpu())
        stabs.append(stab.float().cpu())
        boxes.append(box.cpu())
    if not packed:
        return [], []
    iou_all, stab_all, box_all = torch.cat(ious), torch.cat(stabs), torch.cat(boxes)
    order = batched_nms(
        box_all.float(), iou_all, torch.zeros(len(box_all)), iou_threshold=cfg.box_nms_thresh
    ).tolist()
    out_masks = [np.unpackbits(packed[i], count=h * w).reshape(h, w).astype(bool) for i in order]
    scores = [(float(iou_all[i]), float(stab_all[i])) for i in order]
    return out_masks, scores


def sam2_regions(
    decoder: Sam2MaskDecoder, predictor: Any, features: Any, valid: np.ndarray, cfg: SegmentConfig
) -> Regions:
    """SAM 2 automatic masks of one tile from the tile's single encoder pass.

    Args:
        decoder: The run's :class:`~geosam.infer_sam2.Sam2MaskDecoder`.
        predictor: The scene's predictor (``Sam2MaskDecoder.new_predictor``); it holds the tile's
            features only during this call.
        features: The tile's :class:`geosam.models.sam2.Sam2Features` (batch of one).
        valid: ``(H, W)`` valid pixels of the tile.
        cfg: Generator settings.

    Returns:
        A non-overlapping partition (largest masks painted first), ``source`` ``sam2.1``/``sam2``.
    """
    import torch

    from geosam.models.sam2_encoder import decoder_inputs

    h, w = valid.shape
    pred = predictor
    pred.reset_predictor()
    with torch.inference_mode():
        feats = decoder_inputs(decoder.model, features)
        pred._features = {
            "image_embed": feats["image_embed"].float(),
            "high_res_feats": [f.float() for f in feats["high_res_feats"]],
        }
        pred._orig_hw = [(h, w)]
        pred._is_image_set, pred._is_batch = True, False
        try:
            masks, scores = generate_single_crop_sam2(pred, cfg, h, w)
        finally:
            pred.reset_predictor()
    return paint_masks(masks, scores, valid, cfg.min_region_area, decoder.region_source)


class Sam2Regions:
    """A :class:`~geosam.segment.RegionMaker` for SAM 2 regions from the decoder's own encoder pass.

    Used when the classifier has an encoder of its own (the packaged default model): each call encodes
    the tile's red, green and blue bands once with SAM 2's Hiera (``Sam2MaskDecoder.own_features``)
    and makes its masks; the classifier's embedding is not used.

    Args:
        decoder: The run's decoder (``shared`` False).
        cfg: Generator settings and ``min_region_area``.
        fill: Per-band value put into invalid pixels before encoding (the classifier's mean).
        precision: Autocast precision of the Hiera pass (``fp32``, ``bf16``, ``fp16``).
    """

    def __init__(
        self, decoder: Sam2MaskDecoder, cfg: SegmentConfig, fill: np.ndarray, precision: str
    ) -> None:
        self.decoder = decoder
        self.predictor = decoder.new_predictor()
        self.cfg = cfg
        self.fill = np.asarray(fill, np.float32)
        self.precision = precision
        self.source = decoder.region_source
        self.reads_embedding = False  # its own Hiera pass encodes the tile

    def __call__(self, tile: np.ndarray, embedding: Any, valid: np.ndarray) -> Regions:
        """Regions of a ``(N, H, W)`` stretched 0..1 tile (``embedding`` unused)."""
        import torch

        from geosam.encode import autocast_context, fill_invalid

        device = self.predictor.device
        x = torch.from_numpy(fill_invalid(tile, valid, self.fill))[None].to(device)
        with autocast_context(device, self.precision):
            feats = self.decoder.own_features(x)
        return sam2_regions(self.decoder, self.predictor, feats, valid, self.cfg)
