"""Scene training workflows: what ``geosam train polygons|raster`` runs, and their cross-validation.

:func:`train_polygons` and :func:`train_raster` pick the chip classifier (:mod:`geosam.train.engine`)
or the dense head (:mod:`geosam.train.dense`, with :data:`~geosam.train.dense.DENSE_DEFAULTS` for
options not given) by ``cfg.head``. :func:`polygons_fold_workflow` wraps "train on these polygons, then
``geosam run`` the scene" as a fold of :func:`geosam.train.cv.cross_validate_polygons`, which is how
``--cv K`` and ``benchmarks/bench_vs_random_forest.py`` measure a recipe.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.train.config import TrainConfig

if TYPE_CHECKING:
    from geosam.config import RunConfig
    from geosam.train.cv import FoldWorkflow
    from geosam.train.engine import TrainResult

__all__ = [
    "POLYGONS_HEAD",
    "cv_run_config",
    "polygons_fold_workflow",
    "polygons_head",
    "train_polygons",
    "train_raster",
]

#: The head ``geosam train polygons`` trains when ``--head`` is not given (the measured winner on the
#: Raleigh benchmark, docs/training.md).
POLYGONS_HEAD = "dense"


def polygons_head(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with :data:`POLYGONS_HEAD` unless the user chose a head."""
    return cfg if "head" in cfg.model_fields_set else cfg.model_copy(update={"head": POLYGONS_HEAD})


def train_polygons(
    scene: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    class_column: str,
    cfg: TrainConfig,
    layer: str | None = None,
    chip_size: int = 64,
    bands: Sequence[int | str] | None = None,
    band_names: Sequence[str] | None = None,
    spacing: int | None = None,
    max_per_polygon: int | None = 50,
    max_nodata: float = 0.5,
    progress: bool = False,
) -> TrainResult:
    """Train on a scene and label polygons with the head ``cfg.head`` (``chip`` or ``dense``).

    The chip options (``chip_size``, ``spacing``, ``max_per_polygon``, ``max_nodata``) apply to the
    chip classifier only; the dense head's are ``cfg.dense``.

    Raises:
        DataError, RasterError, BandError: From reading the scene and the labels.
    """
    if cfg.head == "dense":
        from geosam.train.dense import dense_defaults, polygon_dense_data, train_dense

        cfg = dense_defaults(cfg)
        dense_data = polygon_dense_data(
            scene,
            labels,
            class_column=class_column,
            layer=layer,
            bands=bands,
            band_names=band_names,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
        )
        return train_dense(cfg, dense_data, progress=progress)
    from geosam.train.engine import train
    from geosam.train.scene_chips import polygon_chips

    data = polygon_chips(
        scene,
        labels,
        class_column=class_column,
        chip_size=chip_size,
        layer=layer,
        bands=bands,
        band_names=band_names,
        spacing=spacing,
        max_per_polygon=max_per_polygon,
        max_per_class=cfg.max_per_class,
        max_nodata=max_nodata,
        seed=cfg.seed,
        progress=progress,
    )
    return train(cfg, data, progress=progress)


def train_raster(
    scene: str | os.PathLike[str],
    label_raster: str | os.PathLike[str],
    *,
    cfg: TrainConfig,
    classes: dict[int, str] | None = None,
    label_rule: str = "majority",
    label_nodata: float | None = None,
    block_chips: int = 4,
    chip_size: int = 64,
    bands: Sequence[int | str] | None = None,
    band_names: Sequence[str] | None = None,
    spacing: int | None = None,
    max_nodata: float = 0.5,
    progress: bool = False,
) -> TrainResult:
    """Train on a scene and a label raster with the head ``cfg.head`` (``chip`` or ``dense``).

    Raises:
        DataError, RasterError, BandError: From reading the scene and the labels.
    """
    if cfg.head == "dense":
        from geosam.train.dense import dense_defaults, raster_dense_data, train_dense

        cfg = dense_defaults(cfg)
        dense_data = raster_dense_data(
            scene,
            label_raster,
            classes=classes,
            label_nodata=label_nodata,
            block=block_chips * 16,
            bands=bands,
            band_names=band_names,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
        )
        return train_dense(cfg, dense_data, progress=progress)
    from geosam.train.engine import train
    from geosam.train.scene_chips import raster_chips

    data = raster_chips(
        scene,
        label_raster,
        chip_size=chip_size,
        classes=classes,
        label_rule="centre" if label_rule == "centre" else "majority",
        label_nodata=label_nodata,
        bands=bands,
        band_names=band_names,
        spacing=spacing,
        block_chips=block_chips,
        max_per_class=cfg.max_per_class,
        max_nodata=max_nodata,
        seed=cfg.seed,
        progress=progress,
    )
    return train(cfg, data, progress=progress)


def cv_run_config(base: RunConfig | None = None) -> RunConfig:
    """The run configuration of a cross-validation fold: ``base`` (default: defaults) without the
    vector layers, tiles layer and QGIS project (only the class map is scored), quiet on overwrite."""
    from geosam.config import RunConfig

    cfg = base or RunConfig()
    return cfg.with_overrides(
        **{"output.regions": False, "output.tiles": False, "output.qgis_project": False}
    )


def polygons_fold_workflow(
    scene: str | os.PathLike[str],
    *,
    class_column: str,
    train: dict[str, Any] | None = None,
    sampling: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    progress: bool = False,
) -> FoldWorkflow:
    """A fold of :func:`~geosam.train.cv.cross_validate_polygons`: train on the fold's polygons, run, read.

    Args:
        scene: The scene trained on and classified.
        class_column: Class attribute of the polygons.
        train: :class:`TrainConfig` fields (as ``geosam train`` options; ``out`` is per fold).
        sampling: Keyword arguments of :func:`train_polygons` (``chip_size``, ``bands``...).
        run: Dotted :class:`~geosam.config.RunConfig` overrides of ``geosam run`` (e.g.
            ``{"dense.refine": "none"}``).
        progress: Progress bars.
    """
    train_opts = dict(train or {})
    sampling_opts = dict(sampling or {})
    run_opts = dict(run or {})

    def workflow(train_polys: Any, test: Any, workdir: Path) -> tuple[np.ndarray, Sequence[str]]:
        from geosam.predict import predict_scene
        from geosam.runtime import load_models
        from geosam.train.reference import read_at

        labels = workdir / "train_polygons.gpkg"
        frame = train_polys.drop(columns=["_class"])
        frame.to_file(labels, driver="GPKG", layer="labels")
        cfg = polygons_head(TrainConfig.model_validate({**train_opts, "out": workdir / "model"}))
        res = train_polygons(
            scene, labels, class_column=class_column, cfg=cfg, progress=progress, **sampling_opts
        )
        run_cfg = cv_run_config().with_overrides(**run_opts)
        models = load_models(res.bundle, None, run_cfg)
        out = predict_scene(scene, workdir / "run", models, run_cfg, progress=progress)
        pred = read_at(out.outputs["classes"], test)
        return pred, models.bundle.meta.class_scheme.names

    return workflow
