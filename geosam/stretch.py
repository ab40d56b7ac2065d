"""Per-scene radiometric stretch to 0..1, computed once per scene and shared by all its tiles.

A tile-by-tile stretch would give each tile its own brightness and leave visible seams in the model's
input (and its output). :func:`compute_stretch` therefore derives one :class:`Stretch` per scene from a
decimated read of the whole scene (out of core: the read's longest side is ``sample_size`` pixels, from
overviews when the file has them), and every tile applies the same values with :func:`apply_stretch`.

Values first become physical values, ``value = stored * scale + offset`` per band (GDAL scale/offset
metadata, or the Sentinel-2 DN rule: :mod:`geosam.radiometry`), in *every* method; then:

* ``percentile``: per band, the ``low`` and ``high`` percentiles of the valid sampled values (nodata,
  masked and NaN pixels excluded) map to 0 and 1;
* ``dtype``: 0 and the largest storable value map to 0 and 1: ``2**NBITS - 1`` when the band says how
  many bits it uses (GDAL ``NBITS``), else the dtype's maximum (255 for uint8, 65535 for uint16...);
  integer rasters only. When the sampled values use less than 1/8 of that range (12-bit data stored as
  uint16 uses 1/16), a WARNING says so;
* ``none``: values 0 and 1 map to 0 and 1 (data already in 0..1, such as reflectance); refused when
  the values (after scale/offset) are not about 0..1;
* ``fixed``: per-band ``low``/``high`` given by a model's preprocessing (:mod:`geosam.preprocess`).

Values outside ``low..high`` are clipped. A constant band (``low == high``) maps to 0 at or below
``low`` and to 1 above it, without dividing by zero.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import NormalizeConfig
from geosam.errors import BandError, ConfigError, EmptyRasterError

if TYPE_CHECKING:
    from geosam.radiometry import BandScaling, Radiometry

__all__ = ["Stretch", "apply_stretch", "compute_stretch", "read_sample", "stretch_from_sample", "unit_values"]

log = logging.getLogger(__name__)

#: ``dtype`` stretches warn when the sampled values use less than this fraction of the range.
_DTYPE_RANGE_WARN = 1 / 8


@dataclass(frozen=True, slots=True)
class Stretch:
    """A linear per-band mapping of stored values to 0..1, clipped.

    ``unit = clip((stored * scale + offset - low) / (high - low), 0, 1)``.

    Attributes:
        method: How the bounds were chosen (``percentile``, ``dtype``, ``none`` or ``fixed``).
        low: Value (after scale/offset) mapped to 0, one per band (in the order of the bands read).
        high: Value mapped to 1, one per band; ``high >= low``.
        bands: The 1-based scene band indexes the bounds belong to (empty when not tied to a scene).
        scale: Per-band factor from stored to physical values (empty: 1).
        offset: Per-band offset from stored to physical values (empty: 0).
    """

    method: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    bands: tuple[int, ...] = ()
    scale: tuple[float, ...] = field(default=())
    offset: tuple[float, ...] = field(default=())

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
        scale = tuple(float(v) for v in self.scale) or (1.0,) * len(low)
        offset = tuple(float(v) for v in self.offset) or (0.0,) * len(low)
        if len(scale) != len(low) or len(offset) != len(low):
            raise ConfigError(f"a stretch needs one scale and one offset per band (got {scale}, {offset})")
        if not all(np.isfinite(scale)) or not all(np.isfinite(offset)) or any(s == 0 for s in scale):
            raise ConfigError(f"scale must be finite and non-zero, offset finite ({scale}, {offset})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "bands", tuple(int(b) for b in self.bands))
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "offset", offset)

    def __len__(self) -> int:
        return len(self.low)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for run manifests (see :meth:`from_dict`)."""
        return {
            "method": self.method,
            "low": list(self.low),
            "high": list(self.high),
            "bands": list(self.bands),
            "scale": list(self.scale),
            "offset": list(self.offset),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stretch:
        """Build from :meth:`to_dict` output (records without ``scale``/``offset`` mean 1 and 0)."""
        return cls(
            method=str(data["method"]),
            low=tuple(data["low"]),
            high=tuple(data["high"]),
            bands=tuple(data.get("bands", ())),
            scale=tuple(data.get("scale", ())),
            offset=tuple(data.get("offset", ())),
        )

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band ``(a, c)`` float64 so that ``unit = clip(stored * a + c, 0, 1)`` (``a = 0``: constant)."""
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        s, o = np.asarray(self.scale), np.asarray(self.offset)
        span = hi - lo
        safe = np.where(span > 0, span, 1.0)
        return np.where(span > 0, s / safe, 0.0), np.where(span > 0, (o - lo) / safe, 0.0)


def read_sample(
    path: str | os.PathLike[str], bands: Sequence[int], sample_size: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """Stored values ``(bands, n)`` float32 of the valid pixels of a decimated read, and its shape.

    The read is nearest-neighbour, its longest side ``sample_size`` pixels (see
    :func:`geosam.io.read.read_decimated`).
    """
    from geosam.io.read import read_decimated

    data, valid = read_decimated(path, bands, max_side=sample_size)
    return data[:, valid], (int(valid.shape[0]), int(valid.shape[1]))


def compute_stretch(
    path: str | os.PathLike[str],
    bands: Sequence[int] | None,
    cfg: NormalizeConfig,
    *,
    radiometry: Radiometry | None = None,
    sample: np.ndarray | None = None,
    fixed: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Stretch:
    """Compute a scene's stretch from a decimated read (see the module docstring).

    Args:
        path: File path or GDAL URI.
        bands: 1-based band indexes, in the order tiles will be read; ``None`` for all bands.
        cfg: ``method`` (``percentile``, ``dtype``, ``none``; ``auto`` is resolved against a model by
            :func:`geosam.scene_preprocessing.scene_preprocessing` and refused here), ``low``/``high``
            percentiles and ``sample_size`` (longest side of the decimated read, pixels). Ignored when
            ``fixed`` is given.
        radiometry: Stored -> physical values of these bands; default GDAL scale/offset of the file.
        sample: Valid stored values ``(bands, n)`` already read (:func:`read_sample`); read when needed
            and not given.
        fixed: ``(low, high)`` per band in physical values: a ``fixed`` stretch (a model's bounds).

    Returns:
        The scene's :class:`Stretch`.

    Raises:
        ConfigError: ``method="dtype"`` on a floating-point raster; ``method="none"`` on values (after
            scale/offset) that are not about 0..1; ``method="auto"``.
        EmptyRasterError: No valid pixel in the sample (the scene is all nodata, or its valid part is
            smaller than the sample's pixels: raise ``sample_size``).
        RasterError: The file cannot be opened or read.
    """
    from geosam.io.read import open_scene
    from geosam.radiometry import read_band_scaling

    info = open_scene(path)
    b = tuple(range(1, info.count + 1)) if bands is None else tuple(int(i) for i in bands)
    if any(not 1 <= i <= info.count for i in b):
        raise BandError(f"band indexes {list(b)} outside 1..{info.count}", info.path)
    meta = read_band_scaling(info.path, b)
    shape = (0, 0)
    if sample is None and fixed is None and cfg.method in ("dtype", "none", "percentile"):
        sample, shape = read_sample(info.path, b, cfg.sample_size)
    if sample is not None and cfg.method == "percentile" and fixed is None and sample.shape[-1] == 0:
        raise EmptyRasterError(
            f"no valid pixel in a {shape[1]} x {shape[0]} sample of the scene: it is all nodata, "
            "or its valid part is too small to sample (raise normalize.sample_size)",
            info.path,
        )
    return stretch_from_sample(
        meta, sample, cfg, radiometry=radiometry, fixed=fixed, bands=b, where=info.path
    )


def stretch_from_sample(
    meta: BandScaling,
    sample: np.ndarray | None,
    cfg: NormalizeConfig,
    *,
    radiometry: Radiometry | None = None,
    fixed: tuple[Sequence[float], Sequence[float]] | None = None,
    bands: Sequence[int] = (),
    where: str | None = None,
) -> Stretch:
    """:func:`compute_stretch` without I/O: from header metadata and a sample of valid stored values.

    Args:
        meta: dtype, GDAL scale/offset and ``NBITS`` of the bands
            (:func:`geosam.radiometry.read_band_scaling`).
        sample: ``(bands, n)`` valid stored values (needed by ``percentile``; checks of ``dtype``/``none``).
        cfg: As in :func:`compute_stretch`.
        radiometry: Stored -> physical values; default ``meta``'s GDAL scale/offset.
        fixed: ``(low, high)`` per band in physical values: a ``fixed`` stretch.
        bands: Scene band indexes recorded in the :class:`Stretch`.
        where: File named in errors and warnings.

    Raises:
        ConfigError, EmptyRasterError: As :func:`compute_stretch`.
    """
    n = len(meta.scale)
    scale = radiometry.scale if radiometry is not None else meta.scale
    offset = radiometry.offset if radiometry is not None else meta.offset
    if len(scale) != n:
        raise ConfigError(f"the radiometry has {len(scale)} bands but {n} bands are read", where)
    s, o = np.asarray(scale, np.float64), np.asarray(offset, np.float64)
    b = tuple(int(i) for i in bands)
    if fixed is not None:
        return Stretch("fixed", tuple(fixed[0]), tuple(fixed[1]), b, scale, offset)
    method = cfg.method
    if method == "auto":
        raise ConfigError(
            "normalize.method 'auto' means the model's preprocessing; resolve it with "
            "geosam.scene_preprocessing.scene_preprocessing (or choose percentile, dtype or none)",
            where,
        )
    if method == "dtype":
        full = meta.full_scale
        if full is None:
            raise ConfigError(
                f"--stretch dtype needs an integer raster, this one is {meta.dtype}; "
                "use auto (the model's preprocessing), percentile, or none for data already in 0..1",
                where,
            )
        if sample is not None:
            _warn_dtype_range(where or "input", meta.dtype, meta.nbits, full, sample)
        ends = np.stack([o, full * s + o])  # physical values of stored 0 and stored full scale
        return Stretch("dtype", tuple(ends.min(0)), tuple(ends.max(0)), b, scale, offset)
    if method == "none":
        if sample is not None and sample.size:
            values = sample * s[:, None] + o[:, None]
            lo, hi = np.percentile(values, [1, 99])
            if lo < -0.5 or hi > 1.5:
                raise ConfigError(
                    f"--stretch none needs values of about 0..1, but these span {lo:.4g}..{hi:.4g} "
                    "(1st..99th percentiles, after GDAL scale/offset); use --stretch auto (the model's "
                    "preprocessing), or --radiometry dn for Sentinel-2 DN",
                    where,
                )
        return Stretch("none", (0.0,) * n, (1.0,) * n, b, scale, offset)
    if sample is None or sample.shape[-1] == 0:
        raise EmptyRasterError("no valid pixel to compute a percentile stretch from", where)
    values = sample.astype(np.float64) * s[:, None] + o[:, None]  # (bands, n_valid)
    lo, hi = np.percentile(values, [cfg.low, cfg.high], axis=1)
    return Stretch("percentile", tuple(float(v) for v in lo), tuple(float(v) for v in hi), b, scale, offset)


def _warn_dtype_range(path: str, dtype: str, nbits: int | None, full: float, sample: np.ndarray) -> None:
    if not sample.size:
        return
    top = float(np.max(sample))
    if top <= full * _DTYPE_RANGE_WARN:
        bits = int(np.ceil(np.log2(top + 1))) if top > 0 else 1
        log.warning(
            "%s: --stretch dtype maps 0..%g to 0..1, but the values reach only %g (1/%d of the %s range%s): "
            "the model sees a dark image; %d-bit data? set its NBITS (gdal_translate -co NBITS=%d), or use "
            "--stretch auto or percentile",
            path,
            full,
            top,
            round(full / max(top, 1)),
            dtype,
            f", NBITS={nbits}" if nbits else "",
            bits,
            bits,
        )


def unit_values(array: np.ndarray, stretch: Stretch, *, band_axis: int = 0) -> np.ndarray:
    """Stored values -> float32 0..1 with ``stretch``, bands along ``band_axis``; ``NaN`` stays ``NaN``.

    The one arithmetic every geosam path uses (scenes through :func:`apply_stretch`, training chips
    through :meth:`geosam.train.data.ChipData.to_unit`): float32 ``stored * a + c`` with
    ``a = scale / (high - low)``, ``c = (offset - low) / (high - low)``, then clipped to 0..1.
    """
    out = np.array(array, dtype=np.float32, copy=True)
    a, c = stretch.affine()
    if out.shape[band_axis] != len(a):
        raise BandError(f"the stretch has {len(a)} band(s) but the array has {out.shape[band_axis]}")
    shape = [1] * out.ndim
    shape[band_axis] = -1
    out *= a.astype(np.float32).reshape(shape)
    out += c.astype(np.float32).reshape(shape)
    for i in np.flatnonzero(a == 0):  # constant band: a step at ``low`` instead of a division by zero
        src = np.take(np.asarray(array, np.float32), i, axis=band_axis)
        phys = src * np.float32(stretch.scale[i]) + np.float32(stretch.offset[i])
        step = np.where(np.isnan(src), np.nan, phys > stretch.low[i]).astype(np.float32)
        index: list[Any] = [slice(None)] * out.ndim
        index[band_axis] = i
        out[tuple(index)] = step
    np.clip(out, 0.0, 1.0, out=out)
    return out


def apply_stretch(array: np.ndarray, valid: np.ndarray | None, stretch: Stretch) -> np.ndarray:
    """Map stored values to float32 0..1 with a scene's stretch; invalid pixels become 0.

    Args:
        array: Stored values ``(bands, H, W)`` (any real dtype), bands in the order of ``stretch``.
        valid: bool ``(H, W)``, or ``None`` when every pixel is valid.
        stretch: From :func:`compute_stretch` for the same scene and bands.

    Returns:
        A new float32 array ``(bands, H, W)`` in ``[0, 1]`` (:func:`unit_values`).

    Raises:
        BandError: ``array`` does not have one band per stretch band.
    """
    if array.ndim != 3 or array.shape[0] != len(stretch):
        raise BandError(
            f"the stretch has {len(stretch)} band(s) but the array has shape {array.shape} "
            "(expected (bands, height, width))"
        )
    out = unit_values(array, stretch)
    out[np.isnan(out)] = 0  # NaN inputs (clip keeps NaN)
    if valid is not None:
        out[:, ~valid] = 0
    return out
