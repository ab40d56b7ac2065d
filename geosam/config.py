"""Typed, strict run configuration (pydantic, ``extra="forbid"``).

A :class:`RunConfig` is loaded from YAML/JSON (:func:`load_config`), overridden field by field from
CLI options, saved next to every run's outputs, and split into sub-configs that each stage receives
(``TilingConfig`` for tiling, ``SegmentConfig`` for segmentation...). Library functions never read the
whole ``RunConfig`` or the environment.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geosam.config_io import check_schema_version, format_validation_error, read_yaml
from geosam.errors import ConfigError

__all__ = [
    "SCHEMA_VERSION",
    "DenseConfig",
    "NormalizeConfig",
    "OutputConfig",
    "RunConfig",
    "SegmentConfig",
    "TilingConfig",
    "format_validation_error",
    "load_config",
    "parse_config",
    "upgrade_config",
]

SCHEMA_VERSION: Literal[2] = 2
"""Version of the run configuration schema. 2: ``segment.mask_threshold`` removed (nothing read it)."""

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class TilingConfig(_Strict):
    """How a scene is cut into tiles.

    Attributes:
        tile_size: Read-window edge in pixels. ``None``: the model's choice (1024, SAM's native input,
            when SAM makes the regions; the bundle's ``recommended_tile_size`` otherwise).
        halo: Context in pixels added on each side of a tile's core; cores advance by
            ``tile_size - 2 * halo``. Must be < ``tile_size / 4``. ``None``: ``tile_size // 8``.
        skip_empty: Skip tiles whose pixels are all nodata.
    """

    tile_size: int | None = Field(None, ge=32, le=8192)
    halo: int | None = Field(None, ge=0)
    skip_empty: bool = True

    @model_validator(mode="after")
    def _halo_fits(self) -> TilingConfig:
        if self.halo is not None and self.tile_size is not None and self.halo * 4 >= self.tile_size:
            raise ValueError(f"halo ({self.halo}) must be less than tile_size/4 ({self.tile_size / 4:g})")
        return self

    def resolved(self, default_tile_size: int) -> TilingConfig:
        """A copy with ``tile_size`` and ``halo`` filled in (``halo`` defaults to ``tile_size // 8``)."""
        size = self.tile_size if self.tile_size is not None else default_tile_size
        halo = self.halo if self.halo is not None else size // 8
        return TilingConfig(tile_size=size, halo=halo, skip_empty=self.skip_empty)


class NormalizeConfig(_Strict):
    """How scene values reach the model: radiometry (what the values mean) and the stretch to 0..1.

    The default, ``method="auto"`` with ``radiometry="auto"``, applies the model's own preprocessing (the
    bundle's ``preprocessing`` record, :mod:`geosam.preprocess`) to values whose meaning is decided by
    the rule in :mod:`geosam.radiometry`. Any other ``method`` overrides the model's preprocessing: the
    run logs a WARNING naming the difference and its run record says so.

    Attributes:
        method: ``auto`` (the model's preprocessing); ``percentile`` maps each band's ``low``..``high``
            percentiles (computed once per scene from a decimated read, so all tiles share one stretch) to
            0..1; ``none`` leaves values (after GDAL scale/offset) as they are (already 0..1
            reflectance); ``dtype`` maps 0..the largest storable value (``2**NBITS - 1`` or the dtype
            maximum) to 0..1. Every method applies GDAL scale/offset first.
        radiometry: What the stored values are: ``auto`` (decided from metadata and value ranges, see
            :mod:`geosam.radiometry`), ``display`` (levels of a display image, like JPEG chips),
            ``reflectance`` (after GDAL scale/offset), or ``dn`` (Sentinel-2 digital numbers,
            reflectance = (DN + ``dn_offset``) / 10000).
        dn_offset: Sentinel-2 ``RADIO_ADD_OFFSET``/``BOA_ADD_OFFSET`` added to DN before dividing by
            10000: -1000 for processing baseline 04.00 and later (acquired from 2022-01-25), 0 before.
            ``None``: the training data's, else 0.
        low: Lower percentile (0-100) of ``percentile``.
        high: Upper percentile (0-100) of ``percentile``.
        sample_size: Longest side, in pixels, of the decimated read used for statistics.
    """

    method: Literal["auto", "percentile", "none", "dtype"] = "auto"
    radiometry: Literal["auto", "display", "reflectance", "dn"] = "auto"
    dn_offset: float | None = Field(None, ge=-10000, le=10000)
    low: float = Field(2.0, ge=0, le=100)
    high: float = Field(98.0, ge=0, le=100)
    sample_size: int = Field(1024, ge=16, le=16384)

    @model_validator(mode="after")
    def _ordered(self) -> NormalizeConfig:
        if self.low >= self.high:
            raise ValueError(f"low percentile ({self.low}) must be below high ({self.high})")
        return self


class SegmentConfig(_Strict):
    """Where regions come from and SAM automatic-mask-generator settings.

    ``source``: ``sam`` runs SAM's mask decoder on the tile embedding (needs a SAM checkpoint);
    ``felzenszwalb`` uses graph-based superpixels of the tile pixels (scikit-image), an honest,
    documented fallback when no SAM decoder is available; ``tiles`` makes no regions (tile labels
    only); ``chips`` makes each encoder chip of a chip model one region (the class map holds each
    chip's class, :mod:`geosam.chip_grid`); ``auto`` picks ``sam`` when a SAM checkpoint is given
    and ``felzenszwalb`` otherwise; ``sam3`` makes SAM 3's concept masks (``concepts``) the regions a
    model bundle classifies (with a SAM 3 checkpoint and no ``sam3`` source, the concepts themselves are
    the classes: zero-shot).
    The SAM thresholds are segment-anything's ``SamAutomaticMaskGenerator`` arguments and defaults;
    SAM 2.x checkpoints (told apart from SAM 1 by their weights, or named by ``sam_model``) use the same
    values with ``sam2``'s ``SAM2AutomaticMaskGenerator`` logic.
    """

    source: Literal["auto", "sam", "felzenszwalb", "tiles", "chips", "sam3"] = "auto"
    sam_model: str = Field(
        "auto",
        description="configuration of the SAM checkpoint: auto (recognised from its weights: SAM 1 ViT or "
        "SAM 2.x Hiera) or a SAM 2 name such as sam2.1_hiera_small",
    )
    points_per_side: int = Field(32, ge=1, le=128)
    points_per_batch: int = Field(64, ge=1, le=1024)
    pred_iou_thresh: float = Field(0.88, ge=0, le=1)
    stability_score_thresh: float = Field(0.95, ge=0, le=1)
    stability_score_offset: float = Field(1.0, ge=0)
    box_nms_thresh: float = Field(0.7, ge=0, le=1)
    min_region_area: int = Field(32, ge=0, description="regions smaller than this (pixels) are dropped")
    felzenszwalb_scale: float = Field(100.0, gt=0)
    felzenszwalb_sigma: float = Field(0.8, ge=0)
    felzenszwalb_min_size: int = Field(64, ge=1)
    seam_match_iou: float = Field(
        0.5, gt=0, le=1, description="overlap needed to merge regions across a seam"
    )
    concepts: str | None = Field(
        None,
        description="SAM 3 concept prompts per class: 'forest,water=water|lake|river,building' "
        "(with --sam3-checkpoint)",
    )
    concept_threshold: float = Field(
        0.5, gt=0, lt=1, description="SAM 3 score at which a concept mask is accepted"
    )

    @model_validator(mode="after")
    def _known_sam_model(self) -> SegmentConfig:
        if self.sam_model != "auto":
            from geosam.models.sam_family import resolve_sam2_variant

            resolve_sam2_variant(self.sam_model)  # ConfigError (a ValueError) names the choices
        return self


class OutputConfig(_Strict):
    """Which outputs to write and how.

    Attributes:
        confidence_dtype: ``float32`` (probability 0..1, nodata -1) or ``uint8`` (percent 0..100, nodata 255).
        regions: Write ``<scene>_regions.geojson`` (EPSG:4326) and ``<scene>_regions.gpkg`` (scene CRS).
        tiles: Write ``<scene>_tiles.gpkg``.
        qgis_project: Write ``<scene>.qgs`` that opens every layer styled.
        overwrite: Replace existing outputs (otherwise a scene with outputs is an error).
        compress: COG compression.
        legend: What the QGIS styles of the class map and the regions list: ``area`` (the classes
            present, largest first, with their share of the classified pixels), ``present`` (the
            classes present, in class order) or ``all`` (every class of the model).
    """

    confidence_dtype: Literal["float32", "uint8"] = "float32"
    regions: bool = True
    tiles: bool = True
    qgis_project: bool = True
    overwrite: bool = True
    compress: Literal["deflate", "lzw", "zstd"] = "deflate"
    legend: Literal["area", "present", "all"] = "area"


class DenseConfig(_Strict):
    """How models with a dense (per-pixel) head make the class map (ignored for other models).

    Attributes:
        refine: ``regions``: a pixel inside a region (SAM mask or superpixel) takes the region's class,
            the arg-max of the mean pixel probabilities inside it (object-based refinement, see
            :mod:`geosam.dense`); pixels in no region keep their own. ``none``: every pixel keeps its
            own class (thin features such as roads survive even inside a larger region).
        probabilities: Also write ``<scene>_probabilities.tif``: one band per class, the pixel's
            probability in percent (uint8 0..100, nodata 255).
    """

    refine: Literal["regions", "none"] = "regions"
    probabilities: bool = False


class RunConfig(_Strict):
    """Everything that controls one ``geosam run`` besides its inputs.

    Attributes:
        schema_version: Version of this schema (bumped with an upgrader on breaking change).
        bands: Scene bands to feed the model, by 1-based index or by name, in the model's band order.
            ``None`` selects them automatically from band names / colour interpretation.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
        precision: ``auto`` (bf16 autocast on CPUs and GPUs that support it), ``fp32``, ``bf16`` or ``fp16``.
        batch_size: Encoder batch: chip models (the default model) encode ``16 x batch_size`` chips per
            call; SAM-size tiles are encoded one per call. Default 1, the fastest on CPU
            (``benchmarks/bench_precision.py``); raise it on GPUs.
        match_resolution: For models that encode chips (the default model), resample each scene so one
            model pixel covers the ground it covered in training (the bundle's ``gsd_m``): a 28.5 m
            Landsat scene is encoded in 22 px chips upsampled to the model's 64 px. Only for scenes in a
            projected CRS in metres; SAM tiles are never resampled.
        dense: Class map of models with a dense head (:class:`DenseConfig`).
    """

    schema_version: Literal[2] = SCHEMA_VERSION
    bands: list[int | str] | None = None
    tiling: TilingConfig = Field(default_factory=TilingConfig)  # type: ignore[arg-type]
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)  # type: ignore[arg-type]
    segment: SegmentConfig = Field(default_factory=SegmentConfig)  # type: ignore[arg-type]
    output: OutputConfig = Field(default_factory=OutputConfig)  # type: ignore[arg-type]
    dense: DenseConfig = Field(default_factory=DenseConfig)  # type: ignore[arg-type]
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    batch_size: int = Field(1, ge=1, le=1024)
    match_resolution: bool = True

    @model_validator(mode="after")
    def _device_ok(self) -> RunConfig:
        d = self.device
        if not (d in ("auto", "cpu", "cuda", "mps") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, not {d!r}")
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (defaults included)."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data

    def with_overrides(self, **changes: Any) -> RunConfig:
        """Return a copy with dotted-path overrides applied (``{"tiling.tile_size": 512}``), validated."""
        data = self.to_json_dict()
        for key, value in changes.items():
            if value is None:
                continue
            node = data
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        return parse_config(data)


def parse_config(data: Any, source: str | os.PathLike[str] | None = None) -> RunConfig:
    """Validate a mapping as a :class:`RunConfig`, upgrading older schema versions.

    Raises:
        ConfigError: Unknown keys, wrong types or out-of-range values (the message names each key).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"a configuration must be a mapping, not {type(data).__name__}", source)
    data = upgrade_config(dict(data), source)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err), source) from None


def upgrade_config(data: dict[str, Any], source: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Upgrade a config mapping from an older ``schema_version`` to the current one.

    A mapping without ``schema_version`` is read as version 1 (every version-1 file is a valid
    version-2 file but for the removed key), so files written before the bump keep loading. Upgrades:

    * 1 -> 2: ``segment.mask_threshold`` is dropped. Nothing ever read it (SAM's mask decoder uses its
      own threshold, 0.0); a value other than 0.0 is reported in a warning, since it had no effect.

    Raises:
        ConfigError: A ``schema_version`` from the future (or not an integer).
    """
    version = check_schema_version(data, SCHEMA_VERSION, source)
    out = dict(data)
    if version < 2 and isinstance(out.get("segment"), dict) and "mask_threshold" in out["segment"]:
        segment = dict(out["segment"])
        value = segment.pop("mask_threshold")
        if value not in (0, 0.0, None):
            where = f"{source}: " if source is not None else ""
            log.warning(
                "%ssegment.mask_threshold (%r) is no longer a setting: it never had an effect (SAM's "
                "mask decoder thresholds its logits at 0.0); removed",
                where,
                value,
            )
        out["segment"] = segment
    out["schema_version"] = SCHEMA_VERSION
    return out


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Load a YAML or JSON run configuration file.

    Raises:
        ConfigError: The file is missing, not YAML, or invalid (see :func:`parse_config`).
    """
    p = Path(path)
    return parse_config(read_yaml(p, mapping=False), p)
