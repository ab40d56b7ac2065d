"""Pool an encoder feature map over tiles and regions (pure torch, no I/O).

Region masks are given at pixel resolution; they are reduced to the feature grid by *area* averaging,
so each feature cell is weighted by the fraction of its pixels inside the region. A region of even one
pixel therefore has a non-zero weight somewhere, and pooling a mask that covers the whole tile equals
plain mean pooling (tile pooling is the special case "region = valid pixels").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mask_weights", "pool_regions", "pool_tile"]


def mask_weights(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Reduce ``(K, H, W)`` masks (bool or 0..1) to ``(K, h, w)`` area weights on the feature grid."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (K, H, W), got shape {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *grid), dtype=torch.float32)
    m = masks.to(torch.float32)[None]
    if tuple(m.shape[-2:]) == tuple(grid):
        return m[0]
    return F.adaptive_avg_pool2d(m, grid)[0]


def pool_regions(features: torch.Tensor, weights: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Weighted mean of a ``(C, h, w)`` feature map under each of ``K`` weight maps; returns ``(K, C)``.

    Regions with zero total weight get a zero vector (callers should not pass empty regions).
    """
    if features.ndim != 3 or weights.ndim != 3 or features.shape[1:] != weights.shape[1:]:
        raise ValueError(
            f"features (C, h, w) and weights (K, h, w) must share h, w; got {tuple(features.shape)} "
            f"and {tuple(weights.shape)}"
        )
    w = weights.flatten(1).to(features.dtype)  # (K, hw)
    f = features.flatten(1)  # (C, hw)
    total = w.sum(dim=1, keepdim=True)
    return (w @ f.T) / total.clamp_min(eps)


def pool_tile(features: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of a ``(B, C, h, w)`` feature map over valid pixels; returns ``(B, C)``.

    Args:
        features: Encoder output.
        valid: Optional ``(B, H, W)`` pixel validity (nodata excluded); ``None`` means all valid.
    """
    if valid is None:
        return features.mean(dim=(2, 3))
    out = []
    for b in range(features.shape[0]):
        w = mask_weights(valid[b : b + 1], (features.shape[2], features.shape[3]))
        out.append(pool_regions(features[b], w)[0])
    return torch.stack(out)
