"""geosam's RLE-free single-crop mask generation equals segment-anything's own generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor

from geosam.config import SegmentConfig
from geosam.models.sam import build_sam
from geosam.models.sam_config import SamConfig
from geosam.segment import generate_single_crop, sam_regions


def _image(size: int) -> np.ndarray:
    """Blocky RGB uint8 image: large uniform patches, so masks have real structure."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((16, 16, 1), np.uint8))


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
    image = _image(128)
    kwargs = {
        "points_per_side": 6,
        "points_per_batch": 10,  # several batches, the last one partial
        "pred_iou_thresh": pred_iou,
        "stability_score_thresh": stability,
        "box_nms_thresh": nms,
        "crop_n_layers": 0,
        "min_mask_region_area": 0,
        "output_mode": "binary_mask",
    }
    anns = SamAutomaticMaskGenerator(sam, **kwargs).generate(image)
    gen = SamAutomaticMaskGenerator(sam, **kwargs)
    gen.predictor = SamPredictor(sam)
    with torch.inference_mode():
        gen.predictor.set_image(image)
        masks, scores = generate_single_crop(gen, 128, 128)
    assert (len(anns) > 0) == some and len(masks) == len(anns)
    for ann, mask, (iou, stab) in zip(anns, masks, scores, strict=True):
        assert mask.dtype == bool and mask.shape == (128, 128)
        np.testing.assert_array_equal(mask, ann["segmentation"])
        assert iou == pytest.approx(ann["predicted_iou"], abs=1e-6)
        assert stab == pytest.approx(ann["stability_score"], abs=1e-6)


def test_sam_regions_from_embedding_partition_the_valid_pixels():
    torch.manual_seed(0)
    sam = build_sam(SamConfig.preset("tiny", img_size=128)).eval()
    x = torch.from_numpy(_image(128)).permute(2, 0, 1)[None].float()
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
