"""Memory-bounded global attention for SAM's ViT image encoder (same weights, same result).

SAM's ``ImageEncoderViT`` runs a few blocks with global attention (ViT-B: blocks 2, 5, 8 and 11). Its
``Attention.forward`` materialises the whole attention map of every head, ``(heads, L, L)`` float32
with ``L = (input / 16)^2`` tokens: 768 MiB for ViT-B at 1024 px, and ``add_decomposed_rel_pos`` adds
the relative-position terms out of place, so two more maps of that size exist at once before the
softmax makes a third. That is the encoder's peak memory (about 2.3 GiB on top of the weights).

:class:`QueryChunkedAttention` computes exactly the same function query row by query row: softmax
normalises each query's row on its own, so splitting the queries into blocks (``rows`` of the token
grid at a time) and adding the relative-position terms in place changes nothing but the memory,
which is bounded by ``max_bytes`` per block (default 128 MiB). The arithmetic per element is the same
as segment-anything's (``q * scale @ k^T``, then ``+ rel_h``, then ``+ rel_w``, softmax, ``@ v``); only
the matrix products run on row blocks. The memory-efficient attention kernels of
``torch.nn.functional.scaled_dot_product_attention`` would need the relative-position bias as a full
``(heads, L, L)`` mask, which is the very tensor being avoided, hence this module.

:func:`chunk_global_attention` swaps the global blocks' attention modules of an encoder for this one,
sharing their parameters (state-dict keys are unchanged). Windowed blocks (14 x 14 tokens) are small
and keep segment-anything's module. Method: Rabe & Staats, "Self-attention does not need O(n^2)
memory" (2021), query chunking without the key-side streaming; Li et al., "Exploring Plain Vision
Transformer Backbones for Object Detection" (ViTDet, 2022) for the decomposed relative positions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from segment_anything.modeling import ImageEncoderViT

__all__ = ["DEFAULT_MAX_BYTES", "QueryChunkedAttention", "chunk_global_attention"]

DEFAULT_MAX_BYTES = 128 * 2**20
"""Largest attention-map block (bytes) :class:`QueryChunkedAttention` materialises at once."""


def _attention_base() -> type[nn.Module]:
    from segment_anything.modeling.image_encoder import Attention

    return cast("type[nn.Module]", Attention)


class QueryChunkedAttention(nn.Module):
    """segment-anything's ``Attention`` (with decomposed relative positions) over blocks of query rows.

    Built from an existing module by :meth:`from_attention` (parameters shared, not copied). The input
    and output are those of ``Attention.forward``: ``(B, H, W, C)`` float tensors.

    Attributes:
        max_bytes: Upper bound on the attention-map block in bytes (at least one query row is used).
    """

    rel_pos_h: nn.Parameter
    rel_pos_w: nn.Parameter

    def __init__(self, attn: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__()
        self.num_heads: int = int(attn.num_heads)
        self.scale: float = float(attn.scale)
        self.qkv: nn.Linear = attn.qkv
        self.proj: nn.Linear = attn.proj
        self.use_rel_pos: bool = bool(attn.use_rel_pos)
        if self.use_rel_pos:
            self.rel_pos_h = attn.rel_pos_h
            self.rel_pos_w = attn.rel_pos_w
        self.max_bytes = int(max_bytes)

    @classmethod
    def from_attention(cls, attn: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> QueryChunkedAttention:
        """Wrap a segment-anything ``Attention`` (its ``qkv``, ``proj`` and relative-position tables)."""
        return cls(attn, max_bytes)

    def rows_per_block(self, batch_heads: int, h: int, w: int, itemsize: int) -> int:
        """Query rows of the ``h x w`` token grid per block so that a block's map fits ``max_bytes``."""
        per_row = batch_heads * w * (h * w) * itemsize
        return max(1, min(h, self.max_bytes // max(1, per_row)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Global attention of ``x`` ``(B, H, W, C)`` -> ``(B, H, W, C)``, query rows in blocks."""
        from segment_anything.modeling.image_encoder import get_rel_pos

        b, h, w, _ = x.shape
        n = h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.num_heads, n, -1).unbind(0)
        bh, _, dim = q.shape
        k_t = k.transpose(-2, -1)
        rows = self.rows_per_block(bh, h, w, q.element_size())
        if self.use_rel_pos:
            rh = get_rel_pos(h, h, self.rel_pos_h)  # (h, h, dim)
            rw = get_rel_pos(w, w, self.rel_pos_w)  # (w, w, dim)
        out = q.new_empty((bh, n, v.shape[-1]))
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            qb = q[:, r0 * w : r1 * w]
            attn = (qb * self.scale) @ k_t  # (bh, m, n)
            if self.use_rel_pos:
                r_q = qb.reshape(bh, r1 - r0, w, dim)
                rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh[r0:r1])
                rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
                grid = attn.view(bh, r1 - r0, w, h, w)
                grid.add_(rel_h[:, :, :, :, None])
                grid.add_(rel_w[:, :, :, None, :])
            attn = attn.softmax(dim=-1)
            out[:, r0 * w : r1 * w] = attn @ v
            del attn
        y = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        out_proj: torch.Tensor = self.proj(y)
        return out_proj


def chunk_global_attention(encoder: ImageEncoderViT, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Swap the attention of ``encoder``'s global blocks for :class:`QueryChunkedAttention`, in place.

    Parameters are shared, so the state dict (keys, tensors) is unchanged and loading weights before or
    after works the same. Blocks already swapped are left alone.

    Returns:
        The number of blocks swapped.
    """
    base = _attention_base()
    swapped = 0
    for blk in encoder.blocks:
        if getattr(blk, "window_size", 0) == 0 and isinstance(blk.attn, base):
            blk.attn = QueryChunkedAttention.from_attention(blk.attn, max_bytes)
            swapped += 1
    return swapped
