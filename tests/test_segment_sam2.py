"""SAM 2.x: checkpoint recognition, safe strict loading at any tile size, one encoder pass whose features
equal SAM2ImagePredictor's, and RLE-free masks equal to SAM2AutomaticMaskGenerator.generate()."""

from __future__ import annotations

import contextlib
import importlib.util

import numpy as np
import pytest
import torch
from helpers_masks import assert_same_masks, blocky_image, single_crop_kwargs

from geosam.config import SegmentConfig
from geosam.errors import CheckpointError, ConfigError
from geosam.infer_sam2 import Sam2MaskDecoder
from geosam.models import sam2 as gs2
from geosam.models import sam2_encoder as enc2
from geosam.models.sam_family import (
    SAM2_VARIANTS,
    identify_sam_checkpoint,
    identify_sam_state,
    resolve_sam2_variant,
)
from geosam.segment_sam2 import generate_single_crop_sam2, sam2_regions

if importlib.util.find_spec("sam2") is None:  # find_spec: importing sam2 would initialise Hydra globally
    pytest.skip("SAM 2 tests need the sam2 package (pip install -e '.[sam2]')", allow_module_level=True)

TINY = SAM2_VARIANTS["sam2.1_hiera_tiny"]


def _normalised(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor(enc2.SAM2_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(enc2.SAM2_PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@contextlib.contextmanager
def _weights_on_meta():
    """Build modules with their parameters on the meta device (shapes only, no initialisation cost)."""
    old = torch.nn.Module.register_parameter

    def register(self, name, param):
        if param is not None:
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        old(self, name, param)

    torch.nn.Module.register_parameter = register
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = old


@pytest.fixture(scope="module")
def tiny128(sam2_tiny_checkpoint):
    return gs2.load_sam2(sam2_tiny_checkpoint, TINY, 128)


def test_hydra_state_is_left_as_found(sam2_tiny_checkpoint):
    """geosam builds under a scoped Hydra initialisation: the process-wide state is what it was."""
    from hydra.core.global_hydra import GlobalHydra

    was = GlobalHydra.instance().is_initialized()
    GlobalHydra.instance().clear()
    try:
        gs2.load_sam2(sam2_tiny_checkpoint, TINY, 64)
        gs2.build_image_encoder(TINY)
        assert not GlobalHydra.instance().is_initialized()  # the singleton is replaced on restore
    finally:
        if was:  # put back what sam2's own import had set up (other tests may import sam2 directly)
            from hydra import initialize_config_module

            initialize_config_module("sam2", version_base="1.2")


@pytest.mark.parametrize("name", list(SAM2_VARIANTS))
def test_every_packaged_config_is_recognised_from_its_keys(name):
    """Shapes only (meta device): each of the 8 packaged configurations maps back to itself."""
    variant = SAM2_VARIANTS[name]
    with _weights_on_meta():
        model = gs2.build_sam2_model(variant, 256, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = identify_sam_state(shapes)
    assert found.variant == variant and found.family == variant.family and found.has_decoder
    enc_only = {k: s for k, s in shapes.items() if k.startswith("image_encoder.")}
    assert identify_sam_state(enc_only).variant.embed_dim == variant.embed_dim
    assert not identify_sam_state(enc_only).has_decoder


def test_sam1_and_sam3_and_other_checkpoints(tmp_path):
    from geosam.testing_models import make_tiny_sam_checkpoint

    sam1 = identify_sam_checkpoint(make_tiny_sam_checkpoint(tmp_path / "s1.pth"))
    assert sam1.family == "sam" and sam1.region_source == "sam" and sam1.label.startswith("SAM 1")
    torch.save({"model": {"detector.backbone.x": torch.zeros(2)}}, tmp_path / "sam3.pt")
    with pytest.raises(CheckpointError, match="--sam3-checkpoint"):
        identify_sam_checkpoint(tmp_path / "sam3.pt")
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a SAM 1 or SAM 2"):
        identify_sam_checkpoint(tmp_path / "other.pt")
    odd = {
        "image_encoder.trunk.patch_embed.proj.weight": (80, 3, 7, 7),
        "image_encoder.trunk.blocks.0.x": (1,),
    }
    with pytest.raises(CheckpointError, match="no configuration"):
        identify_sam_state(odd)


def test_named_configuration_must_agree(sam2_tiny_checkpoint):
    found = identify_sam_checkpoint(sam2_tiny_checkpoint, named="sam2.1_hiera_t")
    assert found.name == "sam2.1_hiera_tiny" and found.label == "SAM 2.1 Hiera-T"
    # SAM 2.0 and 2.1 share Hiera: a named 2.0 config is honoured
    assert identify_sam_checkpoint(sam2_tiny_checkpoint, named="sam2_hiera_tiny").family == "sam2"
    with pytest.raises(CheckpointError, match=r"not the named SAM 2\.1 Hiera-S"):
        identify_sam_checkpoint(sam2_tiny_checkpoint, named="sam2.1_hiera_small")
    with pytest.raises(ConfigError, match="unknown SAM 2 model"):
        resolve_sam2_variant("sam2.1_hiera_huge")
    assert resolve_sam2_variant("SAM2.1-hiera-b+").name == "sam2.1_hiera_base_plus"


def test_strict_load_refuses_another_size(tmp_path, sam2_tiny_checkpoint):
    with pytest.raises(CheckpointError, match=r"do not fit sam2\.1_hiera_small"):
        gs2.load_sam2(sam2_tiny_checkpoint, SAM2_VARIANTS["sam2.1_hiera_small"], 256)
    with pytest.raises(ConfigError, match="multiple of 32"):
        gs2.load_sam2(sam2_tiny_checkpoint, TINY, 300)


def test_weights_only_refuses_pickled_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "evil": Evil()}, p, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError):
        gs2.load_sam2(p, TINY, 256)


@pytest.mark.parametrize("size", [128, 160])
def test_one_pass_features_equal_the_predictors(sam2_tiny_checkpoint, size):
    """Any multiple of 32: Sam2Encoder + decoder_inputs give set_image's tensors exactly."""
    model = gs2.load_sam2(sam2_tiny_checkpoint, TINY, size)
    img = blocky_image(size)
    pred = gs2.image_predictor(model)
    pred.set_image(img)
    enc = enc2.Sam2Encoder(model.image_encoder, TINY)
    with torch.inference_mode():
        feats = enc.forward_features(_normalised(img))
        d = enc2.decoder_inputs(model, feats)
    assert torch.equal(d["image_embed"], pred._features["image_embed"])
    for a, b in zip(d["high_res_feats"], pred._features["high_res_feats"], strict=True):
        assert torch.equal(a, b)
    s = size
    assert [tuple(t.shape[1:]) for t in feats.trunk] == [
        (96, s // 4, s // 4),
        (192, s // 8, s // 8),
        (384, s // 16, s // 16),
        (768, s // 32, s // 32),
    ]
    assert [tuple(t.shape[1:]) for t in enc2.multiscale_features(enc, _normalised(img))] == [
        tuple(t.shape[1:]) for t in feats.trunk
    ]
    assert enc(_normalised(img)).shape == (1, 256, s // 16, s // 16)


def test_classifier_levels(tiny128):
    enc = enc2.Sam2Encoder(tiny128.image_encoder, TINY, level="fpn16+trunk32")
    assert enc.out_chans == 256 + 768
    with torch.inference_mode():
        feats = enc.forward_features(_normalised(blocky_image(128)))
        out = enc.classifier_map(feats)
    assert out.shape == (1, 1024, 8, 8)
    # the coarse level is repeated cell by cell: its mean over the grid is unchanged
    assert torch.allclose(out[:, 256:].mean((2, 3)), feats.trunk[3].mean((2, 3)), atol=1e-5)
    with pytest.raises(ConfigError, match="unknown SAM 2 feature level"):
        enc2.Sam2Encoder(tiny128.image_encoder, TINY, level="fpn32")


@pytest.mark.parametrize(
    ("pred_iou", "stability", "nms", "some"),
    [
        (0.0, 0.0, 0.7, True),
        (0.02, 0.0, 1.0, True),  # NMS keeps every distinct box; the IoU filter drops part of each batch
        (0.0, 0.5, 0.7, False),  # random weights: every stability score is 0
    ],
)
def test_generate_single_crop_equals_sam2_generator(tiny128, pred_iou, stability, nms, some):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    img = blocky_image(128)
    kwargs = single_crop_kwargs(5, 7, pred_iou, stability, nms)  # 7 per batch: the last one partial
    gen = SAM2AutomaticMaskGenerator(tiny128, **kwargs)
    gs2.fix_feature_sizes(gen.predictor)  # stock predictor assumes 1024 px
    anns = gen.generate(img)
    cfg = SegmentConfig(
        points_per_side=5,
        points_per_batch=7,
        pred_iou_thresh=pred_iou,
        stability_score_thresh=stability,
        box_nms_thresh=nms,
    )
    pred = gs2.image_predictor(tiny128)
    pred.set_image(img)
    masks, scores = generate_single_crop_sam2(pred, cfg, 128, 128)
    assert_same_masks(anns, masks, scores, some)
    if nms == 1.0:
        assert len(masks) > 5


def test_sam2_regions_from_one_pass(tiny128):
    from geosam.models.sam_family import SamModelId

    dec = Sam2MaskDecoder(tiny128, SamModelId("sam2.1", TINY.name, TINY))
    pred = dec.new_predictor()
    enc = enc2.Sam2Encoder(tiny128.image_encoder, TINY)
    img = blocky_image(128)
    with torch.inference_mode():
        feats = enc.forward_features(_normalised(img))
    valid = np.ones((128, 128), bool)
    valid[:, :20] = False
    cfg = SegmentConfig(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, box_nms_thresh=1.0)
    cfg = cfg.model_copy(update={"min_region_area": 8})
    regions = sam2_regions(dec, pred, feats, valid, cfg)
    assert regions.source == "sam2.1" and regions.count > 1
    assert (regions.labels[~valid] == 0).all() and regions.labels.max() == regions.count
    assert np.isfinite(regions.predicted_iou).all()
    assert not pred._is_image_set  # the scene's predictor holds no tile state between tiles
