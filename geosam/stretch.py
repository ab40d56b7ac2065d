"""Per-scene radiometric stretch to 0..1, computed once per scene and shared by all its tiles.

A tile-by-tile stretch would give each tile its own brightness and leave visible seams in the model's
input (and its output). :func:`compute_stretch` therefore derives one :class:`Stretch` per scene from a
decimated read of the whole scene (out of core: the read's longest side is ``sample_size`` pixels, from
overviews when the file has them), and every tile applies the same values with :func:`apply_stretch`.

Methods (:class:`geosam.config.NormalizeConfig`):

* ``percentile``: per band, the ``low`` and ``high`` percentiles of the valid sampled values (nodata,
  masked and NaN pixels excluded) map to 0 and 1;
* ``dtype``: 0 and the dtype's maximum (255 for uint8, 65535 for uint16...) map to 0 and 1; integer
  rasters only;
* ``none``: 0 and 1 map to 0 and 1 (data already in 0..1, such as reflectance).

Values outside ``low..high`` are clipped. A constant band (``low == high``) maps to 0 at or below
``low`` and to 1 above it, without dividing by zero.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geosam.config import NormalizeConfig
from geosam.errors import BandError, ConfigError, EmptyRasterError

__all__ = ["Stretch", "apply_stretch", "compute_stretch"]


@dataclass(frozen=True, slots=True)
class Stretch:
    """A linear per-band mapping of raw values to 0..1: ``(x - low) / (high - low)``, clipped.

    Attributes:
        method: How the bounds were chosen (``percentile``, ``dtype`` or ``none``).
        low: Raw value mapped to 0, one per band (in the order of the bands read).
        high: Raw value mapped to 1, one per band; ``high >= low``.
        bands: The 1-based scene band indexes the bounds belong to (empty when not tied to a scene).
    """

    method: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    bands: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        low = tuple(float(v) for v in self.low)
        high = tuple(float(v) for v in self.high)
        if len(low) != len(high) or not low:
            raise ConfigError(
                f"a stretch needs one low and one high per band (got {len(low)} and {len(high)})"
            )
        if self.bands and len(self.bands) != len(low):
            raise ConfigError(
                f"a stretch for bands {list(self.bands)} needs {len(self.bands)} bounds, not {len(low)}"
            )
        if any(
            not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo) for lo, hi in zip(low, high, strict=True)
        ):
            raise ConfigError(f"stretch bounds must be finite with high >= low (low={low}, high={high})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "bands", tuple(int(b) for b in self.bands))

    def __len__(self) -> int:
        return len(self.low)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for run manifests (see :meth:`from_dict`)."""
        return {
            "method": self.method,
            "low": list(self.low),
            "high": list(self.high),
            "bands": list(self.bands),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stretch:
        """Build from :meth:`to_dict` output."""
        return cls(
            method=str(data["method"]),
            low=tuple(data["low"]),
            high=tuple(data["high"]),
            bands=tuple(data.get("bands", ())),
        )


def compute_stretch(
    path: str | os.PathLike[str], bands: Sequence[int] | None, cfg: NormalizeConfig
) -> Stretch:
    """Compute a scene's stretch from a decimated read (see the module docstring).

    Args:
        path: File path or GDAL URI.
        bands: 1-based band indexes, in the order tiles will be read; ``None`` for all bands.
        cfg: ``method``, ``low``/``high`` percentiles and ``sample_size`` (longest side of the decimated
            read, pixels).

    Returns:
        The scene's :class:`Stretch`.

    Raises:
        ConfigError: ``method="dtype"`` on a floating-point raster.
        EmptyRasterError: No valid pixel in the sample (the scene is all nodata, or its valid part is
            smaller than the sample's pixels: raise ``sample_size``).
        RasterError: The file cannot be opened or read.
    """
    from geosam.io.read import open_scene, read_decimated

    info = open_scene(path)
    b = tuple(range(1, info.count + 1)) if bands is None else tuple(int(i) for i in bands)
    if any(not 1 <= i <= info.count for i in b):
        raise BandError(f"band indexes {list(b)} outside 1..{info.count}", info.path)
    n = len(b)
    if cfg.method == "none":
        return Stretch("none", (0.0,) * n, (1.0,) * n, b)
    if cfg.method == "dtype":
        dtype = np.dtype(info.dtype)
        if not np.issubdtype(dtype, np.integer):
            raise ConfigError(
                f"normalize.method 'dtype' needs an integer raster, this one is {info.dtype}; "
                "use 'percentile', or 'none' for data already in 0..1",
                info.path,
            )
        return Stretch("dtype", (0.0,) * n, (float(np.iinfo(dtype).max),) * n, b)
    data, valid = read_decimated(info.path, b, max_side=cfg.sample_size)
    if not valid.any():
        raise EmptyRasterError(
            f"no valid pixel in a {valid.shape[1]} x {valid.shape[0]} sample of the scene: it is all nodata, "
            "or its valid part is too small to sample (raise normalize.sample_size)",
            info.path,
        )
    values = data[:, valid]  # (bands, n_valid)
    lo, hi = np.percentile(values, [cfg.low, cfg.high], axis=1)
    return Stretch("percentile", tuple(float(v) for v in lo), tuple(float(v) for v in hi), b)


def apply_stretch(array: np.ndarray, valid: np.ndarray | None, stretch: Stretch) -> np.ndarray:
    """Map raw values to float32 0..1 with a scene's stretch; invalid pixels become 0.

    Args:
        array: Raw values ``(bands, H, W)`` (any real dtype), bands in the order of ``stretch``.
        valid: bool ``(H, W)``, or ``None`` when every pixel is valid.
        stretch: From :func:`compute_stretch` for the same scene and bands.

    Returns:
        A new float32 array ``(bands, H, W)`` in ``[0, 1]``.

    Raises:
        BandError: ``array`` does not have one band per stretch band.
    """
    if array.ndim != 3 or array.shape[0] != len(stretch):
        raise BandError(
            f"the stretch has {len(stretch)} band(s) but the array has shape {array.shape} "
            "(expected (bands, height, width))"
        )
    out = np.array(array, dtype=np.float32, copy=True)
    for i, (lo, hi) in enumerate(zip(stretch.low, stretch.high, strict=True)):
        band = out[i]
        if hi > lo:
            band -= np.float32(lo)
            band *= np.float32(1.0 / (hi - lo))
        else:  # constant band: a step at ``low`` instead of a division by zero
            band[...] = band > lo
    np.clip(out, 0.0, 1.0, out=out)
    out[np.isnan(out)] = 0  # NaN inputs (clip keeps NaN)
    if valid is not None:
        out[:, ~valid] = 0
    return out
