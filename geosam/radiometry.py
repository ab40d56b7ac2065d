"""What a raster's stored values mean: display levels, reflectance, or unknown ("raw") values.

A model's preprocessing (:mod:`geosam.preprocess`) is defined on *physical* values where the input has
them. This module decides, per scene (or per chip folder), how stored values become those values:
``value = stored * scale + offset`` per band, and what kind of value that is:

* ``display``: a fraction 0..1 of an image's full display range (8-bit JPEG/PNG levels / 255);
* ``reflectance``: top-of-atmosphere or surface reflectance (nominally 0..1, bright clouds up to ~2);
* ``raw``: values of unknown meaning (no physical mapping can be applied; only their own statistics).

The rule (:func:`decide_radiometry`), applied identically to training data and to scenes and logged
with the numbers it used:

1. **An explicit option** (``--radiometry``) wins: ``display`` (stored / full scale: 255 for 8-bit
   values, ``2**NBITS - 1`` or the dtype maximum for wider integers), ``reflectance`` (stored values
   after GDAL scale/offset; integers without scale/offset are refused), ``dn`` (Sentinel-2 digital
   numbers: ``reflectance = (DN + dn_offset) / 10000``, ESA's ``QUANTIFICATION_VALUE`` and
   ``RADIO_ADD_OFFSET``/``BOA_ADD_OFFSET``; ``--dn-offset -1000`` for products of processing baseline
   04.00 and later, i.e. acquired from 25 January 2022). An option that cannot fit the data is a
   one-line :class:`~geosam.errors.ConfigError`.
2. **GDAL scale/offset metadata** on any selected band: ``value = stored * scale + offset`` is
   reflectance when its sampled 1st..99th percentiles lie within -0.5..3, else ``raw`` (a WARNING).
3. **The training data's storage type**: an input without scale/offset stored in the same dtype as the
   model's training data is read as the training data was (for example uint16 EuroSAT MS chips read as
   Sentinel-2 DN).
4. **uint8**: display levels / 255, like JPEG and PNG chips.
5. **Sentinel-2 band names** (``B02``, ``B8A``...) on integer bands: Sentinel-2 DN (rule 1's ``dn``).
6. **Value ranges** of a decimated sample of the valid pixels (1st and 99th percentiles ``p1``,
   ``p99`` over the selected bands): floats with ``-0.5 <= p1`` and ``p99 <= 3`` are reflectance; whole
   numbers with ``0 <= p1`` and ``p99 <= 255`` are 8-bit display levels in a wider type; values with
   ``0 <= p1`` and ``p99 <= 20000`` are read as Sentinel-2 DN (a WARNING says so); anything else is
   ``raw`` (a WARNING).

Whenever Sentinel-2 DN are read with offset 0 but the darkest 0.5 % of every band lies at or above
1000, a WARNING suggests ``--dn-offset -1000``.

Why this module is long: the rule is one decision in six ordered steps, each with the one-line
message a user sees when it guesses, warns or refuses; split up, the order of the steps (which is the
rule) could no longer be read in one place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from geosam.errors import ConfigError

__all__ = [
    "BandScaling",
    "Radiometry",
    "RadiometryKind",
    "RadiometryOption",
    "decide_radiometry",
    "read_band_scaling",
    "sentinel2_named",
]

log = logging.getLogger(__name__)

RadiometryKind = Literal["display", "reflectance", "raw"]
RadiometryOption = Literal["auto", "display", "reflectance", "dn"]

#: ESA's QUANTIFICATION_VALUE of Sentinel-2 L1C and L2A products: reflectance = DN / 10000.
S2_QUANTIFICATION = 10000.0
#: Largest 99th percentile accepted as Sentinel-2 DN by rule 6 (bright clouds reach about 1.6-2.0
#: reflectance, saturated pixels 65535 are the exception, not the 99th percentile).
S2_DN_MAX = 20000.0
#: Physical values whose 1st..99th percentiles lie in this range are reflectance.
REFLECTANCE_RANGE = (-0.5, 3.0)
#: Darkest-pixel level above which offset-less Sentinel-2 DN look like processing baseline >= 04.00.
S2_OFFSET_HINT = 1000.0


@dataclass(frozen=True, slots=True)
class BandScaling:
    """Radiometric header metadata of the selected bands (no pixels).

    Attributes:
        dtype: numpy dtype name of the stored values.
        scale: GDAL scale per band (1.0 when unset).
        offset: GDAL offset per band (0.0 when unset).
        nbits: Significant bits per value (GDAL ``NBITS`` image-structure metadata, e.g. 12), or ``None``.
        names: Band names (descriptions), ``None`` when unnamed.
    """

    dtype: str
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    nbits: int | None = None
    names: tuple[str | None, ...] = ()

    @property
    def has_scale_offset(self) -> bool:
        """Whether any band carries a GDAL scale other than 1 or an offset other than 0."""
        return any(s != 1.0 for s in self.scale) or any(o != 0.0 for o in self.offset)

    @property
    def full_scale(self) -> float | None:
        """Largest storable value: ``2**NBITS - 1`` when known, else the integer dtype's maximum."""
        dt = np.dtype(self.dtype)
        if not np.issubdtype(dt, np.integer):
            return None
        if self.nbits is not None and 0 < self.nbits < dt.itemsize * 8:
            return float(2**self.nbits - 1)
        return float(np.iinfo(dt).max)


