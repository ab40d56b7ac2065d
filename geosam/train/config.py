"""Training configuration (pydantic, ``extra="forbid"``); its fields are ``geosam train``'s options.

A :class:`TrainConfig` holds everything a training run is given: the training options, the dense head's
(:class:`DenseOptions`, ``dense:``) and how chips are read from the data (:class:`SamplingConfig`,
``sampling:``). ``geosam train`` generates its options from these fields (:mod:`geosam.cli.config_options`)
and reads the same fields from ``--config`` YAML (:func:`load_train_config`; the command line wins).
The config a run used is recorded in its bundle (``model.json`` -> ``training.config``, and
``report/train_config.yaml``, which ``--config`` reads back: :func:`replay_yaml`).

Schema versions (:data:`SCHEMA_VERSION`): 1, files without ``schema_version``: the training options and
``dense:``; 2 adds ``schema_version`` and ``sampling:``. A version-1 file is a valid version-2 file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geosam.config import NormalizeConfig
from geosam.config_io import check_schema_version, format_validation_error, read_yaml
from geosam.errors import ConfigError

__all__ = [
    "SCHEMA_VERSION",
    "DenseOptions",
    "SamplingConfig",
    "TrainConfig",
    "load_train_config",
    "replay_yaml",
    "upgrade_train_config",
    "with_sampling",
]

SCHEMA_VERSION: Literal[2] = 2
"""Version of the training configuration schema. 2: ``schema_version`` and ``sampling:`` added."""


def _comma_list(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]`` (command-line and YAML shorthand); other values pass through."""
    if not isinstance(value, str):
        return value
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise ValueError(f"empty item in the comma-separated list {value!r}")
    return items


class DenseOptions(BaseModel):
    """Options of the dense (per-pixel) head (``head: dense``); see :mod:`geosam.train.dense`.

    Attributes:
        patch_size: Training patch edge in scene pixels (rounded to a multiple of the chip size).
        patches: Training patches sampled once around the labels (TorchGeo ``RandomGeoSampler``),
            read once and revisited every epoch with random flips and rotations.
        steps: Optimisation steps over the whole run (``batch_size`` patches each).
        decoder: segmentation-models-pytorch decoder over the encoder levels: ``upernet`` or ``fpn``.
        decoder_channels: Decoder width.
        pixel_channels: Width of the per-pixel branch (bands and local means; 0 = none).
        context: Local-mean window edges (odd, pixels) of the per-pixel branch.
        use_encoder: Feed the encoder's features to the head (``False``: pixel branch only).
        encoder_dropout: Channel dropout on the encoder features while training.
        class_weights: Weight the loss by inverse class frequency (capped at 10x).
        margin: Context in pixels around each labelled polygon or block that patches may cover.
        members: Heads trained side by side from different initialisations, logits averaged (an
            ensemble; each costs one head's time).
        noise: Standard deviation of Gaussian noise added to the normalised pixels while training
            (a regulariser against memorising the few labelled polygons; 0 = none).
        keep: ``best`` holds out ``val_fraction`` of the polygons (or blocks) and keeps the round with
            the best validation macro-F1; ``last`` trains on every polygon and keeps the last round
            (with a few dozen polygons, holding out one per class costs more than early stopping
            gains; measure such a model with ``--cv`` instead).
    """

    model_config = ConfigDict(extra="forbid")

    patch_size: int = Field(32, ge=8, le=2048)
    patches: int = Field(256, ge=1)
    steps: int = Field(300, ge=1)
    decoder: Literal["upernet", "fpn"] = "upernet"
    decoder_channels: int = Field(64, ge=8)
    pixel_channels: int = Field(32, ge=0)
    context: tuple[int, ...] = (3, 7)
    use_encoder: bool = True
    encoder_dropout: float = Field(0.0, ge=0, lt=1)
    class_weights: bool = True
    margin: int = Field(8, ge=0)
    members: int = Field(1, ge=1, le=32)
    noise: float = Field(0.0, ge=0)
    keep: Literal["best", "last"] = "best"

    @field_validator("context", mode="before")
    @classmethod
    def _context_list(cls, value: Any) -> Any:
        return _comma_list(value)


