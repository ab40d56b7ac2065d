"""Training configuration (pydantic, ``extra="forbid"``); its fields are ``geosam train``'s options."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DenseOptions", "TrainConfig"]


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


class TrainConfig(BaseModel):
    """How to train a classifier.

    Attributes:
        backbone: ``small``/``tiny`` (geosam's CPU-trainable SAM configurations, randomly initialised),
            ``default`` (the packaged default model's trained encoder; dense head) or a path to an
            official SAM checkpoint: SAM 1 (``sam_vit_b_01ec64.pth``...) or SAM 2.x
            (``sam2.1_hiera_small.pt``...), recognised from its weights.
        mode: ``probe`` (frozen encoder, cached embeddings, linear head), ``last_n`` (train the last
            ``last_n`` blocks, the neck and the head) or ``full`` (everything).
        last_n: Blocks to train in ``last_n`` mode (Hiera: blocks over all stages; the last stage of
            Hiera-T/S has 2 blocks, of B+ 3, of L 4).
        feature_level: SAM 2 backbones: the feature level(s) the head pools (``fpn16``, SAM 2's
            stride-16 image embedding, by default; see ``docs/sam_models.md``).
        input_size: Encoder input size in pixels; chips are resized to it (e.g. 64 px EuroSAT chips at
            224 for ViT-B). ``None``: the chip size.
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
        seed: Seed for the split, initialisation and augmentation.
        calibrate: When training ends, fit the temperature that calibrates the probabilities and the
            domain statistics behind the out-of-domain warning, on the validation split
            (:mod:`geosam.train.calibrate`, docs/calibration.md).
        init_from: Start from this bundle's weights and normalisation (same encoder architecture, bands
            and classes), e.g. to continue training the packaged default model with another recipe.
            Its validation split should be this run's (same data, ``seed`` and ``val_fraction``), or the
            validation chips may be ones the bundle was trained on.
        patience: Stop when validation macro-F1 has not improved for this many epochs (0 = never).
        head_hidden: Hidden width of the head (0 = linear).
        dropout: Head dropout.
        band_init: Initialisation of non-RGB bands in the band adapter (see ``band_adapter``).
        threads: Torch CPU threads (``None``: all cores).
        device: ``cpu``, ``cuda`` or ``auto``.
        max_per_class: Cap chips per class (quick runs); ``None`` uses all.
        out: Output bundle folder.
        cache_dir: Where decoded chips and probe embeddings are cached.
        resume: Continue from ``<out>.work/last.pt`` if it exists.
        save_dtype: Weight storage dtype of the bundle.
        name: Model name recorded in the bundle.
        tile_size: Recommended scene tile size recorded in the bundle, in scene pixels (a multiple of
            the chip size; ``None``: about 256 encoder pixels of chips).
        gsd_m: Ground sampling distance of the training chips in metres per pixel, recorded in the bundle
            for resolution matching. Chip folders record none; scene sources read it from the scene (a
            projected CRS) and refuse a contradicting value.
        head: ``chip`` (a classifier of chips, regions and tiles from pooled encoder features) or
            ``dense`` (per-pixel classes: :mod:`geosam.train.dense`; scene sources only).
        dense: Options of the dense head.
    """

    model_config = ConfigDict(extra="forbid")

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

    @model_validator(mode="after")
    def _backbone(self) -> TrainConfig:
        if self.backbone not in ("small", "tiny", "default") and not self.backbone.endswith(
            (".pth", ".pt", ".safetensors")
        ):
            raise ValueError(
                f"backbone must be 'small', 'tiny', 'default' or a SAM checkpoint path, not {self.backbone!r}"
            )
        return self
