"""A bundle's ``model.json``: its schema (:class:`BundleMeta`), format upgrades, and reading it.

Private to :mod:`geosam.models.bundle` (which documents the bundle format and re-exports every name
here); split from it to keep modules small. Nothing here imports torch: reading a bundle's metadata is
cheap.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geosam.calibration import CalibrationMeta
from geosam.domain import DomainMeta
from geosam.errors import BundleError, WeightsNotFoundError
from geosam.preprocess import PercentileScaling, Preprocessing, upgrade_v1
from geosam.types import ClassScheme

BUNDLE_FORMAT: Literal["geosam-model-bundle"] = "geosam-model-bundle"
FORMAT_VERSION: Literal[2] = 2
META_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncoderMeta(_Strict):
    """Where the encoder comes from and its architecture.

    ``family`` is the backbone family: ``sam`` (SAM 1 ViT; ``config`` is a :class:`SamConfig` dict) or
    ``sam2`` (SAM 2.x Hiera; ``config`` is a :class:`geosam.models.sam2_bundle.Sam2EncoderConfig` dict
    naming the SAM 2 configuration, e.g. ``sam2.1_hiera_tiny``). A run refuses a SAM checkpoint of
    another family or size than the bundle's encoder. ``sam3`` marks the descriptor of a zero-shot
    SAM 3 concept run (:func:`geosam.infer_sam3.zero_shot_bundle`), never a saved bundle.
    """

    family: Literal["sam", "sam2", "sam3"] = "sam"
    source: Literal["bundle", "sam_checkpoint"] = "bundle"
    config: dict[str, Any]
    checkpoint_sha256: str | None = None
    band_adapter: Literal["none", "zero", "mean", "trained"] = "none"


class HeadMeta(_Strict):
    """Classifier head shape."""

    in_dim: int = Field(ge=1)
    num_classes: int = Field(ge=1, le=255)
    hidden: int = Field(0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class BundleMeta(_Strict):
    """Contents of ``model.json``.

    Attributes:
        format: Always ``geosam-model-bundle``.
        format_version: Bumped on incompatible change.
        name: Model name.
        version: The model's own version string.
        created: ISO 8601 UTC creation time.
        geosam_version: geosam version that wrote the bundle.
        classes: :class:`ClassScheme` as a dict (names, colors, nodata).
        bands: Canonical band names in model input order (e.g. ``red, green, blue``).
        mean: Per-band mean of the 0..1-stretched input.
        std: Per-band standard deviation of the 0..1-stretched input.
        input_size: Chip size in pixels the encoder runs at (the encoder's ``img_size``).
        chip_size: Size in source pixels of the training chips (``None``: ``input_size``). Scenes are
            resampled by ``input_size / chip_size`` before encoding so that a model pixel covers the same
            ground as in training.
        gsd_m: Ground sampling distance of the training data in metres (informational).
        recommended_tile_size: Tile size for scenes (a multiple of ``input_size``).
        encoder: Encoder metadata.
        head: Region/tile classifier head metadata (``None`` for a dense-only model).
        dense: Dense (per-pixel) head architecture, a
            :class:`~geosam.models.dense_head.DenseHeadConfig` dict (``None``: no dense head). A model
            with a dense head classifies every pixel; its regions and tiles take the mean of the
            pixel probabilities inside them.
        preprocessing: How a pixel reaches the model (:class:`geosam.preprocess.Preprocessing`): what
            training applied and every run applies. Format-1 records (plain dicts) are upgraded.
        training: Mode, epochs, timings, metrics, learning curve summary.
        data: Data provenance (source paths, licence, counts, split).
        weights_sha256: sha256 of ``weights.safetensors``.
        weights_dtype: Storage dtype of the weights (``float32`` or ``float16``); loaded as float32.
        calibration: Temperature scaling of the logits (:mod:`geosam.calibration`); ``None``: uncalibrated.
        domain: Domain statistics for the out-of-domain warning (:mod:`geosam.domain`), stored in
            ``domain.safetensors``; ``None``: runs cannot tell whether a scene is like the training data.
    """

    format: Literal["geosam-model-bundle"] = BUNDLE_FORMAT
    format_version: Literal[2] = FORMAT_VERSION
    name: str
    version: str = "1"
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    geosam_version: str = ""
    classes: dict[str, Any]
    bands: list[str] = Field(min_length=1)
    mean: list[float]
    std: list[float]
    input_size: int = Field(ge=16, le=4096)
    chip_size: int | None = Field(None, ge=1)
    gsd_m: float | None = None
    recommended_tile_size: int = Field(1024, ge=16)
    encoder: EncoderMeta
    head: HeadMeta | None = None
    dense: dict[str, Any] | None = None
    preprocessing: Preprocessing = Field(
        default_factory=lambda: Preprocessing(
            space="raw", scaling=PercentileScaling(), note="no preprocessing recorded: per-scene stretch"
        )
    )
    training: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str = ""
    weights_dtype: Literal["float32", "float16"] = "float32"
    calibration: CalibrationMeta | None = None
    domain: DomainMeta | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return upgrade_bundle_dict(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _consistent(self) -> BundleMeta:
        n = len(self.bands)
        pn = self.preprocessing.n_bands
        if pn is not None and pn != n:
            raise ValueError(f"{n} bands but the preprocessing has bounds for {pn}")
        if len(self.mean) != n or len(self.std) != n:
            raise ValueError(f"{n} bands but {len(self.mean)} means and {len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        scheme = ClassScheme.from_dict(self.classes)  # raises ConfigError on bad names/colours
        if self.head is None and self.dense is None:
            raise ValueError("a model needs a classifier head, a dense head, or both")
        if self.head is not None and len(scheme) != self.head.num_classes:
            raise ValueError(f"{len(scheme)} class names but the head has {self.head.num_classes} outputs")
        if self.dense is not None:
            from geosam.models.dense_config import check_dense_meta

            check_dense_meta(self.dense, len(scheme), n)
        chip = self.chip_size or self.input_size
        if self.recommended_tile_size % chip:
            raise ValueError(
                f"recommended_tile_size {self.recommended_tile_size} is not a multiple of chip size {chip}"
            )
        return self

    @property
    def class_scheme(self) -> ClassScheme:
        """The class names and colours."""
        return ClassScheme.from_dict(self.classes)


def upgrade_bundle_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A ``model.json`` mapping of an older format as the current format (a new dict; the input is kept).

    Format 1 -> 2: ``preprocessing`` becomes a :class:`~geosam.preprocess.Preprocessing` record meaning
    what the format-1 record meant (:func:`geosam.preprocess.upgrade_v1`); so does a format-2 mapping
    whose ``preprocessing`` is still in the format-1 shape (no ``space`` key), as code written for
    format 1 builds it. Other versions are returned unchanged (validation refuses them).
    """
    out = dict(data)
    version = out.get("format_version", FORMAT_VERSION)
    pre = out.get("preprocessing")
    old_shape = isinstance(pre, dict) and "space" not in pre
    if version == 1 or (version == FORMAT_VERSION and old_shape):
        bands = out.get("bands")
        n = len(bands) if isinstance(bands, list) and bands else 1
        out["preprocessing"] = upgrade_v1(dict(pre) if isinstance(pre, dict) else {}, n)
        out["format_version"] = FORMAT_VERSION
    return out


def default_bundle_path(*, required: bool = False) -> Path:
    """Path of the default model shipped inside the package (trained on EuroSAT RGB).

    Args:
        required: Raise when it is not installed (a development checkout before it was trained),
            with a message saying so rather than "bundle not found".

    Raises:
        WeightsNotFoundError: ``required`` and the folder has no ``model.json``.
    """
    path = Path(__file__).resolve().parent.parent / "data" / "default_model"
    if required and not (path / META_FILE).is_file():
        raise WeightsNotFoundError(
            "the packaged default model is not installed here; pass a model bundle with --model "
            "(train one with `geosam train`, see docs/training.md)",
            path,
        )
    return path


def read_bundle_meta(path: str | os.PathLike[str]) -> BundleMeta:
    """Read and validate ``model.json`` of a bundle folder (no weights, no torch).

    Raises:
        WeightsNotFoundError: The folder or its ``model.json`` does not exist.
        BundleError: ``model.json`` is not JSON, misses keys, has unknown keys or inconsistent values.
    """
    p = Path(path)
    meta_path = p / META_FILE if p.is_dir() else p
    if not meta_path.is_file():
        raise WeightsNotFoundError(
            f"model bundle not found (expected a folder with {META_FILE} and {WEIGHTS_FILE}); "
            "train one with `geosam train` or omit --model to use the default model",
            p,
        )
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"metadata is not valid JSON ({err})", meta_path) from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a geosam model bundle (format must be {BUNDLE_FORMAT!r})", meta_path)
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise BundleError(
            f"bundle format_version {version} is newer than this geosam reads (1..{FORMAT_VERSION}): "
            "upgrade geosam",
            meta_path,
        )
    try:
        return BundleMeta.model_validate(data)
    except ValidationError as err:
        from geosam.config_io import format_validation_error

        raise BundleError(format_validation_error(err, what="bundle metadata"), meta_path) from None
    except Exception as err:  # ConfigError from ClassScheme
        raise BundleError(f"invalid bundle metadata ({err})", meta_path) from None
