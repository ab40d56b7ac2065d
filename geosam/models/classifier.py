"""The land-cover classifier: SAM's ViT image encoder + a small head over pooled features.

Input to :class:`LandCoverModel` is a float tensor ``(B, N, H, W)`` of the model's bands, each already
stretched to 0..1 (per scene, see :mod:`geosam.stretch`; per data set for training chips). The model
applies its own per-band ``(x - mean) / std`` (stored in the bundle), runs the encoder once, and the
same feature map feeds tile pooling, region (mask) pooling and, in the end-to-end run, SAM's mask decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from geosam.models.pooling import mask_weights, pool_regions, pool_tile

__all__ = ["ClassifierHead", "LandCoverModel"]


class ClassifierHead(nn.Module):
    """LayerNorm, dropout and a linear layer (or a one-hidden-layer MLP) over pooled features.

    Args:
        in_dim: Feature channels (the encoder's ``out_chans``).
        num_classes: Number of classes.
        hidden: Hidden width; 0 means a linear head.
        dropout: Dropout before the classifier (training only).
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim, self.num_classes, self.hidden, self.dropout = in_dim, num_classes, hidden, dropout
        layers: list[nn.Module] = [nn.LayerNorm(in_dim), nn.Dropout(dropout)]
        if hidden:
            layers += [
                nn.Linear(in_dim, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            ]
        else:
            layers += [nn.Linear(in_dim, num_classes)]
        self.net = nn.Sequential(*layers)
        # temperature scaling (geosam.calibration): not a weight (not in the state dict); load_bundle sets
        # it from model.json, so every probability computed from these logits is calibrated
        self.register_buffer("temperature", torch.ones(()), persistent=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map ``(K, in_dim)`` pooled features to ``(K, num_classes)`` logits, divided by the temperature.

        The temperature is 1 while training and the bundle's calibrated value once loaded (Guo et al.
        2017), so ``softmax(head(x))`` is a calibrated probability; the arg-max does not change.
        """
        out: torch.Tensor = self.net(pooled)
        temperature: torch.Tensor = self.temperature  # type: ignore[assignment]  # a registered buffer
        return out / temperature

    def set_temperature(self, value: float) -> None:
        """Set the temperature the logits are divided by (> 0; 1 = uncalibrated)."""
        if not value > 0:
            raise ValueError(f"temperature must be positive, got {value}")
        temperature: torch.Tensor = self.temperature  # type: ignore[assignment]
        temperature.fill_(float(value))


class LandCoverModel(nn.Module):
    """Encoder + heads with the bundle's per-band normalisation.

    Args:
        encoder: A segment-anything ``ImageEncoderViT`` (possibly band-adapted).
        head: The region/tile classifier head (``None`` for a dense-only model).
        mean: Per-band mean of the 0..1-stretched input.
        std: Per-band standard deviation of the 0..1-stretched input.
        dense: A :class:`~geosam.models.dense_head.DenseHead` (per-pixel classes), or ``None``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: ClassifierHead | None,
        mean: Sequence[float],
        std: Sequence[float],
        dense: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.dense = dense
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise and encode ``(B, N, H, W)`` 0..1 inputs; returns the ``(B, C, h, w)`` embedding."""
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        std: torch.Tensor = self.std  # type: ignore[assignment]
        out: torch.Tensor = self.encoder((x - mean) / std)
        return out

    @property
    def classifier(self) -> ClassifierHead:
        """The region/tile classifier head.

        Raises:
            ValueError: A dense-only model (no classifier head).
        """
        if self.head is None:
            raise ValueError("this model has no classifier head (it is a dense model)")
        return self.head

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` of ``(B, N, H, W)`` 0..1 inputs (what the encoder and the dense head read)."""
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        std: torch.Tensor = self.std  # type: ignore[assignment]
        return (x - mean) / std

    def dense_logits(
        self, features: torch.Tensor | Sequence[torch.Tensor] | None, x: torch.Tensor
    ) -> torch.Tensor:
        """Per-pixel logits ``(B, K, H, W)`` from encoder ``features`` and the 0..1 inputs ``x``.

        ``features`` is one ``(B, C, h, w)`` map (a ViT), the list of levels the head was built for
        (Hiera's four trunk maps, :func:`geosam.models.sam2_encoder.multiscale_features`), or ``None``
        for a head without encoder input (``use_encoder: false``).

        Raises:
            ValueError: The model has no dense head, or it reads features and none are given.
        """
        if self.dense is None:
            raise ValueError("this model has no dense head")
        if features is None and getattr(getattr(self.dense, "cfg", None), "use_encoder", False):
            raise ValueError("this dense head reads encoder features: pass them")
        if features is None:
            levels: list[torch.Tensor] = []
        elif isinstance(features, torch.Tensor):
            levels = [features]
        else:
            levels = list(features)
        out: torch.Tensor = self.dense(levels, self.normalize(x))
        return out

    def classify_tiles(self, features: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``(B, K)`` of whole tiles/chips from their features (nodata excluded)."""
        out: torch.Tensor = self._head(pool_tile(features, valid).float())
        return out

    def classify_regions(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Class logits ``(R, K)`` of ``R`` pixel masks ``(R, H, W)`` on one tile's ``(C, h, w)`` features."""
        weights = mask_weights(masks, (features.shape[-2], features.shape[-1]))
        out: torch.Tensor = self._head(pool_regions(features.float(), weights))
        return out

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise ValueError("this model has no classifier head (it is a dense model)")
        out: torch.Tensor = self.head(pooled)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Chip classification logits ``(B, K)`` (used for training)."""
        return self.classify_tiles(self.features(x))
