"""``geosam train polygons|raster --cv K``: run the cross-validation and print its figures.

The folds train with the run's :class:`~geosam.train.config.TrainConfig` (all but ``out``, ``resume``
and ``cache_dir``, which are per fold) through :func:`geosam.train.workflows.polygons_fold_workflow` or
:func:`~geosam.train.workflows.raster_fold_workflow`, and are scored by :mod:`geosam.train.cv`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geosam.train.config import TrainConfig

__all__ = ["cross_validate_polygons", "cross_validate_raster"]


def _fold_options(cfg: TrainConfig) -> dict[str, Any]:
    """The config fields a fold trains with: those set, except the ones each fold has its own of."""
    return {f: getattr(cfg, f) for f in cfg.model_fields_set if f not in ("out", "resume", "cache_dir")}


def cross_validate_polygons(scene: Path, labels: Path, cfg: TrainConfig, k: int, *, progress: bool) -> Any:
    """Run ``--cv K`` for the polygons source and print per-fold and pooled figures."""
    from geosam.io.read import open_scene
    from geosam.train import cv
    from geosam.train.workflows import class_column, polygons_fold_workflow

    column = class_column(cfg)
    workflow = polygons_fold_workflow(scene, class_column=column, train=_fold_options(cfg), progress=progress)
    click.echo(f"{k}-fold cross-validation, polygons never split (seed {cfg.seed})", err=True)
    res = cv.cross_validate_polygons(
        open_scene(scene),
        labels,
        workflow,
        k=k,
        seed=cfg.seed,
        class_column=column,
        layer=cfg.sampling.layer,
        on_fold=_fold_printer(k),
    )
    _print_cv(res)
    return res


def cross_validate_raster(
    scene: Path, label_raster: Path, cfg: TrainConfig, k: int, *, progress: bool
) -> Any:
    """Run ``--cv K`` for the label-raster source (blocks of --block-chips x --chip-size pixels)."""
    from geosam.io.read import open_scene
    from geosam.train import cv
    from geosam.train.workflows import raster_fold_workflow

    s = cfg.sampling
    info = open_scene(scene)
    block = s.block_chips * s.chip_size
    _, class_map = cv.raster_reference(info, label_raster, classes=s.classes, label_nodata=s.label_nodata)
    workflow = raster_fold_workflow(
        scene,
        label_raster,
        classes=class_map,
        block=block,
        label_nodata=s.label_nodata,
        train=_fold_options(cfg),
        progress=progress,
    )
    click.echo(f"{k}-fold cross-validation, {block} px blocks never split (seed {cfg.seed})", err=True)
    res = cv.cross_validate_raster(
        info,
        label_raster,
        workflow,
        k=k,
        seed=cfg.seed,
        classes=class_map,
        label_nodata=s.label_nodata,
        block=block,
        on_fold=_fold_printer(k),
    )
    _print_cv(res)
    return res


def _fold_printer(k: int) -> Any:
    def on_fold(r: Any) -> None:
        m = r.metrics
        click.echo(
            f"  fold {r.fold + 1}/{k}: {m['n']} scored pixels of {len(r.test_polygons)} held-out groups"
            + (f" ({m['unclassified']} more on map nodata, not scored)" if m.get("unclassified") else "")
            + ": overall "
            f"accuracy {m['overall_accuracy']:.3f}, kappa {m['kappa']:.3f}, macro-F1 {m['macro_f1']:.3f} "
            f"({r.seconds:.0f} s)",
            err=True,
        )

    return on_fold


def _print_cv(res: Any) -> None:
    p, mean, std = res.pooled, res.mean, res.std
    click.echo(
        f"cross-validation ({res.n_pixels} reference pixels, each predicted once; "
        f"{res.n_pixels - p.get('unclassified', 0)} scored, {p.get('unclassified', 0)} on map nodata): "
        "overall accuracy "
        f"{p['overall_accuracy']:.3f}, kappa {p['kappa']:.3f}, macro-F1 {p['macro_f1']:.3f}, mIoU "
        f"{p['miou']:.3f}; per fold {mean['overall_accuracy']:.3f} +- {std['overall_accuracy']:.3f}"
    )
    click.echo("  per-class F1: " + ", ".join(f"{c} {v['f1']:.2f}" for c, v in p["per_class"].items()))
