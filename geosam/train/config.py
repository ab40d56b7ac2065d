"""Training configuration (pydantic, ``extra="forbid"``); its fields are ``geosam train``'s options."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TrainConfig"]


class TrainConfig(BaseModel):
    """How to train a classifier.

    Attributes:
        backbone: ``small``/``tiny`` (geosam's CPU-trainable SAM configurations, randomly initialised)
            or a path to an official SAM checkpoint: SAM 1 (``sam_vit_b_01ec64.pth``...) or SAM 2.x
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
        val_fraction: Share of each class held out for validation (stratified; grouped by polygon).
        seed: Seed for the split, initialisation and augmentation.
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
        tile_size: Recommended scene tile size recorded in the bundle (multiple of the chip size).
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
    val_fraction: float = Field(0.1, gt=0, lt=0.9)
    seed: int = 0
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

    @model_validator(mode="after")
    def _backbone(self) -> TrainConfig:
        if self.backbone not in ("small", "tiny") and not self.backbone.endswith(
            (".pth", ".pt", ".safetensors")
        ):
            raise ValueError(
                f"backbone must be 'small', 'tiny' or a SAM checkpoint path, not {self.backbone!r}"
            )
        return self
