"""Where geosam's SAM runs used to spend memory: one copy of the weights, bounded decoder batches.

The peak-RSS comparison with segment-geospatial is ``benchmarks/bench_vs_samgeo.py``; these tests pin the
mechanisms behind it: the SAM checkpoint is read once (memory-mapped) and its image encoder is shared by
the masks and the classifier, and the mask decoder takes as many prompts per call as its memory budget
allows, without changing a single mask.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geosam.config import RunConfig
from geosam.models import sam as sam_mod
from geosam.models.sam_config import SamConfig
from geosam.sam_masks import (
    CPU_DECODER_BYTES,
    decoder_bytes_per_prompt,
    generate_single_crop,
    prompts_per_call,
)
from geosam.segment import mask_generator
from geosam.testing_models import make_tiny_bundle, make_tiny_sam_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-sam")
    ckpt = make_tiny_sam_checkpoint(root / "sam_tiny.pth", img_size=128)
    bundle = make_tiny_bundle(root / "bundle", sam_checkpoint=ckpt, tile_size=128)
    return ckpt, bundle


def test_checkpoint_read_once_and_encoder_shared(tiny, monkeypatch):
    from geosam.runtime import load_models

    ckpt, bundle = tiny
    reads = []
    real = sam_mod.load_state_dict

    def counting(path, **kw):
        reads.append(path)
        return real(path, **kw)

    monkeypatch.setattr(sam_mod, "load_state_dict", counting)
    cfg = RunConfig.model_validate({"tiling": {"tile_size": 128}, "segment": {"source": "sam"}})
    models = load_models(bundle, ckpt, cfg)
    assert len(reads) == 1
    assert models.sam.image_encoder is models.bundle.model.encoder
    # the shared encoder holds the checkpoint's weights
    state = real(ckpt)
    for k, v in models.bundle.model.encoder.state_dict().items():
        torch.testing.assert_close(v, state[f"image_encoder.{k}"])


def test_legacy_checkpoints_load_without_mmap(tmp_path):
    from geosam.models.sam import build_sam, load_sam

    torch.manual_seed(0)
    sam = build_sam(SamConfig.preset("tiny", img_size=64))
    zip_path, legacy_path = tmp_path / "zip.pth", tmp_path / "legacy.pth"
    torch.save(sam.state_dict(), zip_path)
    torch.save(sam.state_dict(), legacy_path, _use_new_zipfile_serialization=False)
    a, _ = load_sam(zip_path)
    b, _ = load_sam(legacy_path)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb)


def test_prompts_per_call_follows_the_budget():
    vit_b = torch.zeros(1, 256, 64, 64)
    per = decoder_bytes_per_prompt(256, (64, 64))
    assert per == 32 * 2**20
    assert prompts_per_call(64, 1024, vit_b) == CPU_DECODER_BYTES // per == 16
    assert prompts_per_call(8, 1024, vit_b) == 8  # never more than points_per_batch on a CPU
    assert prompts_per_call(64, 64, torch.zeros(1, 32, 8, 8)) == 64  # small tiles: all at once


def test_decoder_batches_do_not_change_the_masks(monkeypatch):
    """Masks with 1, 3 or all prompts per decoder call are identical (a tiny SAM at 128 px)."""
    import geosam.sam_masks as seg
    from geosam.config import SegmentConfig
    from geosam.models.sam import build_sam, predictor_embedding

    torch.manual_seed(0)
    sam = build_sam(SamConfig.preset("tiny", img_size=128)).eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.kron(rng.random((8, 8, 3)) * 255, np.ones((16, 16, 1)))).permute(2, 0, 1)[None]
    with torch.inference_mode():
        emb = sam.image_encoder(sam.preprocess(x.float()))
    cfg = SegmentConfig(points_per_side=5, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    results = []
    for per_call in (1, 3, 25):
        monkeypatch.setattr(seg, "prompts_per_call", lambda *a, n=per_call: n)
        gen = mask_generator(sam, cfg)
        with predictor_embedding(gen.predictor, emb, (128, 128)), torch.inference_mode():
            results.append(generate_single_crop(gen, 128, 128))
    masks0, scores0 = results[0]
    assert masks0
    for masks, scores in results[1:]:
        assert len(masks) == len(masks0)
        for m, m0 in zip(masks, masks0, strict=True):
            np.testing.assert_array_equal(m, m0)
        np.testing.assert_allclose(scores, scores0, atol=1e-5)


@pytest.mark.parametrize("length", [1, 7, 8, 9, 64, 1000])
def test_pack_bits_equals_numpy(length):
    from geosam.sam_masks import pack_bits, unpack_bits

    rng = np.random.default_rng(length)
    m = rng.random((5, length)) > 0.5
    packed = pack_bits(torch.from_numpy(m))
    np.testing.assert_array_equal(packed.numpy(), np.packbits(m, axis=1))
    np.testing.assert_array_equal(unpack_bits(packed, length).numpy(), m)


def test_device_packing_path_gives_the_same_masks(monkeypatch):
    """The GPU branch (masks packed and kept on the device until NMS), exercised on the CPU."""
    import geosam.sam_masks as seg
    from geosam.config import SegmentConfig
    from geosam.models.sam import build_sam, predictor_embedding

    torch.manual_seed(1)
    sam = build_sam(SamConfig.preset("tiny", img_size=128)).eval()
    emb = torch.randn(1, sam.image_encoder.neck[0].out_channels, 8, 8)
    cfg = SegmentConfig(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    out = []
    for on_device in (False, True):
        monkeypatch.setattr(seg, "keep_masks_on_device", lambda _d, v=on_device: v)
        gen = mask_generator(sam, cfg)
        with predictor_embedding(gen.predictor, emb, (128, 128)), torch.inference_mode():
            out.append(generate_single_crop(gen, 128, 128))
    (m0, s0), (m1, s1) = out
    assert len(m0) == len(m1) > 0 and s0 == s1
    for a, b in zip(m0, m1, strict=True):
        assert b.dtype == bool
        np.testing.assert_array_equal(a, b)