def read_band_scaling(path: str | os.PathLike[str], bands: Sequence[int]) -> BandScaling:
    """Read the dtype, GDAL scale/offset, ``NBITS`` and descriptions of ``bands`` (1-based) from a header.

    Raises:
        RasterError: The file cannot be opened (see :func:`geosam.io.read.open_scene`).
    """
    from geosam.io._open import _open
    from geosam.io.env import geosam_env
    from geosam.io.read import open_scene

    info = open_scene(path)  # raises the geosam errors for missing or unreadable files
    p = os.fspath(path)
    # geosam's opener: a paletted band comes back as its colour table's red, green, blue bands
    with geosam_env(p), _open(p) as ds:
        scales = tuple(float(ds.scales[b - 1] if ds.scales[b - 1] is not None else 1.0) for b in bands)
        offsets = tuple(float(ds.offsets[b - 1] if ds.offsets[b - 1] is not None else 0.0) for b in bands)
        nbits = {ds.tags(b, "IMAGE_STRUCTURE").get("NBITS") for b in bands}
    nb = nbits.pop() if len(nbits) == 1 else None
    return BandScaling(
        dtype=info.dtype,
        scale=scales,
        offset=offsets,
        nbits=int(nb) if nb and str(nb).isdigit() else None,
        names=tuple(info.band_names[b - 1] for b in bands),
    )


@dataclass(frozen=True, slots=True)
class Radiometry:
    """How stored values become the values a model's preprocessing is defined on.

    ``value = stored * scale + offset`` per band, a value of kind ``kind``.

    Attributes:
        kind: ``display`` (0..1 fraction of full scale), ``reflectance`` or ``raw``.
        scale: Per-band factor.
        offset: Per-band offset (in value units).
        rule: The rule that decided, with its numbers (for logs and run records).
        guessed: ``True`` when decided from value ranges rather than metadata or an option.
        dn_offset: The Sentinel-2 DN offset applied (``None`` unless read as Sentinel-2 DN).
    """

    kind: RadiometryKind
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    rule: str
    guessed: bool = False
    dn_offset: float | None = None

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.offset) or not self.scale:
            raise ConfigError("a radiometry needs one scale and one offset per band")
        if any(s == 0 or not np.isfinite(s) for s in self.scale) or not all(np.isfinite(self.offset)):
            raise ConfigError(f"radiometric scale must be finite and non-zero (got {self.scale})")

    def values(self, stored: np.ndarray) -> np.ndarray:
        """Physical values ``(bands, ...)`` float64 of stored values ``(bands, ...)``."""
        s = np.asarray(self.scale, np.float64).reshape((-1,) + (1,) * (stored.ndim - 1))
        o = np.asarray(self.offset, np.float64).reshape(s.shape)
        out: np.ndarray = np.asarray(stored, np.float64) * s + o
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for run records."""
        return {
            "kind": self.kind,
            "scale": list(self.scale),
            "offset": list(self.offset),
            "rule": self.rule,
            "guessed": self.guessed,
            "dn_offset": self.dn_offset,
        }


@dataclass(frozen=True, slots=True)
class TrainingInput:
    """How a model's training data was read: its storage dtype and radiometry (rule 3 of the module)."""

    dtype: str | None
    kind: RadiometryKind
    scale: tuple[float, ...] = field(default=())
    offset: tuple[float, ...] = field(default=())
    dn_offset: float | None = None


