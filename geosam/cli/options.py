"""Click options shared by ``geosam run`` and ``geosam batch``, and how they map onto :class:`RunConfig`.

``--model`` (:func:`model_option`) is also ``geosam classify``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from geosam.config import RunConfig, load_config

__all__ = ["build_run_config", "model_option", "run_options"]

F = TypeVar("F", bound=Callable[..., Any])

#: option name -> dotted RunConfig field
OVERRIDES = {
    "tile_size": "tiling.tile_size",
    "halo": "tiling.halo",
    "regions": "segment.source",
    "sam_model": "segment.sam_model",
    "concepts": "segment.concepts",
    "concept_threshold": "segment.concept_threshold",
    "points_per_side": "segment.points_per_side",
    "pred_iou_thresh": "segment.pred_iou_thresh",
    "stability_score_thresh": "segment.stability_score_thresh",
    "min_region_area": "segment.min_region_area",
    "device": "device",
    "precision": "precision",
    "batch_size": "batch_size",
    "confidence_dtype": "output.confidence_dtype",
    "stretch": "normalize.method",
    "radiometry": "normalize.radiometry",
    "dn_offset": "normalize.dn_offset",
    "match_resolution": "match_resolution",
    "probabilities": "dense.probabilities",
    "refine": "dense.refine",
}


def _bands(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[int | str] | None:
    if not value:
        return None
    out: list[int | str] = []
    for part in value.split(","):
        part = part.strip()
        if part:
            out.append(int(part) if part.isdigit() else part)
    return out


def model_option(f: F) -> F:
    """Decorate a command with ``--model``/``-m``, the bundle folder (``None``: the packaged model)."""
    return click.option(
        "--model",
        "-m",
        type=click.Path(path_type=Path),
        default=None,
        help="Model bundle folder (default: the packaged model trained on EuroSAT RGB).",
    )(f)


def run_options(f: F) -> F:
    """Decorate a command with the model, tiling, region and output options."""
    opts = [
        model_option,
        click.option(
            "--sam-checkpoint",
            type=click.Path(path_type=Path),
            default=None,
            help="Meta SAM checkpoint for SAM regions: SAM 1 (sam_vit_b_01ec64.pth...) or SAM 2.x "
            "(sam2.1_hiera_tiny.pt...), recognised from its weights. A SAM 1 checkpoint needs a bundle "
            "trained on it; SAM 2 also runs with a bundle that has its own encoder (the default model).",
        ),
        click.option(
            "--sam-model",
            default=None,
            help="Name the SAM 2 configuration of --sam-checkpoint (sam2.1_hiera_tiny, sam2.1_hiera_small, "
            "sam2.1_hiera_base_plus, sam2.1_hiera_large, sam2_hiera_*) instead of recognising it "
            "[default: auto].",
        ),
        click.option(
            "--config",
            "-c",
            "config_path",
            type=click.Path(path_type=Path),
            default=None,
            help="YAML run configuration (see docs/configuration.md); options override it.",
        ),
        click.option(
            "--bands",
            "-b",
            callback=_bands,
            default=None,
            help="Scene bands in model order, by 1-based index or name: '3,2,1' or 'B04,B03,B02' "
            "(repeats allowed: '1,1,1' gives one grey band to an RGB model).",
        ),
        click.option("--tile-size", type=int, default=None, help="Tile edge in pixels (default: model's)."),
        click.option("--halo", type=int, default=None, help="Overlap context per tile side in pixels."),
        click.option(
            "--regions",
            type=click.Choice(["auto", "sam", "felzenszwalb", "tiles", "chips", "sam3"]),
            default=None,
            help="Region source: SAM masks, superpixels, tile labels only, or one region per encoder "
            "chip (chip models: each pixel gets the class of its chip) (auto: SAM when a checkpoint is "
            "given); sam3: SAM 3 concept masks classified by the model (run only).",
        ),
        click.option("--points-per-side", type=int, default=None, help="SAM point grid density."),
        click.option("--pred-iou-thresh", type=float, default=None, help="SAM predicted-IoU filter."),
        click.option("--stability-score-thresh", type=float, default=None, help="SAM stability filter."),
        click.option(
            "--min-region-area", type=int, default=None, help="Drop regions smaller than this (px)."
        ),
        click.option(
            "--stretch",
            type=click.Choice(["auto", "percentile", "dtype", "none"]),
            default=None,
            help="Stretch to 0..1. auto (default): the model's own preprocessing, as in training; "
            "percentile (2-98 per scene), dtype (0..2^NBITS-1) or none (values already 0..1) override "
            "it with a warning. GDAL scale/offset always apply first.",
        ),
        click.option(
            "--radiometry",
            type=click.Choice(["auto", "display", "reflectance", "dn"]),
            default=None,
            help="What the scene's values are: auto (from metadata and value ranges, logged), display "
            "(8-bit levels, like JPEG), reflectance (after GDAL scale/offset), dn (Sentinel-2 DN: "
            "reflectance = (DN + dn-offset) / 10000).",
        ),
        click.option(
            "--dn-offset",
            type=float,
            default=None,
            help="Sentinel-2 RADIO_ADD_OFFSET/BOA_ADD_OFFSET: -1000 for processing baseline 04.00+ "
            "(acquired from 2022-01-25) [default: 0, or the training data's].",
        ),
        click.option("--device", default=None, help="auto, cpu, cuda or cuda:N."),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
            default=None,
            help="Encoder precision (auto: bf16 where the hardware has it).",
        ),
        click.option(
            "--batch-size", type=int, default=None, help="Encoder batch: 16 x N chips per call [default: 1]."
        ),
        click.option(
            "--match-resolution/--no-match-resolution",
            default=None,
            help="Resample scenes to the model's training resolution (default: on; chip models only).",
        ),
        click.option(
            "--probabilities/--no-probabilities",
            default=None,
            help="Dense models: also write <scene>_probabilities.tif, one band per class in percent "
            "[default: no].",
        ),
        click.option(
            "--refine",
            type=click.Choice(["regions", "none"]),
            default=None,
            help="Dense models: pixels take their region's class (mean of the pixel probabilities "
            "inside it), or keep their own [default: regions].",
        ),
        click.option(
            "--confidence-dtype",
            type=click.Choice(["float32", "uint8"]),
            default=None,
            help="Confidence raster as probability (float32) or percent (uint8).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_run_config(config_path: Path | None, bands: list[int | str] | None, **options: Any) -> RunConfig:
    """Load the YAML config (if any) and apply CLI overrides; validation errors are ConfigErrors."""
    cfg = load_config(config_path) if config_path is not None else RunConfig()
    changes = {OVERRIDES[k]: v for k, v in options.items() if k in OVERRIDES and v is not None}
    if bands is not None:
        changes["bands"] = bands
    return cfg.with_overrides(**changes) if changes else cfg
