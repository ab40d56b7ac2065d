"""Architecture of the dense head as plain data (no torch): what ``model.json`` records.

Kept apart from :mod:`geosam.models.dense_head` so that reading a bundle's metadata never imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["DenseHeadConfig", "check_dense_meta"]


@dataclass(frozen=True)
class DenseHeadConfig:
    """Architecture of a :class:`DenseHead` (stored in the bundle's ``model.json``).

    Attributes:
        in_channels: Channels of each encoder level (one entry for a ViT).
        strides: Output pixels per feature cell of each level, same length (e.g. ``(2.0,)`` for a
            ViT with patch 8 on 16-pixel chips resampled to 64).
        num_classes: Classes ``K``.
        num_bands: Input bands ``N`` of the pixel branch.
        decoder: ``upernet`` or ``fpn`` (segmentation-models-pytorch decoders).
        decoder_channels: Decoder width.
        pyramid_channels: Width of the simple-feature-pyramid levels (single-level encoders).
        pixel_channels: Width of the pixel branch (0 = no pixel branch).
        context: Edges of the local-mean windows of the pixel branch (odd, pixels).
        use_encoder: Use the encoder levels (``False``: pixel branch only).
        encoder_dropout: Channel dropout on the encoder levels while training.
        members: Independently trained copies of the head whose logits are averaged (an ensemble).
    """

    in_channels: tuple[int, ...]
    strides: tuple[float, ...]
    num_classes: int
    num_bands: int
    decoder: Literal["upernet", "fpn"] = "upernet"
    decoder_channels: int = 64
    pyramid_channels: int = 64
    pixel_channels: int = 32
    context: tuple[int, ...] = (3, 7)
    use_encoder: bool = True
    encoder_dropout: float = 0.0
    members: int = 1
    scales: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.in_channels) != len(self.strides) or not self.in_channels:
            raise ValueError("in_channels and strides need one entry per encoder level")
        if len(self.in_channels) not in (1, 4):
            n = len(self.in_channels)
            raise ValueError(f"1 (ViT) or 4 (Hiera) encoder levels are supported, not {n}")
        if not self.use_encoder and not self.pixel_channels:
            raise ValueError("a dense head needs the encoder, the pixel branch, or both")
        if self.members < 1:
            raise ValueError(f"a dense head needs at least one member, not {self.members}")
        if self.decoder == "fpn" and self.decoder_channels % 32:
            raise ValueError(
                f"the fpn decoder needs a multiple of 32 channels (GroupNorm), not {self.decoder_channels}"
            )
        if any(k < 1 or k % 2 == 0 for k in self.context):
            raise ValueError(f"context windows must be odd sizes, not {self.context}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenseHeadConfig:
        """Inverse of :meth:`to_dict`."""
        tuples = ("in_channels", "strides", "context", "scales")
        args: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in d.items()}
        return cls(**args)


def check_dense_meta(d: dict[str, Any], num_classes: int, num_bands: int) -> DenseHeadConfig:
    """Parse a bundle's ``dense`` entry and check it against the class and band counts.

    Raises:
        ValueError: Unknown keys, bad values, or counts that differ from the bundle's.
    """
    try:
        cfg = DenseHeadConfig.from_dict(dict(d))
    except TypeError as err:
        raise ValueError(f"invalid dense head description ({err})") from None
    if cfg.num_classes != num_classes:
        raise ValueError(f"{num_classes} class names but the dense head has {cfg.num_classes} outputs")
    if cfg.num_bands != num_bands:
        raise ValueError(f"{num_bands} bands but the dense head reads {cfg.num_bands}")
    return cfg
