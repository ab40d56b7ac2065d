"""Classify a tile and its regions from the tile's encoder features (pure: arrays in, arrays out).

Region features are the encoder feature map pooled under each region's mask (area-weighted on the
feature grid, see :mod:`geosam.models.pooling`); the tile feature is the same pooling under all valid
pixels. One head maps both to class probabilities, so a region and a tile that cover the same pixels
get the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from geosam.models.classifier import LandCoverModel

__all__ = ["TileClasses", "classify_tile", "label_weights"]


@dataclass(frozen=True)
class TileClasses:
    """Class probabilities of a tile and of its regions.

    Attributes:
        tile: ``(K,)`` probabilities of the tile (over its valid pixels).
        regions: ``(R, K)`` probabilities of each region (row ``i`` = label ``i + 1``).
    """

    tile: np.ndarray
    regions: np.ndarray


def label_weights(labels: np.ndarray, n_regions: int, grid: tuple[int, int]) -> np.ndarray:
    """Area fraction of each feature cell covered by each region: ``(R, h, w)`` float32.

    Pixel ``(r, c)`` of an ``(H, W)`` label image belongs to cell ``(r * h // H, c * w // W)``; a
    cell's weight for region ``i`` is the share of the cell's pixels labelled ``i + 1``.
    """
    h_px, w_px = labels.shape
    h, w = grid
    rows = (np.arange(h_px) * h // h_px).astype(np.int64)
    cols = (np.arange(w_px) * w // w_px).astype(np.int64)
    cell = (rows[:, None] * w + cols[None, :]).ravel()
    lab = labels.ravel().astype(np.int64)
    counts = np.bincount(lab * (h * w) + cell, minlength=(n_regions + 1) * h * w).reshape(
        n_regions + 1, h * w
    )
    per_cell = np.bincount(cell, minlength=h * w).astype(np.float32)
    return (counts[1:] / np.maximum(per_cell, 1)).astype(np.float32).reshape(n_regions, h, w)


def classify_tile(
    model: LandCoverModel, features: torch.Tensor, valid: np.ndarray, labels: np.ndarray, n_regions: int
) -> TileClasses:
    """Probabilities for one tile and its regions.

    Args:
        model: ``LandCoverModel`` (its ``head`` is used).
        features: ``(C, h, w)`` torch features of the tile.
        valid: ``(H, W)`` valid pixels.
        labels: ``(H, W)`` region labels (0 = none), ``1..n_regions``.
        n_regions: Number of regions.
    """
    import torch

    from geosam.models.pooling import pool_regions

    head = model.head
    if head is None:  # a dense-only model classifies through geosam.dense
        raise ValueError("classify_tile needs a classifier head; this model has only a dense head")
    grid = (int(features.shape[-2]), int(features.shape[-1]))
    with torch.inference_mode():
        vw = torch.from_numpy(label_weights(valid.astype(np.int32), 1, grid)).to(features.device)
        tile_logits = head(pool_regions(features.float(), vw))
        tile = torch.softmax(tile_logits.float(), dim=-1)[0].cpu().numpy()
        k = tile.shape[0]
        if n_regions == 0:
            return TileClasses(tile, np.zeros((0, k), np.float32))
        rw = torch.from_numpy(label_weights(labels, n_regions, grid)).to(features.device)
        logits = head(pool_regions(features.float(), rw))
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return TileClasses(tile.astype(np.float32), probs.astype(np.float32))
