"""Query-chunked global attention equals segment-anything's attention (values, gradients, weights)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from segment_anything.modeling.image_encoder import Attention

from geosam.models.attention import QueryChunkedAttention, chunk_global_attention
from geosam.models.sam import build_encoder, build_sam
from geosam.models.sam_config import SamConfig


def _attention(dim: int, heads: int, size: int, rel_pos: bool, seed: int) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(dim, heads, use_rel_pos=rel_pos, input_size=(size, size))
    if rel_pos:  # segment-anything zero-initialises the tables: make them matter
        torch.nn.init.normal_(attn.rel_pos_h, std=0.5)
        torch.nn.init.normal_(attn.rel_pos_w, std=0.5)
    return attn.eval()


@settings(max_examples=25, deadline=None)
@given(
    heads=st.sampled_from([1, 2, 4]),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    batch=st.integers(1, 2),
    rows_budget=st.integers(1, 10),
    rel_pos=st.booleans(),
)
def test_equals_segment_anything_for_any_block_size(heads, h, w, batch, rows_budget, rel_pos):
    dim = 8 * heads
    size = max(h, w)
    ref = _attention(dim, heads, size, rel_pos, seed=h * 31 + w)
    x = torch.randn(batch, h, w, dim)
    # max_bytes from a number of query rows per block: 1 row up to more than the whole grid
    per_row = batch * heads * w * (h * w) * 4
    chunked = QueryChunkedAttention.from_attention(ref, max_bytes=rows_budget * per_row)
    assert chunked.rows_per_block(batch * heads, h, w, 4) == min(h, rows_budget)
    with torch.no_grad():
        torch.testing.assert_close(chunked(x), ref(x), rtol=1e-5, atol=1e-6)


def test_gradients_equal():
    ref = _attention(16, 2, 6, True, seed=1).train()
    chunked = QueryChunkedAttention.from_attention(ref, max_bytes=1)  # one query row per block
    x = torch.randn(2, 6, 6, 16)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref(xa).square().sum().backward()
    grads_ref = {n: p.grad.clone() for n, p in ref.named_parameters()}
    ref.zero_grad()
    chunked(xb).square().sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)
    for n, p in chunked.named_parameters():
        torch.testing.assert_close(p.grad, grads_ref[n], rtol=1e-5, atol=1e-5)


def test_parameters_shared_and_state_dict_unchanged():
    ref = _attention(16, 2, 5, True, seed=2)
    chunked = QueryChunkedAttention.from_attention(ref)
    assert chunked.qkv is ref.qkv and chunked.rel_pos_h is ref.rel_pos_h
    assert chunked.state_dict().keys() == ref.state_dict().keys()


def test_build_encoder_swaps_only_global_blocks_and_matches_segment_anything():
    from segment_anything.modeling import ImageEncoderViT

    cfg = SamConfig.preset("tiny", img_size=128)
    torch.manual_seed(0)
    ours = build_encoder(cfg)
    kinds = [type(b.attn) for b in ours.blocks]
    for i in range(len(ours.blocks)):
        expected = QueryChunkedAttention if i in cfg.global_attn_indexes else Attention
        assert kinds[i] is expected, (i, kinds[i])
    # a plain segment-anything encoder with the same weights gives the same features
    from functools import partial

    plain = ImageEncoderViT(
        depth=cfg.depth,
        embed_dim=cfg.embed_dim,
        img_size=cfg.img_size,
        mlp_ratio=cfg.mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg.num_heads,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=cfg.global_attn_indexes,
        window_size=cfg.window_size,
        out_chans=cfg.out_chans,
    ).eval()
    for n, p in ours.named_parameters():
        if "rel_pos" in n:
            torch.nn.init.normal_(p, std=0.3)
    plain.load_state_dict(ours.state_dict(), strict=True)
    for blk in ours.blocks:
        if isinstance(blk.attn, QueryChunkedAttention):
            blk.attn.max_bytes = 1  # force one query row per block
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), plain(x), rtol=1e-4, atol=1e-5)
    assert chunk_global_attention(ours) == 0  # already swapped


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_sam_built_by_geosam_loads_its_own_state_dict(preset):
    sam = build_sam(SamConfig.preset(preset))
    sd = sam.state_dict()
    assert any(".attn.rel_pos_h" in k for k in sd)
    sam.load_state_dict(sd, strict=True)
