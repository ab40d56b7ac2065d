"""A model's preprocessing resolved for one input: what every tile of a scene (or a chip folder) gets.

:func:`scene_preprocessing` (a scene: one header read and one decimated read) and
:func:`resolve_preprocessing` (any input, from its header metadata and a sample of its values; what
``geosam classify`` uses for a chip folder) decide the input's radiometry (:mod:`geosam.radiometry`),
then the stretch that gives it the model's inputs (:mod:`geosam.preprocess` for the record and its
rules), with the fallback and override rules of docs/preprocessing.md. The result,
:class:`ScenePreprocessing`, is applied to every tile and written into the run record.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import NormalizeConfig
from geosam.errors import ConfigError, EmptyRasterError
from geosam.preprocess import PercentileScaling, Preprocessing, bounds_text, fill_values
from geosam.radiometry import Radiometry

if TYPE_CHECKING:
    from geosam.radiometry import BandScaling
    from geosam.stretch import Stretch
    from geosam.types import SceneInfo

__all__ = ["ScenePreprocessing", "resolve_preprocessing", "scene_preprocessing"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScenePreprocessing:
    """A model's preprocessing resolved for one input: what every tile of it goes through.

    Attributes:
        stretch: Stored values -> 0..1 (radiometry folded in as ``scale``/``offset``).
        fill: Per-band 0..1 value of invalid pixels.
        radiometry: How the input's stored values were read.
        applied: How the model's preprocessing was applied (one line, for logs and records).
        overrides: Differences from the model's preprocessing the user asked for (empty: none).
        fallback: ``True`` when the model's preprocessing could not be applied to this input.
        model: The model's :class:`Preprocessing`.
    """

    stretch: Stretch
    fill: tuple[float, ...]
    radiometry: Radiometry
    applied: str
    model: Preprocessing
    overrides: tuple[str, ...] = field(default=())
    fallback: bool = False

    def apply(self, stored: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """``(bands, H, W)`` stored values -> float32 0..1 model input, invalid pixels = ``fill``."""
        from geosam.stretch import apply_stretch

        out = apply_stretch(stored, valid, self.stretch)
        if valid is not None and not valid.all():
            inv = ~valid
            for b in range(out.shape[0]):
                out[b][inv] = self.fill[b]
        return out

    def to_record(self) -> dict[str, Any]:
        """JSON-ready record for the run record (``preprocessing``)."""
        return {
            "model": self.model.to_dict(),
            "applied": self.applied,
            "radiometry": self.radiometry.to_dict(),
            "stretch": self.stretch.to_dict(),
            "nodata_fill": list(self.fill),
            "resampling": self.model.resampling,
            "overrides": list(self.overrides),
            "fallback": self.fallback,
        }


def scene_preprocessing(
    path: str | os.PathLike[str],
    bands: Sequence[int],
    pre: Preprocessing,
    mean: Sequence[float] | np.ndarray,
    cfg: NormalizeConfig | None = None,
    *,
    info: SceneInfo | None = None,
    log_to: logging.Logger | None = None,
) -> ScenePreprocessing:
    """Resolve a model's preprocessing for one scene (one decimated read at most).

    Args:
        path: Scene file or GDAL URI.
        bands: 1-based scene bands in model order (:func:`geosam.bands.resolve_bands`).
        pre: The model's preprocessing (:func:`model_preprocessing`).
        mean: The model's per-band mean (0..1), for ``nodata_fill = "mean"``.
        cfg: Radiometry option and stretch override (default: ``auto`` for both).
        info: The scene header, if already read.
        log_to: Logger for the INFO/WARNING lines (default this module's).

    Returns:
        The :class:`ScenePreprocessing` to apply to every tile.

    Raises:
        ConfigError: An explicit option that cannot fit the data or the model (one line, with a remedy).
        EmptyRasterError: No valid pixel in the decimated sample (an all-nodata scene).
        RasterError: The scene cannot be read.
    """
    from geosam.io.read import open_scene
    from geosam.radiometry import read_band_scaling
    from geosam.stretch import read_sample

    cfg = cfg or NormalizeConfig()
    info = info or open_scene(path)
    b = tuple(int(i) for i in bands)
    meta = read_band_scaling(info.path, b)
    sample_size = pre.scaling.sample_size if isinstance(pre.scaling, PercentileScaling) else cfg.sample_size
    sample, shape = read_sample(info.path, b, sample_size)
    if sample.shape[-1] == 0:
        raise EmptyRasterError(
            f"no valid pixel in a {shape[1]} x {shape[0]} sample of the scene: it is all nodata, "
            "or its valid part is too small to sample (raise normalize.sample_size)",
            info.path,
        )
    return resolve_preprocessing(pre, meta, sample, mean, cfg, bands=b, where=os.fspath(path), log_to=log_to)


def resolve_preprocessing(
    pre: Preprocessing,
    meta: BandScaling,
    sample: np.ndarray,
    mean: Sequence[float] | np.ndarray,
    cfg: NormalizeConfig | None = None,
    *,
    bands: Sequence[int] = (),
    where: str = "input",
    log_to: logging.Logger | None = None,
) -> ScenePreprocessing:
    """:func:`scene_preprocessing` without I/O: from an input's header metadata and a sample of its values.

    ``geosam run`` resolves per scene, ``geosam classify`` per chip folder; both through this function.

    Args:
        pre: The model's preprocessing.
        meta: dtype, GDAL scale/offset, ``NBITS`` and names of the input's bands (model order).
        sample: ``(bands, n)`` valid stored values of the input (a decimated read, or chips).
        mean: The model's per-band mean (0..1), for ``nodata_fill = "mean"``.
        cfg: Radiometry option and stretch override.
        bands: Scene band indexes (recorded in the stretch).
        where: The input's name, for messages.
        log_to: Logger for the INFO/WARNING lines.

    Raises:
        ConfigError: An explicit option that cannot fit the data or the model.
    """
    from geosam.radiometry import decide_radiometry
    from geosam.stretch import stretch_from_sample

    lg = log_to or log
    cfg = cfg or NormalizeConfig()
    name = os.path.basename(where) or where
    percentile = cfg.method == "percentile" or (
        cfg.method == "auto" and isinstance(pre.scaling, PercentileScaling)
    )
    radiometry = decide_radiometry(
        meta,
        sample,
        option=cfg.radiometry,
        dn_offset=cfg.dn_offset,
        training=pre.training_input(),
        where=where,
        warn=not percentile,  # a percentile stretch does not depend on what the values mean
    )
    fill = tuple(float(v) for v in fill_values(pre, mean))
    overrides: list[str] = []
    fallback = False
    if cfg.method != "auto" and not _same_as_model(cfg, pre):
        override = f"--stretch {cfg.method} instead of the model's {pre.describe()}"
        overrides.append(override)
        lg.warning("%s: %s (the model was trained with that preprocessing)", name, override)
        stretch = stretch_from_sample(meta, sample, cfg, radiometry=radiometry, bands=bands, where=where)
        applied = f"user stretch {cfg.method} on {radiometry.kind} values ({radiometry.rule})"
    else:
        stretch, applied, fallback = _model_stretch(
            meta, tuple(bands), pre, radiometry, cfg, sample, where, lg
        )
    if cfg.radiometry != "auto":
        applied += f"; radiometry given as --radiometry {cfg.radiometry}"
    lg.info("%s: preprocessing: %s", name, applied)
    return ScenePreprocessing(stretch, fill, radiometry, applied, pre, tuple(overrides), fallback)


def _stored_as(dtype: str, r: Radiometry) -> str:
    """How stored values become the radiometry's values, for people: ``uint8 / 255``, ``uint16 x 0.0001``."""
    scales, offsets = set(r.scale), set(r.offset)
    if len(scales) != 1 or len(offsets) != 1:
        return f"{dtype} x scale + offset per band"
    (a,), (b,) = scales, offsets
    inv = 1.0 / a if a else 0.0
    text = f"{dtype} / {inv:g}" if a and abs(inv - round(inv)) < 1e-6 else f"{dtype} x {a:g}"
    return text if b == 0 else f"{text} {'+' if b > 0 else '-'} {abs(b):g}"


def _same_as_model(cfg: NormalizeConfig, pre: Preprocessing) -> bool:
    s = pre.scaling
    return (
        cfg.method == "percentile"
        and isinstance(s, PercentileScaling)
        and (cfg.low, cfg.high) == (s.low, s.high)
    )


def _model_stretch(
    meta: BandScaling,
    bands: tuple[int, ...],
    pre: Preprocessing,
    r: Radiometry,
    cfg: NormalizeConfig,
    sample: np.ndarray,
    where: str,
    lg: logging.Logger,
) -> tuple[Stretch, str, bool]:
    """The model's stretch for values read as ``r``; falls back to a per-scene percentile when impossible."""
    from geosam.stretch import stretch_from_sample

    name = os.path.basename(where) or where
    s = pre.scaling
    if isinstance(s, PercentileScaling):
        pct = NormalizeConfig(method="percentile", low=s.low, high=s.high, sample_size=s.sample_size)
        st = stretch_from_sample(meta, sample, pct, radiometry=r, bands=bands, where=where)
        return st, f"per-scene {s.low:g}-{s.high:g} percentile stretch as in training ({r.rule})", False
    if len(s.low) != len(meta.scale):
        raise ConfigError(
            f"the model's preprocessing has {len(s.low)} bands but {len(meta.scale)} are read", where
        )
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    how = ""
    if r.kind == pre.space and (pre.space != "raw" or pre.input.dtype in (None, meta.dtype)):
        low, high = s.low, s.high
        stored = _stored_as(meta.dtype, r)
        how = f"{stored} = {pre.space} values, as in training: {pre.describe(mapping=False)} ({r.rule})"
    elif pre.space == "display" and r.kind == "reflectance" and pre.reflectance_to_display is not None:
        m = pre.reflectance_to_display
        low = tuple((lo - bi) / g for lo, bi, g in zip(s.low, m.bias, m.gain, strict=True))
        high = tuple((hi - bi) / g for hi, bi, g in zip(s.high, m.bias, m.gain, strict=True))
        how = (
            "reflectance -> display through the model's mapping (reflectance "
            f"{bounds_text(low)}..{bounds_text(high)} -> 0..1; {r.rule})"
        )
    if low is not None and high is not None:
        st = stretch_from_sample(meta, sample, cfg, radiometry=r, fixed=(low, high), bands=bands, where=where)
        return st, how, False
    why = (
        f"the model was trained on {pre.space} values ({pre.describe()}) but these values are "
        f"{r.kind} ({r.rule})"
    )
    if cfg.radiometry != "auto":
        raise ConfigError(
            f"--radiometry {cfg.radiometry}: {why}, and geosam has no mapping between them; "
            "pass --stretch percentile to run with a per-scene stretch anyway",
            where,
        )
    lg.warning(
        "%s: %s: using a per-scene %g-%g percentile stretch instead, so predictions may be off; pass "
        "--radiometry if geosam read the values wrongly, or --stretch percentile to silence this",
        name,
        why,
        cfg.low,
        cfg.high,
    )
    pct = NormalizeConfig(method="percentile", low=cfg.low, high=cfg.high, sample_size=cfg.sample_size)
    st = stretch_from_sample(meta, sample, pct, radiometry=r, bands=bands, where=where)
    return st, f"FALLBACK per-scene {cfg.low:g}-{cfg.high:g} percentile stretch: {why}", True
