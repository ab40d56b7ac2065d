"""One preprocessing, recorded once in the model bundle, applied everywhere a pixel reaches the model.

:class:`Preprocessing` is the bundle's ``preprocessing`` record (``model.json``; schema in
docs/model_bundle.md, rules in docs/preprocessing.md). Training writes it from the data it trained on;
``geosam run``, ``batch``, ``ingest``, ``classify`` and the Python API resolve it against each input
(:func:`geosam.scene_preprocessing.scene_preprocessing`) and apply exactly that, unless the user
overrides it explicitly (then a WARNING names the difference and the run record says so).

How a stored value becomes the model's input (per band, in this order):

1. **radiometry** (:mod:`geosam.radiometry`): ``value = stored * scale + offset``, a value of the kind
   the model's ``space`` names: ``display`` (0..1 fraction of a display image's range: JPEG level /
   255), ``reflectance`` or ``raw`` (no known meaning);
2. **scaling**: ``fixed`` (``unit = clip((value - low) / (high - low), 0, 1)`` with the training data's
   ``low``/``high``) or ``percentile`` (the same with each scene's own percentiles, as scene chips are
   trained). A ``display`` model with a ``reflectance_to_display`` mapping takes reflectance too:
   ``display = gain * reflectance + bias`` (the default model's mapping is fitted on EuroSAT MS/RGB
   pairs, docs/preprocessing.md), folded into the linear stretch;
3. **nodata fill**: invalid pixels (nodata, masked, outside the scene) get the model's ``mean``
   (normalising to 0) or ``zero``;
4. **resampling** of each chip to the encoder input (``bilinear``), the same function in training and
   in prediction; together with the chip grid (:mod:`geosam.chip_grid`) a training chip at the model's
   GSD is exactly one encoder chip.

The model itself then applies ``(unit - mean) / std`` (bundle ``mean``/``std``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from geosam.errors import ConfigError
from geosam.radiometry import Radiometry, TrainingInput

if TYPE_CHECKING:
    from geosam.models.bundle import BundleMeta

__all__ = [
    "EUROSAT_RGB_FROM_L1C",
    "DisplayMapping",
    "FixedScaling",
    "InputRecord",
    "PercentileScaling",
    "Preprocessing",
    "bounds_text",
    "fill_values",
    "model_preprocessing",
    "resample_chips",
    "upgrade_v1",
]

log = logging.getLogger(__name__)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedScaling(_Frozen):
    """``unit = clip((value - low) / (high - low), 0, 1)`` with the same bounds for every input.

    Attributes:
        low: Per-band value mapped to 0 (in the preprocessing's ``space`` units).
        high: Per-band value mapped to 1.
    """

    method: Literal["fixed"] = "fixed"
    low: tuple[float, ...]
    high: tuple[float, ...]

    @model_validator(mode="after")
    def _ordered(self) -> FixedScaling:
        if len(self.low) != len(self.high) or not self.low:
            raise ValueError(f"fixed scaling needs one low and one high per band ({self.low}, {self.high})")
        pairs = zip(self.low, self.high, strict=True)
        if any(not (np.isfinite(lo) and np.isfinite(hi) and hi > lo) for lo, hi in pairs):
            raise ValueError(f"fixed scaling bounds must be finite with high > low ({self.low}, {self.high})")
        return self


class PercentileScaling(_Frozen):
    """Each input's own per-band percentiles ``low``..``high`` map to 0..1 (computed once per scene)."""

    method: Literal["percentile"] = "percentile"
    low: float = Field(2.0, ge=0, le=100)
    high: float = Field(98.0, ge=0, le=100)
    sample_size: int = Field(1024, ge=16, le=16384)

    @model_validator(mode="after")
    def _ordered(self) -> PercentileScaling:
        if self.low >= self.high:
            raise ValueError(f"low percentile ({self.low}) must be below high ({self.high})")
        return self


Scaling = Annotated[FixedScaling | PercentileScaling, Field(discriminator="method")]


class DisplayMapping(_Frozen):
    """``display = gain * reflectance + bias`` per model band (display as a 0..1 fraction).

    For models trained on display images rendered from a known sensor (EuroSAT RGB JPEGs are Sentinel-2
    L1C B04/B03/B02), so that reflectance inputs reach the model as the JPEG chips did.

    Attributes:
        gain: Per-band display fraction per unit of reflectance.
        bias: Per-band display fraction at zero reflectance.
        source: Where the numbers come from (data set, fit).
        fit: Fit quality (per band: RMSE in 8-bit levels, R^2, on held-out pairs).
    """

    gain: tuple[float, ...]
    bias: tuple[float, ...]
    source: str = ""
    fit: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sizes(self) -> DisplayMapping:
        if len(self.gain) != len(self.bias) or not self.gain or any(g <= 0 for g in self.gain):
            raise ValueError("a display mapping needs one positive gain and one bias per band")
        return self


class InputRecord(_Frozen):
    """How the training data's stored values became ``space`` values (rule 3 of :mod:`geosam.radiometry`).

    Attributes:
        dtype: Storage dtype of the training data (``None``: unknown, e.g. upgraded bundles).
        scale: Per-band factor from stored to ``space`` values.
        offset: Per-band offset.
        dn_offset: Sentinel-2 DN offset when the data were Sentinel-2 DN, else ``None``.
        rule: The radiometry rule that decided it.
    """

    dtype: str | None = None
    scale: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()
    dn_offset: float | None = None
    rule: str = ""


class Preprocessing(_Frozen):
    """How a pixel reaches the model (see the module docstring); the bundle's ``preprocessing``.

    Attributes:
        space: Kind of values the scaling is defined on: ``display``, ``reflectance`` or ``raw``.
        scaling: :class:`FixedScaling` or :class:`PercentileScaling`.
        input: How the training data was read (:class:`InputRecord`).
        reflectance_to_display: For ``display`` models: how reflectance inputs map to display values.
        nodata_fill: Value of invalid pixels: the model's ``mean`` (normalises to 0) or ``zero``.
        resampling: Kernel resampling chips to the encoder input (:func:`resample_chips`).
        note: Free text (e.g. how a format-1 record was upgraded).
    """

    space: Literal["display", "reflectance", "raw"]
    scaling: Scaling
    input: InputRecord = Field(default_factory=InputRecord)
    reflectance_to_display: DisplayMapping | None = None
    nodata_fill: Literal["mean", "zero"] = "mean"
    resampling: Literal["bilinear"] = "bilinear"
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Preprocessing:
        if self.reflectance_to_display is not None and self.space != "display":
            raise ValueError("reflectance_to_display belongs to display-space models only")
        n = self.n_bands
        sizes = {len(v) for v in (self.input.scale, self.input.offset) if v}
        if self.reflectance_to_display is not None:
            sizes.add(len(self.reflectance_to_display.gain))
        if n is not None:
            sizes.add(n)
        if len(sizes) > 1:
            raise ValueError(f"per-band preprocessing values disagree on the band count ({sorted(sizes)})")
        return self

    @property
    def n_bands(self) -> int | None:
        """Number of bands of the fixed bounds (``None`` for percentile scaling)."""
        return len(self.scaling.low) if isinstance(self.scaling, FixedScaling) else None

    def describe(self, *, mapping: bool = True) -> str:
        """One line: space and scaling, e.g. ``display values 0..1 -> 0..1`` (and the mapping, if any)."""
        s = self.scaling
        if isinstance(s, PercentileScaling):
            what = f"per-scene {s.low:g}-{s.high:g} percentile stretch"
        else:
            what = f"{self.space} values {bounds_text(s.low)}..{bounds_text(s.high)} -> 0..1"
        if mapping and self.reflectance_to_display is not None:
            what += " (reflectance through the model's reflectance-to-display mapping)"
        return what

    def training_input(self) -> TrainingInput | None:
        """The :class:`~geosam.radiometry.TrainingInput` of rule 3, or ``None`` when unknown."""
        i = self.input
        if i.dtype is None or not i.scale:
            return None
        kind: Literal["display", "reflectance", "raw"] = self.space
        return TrainingInput(i.dtype, kind, i.scale, i.offset or (0.0,) * len(i.scale), i.dn_offset)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``model.json`` stores)."""
        out: dict[str, Any] = self.model_dump(mode="json")
        return out

    @classmethod
    def from_radiometry(
        cls,
        radiometry: Radiometry,
        dtype: str,
        scaling: FixedScaling | PercentileScaling,
        **extra: Any,
    ) -> Preprocessing:
        """The record of training data read with ``radiometry`` and brought to 0..1 by ``scaling``."""
        return cls(
            space=radiometry.kind,
            scaling=scaling,
            input=InputRecord(
                dtype=dtype,
                scale=radiometry.scale,
                offset=radiometry.offset,
                dn_offset=radiometry.dn_offset,
                rule=radiometry.rule,
            ),
            **extra,
        )


def bounds_text(values: Sequence[float]) -> str:
    """Per-band bounds for log lines: one number when all bands share it, else a list."""
    uniq = sorted({round(v, 6) for v in values})
    return f"{uniq[0]:g}" if len(uniq) == 1 else "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


#: Sentinel-2 L1C reflectance -> EuroSAT RGB JPEG level (display fraction) for B04, B03, B02 (red, green,
#: blue). Fitted by ``benchmarks/fit_eurosat_display.py`` (robust least squares of
#: ``clip(gain * reflectance + bias, 0, 1)``) on the 216 training chips of ../shared/data/eurosat_ms
#: against the JPEGs of the same names, evaluated on the 54 test chips. The JPEGs are close to
#: ``255 * reflectance / 0.275`` (clipped). A gamma term did not improve the fit (fitted gamma 0.97-1.04).
EUROSAT_RGB_FROM_L1C = DisplayMapping(
    gain=(3.58182, 3.63581, 3.65416),
    bias=(0.007697, 0.002451, 0.000347),
    source="fitted on EuroSAT MS (Sentinel-2 L1C, DN / 10000) vs EuroSAT RGB JPEG pairs "
    "(benchmarks/fit_eurosat_display.py): 216 training chips, 54 test chips",
    fit={
        "red": {"rmse_levels": 2.91, "r2": 0.9964},
        "green": {"rmse_levels": 1.46, "r2": 0.9980},
        "blue": {"rmse_levels": 2.79, "r2": 0.9901},
    },
)


def upgrade_v1(record: dict[str, Any], n_bands: int, *, dtype_hint: str | None = None) -> dict[str, Any]:
    """A format-1 ``preprocessing`` record as a :class:`Preprocessing` dict that means the same thing.

    Format 1 recorded how training inputs were brought to 0..1 but runs never read it:

    * ``{"method": "dtype", "low": [0..], "high": [255..]}`` (uint8 folder chips, the packaged model):
      display values 0..1, input uint8 (stored / 255), fill with the mean (what runs did);
    * ``{"method": "percentile ...", "low", "high"}`` (other folder chips): fixed bounds on raw stored
      values, which is what training applied;
    * ``{"method": "scene_stretch", "normalize": {...}}`` (scene chips): each scene's own stretch with
      the recorded settings; invalid pixels were 0 in training, so ``nodata_fill = "zero"``;
    * ``{}`` (no record): a per-scene 2-98 percentile stretch, which is what runs applied.
    """
    method = str(record.get("method", ""))
    note = "upgraded from bundle format 1"
    if method == "dtype":
        high = [float(v) for v in record.get("high", [255.0] * n_bands)]
        full = high[0] if high and len(set(high)) == 1 else 255.0
        dt = dtype_hint or {255.0: "uint8", 65535.0: "uint16"}.get(full)
        return Preprocessing(
            space="display",
            scaling=FixedScaling(low=(0.0,) * n_bands, high=(1.0,) * n_bands),
            input=InputRecord(
                dtype=dt, scale=(1.0 / full,) * n_bands, offset=(0.0,) * n_bands, rule=f"stored / {full:g}"
            ),
            note=note,
        ).to_dict()
    if method.startswith("percentile") and "low" in record and "high" in record:
        lows = tuple(float(v) for v in record["low"])
        highs = tuple(float(v) for v in record["high"])
        return Preprocessing(
            space="raw",
            scaling=FixedScaling(
                low=lows, high=tuple(max(h, lo + 1e-6) for lo, h in zip(lows, highs, strict=True))
            ),
            input=InputRecord(dtype=dtype_hint, scale=(1.0,) * n_bands, offset=(0.0,) * n_bands),
            note=note + ": fixed bounds on stored values, as training applied",
        ).to_dict()
    if method == "scene_stretch":
        norm = dict(record.get("normalize") or {})
        kind = norm.get("method", "percentile")
        if kind == "percentile":
            scaling: FixedScaling | PercentileScaling = PercentileScaling(
                low=float(norm.get("low", 2.0)),
                high=float(norm.get("high", 98.0)),
                sample_size=int(norm.get("sample_size", 1024)),
            )
        else:
            st = dict(record.get("scene_stretch") or {})
            scaling = FixedScaling(
                low=tuple(float(v) for v in st.get("low", [0.0] * n_bands)),
                high=tuple(float(v) for v in st.get("high", [1.0] * n_bands)),
            )
        return Preprocessing(
            space="raw", scaling=scaling, nodata_fill="zero", note=note + f" (scene chips, {kind})"
        ).to_dict()
    return Preprocessing(
        space="raw",
        scaling=PercentileScaling(),
        note=note + ": no preprocessing recorded; runs applied a per-scene 2-98 percentile stretch",
    ).to_dict()


def fill_values(pre: Preprocessing, mean: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-band 0..1 value given to invalid pixels: the model ``mean`` (normalising to 0) or 0."""
    m = np.asarray(mean, np.float32).reshape(-1)
    return m.copy() if pre.nodata_fill == "mean" else np.zeros_like(m)


def model_preprocessing(meta: BundleMeta) -> Preprocessing:
    """The bundle's :class:`Preprocessing` (format-1 records are upgraded when the bundle is read)."""
    pre = meta.preprocessing
    if isinstance(pre, Preprocessing):
        return pre
    return Preprocessing.model_validate(pre)


def resample_chips(x: Any, size: int, kernel: str = "bilinear") -> Any:
    """Resample ``(B, N, h, w)`` torch chips to ``(B, N, size, size)``: THE chip resampling of geosam.

    Training (chips of another size than the encoder input), ``geosam classify`` and the encoder stage of
    ``geosam run`` (chips of a resolution-matched scene) all call this, so a chip is resampled the same
    way wherever it comes from. ``bilinear`` is :func:`torch.nn.functional.interpolate` with
    ``align_corners=False`` and no antialiasing (what every geosam bundle so far was trained with).
    Chips already ``size`` pixels are returned as they are.
    """
    import torch.nn.functional as F

    if kernel != "bilinear":
        raise ConfigError(f"unknown resampling kernel {kernel!r} (geosam knows 'bilinear')")
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