def sentinel2_named(names: Sequence[str | None]) -> bool:
    """Whether every band name is a Sentinel-2 band id (``B01``..``B12``, ``B8A``, optionally ``S2_``)."""
    import re

    pat = re.compile(r"^(?:s2[abc]?_?|sentinel-?2[abc]?_?)?b(?:0?[1-9]|1[0-2]|8a)$")
    return bool(names) and all(n is not None and pat.match(n.strip().lower()) for n in names)


def _percentiles(sample: np.ndarray | None, qs: Sequence[float]) -> np.ndarray | None:
    """Per-band percentiles ``(len(qs), bands)`` of a ``(bands, n)`` sample (``None`` if empty)."""
    if sample is None or sample.size == 0 or sample.shape[-1] == 0:
        return None
    return np.percentile(np.asarray(sample, np.float64), list(qs), axis=-1)


def _dn(n: int, dn_offset: float, rule: str, guessed: bool) -> Radiometry:
    return Radiometry(
        "reflectance",
        (1.0 / S2_QUANTIFICATION,) * n,
        (dn_offset / S2_QUANTIFICATION,) * n,
        rule,
        guessed,
        dn_offset,
    )


def _offset_hint(stored: np.ndarray | None, dn_offset: float, where: str, warn: bool = True) -> None:
    """WARN when offset-less Sentinel-2 DN look like processing baseline >= 04.00 (darkest >= 1000)."""
    if dn_offset != 0 or stored is None:
        return
    dark = _percentiles(stored, [0.5])
    if dark is not None and float(dark.min()) >= S2_OFFSET_HINT:
        log.log(
            logging.WARNING if warn else logging.DEBUG,
            "%s: the darkest 0.5%% of every band is at or above %d DN (%.0f): Sentinel-2 products of "
            "processing baseline 04.00 and later (acquired from 2022-01-25) add 1000 to every DN; "
            "if this is one, pass --dn-offset -1000",
            where,
            int(S2_OFFSET_HINT),
            float(dark.min()),
        )


def _display(meta: BandScaling, stored: np.ndarray | None, rule: str, guessed: bool) -> Radiometry:
    n = len(meta.scale)
    full = meta.full_scale
    if full is None:  # floats: 8-bit levels stored as floats, unless already 0..1
        p = _percentiles(stored, [99])
        full = 1.0 if p is not None and float(p.max()) <= 1.5 else 255.0
    elif np.dtype(meta.dtype) != np.uint8 and stored is not None:
        p = _percentiles(stored, [99.9])
        if p is not None and float(p.max()) <= 255 and meta.nbits is None:
            full = 255.0  # 8-bit levels in a wider integer type
    return Radiometry(
        "display", (1.0 / full,) * n, (0.0,) * n, f"{rule} (display = value / {full:g})", guessed
    )


