"""Encoder stage: one pass of the SAM image encoder per tile (torch, no I/O).

A tile of ``tile_size`` scene pixels is encoded either whole (the encoder is built for that size, as
SAM is for 1024 px tiles) or, for models trained on small chips (the default model: 64 px EuroSAT
chips), as a grid of chips of ``chip_size`` scene pixels, each resampled to the encoder's
``input_size`` and encoded in one batch; the chip feature maps are stitched back into one tile
feature map. Either way every pixel goes through the encoder exactly once.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from geosam.errors import ConfigError
from geosam.preprocess import resample_chips

if TYPE_CHECKING:
    from geosam.models.classifier import LandCoverModel
    from geosam.runtime import Models
    from geosam.types import SceneInfo

__all__ = ["EncoderPlan", "autocast_context", "encode_tiles", "fill_invalid", "patch_size", "plan_encoder"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderPlan:
    """How tiles are fed to the encoder.

    Attributes:
        tile_size: Tile edge in scene pixels.
        chip_size: Encoder chip edge in scene pixels (``tile_size`` must be a multiple).
        input_size: Encoder input edge in pixels (chips are resampled from ``chip_size``).
        grid: Feature cells per chip edge (``input_size // patch_size``).
        halo: Tile halo in scene pixels chosen with the chip grid (whole chips,
            :mod:`geosam.chip_grid`); ``None``: the tiling's own rule.
    """

    tile_size: int
    chip_size: int
    input_size: int
    grid: int
    halo: int | None = None

    def __post_init__(self) -> None:
        if self.tile_size % self.chip_size:
            raise ConfigError(
                f"tile size {self.tile_size} must be a multiple of the model's chip size {self.chip_size}"
            )

    @property
    def chips_per_side(self) -> int:
        """Chips along one tile edge."""
        return self.tile_size // self.chip_size

    @property
    def feature_size(self) -> int:
        """Edge of a tile's stitched feature map, in cells."""
        return self.chips_per_side * self.grid

    @property
    def chips_per_tile(self) -> int:
        """Encoder inputs per tile."""
        return self.chips_per_side**2


def patch_size(encoder: nn.Module) -> int:
    """Edge in pixels of the encoder's patches (its patch-embedding convolution's kernel).

    SAM 2 encoders (:class:`geosam.models.sam2.Sam2Encoder`) give the stride of the feature map they
    return (``feature_stride``), since Hiera's 7 x 7 patch embedding overlaps and its stages downsample.
    """
    stride = getattr(encoder, "feature_stride", None)
    if stride is not None:
        return int(stride)
    proj = encoder.get_submodule("patch_embed.proj")
    if not isinstance(proj, nn.Conv2d):
        raise TypeError(f"the encoder's patch embedding is a {type(proj).__name__}, not a Conv2d")
    return int(proj.kernel_size[0])


def plan_encoder(
    models: Models,
    info: SceneInfo,
    *,
    match_resolution: bool,
    tile_size: int | None,
    halo: int | None = None,
) -> EncoderPlan:
    """How this scene's tiles are encoded: chips on the scene's chip grid, matched to the model's GSD.

    A region model that brings its own plan (SAM 2.x, SAM 3: a ``plan_encoder`` method of
    ``models.sam``) decides. Otherwise the rules are :func:`geosam.chip_grid.plan_chip_grid`'s: SAM
    tiles are encoded whole at the scene's resolution; for chip models, with ``match_resolution``, a
    chip covers the ground of a training chip (``chip = round(model_chip * model_gsd / scene_gsd)``,
    scenes within 5 % of the model's GSD keep the model's chip), and tiles and halos are whole chips
    anchored to the scene grid, so a training chip at the model's GSD is exactly one encoder chip. The
    choice is logged.

    The chip edge is :func:`geosam.resolution.encoding_sizes`'s (GSDs measured on the ground, clamps,
    refusals).

    Args:
        models: The loaded models (chip, tile and encoder input sizes; the bundle's ``gsd_m``).
        info: The scene (its ``gsd_m`` and size).
        match_resolution: Resample chips to the model's ground resolution.
        tile_size: The user's tile size (``TilingConfig.tile_size``), or ``None``.
        halo: The user's halo (``TilingConfig.halo``), or ``None``.

    Raises:
        InputMismatchError: Matching is on and the scene's pixels measure under 1 cm or over 1 km.
    """
    own_plan = getattr(models.sam, "plan_encoder", None)
    if own_plan is not None:  # SAM 2/3 region models plan their tiles (geosam.infer_sam2/3)
        plan: EncoderPlan = own_plan(models, info, match_resolution=match_resolution, tile_size=tile_size)
        return plan
    from geosam.scene_plan import ModelGeometry, scene_encoding

    grid = models.input_size // patch_size(models.bundle.model.encoder)
    # the rule is geosam.chip_grid's, through geosam.scene_plan so that `geosam info` shows the same grid
    enc = scene_encoding(
        ModelGeometry.of_models(models, tile_size=tile_size),
        info,
        match_resolution=match_resolution,
        halo=halo,
        grid=grid,
    )
    return EncoderPlan(enc.tile_size, enc.chip_size, models.input_size, grid, enc.halo)


def autocast_context(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """Autocast for ``bf16``/``fp16`` inference, or a no-op for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def fill_invalid(data: np.ndarray, valid: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Replace invalid pixels of a ``(N, H, W)`` tile by per-band ``fill`` values (the model mean).

    Filling with the mean makes nodata normalise to zero instead of to a dark, "real-looking" value.
    """
    out = np.array(data, dtype=np.float32, copy=True)
    if not valid.all():
        inv = ~valid
        for b in range(out.shape[0]):
            out[b][inv] = fill[b]
    return out


@torch.inference_mode()
def encode_tiles(
    model: LandCoverModel,
    x: torch.Tensor,
    plan: EncoderPlan,
    *,
    precision: str = "fp32",
    chip_batch: int = 64,
) -> torch.Tensor:
    """Encode ``(B, N, T, T)`` 0..1 tiles into ``(B, C, F, F)`` float32 features (``F = plan.feature_size``).

    Args:
        model: A ``LandCoverModel`` (normalises its input, then runs the SAM encoder).
        x: Tiles on the model's device, ``T = plan.tile_size``.
        plan: Tile-to-encoder layout.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        chip_batch: Encoder inputs per forward call (bounds memory in chip mode).
    """
    b, n, t, _ = x.shape
    if t != plan.tile_size:
        raise ValueError(f"tiles are {t} px but the plan expects {plan.tile_size}")
    k, c = plan.chips_per_side, plan.chip_size
    chips = x.reshape(b, n, k, c, k, c).permute(0, 2, 4, 1, 3, 5).reshape(b * k * k, n, c, c)
    chips = resample_chips(chips, plan.input_size)  # the kernel training used (geosam.preprocess)
    outs = []
    with autocast_context(x.device, precision):
        for s in range(0, chips.shape[0], chip_batch):
            outs.append(model.features(chips[s : s + chip_batch]).float())
    return chips_to_tiles(torch.cat(outs), b, k)


def chips_to_tiles(f: torch.Tensor, b: int, k: int) -> torch.Tensor:
    """Chip feature maps ``(b * k * k, C, g, g)`` in :func:`encode_tiles`' chip order -> ``(b, C, k*g, k*g)``.

    The inverse of how :func:`encode_tiles` cuts ``b`` tiles into ``k x k`` chips (row-major), so any
    per-chip map of the encoder (its output, or a block's: :func:`geosam.domain.capture_block`) lies on
    the tile as the chips did.
    """
    g, ch = f.shape[-1], f.shape[1]
    return f.reshape(b, k, k, ch, g, g).permute(0, 3, 1, 4, 2, 5).reshape(b, ch, k * g, k * g)
