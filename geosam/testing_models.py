"""Tiny models for tests: architecture-identical SAM configurations with random weights.

``make_tiny_sam_checkpoint`` writes a full SAM (encoder, prompt encoder, mask decoder) of the ``tiny``
configuration in Meta's checkpoint format; ``make_tiny_bundle`` writes a classifier bundle either with
its own tiny encoder or as a head on a SAM checkpoint's frozen encoder (what ``geosam train --mode
probe --backbone <checkpoint>`` produces). Their outputs are random: tests use them to exercise the real
code paths (mask decoder, pooling, stitching, writers), not to judge accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from geosam.models.sam_config import SamConfig

__all__ = [
    "make_dense_bundle",
    "make_tiny_bundle",
    "make_tiny_sam2_bundle",
    "make_tiny_sam2_checkpoint",
    "make_tiny_sam_checkpoint",
]


def make_tiny_sam_checkpoint(path: str | os.PathLike[str], *, seed: int = 0, img_size: int = 128) -> Path:
    """Write a randomly initialised ``tiny`` SAM in the official state-dict format."""
    import torch

    from geosam.models.sam import build_sam, save_sam

    torch.manual_seed(seed)
    save_sam(build_sam(SamConfig.preset("tiny", img_size=img_size)), path)
    return Path(path)


def make_tiny_bundle(
    path: str | os.PathLike[str],
    *,
    classes: Sequence[str] = ("water", "forest", "field"),
    bands: Sequence[str] = ("red", "green", "blue"),
    sam_checkpoint: str | os.PathLike[str] | None = None,
    input_size: int = 32,
    tile_size: int = 128,
    seed: int = 0,
    gsd_m: float | None = None,
) -> Path:
    """Write a random classifier bundle.

    Args:
        path: Bundle folder.
        classes: Class names.
        bands: Band names in input order.
        sam_checkpoint: Make a head-only bundle on this checkpoint's frozen encoder (source
            ``sam_checkpoint``); ``None`` makes a bundle with its own ``tiny`` encoder.
        input_size: Encoder input (and chip) size for bundles with their own encoder.
        tile_size: Recommended tile size recorded in the bundle.
        seed: Random seed.
        gsd_m: Ground sampling distance recorded as the training data's (enables resolution matching).
    """
    import torch

    from geosam.hashing import sha256_file
    from geosam.models.band_adapter import adapt_patch_embed
    from geosam.models.bundle import BundleMeta, EncoderMeta, HeadMeta, save_bundle
    from geosam.models.classifier import ClassifierHead, LandCoverModel
    from geosam.models.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD, build_encoder, load_sam

    torch.manual_seed(seed)
    n = len(bands)
    if sam_checkpoint is not None:
        encoder, cfg = load_sam(sam_checkpoint, encoder_only=True)
        if tuple(bands) != ("red", "green", "blue"):
            adapt_patch_embed(encoder, bands)
            cfg = SamConfig.from_dict({**cfg.to_dict(), "in_chans": n})
        enc_meta = EncoderMeta(
            source="sam_checkpoint", config=cfg.to_dict(), checkpoint_sha256=sha256_file(sam_checkpoint)
        )
        size = cfg.img_size
        rgb_mean = dict(zip(("red", "green", "blue"), SAM_PIXEL_MEAN, strict=True))
        rgb_std = dict(zip(("red", "green", "blue"), SAM_PIXEL_STD, strict=True))
        mean = [rgb_mean.get(b, 120.0) / 255 for b in bands]
        std = [rgb_std.get(b, 58.0) / 255 for b in bands]
    else:
        cfg = SamConfig.preset("tiny", img_size=input_size, in_chans=n)
        encoder = build_encoder(cfg)
        enc_meta = EncoderMeta(source="bundle", config=cfg.to_dict())
        size = input_size
        mean, std = [0.4] * n, [0.2] * n
    head = ClassifierHead(cfg.out_chans, len(classes))
    model = LandCoverModel(encoder, head, mean, std)
    meta = BundleMeta(
        name="tiny-test-model",
        classes={"names": list(classes)},
        bands=list(bands),
        mean=mean,
        std=std,
        input_size=size,
        recommended_tile_size=tile_size if tile_size % size == 0 else size,
        encoder=enc_meta,
        head=HeadMeta(in_dim=cfg.out_chans, num_classes=len(classes)),
        data={"note": "random weights, for tests"},
        gsd_m=gsd_m,
    )
    save_bundle(path, model, meta, include_encoder=enc_meta.source == "bundle")
    return Path(path)


def make_tiny_sam2_checkpoint(
    path: str | os.PathLike[str], *, variant: str = "sam2.1_hiera_tiny", seed: int = 0
) -> Path:
    """Write a randomly initialised SAM 2.x model in Meta's checkpoint format (``{"model": state_dict}``).

    Built by ``sam2``'s own builder from its packaged config (Hiera-T by default; 156 MB on disk). The
    input size is not stored in the weights, so the checkpoint loads at any tile size.
    """
    import torch

    from geosam.models.sam2 import build_sam2_model, save_sam2_checkpoint
    from geosam.models.sam_family import resolve_sam2_variant

    torch.manual_seed(seed)
    return save_sam2_checkpoint(build_sam2_model(resolve_sam2_variant(variant), 256), path)


def make_tiny_sam2_bundle(
    path: str | os.PathLike[str],
    sam2_checkpoint: str | os.PathLike[str],
    *,
    classes: Sequence[str] = ("water", "forest", "field"),
    bands: Sequence[str] = ("red", "green", "blue"),
    input_size: int = 64,
    level: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a random head on a SAM 2 checkpoint's frozen Hiera (what ``train --mode probe`` produces)."""
    import torch

    from geosam.models.band_adapter import RGB
    from geosam.models.bundle import BundleMeta, EncoderMeta, HeadMeta, save_bundle
    from geosam.models.classifier import ClassifierHead, LandCoverModel
    from geosam.models.sam2_bundle import training_encoder
    from geosam.models.sam2_encoder import SAM2_PIXEL_MEAN, SAM2_PIXEL_STD
    from geosam.models.sam_family import identify_sam_checkpoint

    torch.manual_seed(seed)
    found = identify_sam_checkpoint(sam2_checkpoint)
    encoder, fields = training_encoder(
        sam2_checkpoint, found, list(bands), input_size, mode="probe", level=level
    )
    enc_meta = EncoderMeta(**fields)
    mean_of = dict(zip(RGB, SAM2_PIXEL_MEAN, strict=True))
    std_of = dict(zip(RGB, SAM2_PIXEL_STD, strict=True))
    mean = [mean_of.get(b, 0.45) for b in bands]
    std = [std_of.get(b, 0.23) for b in bands]
    model = LandCoverModel(encoder, ClassifierHead(encoder.out_chans, len(classes)), mean, std)
    meta = BundleMeta(
        name="tiny-sam2-test-model",
        classes={"names": list(classes)},
        bands=list(bands),
        mean=mean,
        std=std,
        input_size=input_size,
        recommended_tile_size=4 * input_size,
        encoder=enc_meta,
        head=HeadMeta(in_dim=encoder.out_chans, num_classes=len(classes)),
        data={"note": "random weights, for tests"},
    )
    prefix = ("encoder.image_encoder.trunk.patch_embed.",) if tuple(bands) != RGB else ()
    save_bundle(path, model, meta, include_encoder=False, include_prefixes=prefix)
    return Path(path)