def decide_radiometry(
    meta: BandScaling,
    stored: np.ndarray | None,
    *,
    option: RadiometryOption = "auto",
    dn_offset: float | None = None,
    training: TrainingInput | None = None,
    where: str = "input",
    warn: bool = True,
) -> Radiometry:
    """Decide how stored values become physical values (the rule in the module docstring).

    Args:
        meta: Header metadata of the selected bands (:func:`read_band_scaling`).
        stored: ``(bands, n)`` sample of valid stored values (a decimated read), or ``None`` when no
            sample was read (the value-range rules then cannot apply).
        option: ``auto`` or an explicit kind (``display``, ``reflectance``, ``dn``).
        dn_offset: Sentinel-2 DN offset (``RADIO_ADD_OFFSET``, -1000 for baseline >= 04.00); ``None``:
            the training data's, else 0.
        training: The model's training input (rule 3), if known.
        where: Name of the input, for messages.
        warn: Log the guesses as WARNINGs (``False``: DEBUG, for uses where the values' meaning does
            not change the result, such as a percentile stretch).

    Returns:
        The :class:`Radiometry`.

    Raises:
        ConfigError: An explicit option that cannot fit the data (``reflectance`` on integers without
            scale/offset or on values that are not reflectance; ``dn`` on a raster whose GDAL
            scale/offset already define its values; ``dn_offset`` without Sentinel-2 DN).
    """
    level = logging.WARNING if warn else logging.DEBUG
    n = len(meta.scale)
    dt = np.dtype(meta.dtype)
    integer = np.issubdtype(dt, np.integer)
    gdal = Radiometry("raw", meta.scale, meta.offset, "GDAL scale/offset")
    if option == "display":
        if meta.has_scale_offset:
            raise ConfigError(
                f"--radiometry display: the bands carry GDAL scale/offset "
                f"{meta.scale[0]:g}/{meta.offset[0]:g}, so their values are physical, not display levels; "
                "use --radiometry auto or reflectance",
                where,
            )
        return _display(meta, stored, "--radiometry display", False)
    if option == "dn":
        if meta.has_scale_offset:
            raise ConfigError(
                f"--radiometry dn: the bands carry GDAL scale/offset {meta.scale[0]:g}/{meta.offset[0]:g} "
                "that already define their reflectance; use --radiometry reflectance (or auto)",
                where,
            )
        off = dn_offset if dn_offset is not None else (training.dn_offset if training else None) or 0.0
        r = _dn(n, off, f"--radiometry dn (Sentinel-2 DN: reflectance = (DN + {off:g}) / 10000)", False)
        _offset_hint(stored, off, where, warn)
        return r
    if dn_offset is not None and option == "reflectance":
        raise ConfigError("--dn-offset applies to Sentinel-2 DN only: use it with --radiometry dn", where)
    if option == "reflectance":
        if integer and not meta.has_scale_offset:
            raise ConfigError(
                f"--radiometry reflectance: {meta.dtype} values without GDAL scale/offset are not "
                "reflectance; use --radiometry dn for Sentinel-2 DN (reflectance = DN / 10000), or set "
                "the scale with gdal_edit -scale 0.0001",
                where,
            )
        r = Radiometry("reflectance", meta.scale, meta.offset, "--radiometry reflectance")
        _check_reflectance(r, stored, where, strict=True)
        return r
    # auto
    if meta.has_scale_offset:
        p = _percentiles(gdal.values(stored) if stored is not None else None, [1, 99])
        if p is None or (REFLECTANCE_RANGE[0] <= p[0].min() and p[1].max() <= REFLECTANCE_RANGE[1]):
            if dn_offset is not None:
                raise ConfigError(
                    "--dn-offset: the bands carry GDAL scale/offset that already define reflectance", where
                )
            return Radiometry(
                "reflectance",
                meta.scale,
                meta.offset,
                f"GDAL scale/offset {_fmt(meta.scale)}/{_fmt(meta.offset)} give reflectance"
                + (f" (1st..99th percentiles {p[0].min():.3g}..{p[1].max():.3g})" if p is not None else ""),
            )
        log.log(
            level,
            "%s: GDAL scale/offset give values %.4g..%.4g (1st..99th percentiles), not reflectance: "
            "read as values of unknown meaning; pass --radiometry if you know what they are",
            where,
            p[0].min(),
            p[1].max(),
        )
        return Radiometry("raw", meta.scale, meta.offset, "GDAL scale/offset, values not reflectance", True)
    if training is not None and training.dtype == meta.dtype and len(training.scale) == n:
        if training.kind == "reflectance" and training.dn_offset is not None:
            off = dn_offset if dn_offset is not None else training.dn_offset
            r = _dn(
                n,
                off,
                f"same storage type as the training data ({meta.dtype}): Sentinel-2 DN, "
                f"reflectance = (DN + {off:g}) / 10000",
                False,
            )
            _offset_hint(stored, off, where, warn)
            return r
        if dn_offset is not None:
            raise ConfigError("--dn-offset applies to Sentinel-2 DN only: add --radiometry dn", where)
        return Radiometry(
            training.kind,
            training.scale,
            training.offset,
            f"same storage type as the training data ({meta.dtype}), read as it was",
        )
    if dn_offset is not None:
        if not integer and not _whole(stored):
            raise ConfigError("--dn-offset applies to Sentinel-2 DN only: add --radiometry dn", where)
        r = _dn(
            n,
            dn_offset,
            f"--dn-offset {dn_offset:g}: Sentinel-2 DN, reflectance = (DN + {dn_offset:g}) / 10000",
            False,
        )
        return r
    if dt == np.uint8:
        return _display(meta, None, "8-bit values", False)
    if integer and sentinel2_named(meta.names):
        r = _dn(n, 0.0, "Sentinel-2 band names: Sentinel-2 DN, reflectance = DN / 10000", False)
        _offset_hint(stored, 0.0, where, warn)
        return r
    p = _percentiles(stored, [1, 99])
    if p is None:
        log.warning("%s: no valid pixel to judge its values by: read as values of unknown meaning", where)
        return Radiometry("raw", meta.scale, meta.offset, "no sample", True)
    lo, hi = float(p[0].min()), float(p[1].max())
    if not integer and REFLECTANCE_RANGE[0] <= lo and hi <= REFLECTANCE_RANGE[1]:
        return Radiometry(
            "reflectance",
            meta.scale,
            meta.offset,
            f"{meta.dtype} values {lo:.3g}..{hi:.3g} (1st..99th percentiles) are reflectance",
            True,
        )
    if lo >= 0 and hi <= 255 and _whole(stored):
        return _display(meta, stored, f"whole {meta.dtype} values {lo:g}..{hi:g}: 8-bit levels", True)
    if lo >= 0 and hi <= S2_DN_MAX:
        log.log(
            level,
            "%s: %s values %.4g..%.4g (1st..99th percentiles) without scale/offset metadata are read as "
            "Sentinel-2 DN (reflectance = DN / 10000); if they are not, pass --radiometry "
            "(display|reflectance|dn) or --stretch percentile",
            where,
            meta.dtype,
            lo,
            hi,
        )
        r = _dn(
            n,
            0.0,
            f"{meta.dtype} values {lo:.4g}..{hi:.4g}: read as Sentinel-2 DN, reflectance = DN / 10000",
            True,
        )
        _offset_hint(stored, 0.0, where, warn)
        return r
    log.log(
        level,
        "%s: %s values %.4g..%.4g (1st..99th percentiles) are neither display levels, reflectance nor "
        "Sentinel-2 DN: read as values of unknown meaning; pass --radiometry if you know what they are",
        where,
        meta.dtype,
        lo,
        hi,
    )
    return Radiometry(
        "raw", meta.scale, meta.offset, f"{meta.dtype} values {lo:.4g}..{hi:.4g}: unknown", True
    )


def _whole(stored: np.ndarray | None) -> bool:
    return stored is not None and stored.size > 0 and bool(np.all(np.asarray(stored) == np.rint(stored)))


def _fmt(values: Sequence[float]) -> str:
    uniq = sorted(set(values))
    return f"{uniq[0]:g}" if len(uniq) == 1 else ",".join(f"{v:g}" for v in values)


def _check_reflectance(r: Radiometry, stored: np.ndarray | None, where: str, *, strict: bool) -> None:
    p = _percentiles(r.values(stored) if stored is not None else None, [1, 99])
    if p is None:
        return
    lo, hi = float(p[0].min()), float(p[1].max())
    if lo < REFLECTANCE_RANGE[0] or hi > REFLECTANCE_RANGE[1]:
        msg = (
            f"--radiometry reflectance: the values span {lo:.4g}..{hi:.4g} (1st..99th percentiles), "
            "not reflectance (about 0..1); use --radiometry dn for Sentinel-2 DN, or --stretch percentile"
        )
        if strict:
            raise ConfigError(msg, where)
        log.warning("%s: %s", where, msg)
