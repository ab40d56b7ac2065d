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
import torch.nn.functional as F
from torch import nn

from geosam.errors import ConfigError

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
    """

    tile_size: int
    chip_size: int
    input_size: int
    grid: int

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
    """Edge in pixels of the encoder's patches (its patch-embedding convolution's kernel)."""
    proj = encoder.get_submodule("patch_embed.proj")
    if not isinstance(proj, nn.Conv2d):
        raise TypeError(f"the encoder's patch embedding is a {type(proj).__name__}, not a Conv2d")
    return int(proj.kernel_size[0])


def plan_encoder(
    models: Models, info: SceneInfo, *, match_resolution: bool, tile_size: int | None
) -> EncoderPlan:
    """How this scene's tiles are encoded: tile and chip size in scene pixels, matched to the model's GSD.

    SAM tiles use the model's sizes. Chip models, with ``match_resolution``, get chips that cover the
    ground of a training chip, both GSDs measured on the ground (:func:`geosam.resolution.encoding_sizes`,
    which clamps the sizes to the tiling bounds, logs the choice and refuses implausible pixel sizes).

    Args:
        models: The loaded models (chip, tile and encoder input sizes; the bundle's ``gsd_m``).
        info: The scene (its ground resolution and shape).
        match_resolution: Resample chips to the model's ground resolution.
        tile_size: The user's tile size (``TilingConfig.tile_size``), or ``None``.

    Raises:
        InputMismatchError: Matching is on and the scene's pixels measure under 1 cm or over 1 km.
    """
    from geosam.resolution import encoding_sizes

    grid = models.input_size // patch_size(models.bundle.model.encoder)
    sizes = encoding_sizes(
        path=info.path,
        model_chip=models.chip_size,
        model_tile=models.tile_size,
        model_gsd_m=models.bundle.meta.gsd_m,
        scene=info.ground_resolution,
        match=match_resolution and models.region_source != "sam",
        grid=grid,
        tile_size=tile_size,
        scene_shape=info.shape,
    )
    return EncoderPlan(sizes.tile, sizes.chip, models.input_size, grid)


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
    if c != plan.input_size:
        chips = F.interpolate(
            chips, size=(plan.input_size, plan.input_size), mode="bilinear", align_corners=False
        )
    outs = []
    with autocast_context(x.device, precision):
        for s in range(0, chips.shape[0], chip_batch):
            outs.append(model.features(chips[s : s + chip_batch]).float())
    f = torch.cat(outs)  # (b*k*k, C, g, g)
    g, ch = f.shape[-1], f.shape[1]
    return f.reshape(b, k, k, ch, g, g).permute(0, 3, 1, 4, 2, 5).reshape(b, ch, k * g, k * g)
