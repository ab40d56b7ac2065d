"""Dense ("sam-seg") land-cover head: per-pixel class logits from SAM encoder features and the pixels.

The head reads the *same* encoder pass that feeds SAM's mask decoder and the region classifier, plus
the normalised input pixels themselves, and returns class logits for every input pixel:

1. **Levels.** A list of feature maps with their strides (in output pixels). SAM 2.1's Hiera trunk
   gives four natively (strides 4-32 of its input); SAM 1's ViT gives one, from which
   :class:`SimpleFeaturePyramid` builds four (Li et al. 2022, "Exploring Plain Vision Transformer
   Backbones for Object Detection" (ViTDet), section 3: deconvolutions up, identity, max-pool down,
   each followed by a 1x1 and a 3x3 convolution with LayerNorm).
2. **Decoder.** segmentation-models-pytorch's ``UPerNetDecoder`` (Xiao et al. 2018, "Unified
   Perceptual Parsing for Scene Understanding": PSP module on the coarsest level, FPN top-down path,
   fusion at the finest) or ``FPNDecoder`` (Kirillov et al. 2019, "Panoptic Feature Pyramid
   Networks"), with LayerNorm instead of BatchNorm so that batches of one patch train and tiles of
   any size infer alike.
3. **Pixel branch.** Land-cover classes are largely spectral, and the finest encoder level of a
   16-pixel patch ViT is far coarser than a road: the normalised input bands, their local means over
   3 x 3 and 7 x 7 pixels (fixed average pooling, nodata filled with the band mean beforehand) and a
   3 x 3 convolution give a per-pixel feature at full resolution. Measured on the Raleigh scene
   (docs/training.md): per-pixel plus local-context inputs are what lift a per-pixel classifier there.
4. **Fusion.** The decoder output, resampled (bilinear) to the pixel grid, is concatenated with the
   pixel branch; smp's ``SegmentationHead`` (a 1x1 convolution here) gives the logits.

Either branch can be switched off (``use_encoder=False``: pixels and local context only; the bundle
records it and ``geosam run`` reports it in the run record).

Shapes: ``forward(features, pixels)`` takes ``features`` = list of ``(B, C_i, h_i, w_i)`` float
tensors whose strides (output pixels per feature cell) were given at construction, and ``pixels`` =
``(B, N, H, W)`` normalised bands; returns ``(B, K, H, W)`` logits. ``H`` and ``W`` must equal
``h_0 * stride_0`` of the first level (within one cell).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from geosam.models.dense_config import DenseHeadConfig

__all__ = ["DenseHead", "DenseHeadConfig", "SimpleFeaturePyramid", "pyramid_scales"]


def pyramid_scales(stride: float) -> tuple[float, ...]:
    """Scales of the four simple-pyramid levels for a single encoder map of ``stride`` output pixels.

    ViTDet uses ``(4, 2, 1, 0.5)`` (strides 4-32 for a patch-16 ViT). Finer than one output pixel is
    wasted work, so the finest level is capped at stride 1: a stride-2 map gets ``(2, 1, 0.5, 0.25)``.
    """
    first = min(4.0, max(1.0, stride))
    return (first, first / 2, first / 4, first / 8)


class _LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid: one ``(B, C, h, w)`` map -> one map per scale.

    Scale ``s`` resamples by ``s``: 4 and 2 are (stacks of) 2x2 transposed convolutions, 1 is the
    identity, 1/2, 1/4 and 1/8 are 2x2 max-pooling steps; each level then gets a 1x1 and a 3x3
    convolution with LayerNorm (Li et al. 2022, Fig. 2c).

    Args:
        in_channels: Encoder channels.
        out_channels: Channels of every level.
        scales: Resampling factor of each level, each a power of two.
    """

    def __init__(self, in_channels: int, out_channels: int, scales: Sequence[float]) -> None:
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.stages = nn.ModuleList()
        for s in self.scales:
            layers: list[nn.Module] = []
            c = in_channels
            up = s
            while up > 1:
                layers += [nn.ConvTranspose2d(c, c // 2, 2, stride=2), _LayerNorm2d(c // 2), nn.GELU()]
                c //= 2
                up /= 2
            while up < 1:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                up *= 2
            layers += [
                nn.Conv2d(c, out_channels, 1, bias=False),
                _LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                _LayerNorm2d(out_channels),
            ]
            self.stages.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One map per scale, finest first."""
        return [stage(x) for stage in self.stages]


class _LocalContext(nn.Module):
    """The bands and their local means over ``k x k`` windows (stride 1, edges averaged over the inside)."""

    def __init__(self, windows: Sequence[int]) -> None:
        super().__init__()
        self.pools = nn.ModuleList(
            nn.AvgPool2d(k, stride=1, padding=k // 2, count_include_pad=False) for k in windows
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, *(p(x) for p in self.pools)], dim=1)


class _Member(nn.Module):
    """One per-pixel classifier over encoder levels and pixels (see the module docstring).

    Args:
        cfg: The architecture.
    """

    def __init__(self, cfg: DenseHeadConfig) -> None:
        super().__init__()
        from segmentation_models_pytorch.base import SegmentationHead

        self.cfg = cfg
        fused = 0
        self.pyramid: nn.Module | None = None
        self.decoder: nn.Module | None = None
        if cfg.use_encoder:
            if len(cfg.in_channels) == 1:
                scales = cfg.scales or pyramid_scales(cfg.strides[0])
                self.pyramid = SimpleFeaturePyramid(cfg.in_channels[0], cfg.pyramid_channels, scales)
                level_channels = [cfg.pyramid_channels] * 4
                self.level_strides = tuple(cfg.strides[0] / s for s in scales)
            else:
                level_channels = list(cfg.in_channels)
                self.level_strides = tuple(cfg.strides)
            self.decoder = _build_decoder(cfg.decoder, level_channels, cfg.decoder_channels)
            self.enc_dropout = nn.Dropout2d(cfg.encoder_dropout)
            fused += cfg.decoder_channels
        self.context: nn.Module | None = None
        self.pixel: nn.Module | None = None
        if cfg.pixel_channels:
            self.context = _LocalContext(cfg.context)
            n_in = cfg.num_bands * (1 + len(cfg.context))
            self.pixel = nn.Sequential(
                nn.Conv2d(n_in, cfg.pixel_channels, 1),
                nn.GELU(),
                nn.Conv2d(cfg.pixel_channels, cfg.pixel_channels, 3, padding=1),
                nn.GELU(),
            )
            fused += cfg.pixel_channels
        self.fuse = nn.Sequential(nn.Conv2d(fused, fused, 1), nn.GELU(), nn.Dropout2d(0.1))
        self.classifier = SegmentationHead(fused, cfg.num_classes, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """``(B, K, H, W)`` logits for ``features`` (one map per level) and ``(B, N, H, W)`` pixels."""
        h, w = pixels.shape[-2:]
        parts = []
        if self.decoder is not None:
            feats = [self.enc_dropout(f.float()) for f in features]
            levels = self.pyramid(feats[0]) if self.pyramid is not None else feats
            if self.cfg.decoder == "fpn" and min(levels[-1].shape[-2:]) < 2:
                raise ValueError(
                    f"the fpn decoder needs inputs of at least {2 * max(self.level_strides):g} px (its "
                    "coarsest level must be 2 x 2 for GroupNorm); use larger tiles or the upernet decoder"
                )
            # smp decoders index [full, 1/2, 1/4, 1/8, 1/16, 1/32]: the first two are placeholders
            dec = self.decoder([levels[0], levels[0], *levels])
            parts.append(F.interpolate(dec, size=(h, w), mode="bilinear", align_corners=False))
        if self.pixel is not None and self.context is not None:
            parts.append(self.pixel(self.context(pixels)))
        out: torch.Tensor = self.classifier(self.fuse(torch.cat(parts, dim=1)))
        return out


class DenseHead(nn.Module):
    """Per-pixel classifier: the mean logits of ``cfg.members`` independently initialised members.

    Each member is the decoder + pixel branch + fusion of the module docstring. With several members
    the trainer gives each its own loss (so they stay different) and inference averages their logits,
    an ensemble that lowers the variance of a head trained on a few polygons (Lakshminarayanan et al.
    2017, "Simple and Scalable Predictive Uncertainty Estimation using Deep Ensembles").

    Args:
        cfg: The architecture.
    """

    def __init__(self, cfg: DenseHeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.members = nn.ModuleList(_Member(cfg) for _ in range(cfg.members))

    @property
    def level_strides(self) -> tuple[float, ...]:
        """Output pixels per cell of each decoder level."""
        out: tuple[float, ...] = getattr(self.members[0], "level_strides", ())
        return out

    def member_logits(self, features: Sequence[torch.Tensor], pixels: torch.Tensor) -> list[torch.Tensor]:
        """``(B, K, H, W)`` logits of each member."""
        return [m(features, pixels) for m in self.members]

    def forward(self, features: Sequence[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """Mean ``(B, K, H, W)`` logits of the members for ``features`` and ``(B, N, H, W)`` pixels."""
        logits = self.member_logits(features, pixels)
        return logits[0] if len(logits) == 1 else torch.stack(logits).mean(dim=0)


def _build_decoder(kind: str, level_channels: list[int], width: int) -> nn.Module:
    """Smp decoder over four levels, finest first, with LayerNorm."""
    channels = [level_channels[0], level_channels[0], *level_channels]
    if kind == "upernet":
        from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder

        dec: nn.Module = UPerNetDecoder(
            channels, encoder_depth=5, decoder_channels=width, use_norm="identity"
        )
        return dec
    if kind == "fpn":
        from segmentation_models_pytorch.decoders.fpn.decoder import FPNDecoder

        fpn: nn.Module = FPNDecoder(
            channels, encoder_depth=5, pyramid_channels=width, segmentation_channels=width
        )
        return fpn
    raise ValueError(f"decoder must be 'upernet' or 'fpn', not {kind!r}")
