"""geosam's RLE-free single-crop mask generation equals segment-anything's own generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_masks import assert_same_masks, blocky_image, single_crop_kwargs
from segment_anything import SamAutomaticMaskGenerator, SamPredictor

from geosam.config import SegmentConfig
from geosam.models.sam import build_sam
from geosam.models.sam_config import SamConfig
from geosam.segment import generate_single_crop, sam_regions


@pytest.mark.parametrize(
    ("pred_iou", "stability", "nms", "some"),
    [
        (0.0, 0.0, 0.7, True),
        (0.05, 0.0, 0.7, True),  # the predicted-IoU filter drops part of every batch
        (0.0, 0.0, 0.3, True),
        (0.0, 0.5, 0.7, False),  # random weights: every stability score is 0, nothing survives
    ],
)
def test_generate_single_crop_equals_segment_anything(pred_iou, stability, nms, some):
    torch.manual_seed(0)
    sam = build_sam(SamConfig.preset("tiny", img_size=128)).eval()
    image = blocky_image(128)
    kwargs = single_crop_kwargs(6, 10, pred_iou, stability, nms)  # 10 per batch: the last one partial
    anns = SamAutomaticMaskGenerator(sam, **kwargs).generate(image)
    gen = SamAutomaticMaskGenerator(sam, **kwargs)
    gen.predictor = SamPredictor(sam)
    with torch.inference_mode():
        gen.predictor.set_image(image)
        masks, scores = generate_single_crop(gen, 128, 128)
    assert all(mask.dtype == bool and mask.shape == (128, 128) for mask in masks)
    assert_same_masks(anns, masks, scores, some)


def test_sam_regions_from_embedding_partition_the_valid_pixels():
    torch.manual_seed(0)
    sam = build_sam(SamConfig.preset("tiny", img_size=128)).eval()
    x = torch.from_numpy(blocky_image(128)).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        emb = sam.image_encoder(sam.preprocess(x))
    valid = np.ones((128, 128), bool)
    valid[:, :20] = False
    cfg = SegmentConfig(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_region_area=4)
    regions = sam_regions(sam, emb, valid, cfg)
    assert regions.source == "sam" and regions.count > 0
    assert (regions.labels[~valid] == 0).all()
    counts = np.bincount(regions.labels.ravel(), minlength=regions.count + 1)[1:]
    assert (counts >= 4).all() and regions.labels.max() == regions.count
    assert np.isfinite(regions.predicted_iou).all() and np.isfinite(regions.stability_score).all()
