"""Training augmentations that simulate another sensor: ground sampling distance, radiometry, blur.

A model trained on one sensor (EuroSAT: Sentinel-2 RGB at 10 m) meets scenes whose pixels cover more or
less ground, whose bands have other gains, offsets and tone curves, and whose optics blur more. These
augmentations draw such differences at random per chip, on the 0..1 inputs before the model's own
normalisation, for any number of bands:

* **scale** (ground sampling distance): with probability ``p/2`` a random square crop of 25-100 % of the
  chip area is resized back to the chip (objects look up to 2x larger, as at 5 m GSD fed without
  resolution matching); with probability ``p/2`` the chip is downsampled by a factor 1-2 (antialiased)
  and upsampled back (the detail of a 10-20 m sensor, as ``geosam run`` feeds such a scene after
  resolution matching to the model's 10 m).
* **radiometry**: per band a gain (log-uniform 0.8-1.25) and an offset (uniform +-0.05), per chip a
  gamma (log-uniform 0.7-1.4): ``clip(gain * x ** gamma + offset, 0, 1)``.
* **blur**: a Gaussian blur with sigma uniform in 0.3-1.5 px (a softer point spread function).

Crops and blur use kornia's batched per-sample augmentations (``RandomResizedCrop``,
``RandomGaussianBlur``); kornia has no per-band radiometric jitter for N bands (its colour
augmentations are RGB hue/saturation or whole-image brightness) and no down-then-up resampling, so those
two are a few lines of torch here. Every random draw is seeded from the caller's numpy generator (the
training loop's, which its checkpoint saves), inside ``torch.random.fork_rng``, so a resumed run draws
the same augmentations and the global torch generator is left alone.

Sources: the ranges follow the sensor differences these augmentations model (Sentinel-2 10/20 m,
Landsat 30 m resampled, aerial 0.3-1 m resampled); augmenting with resolution and radiometric changes
for cross-sensor transfer is discussed by Tuia, Persello and Bruzzone (2016, "Domain adaptation for the
classification of remote sensing data", IEEE GRSM 4(2)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SensorAugment", "radiometric_jitter", "resolution_loss"]


@dataclass(frozen=True)
class SensorAugment:
    """Probabilities (0..1) of each sensor augmentation per chip.

    Attributes:
        scale: Probability of a ground-sampling-distance change (half zoom-in crops, half resolution loss).
        radiometry: Probability of per-band gain/offset and a gamma.
        blur: Probability of a Gaussian blur.
    """

    scale: float = 0.0
    radiometry: float = 0.0
    blur: float = 0.0

    def __post_init__(self) -> None:
        for name in ("scale", "radiometry", "blur"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} probability must be in 0..1, got {v}")

    @property
    def active(self) -> bool:
        """Whether any augmentation can happen."""
        return self.scale > 0 or self.radiometry > 0 or self.blur > 0

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Augment a ``(B, N, H, W)`` float batch of 0..1 chips; returns a new tensor of the same shape.

        Args:
            x: Chips in 0..1 (any band count ``N``, square or not).
            rng: Source of randomness (one 63-bit seed is drawn from it per call).
        """
        if not self.active or len(x) == 0:
            return x
        import kornia.augmentation as K

        seed = int(rng.integers(0, 2**63 - 1))
        h, w = int(x.shape[-2]), int(x.shape[-1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed ^ 0x5DEECE66D)
            if self.scale > 0:
                # one draw decides none / zoom-in / resolution loss per chip
                u = torch.rand(len(x), generator=gen)
                zoom = torch.where(u < self.scale / 2)[0]
                down = torch.where((u >= self.scale / 2) & (u < self.scale))[0]
                x = x.clone()
                if len(zoom):
                    crop = K.RandomResizedCrop((h, w), scale=(0.25, 1.0), ratio=(1.0, 1.0), p=1.0)
                    x[zoom] = crop(x[zoom]).to(x.dtype)
                if len(down):
                    factors = torch.exp(torch.rand(len(down), generator=gen) * math.log(2.0))
                    x[down] = resolution_loss(x[down], factors)
            if self.radiometry > 0:
                sel = torch.where(torch.rand(len(x), generator=gen) < self.radiometry)[0]
                if len(sel):
                    x = x.clone()
                    x[sel] = radiometric_jitter(x[sel], gen)
            if self.blur > 0:
                blur = K.RandomGaussianBlur((7, 7), (0.3, 1.5), p=self.blur)
                x = blur(x).to(x.dtype).clamp(0.0, 1.0)
        return x


def resolution_loss(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Downsample each chip by its factor (antialiased bilinear), then upsample back (bilinear).

    This is what a coarser sensor looks like after resampling to the model's grid: the same ground
    extent, less detail.

    Args:
        x: ``(B, N, H, W)`` float chips.
        factors: ``(B,)`` factors >= 1 (2 = half the resolution, e.g. 20 m data at 10 m).

    Returns:
        ``(B, N, H, W)`` chips, same dtype.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    sizes = [(max(1, round(h / float(f))), max(1, round(w / float(f)))) for f in factors]
    out = x.clone()
    for size in sorted(set(sizes)):
        idx = torch.tensor([i for i, s in enumerate(sizes) if s == size])
        if size == (h, w):
            continue
        small = F.interpolate(x[idx], size=size, mode="bilinear", antialias=True, align_corners=False)
        out[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def radiometric_jitter(
    x: torch.Tensor,
    gen: torch.Generator,
    gain: tuple[float, float] = (0.8, 1.25),
    offset: float = 0.05,
    gamma: tuple[float, float] = (0.7, 1.4),
) -> torch.Tensor:
    """``clip(gain * x ** gamma + offset, 0, 1)`` with a random gain and offset per band, gamma per chip.

    Args:
        x: ``(B, N, H, W)`` chips in 0..1.
        gen: Torch generator for the draws.
        gain: Range of the per-band gain (drawn log-uniform).
        offset: Half-width of the per-band offset range (uniform, in 0..1 units).
        gamma: Range of the per-chip gamma (drawn log-uniform).
    """
    b, n = int(x.shape[0]), int(x.shape[1])

    def log_uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        r = torch.rand(shape, generator=gen)
        return torch.exp(math.log(lo) + r * (math.log(hi) - math.log(lo))).to(x.dtype)

    g = log_uniform((b, n, 1, 1), *gain)
    o = ((torch.rand((b, n, 1, 1), generator=gen) * 2 - 1) * offset).to(x.dtype)
    gm = log_uniform((b, 1, 1, 1), *gamma)
    return (g * x.clamp(0.0, 1.0).pow(gm) + o).clamp(0.0, 1.0)
