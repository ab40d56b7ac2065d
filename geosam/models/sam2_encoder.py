"""SAM 2's image encoder as geosam's encoder: one pass per tile, three consumers (no ``sam2`` import).

:class:`Sam2Encoder` wraps the ``image_encoder`` (Hiera trunk + FPN neck) of a model built by
:mod:`geosam.models.sam2`. One pass (:meth:`Sam2Encoder.forward_features`) gives
:class:`Sam2Features`, which feed:

* SAM 2's mask decoder: :func:`decoder_inputs` gives the ``image_embed`` and ``high_res_feats`` that
  ``SAM2ImagePredictor.set_image`` would compute (identical tensors, tested);
* the classifier: the pooled level(s) (``level``, see :data:`LEVELS`; :meth:`Sam2Encoder.classifier_map`);
* a dense head: :func:`multiscale_features` (Hiera's four stages, strides 4 to 32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geosam.errors import ConfigError
from geosam.models.sam_family import Sam2Variant

__all__ = [
    "DEFAULT_LEVEL",
    "LEVELS",
    "SAM2_PIXEL_MEAN",
    "SAM2_PIXEL_STD",
    "Sam2Encoder",
    "Sam2Features",
    "decoder_inputs",
    "level_channels",
    "multiscale_features",
]

#: SAM 2's input normalisation (``sam2.utils.transforms.SAM2Transforms``: ImageNet statistics on 0..1;
#: the same values as SAM 1's pixel mean/std on 0..255 divided by 255).
SAM2_PIXEL_MEAN = (0.485, 0.456, 0.406)
SAM2_PIXEL_STD = (0.229, 0.224, 0.225)

#: Feature maps a classifier can pool, by name: ``fpn<s>`` are the FPN neck's 256-channel outputs at
#: stride ``s`` (``fpn16`` is SAM 2's ``vision_features``, the mask decoder's image embedding without
#: ``no_mem_embed``); ``trunk<s>`` are Hiera's stage outputs (stage channels). Several joined with
#: ``+`` are concatenated on the grid of the first.
LEVELS = ("fpn4", "fpn8", "fpn16", "trunk4", "trunk8", "trunk16", "trunk32")
#: The level the classifier pools unless a bundle says otherwise (see docs/sam_models.md, "which level").
DEFAULT_LEVEL = "fpn16"


@dataclass(frozen=True)
class Sam2Features:
    """One encoder pass of a batch of tiles: every map SAM 2's consumers need.

    Attributes:
        trunk: Hiera's four stage outputs ``(B, C_i, H/s, W/s)`` for strides ``s`` = 4, 8, 16, 32
            (channels ``d, 2d, 4d, 8d``; ``d`` = 96 tiny/small, 112 base_plus, 144 large).
        fpn: The FPN neck's 256-channel outputs at strides 4, 8 and 16 (the stride-32 level is dropped by
            the packaged configs' ``scalp: 1``); ``fpn[-1]`` is SAM 2's ``vision_features``.
    """

    trunk: tuple[torch.Tensor, ...]
    fpn: tuple[torch.Tensor, ...]

    def level(self, name: str) -> torch.Tensor:
        """The map called ``name`` (:data:`LEVELS`)."""
        kind, stride = _parse_level(name)
        maps = self.trunk if kind == "trunk" else self.fpn
        strides = (4, 8, 16, 32)[: len(maps)]
        if stride not in strides:
            raise ConfigError(f"no {kind} level at stride {stride} (have {strides})")
        return maps[strides.index(stride)]


def _parse_level(name: str) -> tuple[str, int]:
    if name not in LEVELS:
        raise ConfigError(f"unknown SAM 2 feature level {name!r}; choose from {', '.join(LEVELS)}")
    kind = "trunk" if name.startswith("trunk") else "fpn"
    return kind, int(name[len(kind) :])


def level_channels(level: str, variant: Sam2Variant) -> int:
    """Channels of the (possibly ``+``-joined) classifier level for ``variant``."""
    total = 0
    for part in level.split("+"):
        kind, stride = _parse_level(part)
        total += 256 if kind == "fpn" else variant.stage_channels[(4, 8, 16, 32).index(stride)]
    return total


class Sam2Encoder(nn.Module):
    """SAM 2's image encoder (Hiera trunk + FPN neck) as the classifier's encoder.

    ``forward`` maps normalised ``(B, N, H, W)`` inputs to the ``(B, C, H/s, W/s)`` map the classifier
    pools (``level``); :meth:`forward_features` returns every map of the same single pass
    (:class:`Sam2Features`), for the mask decoder and a dense head. ``blocks``, ``neck`` and
    ``patch_embed`` expose Hiera's blocks (for ``last_n`` training), the neck and the patch embedding
    (``Conv2d(3, d, 7, stride 4)``, which the band adapter replaces for more than 3 bands).

    Args:
        image_encoder: ``sam2.modeling.backbones.image_encoder.ImageEncoder`` of a ``SAM2Base``.
        variant: Its configuration.
        level: Classifier level (:data:`LEVELS`, optionally ``+``-joined).
    """

    def __init__(self, image_encoder: nn.Module, variant: Sam2Variant, level: str = DEFAULT_LEVEL) -> None:
        super().__init__()
        for part in level.split("+"):
            _parse_level(part)
        self.image_encoder = image_encoder
        self.variant = variant
        self.level = level

    @property
    def blocks(self) -> nn.ModuleList:
        """Hiera's blocks, all stages in order (stage ends at ``trunk.stage_ends``)."""
        return self.image_encoder.trunk.blocks  # type: ignore[union-attr,return-value]

    @property
    def neck(self) -> nn.Module:
        """The FPN neck."""
        return self.image_encoder.neck  # type: ignore[union-attr,return-value]

    @property
    def patch_embed(self) -> nn.Module:
        """Hiera's patch embedding (``.proj`` is the input convolution)."""
        return self.image_encoder.trunk.patch_embed  # type: ignore[union-attr,return-value]

    @property
    def out_chans(self) -> int:
        """Channels of the classifier level."""
        return level_channels(self.level, self.variant)

    @property
    def feature_stride(self) -> int:
        """Input pixels per cell of the classifier map (the stride of the first level, e.g. 16)."""
        return _parse_level(self.level.split("+")[0])[1]

    def forward_features(self, x: torch.Tensor) -> Sam2Features:
        """Run Hiera and the neck once on normalised ``(B, N, H, W)`` inputs (``H, W`` multiples of 32)."""
        enc: Any = self.image_encoder
        trunk = enc.trunk(x)
        fpn, _pos = enc.neck(trunk)
        if enc.scalp > 0:
            fpn = fpn[: -enc.scalp]
        return Sam2Features(tuple(trunk), tuple(fpn))

    def classifier_map(self, feats: Sam2Features) -> torch.Tensor:
        """The map the classifier pools, from a pass's features (levels concatenated on the first's grid)."""
        parts = [feats.level(p) for p in self.level.split("+")]
        if len(parts) == 1:
            return parts[0]
        size = (int(parts[0].shape[-2]), int(parts[0].shape[-1]))
        out = [parts[0]]
        for p in parts[1:]:
            if p.shape[-1] < size[-1]:  # coarser: repeat each cell (area weights stay exact)
                p = F.interpolate(p, size=size, mode="nearest")
            elif p.shape[-1] > size[-1]:
                p = F.adaptive_avg_pool2d(p, size)
            out.append(p)
        return torch.cat(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, out_chans, H/s, W/s)`` classifier features of normalised inputs."""
        return self.classifier_map(self.forward_features(x))


def multiscale_features(encoder: Sam2Encoder, x: torch.Tensor) -> list[torch.Tensor]:
    """Hiera's multi-scale pyramid for a dense (per-pixel) head, from one encoder pass.

    Args:
        encoder: The classifier's :class:`Sam2Encoder` (band-adapted or fine-tuned alike).
        x: ``(B, N, H, W)`` float32 inputs, normalised by the bundle's mean/std, ``H, W`` multiples of 32.

    Returns:
        Four ``(B, C_i, H/s, W/s)`` float maps for strides ``s`` = 4, 8, 16, 32 with ``C_i`` =
        ``d, 2d, 4d, 8d`` (``d`` = 96 for Hiera tiny/small, 112 base_plus, 144 large): the inputs of an
        smp ``UPerNetDecoder``/``FPNDecoder`` (``encoder_channels=(N, 0, *C)``). Hiera's stages are those
        timm's ``sam2_hiera_*`` models return with ``features_only=True`` (notes: bit-identical outputs).
    """
    return list(encoder.forward_features(x).trunk)


def decoder_inputs(model: Any, feats: Sam2Features, index: int = 0) -> dict[str, Any]:
    """The features ``SAM2ImagePredictor.set_image`` stores, from a pass's :class:`Sam2Features`.

    ``image_embed`` is the stride-16 FPN map plus ``no_mem_embed`` (SAM 2 adds it for single images);
    ``high_res_feats`` are the stride-4 and stride-8 FPN maps through the mask decoder's ``conv_s0`` and
    ``conv_s1`` (what ``SAM2Base.forward_image`` does), for tile ``index`` of the batch, in the
    decoder's dtype.
    """
    dtype = model.no_mem_embed.dtype  # the decoder's (float32); bf16/fp16 autocast features are cast
    fpn = [f[index : index + 1].to(dtype) for f in feats.fpn]
    embed = fpn[-1]
    if model.directly_add_no_mem_embed:
        embed = embed + model.no_mem_embed.reshape(1, -1, 1, 1).to(embed.dtype)
    high = list(fpn[:-1])
    if model.use_high_res_features_in_sam:
        high = [model.sam_mask_decoder.conv_s0(high[0]), model.sam_mask_decoder.conv_s1(high[1])]
    return {"image_embed": embed, "high_res_feats": high}