def make_random_sam3_checkpoint(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a randomly initialised SAM 3 image model in Meta's format (``{"model": {"detector.*": ...}}``).

    Needs the optional ``sam3`` package; the file is about 3.4 GB (840 M float32 parameters). The two
    text-encoder tensors ``build_sam3_image_model`` leaves uninitialised (NaN) get small random values.
    """
    import torch

    from geosam.models.sam3 import build_sam3

    torch.manual_seed(seed)
    model = build_sam3("cpu")
    enc = model.backbone.language_backbone.encoder
    with torch.no_grad():
        torch.nn.init.normal_(enc.positional_embedding, std=0.01)
        torch.nn.init.normal_(enc.text_projection, std=0.02)
    state = {f"detector.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    torch.save({"model": state}, path)
    return Path(path)


def make_dense_bundle(
    path: str | os.PathLike[str],
    *,
    classes: Sequence[str] = ("water", "forest", "field"),
    bands: Sequence[str] = ("red", "green", "blue"),
    backbone: str = "tiny",
    chip_size: int = 16,
    tile_size: int = 128,
    seed: int = 0,
    gsd_m: float | None = None,
    use_encoder: bool = True,
) -> Path:
    """Write an untrained dense-head bundle, architecture-identical to what ``--head dense`` trains.

    Args:
        path: Bundle folder.
        classes: Class names.
        bands: Band names in input order.
        backbone: ``tiny`` (random encoder, fast) or ``default`` (the packaged encoder, as trained
            dense bundles use by default).
        chip_size: Encoder chip edge in scene pixels.
        tile_size: Recommended tile size (a multiple of ``chip_size``).
        seed: Random seed of the head.
        gsd_m: Ground sampling distance recorded as the training data's.
        use_encoder: The head reads the encoder's features (``False``: the pixels alone, the
            ``geosam train polygons`` default).
    """
    import numpy as np

    from geosam.models.bundle import BundleMeta, save_bundle
    from geosam.train.config import TrainConfig
    from geosam.train.dense import build_dense_model

    cfg = TrainConfig(
        head="dense", backbone=backbone, mode="probe", seed=seed, dense={"use_encoder": use_encoder}
    )
    n = len(bands)
    model, bb, head_cfg = build_dense_model(
        cfg, bands, len(classes), np.full(n, 0.4), np.full(n, 0.2), chip_size
    )
    mean = model.get_buffer("mean").reshape(-1).tolist()
    std = model.get_buffer("std").reshape(-1).tolist()
    meta = BundleMeta(
        name="dense-test-model",
        classes={"names": list(classes)},
        bands=list(bands),
        mean=mean,
        std=std,
        input_size=bb.input_size,
        chip_size=chip_size,
        recommended_tile_size=tile_size,
        encoder=bb.meta,
        dense=head_cfg.to_dict(),
        training={"head": "dense", "note": "untrained, for tests and benchmarks"},
        data={"note": "random head weights, for tests"},
        gsd_m=gsd_m,
    )
    save_bundle(path, model, meta)
    return Path(path)