class SamplingConfig(BaseModel):
    """How training chips are read from the data (``sampling:``; ``geosam train``'s source options).

    The scene sources (``geosam train polygons|raster``) sample chips on a lattice
    (:mod:`geosam.train.scene_chips`); ``folder`` reads finished chips and uses ``band_names``,
    ``radiometry``, ``dn_offset`` and ``reflectance_to_display`` only. Lists also take comma-separated
    text, as on the command line (``bands: 3,2,1``, ``classes: 1=water,2=forest``).

    Attributes:
        class_column: polygons: the attribute of LABELS holding each polygon's class (required;
            ``--field`` and ``--class-column`` are the same option).
        layer: polygons: layer of a multi-layer LABELS file (GeoPackage). ``None``: the first.
        max_per_polygon: polygons: at most this many chips per polygon.
        classes: raster: ID=NAME pairs (``1=water,2=forest``); other ids are ignored, ids with one name
            are merged. ``None``: the raster's category names or attribute table (``.aux.xml``), else
            ``class_<id>``.
        label_rule: raster: a chip's label is the most frequent class in the chip (``majority``) or the
            centre pixel's class (``centre``).
        label_nodata: raster: a label value meaning "no label" (e.g. 0), besides nodata.
        block_chips: raster: split groups are blocks of N x N chips (limits train/validation leakage).
        chip_size: Chip edge in scene pixels (the chip head; the dense head samples ``dense.patch_size``
            patches).
        bands: Scene bands to use, by 1-based index or name (``3,2,1`` or ``red,green,blue``).
            ``None``: all but alpha.
        band_names: Names of the chip bands in order, e.g. ``B01,B02,...,B12,B8A`` for EuroSAT MS
            (Sentinel-2 ids, red/green/blue/nir...). ``None``: from the data.
        spacing: Step in pixels between candidate chip centres. ``None``: the chip size / 2.
        max_nodata: Skip chips with more than this fraction of nodata pixels.
        radiometry: What the values are: ``auto`` (from metadata and value ranges, logged), ``display``
            (8-bit levels), ``reflectance`` (after GDAL scale/offset), ``dn`` (Sentinel-2 DN:
            reflectance = (DN + dn-offset) / 10000). Recorded in the bundle.
        dn_offset: Sentinel-2 RADIO_ADD_OFFSET/BOA_ADD_OFFSET of the data: -1000 for processing baseline
            04.00+ (acquired from 2022-01-25). ``None``: 0.
        reflectance_to_display: folder: for display chips rendered from Sentinel-2 reflectance, record
            how reflectance maps to their levels, so runs can take reflectance scenes (``eurosat-l1c``:
            the EuroSAT RGB JPEGs' mapping, docs/preprocessing.md).
    """

    model_config = ConfigDict(extra="forbid")

    class_column: str | None = None
    layer: str | None = None
    max_per_polygon: int | None = Field(50, ge=1)
    classes: dict[int, str] | None = None
    label_rule: Literal["majority", "centre"] = "majority"
    label_nodata: float | None = None
    block_chips: int = Field(4, ge=1)
    chip_size: int = Field(64, ge=1, le=4096)
    bands: list[int | str] | None = None
    band_names: list[str] | None = None
    spacing: int | None = Field(None, ge=1)
    max_nodata: float = Field(0.5, ge=0, lt=1)
    radiometry: Literal["auto", "display", "reflectance", "dn"] = "auto"
    dn_offset: float | None = Field(None, ge=-10000, le=10000)
    reflectance_to_display: Literal["none", "eurosat-l1c"] = "none"

    @field_validator("bands", "band_names", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("classes", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        out: dict[int, str] = {}
        for item in _comma_list(value):
            key, sep, name = item.partition("=")
            if not sep or not key.strip().lstrip("-").isdigit() or not name.strip():
                raise ValueError(f"classes are ID=NAME pairs such as 1=water,2=forest; {item!r} is not one")
            out[int(key)] = name.strip()
        return out

    @property
    def normalize(self) -> NormalizeConfig:
        """How the scene's values are brought to 0..1 (its radiometry; the stretch is the default)."""
        return NormalizeConfig(radiometry=self.radiometry, dn_offset=self.dn_offset)


class TrainConfig(BaseModel):
    """How to train a classifier: the whole configuration of a ``geosam train`` run.

    Attributes:
        schema_version: Version of this schema (:data:`SCHEMA_VERSION`); files without it are version 1.
        backbone: ``small``/``tiny`` (geosam's CPU-sized SAM encoders, trained from scratch), ``default``
            (the packaged default model's trained encoder; dense head) or the path of an official SAM
            checkpoint: SAM 1 (``sam_vit_b_01ec64.pth``...) or SAM 2.x (``sam2.1_hiera_small.pt``...),
            recognised from its weights; geosam never downloads it.
        mode: ``probe`` (frozen encoder, cached embeddings, train the head only; needs a pretrained
            checkpoint), ``last_n`` (also train the last ``last_n`` blocks and the neck) or ``full``
            (train everything).
        last_n: Blocks to train in ``last_n`` mode (Hiera: blocks over all stages; the last stage of
            Hiera-T/S has 2 blocks, of B+ 3, of L 4).
        feature_level: SAM 2 backbones: the feature map(s) the head pools, e.g. ``fpn16`` (SAM 2's
            stride-16 image embedding, the default) or ``fpn16+trunk32`` (see ``docs/sam_models.md``).
        input_size: Encoder input size in pixels; chips are resized to it (e.g. 64 px EuroSAT chips at
            224 for ViT-B; position embeddings are interpolated). ``None``: the chip size.
        epochs: Maximum epochs.
        batch_size: Chips per optimisation step.
        lr: Peak learning rate (AdamW, linear warm-up then cosine decay).
        weight_decay: AdamW weight decay (not applied to norms, biases and position tables).
        warmup_steps: Linear warm-up steps.
        label_smoothing: Cross-entropy label smoothing.
        augment: Random flips and 90-degree rotations (all 8 symmetries of the square).
        augment_scale: Probability per chip of a ground-sampling-distance change (zoom-in crop or
            resolution loss; see :mod:`geosam.train.augment`), for transfer to other sensors.
        augment_radiometry: Probability per chip of a per-band gain/offset and gamma change.
        augment_blur: Probability per chip of a Gaussian blur.
        ema_decay: Keep an exponential moving average of the weights with this decay per step and
            evaluate/save it instead of the raw weights (0 = off; e.g. 0.999).
        ema_warmup: Ramp the moving average's decay up over the first updates (``min(decay, (1 + n) /
            (10 + n))``), so short runs are not dominated by their initial weights.
        keep: Which epoch's weights the bundle gets: ``best`` (highest validation macro-F1; the
            validation metrics are then optimistic) or ``last`` (a fixed schedule; nothing is chosen on
            the validation split, so its metrics are an unbiased hold-out estimate).
        val_fraction: Share of each class held out for validation (stratified; grouped by polygon).
        seed: Seed for the split, chip sampling, initialisation and augmentation.
        calibrate: When training ends, fit the temperature that calibrates the probabilities and the
            domain statistics behind the out-of-domain warning, on the validation split
            (:mod:`geosam.train.calibrate`, docs/calibration.md).
        init_from: Start from this bundle's weights and normalisation (same encoder architecture, bands
            and classes), e.g. to continue training the packaged default model with another recipe.
            Without ``input_size`` training continues at the bundle's input size; with another one its
            position tables are interpolated.
            Its validation split should be this run's (same data, ``seed`` and ``val_fraction``), or the
            validation chips may be ones the bundle was trained on.
        patience: Stop after this many epochs without a better validation macro-F1 (0 = never).
        head_hidden: Hidden width of the head (0 = linear).
        dropout: Head dropout.
        band_init: Initialisation of non-RGB bands in the band adapter (see ``band_adapter``).
        threads: Torch CPU threads (``None``: all cores).
        precision: Arithmetic of the training forward pass: ``fp32``, or ``bf16`` autocast (weights,
            optimiser state and validation stay float32). On CPUs with native bf16 (AVX-512 BF16/AMX)
            a ``small`` encoder epoch is about 1.5x faster (64 px: 0.70 vs 0.46 s per 64-chip step;
            ``benchmarks/bench_train_precision.py`` on this project's 2-core machine); on CPUs
            without it bf16 is emulated and slower.
        device: ``cpu``, ``cuda`` or ``auto``.
        max_per_class: Use at most this many chips per class (quick runs); ``None``: all.
        out: Bundle folder to write (replaces an earlier bundle; refuses any other non-empty folder).
        cache_dir: Where decoded chips and probe embeddings are cached.
        resume: Continue from ``<out>.work/last.pt`` if it exists.
        save_dtype: Weight storage dtype of the bundle.
        name: Model name recorded in the bundle.
        tile_size: Recommended scene tile size recorded in the bundle, in scene pixels (a multiple of
            the chip size; ``None``: about 256 encoder pixels of chips).
        gsd_m: Ground sampling distance of the training chips in metres per pixel (e.g. 10 for
            Sentinel-2), recorded in the bundle so ``geosam run`` can match scene resolutions. Needed for
            chip folders, which record none; scene sources read it from the scene (a projected CRS) and
            refuse a contradicting value.
        head: ``chip``: classify chips, regions and tiles from pooled encoder features; ``dense``: classify
            every pixel (the encoder's features plus the pixels and their local context; regions then
            take the mean pixel probabilities; :mod:`geosam.train.dense`). Dense is for scene sources;
            ``geosam train polygons`` trains it unless told otherwise.
        dense: Options of the dense head.
        sampling: How chips are read from the data (:class:`SamplingConfig`).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = SCHEMA_VERSION
    backbone: str = "small"
    mode: Literal["probe", "last_n", "full"] = "full"
    last_n: int = Field(2, ge=1)
    feature_level: str | None = None
    input_size: int | None = Field(None, ge=16, le=4096)
    epochs: int = Field(30, ge=1, le=10000)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(300, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    augment: bool = True
    augment_scale: float = Field(0.0, ge=0, le=1)
    augment_radiometry: float = Field(0.0, ge=0, le=1)
    augment_blur: float = Field(0.0, ge=0, le=1)
    ema_decay: float = Field(0.0, ge=0, lt=1)
    ema_warmup: bool = True
    keep: Literal["best", "last"] = "best"
    val_fraction: float = Field(0.1, gt=0, lt=0.9)
    seed: int = 0
    init_from: Path | None = None
    calibrate: bool = True
    patience: int = Field(5, ge=0)
    head_hidden: int = Field(0, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    band_init: Literal["zero", "mean"] = "zero"
    threads: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "auto"
    max_per_class: int | None = Field(None, ge=1)
    out: Path = Path("model")
    cache_dir: Path | None = None
    resume: bool = False
    save_dtype: Literal["float32", "float16"] = "float32"
    name: str = "geosam-model"
    tile_size: int | None = Field(None, ge=16)
    gsd_m: float | None = Field(None, gt=0, le=100_000)
    head: Literal["chip", "dense"] = "chip"
    dense: DenseOptions = Field(default_factory=DenseOptions)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)

    @model_validator(mode="after")
    def _backbone(self) -> TrainConfig:
        if self.backbone not in ("small", "tiny", "default") and not self.backbone.endswith(
            (".pth", ".pt", ".safetensors")
        ):
            raise ValueError(
                f"backbone must be 'small', 'tiny', 'default' or a SAM checkpoint path, not {self.backbone!r}"
            )
        return self


def upgrade_train_config(
    data: dict[str, Any], source: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Bring a training configuration mapping to :data:`SCHEMA_VERSION` (version 1 needs no change).

    Raises:
        ConfigError: A ``schema_version`` from the future, or not a whole number.
    """
    check_schema_version(data, SCHEMA_VERSION, source)
    return {**data, "schema_version": SCHEMA_VERSION}


def load_train_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
) -> TrainConfig:
    """The training configuration of a YAML/JSON file (if any), with ``overrides`` on top.

    This is how ``geosam train`` builds its configuration: the command line wins over the file, which
    wins over the defaults. A field is "set" (``model_fields_set``) when the file or an override gives it.

    Args:
        path: YAML or JSON of :class:`TrainConfig` fields (``sampling:`` and ``dense:`` as sections); a
            bundle's ``report/train_config.yaml`` replays its run.
        overrides: Dotted field -> value (``{"epochs": 3, "sampling.chip_size": 16}``); ``None`` values
            are not given.
        flags: Dotted field -> the command-line option that gave it, so that errors name the option.

    Raises:
        ConfigError: A missing or invalid file, a ``schema_version`` this geosam does not read, unknown
            keys or invalid values; one line naming the file and key, or the option.
    """
    data = upgrade_train_config(read_yaml(path, what="training configuration"), path) if path else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}  # an option replaces a non-mapping
            node = node[part]
        node[leaf] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        names = {k: (flags or {}).get(k, f"'{k}'") for k in given}
        message = format_validation_error(
            err, path, what="training configuration", model=TrainConfig, flags=names
        )
        raise ConfigError(message) from None


def with_sampling(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """``cfg`` with these :class:`SamplingConfig` fields changed (validated); ``cfg`` itself when none.

    Raises:
        ConfigError: An unknown sampling option or an invalid value.
    """
    if not changes:
        return cfg
    try:
        sampling = SamplingConfig.model_validate({**cfg.sampling.model_dump(exclude_unset=True), **changes})
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(err, what="sampling option", model=SamplingConfig)
        ) from None
    return cfg.model_copy(update={"sampling": sampling})


def replay_yaml(cfg: TrainConfig) -> str:
    """``cfg`` as the YAML that ``geosam train SOURCE ... --config`` reads back to the same configuration."""
    import yaml

    head = (
        "# The configuration of this geosam training run (every field, defaults included). Replay it:\n"
        "#   geosam train SOURCE DATA... --config train_config.yaml --out NEW_FOLDER\n"
        "# (without --out the run would replace this bundle: `out` below).\n"
    )
    data = cfg.model_dump(mode="json")
    if cfg.sampling.classes is not None:  # ids as numbers, as a user writes them (JSON keys are text)
        data["sampling"]["classes"] = dict(cfg.sampling.classes)
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
