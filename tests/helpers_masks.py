"""What the SAM 1 and SAM 2 mask-generation tests share: a blocky image, and the check that geosam's
single-crop masks are the upstream automatic mask generator's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest


def blocky_image(size: int, block: int = 16) -> np.ndarray:
    """``(size, size, 3)`` uint8 RGB of uniform ``block`` px patches (seed 3): masks with real structure."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (size // block, size // block, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((block, block, 1), np.uint8))


def single_crop_kwargs(
    points_per_side: int, points_per_batch: int, pred_iou: float, stability: float, nms: float
) -> dict[str, Any]:
    """Upstream automatic mask generator settings for one crop, no small-region removal, binary masks."""
    return {
        "points_per_side": points_per_side,
        "points_per_batch": points_per_batch,
        "pred_iou_thresh": pred_iou,
        "stability_score_thresh": stability,
        "box_nms_thresh": nms,
        "crop_n_layers": 0,
        "min_mask_region_area": 0,
        "output_mode": "binary_mask",
    }


def assert_same_masks(
    anns: Sequence[dict[str, Any]],
    masks: Sequence[np.ndarray],
    scores: Sequence[tuple[float, float]],
    some: bool,
) -> None:
    """geosam's ``masks`` and their ``(predicted_iou, stability_score)`` are upstream's ``anns``, in order.

    ``some``: whether upstream is expected to keep any mask at all.
    """
    assert (len(anns) > 0) == some and len(masks) == len(anns)
    for ann, mask, (iou, stab) in zip(anns, masks, scores, strict=True):
        np.testing.assert_array_equal(mask, ann["segmentation"])
        assert iou == pytest.approx(ann["predicted_iou"], abs=1e-6)
        assert stab == pytest.approx(ann["stability_score"], abs=1e-6)
