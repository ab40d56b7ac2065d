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

from geosam.train.config import TrainConfig, with_sampling

if TYPE_CHECKING:
    from geosam.config import RunConfig
    from geosam.train.cv import FoldWorkflow
    from geosam.train.engine import TrainResult

__all__ = [
    "POLYGONS_DENSE",
    "POLYGONS_HEAD",
    "class_column",
    "cv_run_config",
    "polygons_fold_workflow",
    "polygons_head",
    "raster_fold_workflow",
    "train_polygons",
    "train_raster",
]

#: The head ``geosam train polygons`` trains when ``--head`` is not given.
POLYGONS_HEAD = "dense"

#: Dense-head options ``geosam train polygons`` uses where the user set none (``dense:`` in ``--config``):
#: the per-pixel branch on the bands alone (no encoder features, no local means; its 3 x 3 convolution
#: is the only context), input noise 0.2 and every polygon trained on (``keep: last``). Chosen by
#: leave-polygons-out CV on the Raleigh sample (benchmarks/bench_vs_random_forest.py, docs/training.md):
#: with regions, overall accuracy 0.872 / 0.804 / 0.775 on fold seeds 0 / 1 / 2 against 0.741 / 0.737 /
#: 0.734 for a per-pixel Random Forest, where the encoder features gave 0.555 (seed 0): a few dozen
#: polygons are too few to fit a head on 256 encoder channels from another sensor. Label rasters
#: (``geosam train raster``) keep :class:`~geosam.train.config.DenseOptions`' own defaults. With a SAM
#: checkpoint as ``--backbone`` the head reads its features (:func:`polygons_head`).
POLYGONS_DENSE: dict[str, Any] = {"use_encoder": False, "context": (), "noise": 0.2, "keep": "last"}


def polygons_head(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with :data:`POLYGONS_HEAD` unless the user chose a head.

    A dense head gets :data:`POLYGONS_DENSE` for the dense options the user did not set, except
    ``use_encoder`` when the user gave a SAM checkpoint as ``backbone`` (SAM 1, or SAM 2.x Hiera): asking
    for a checkpoint's encoder is asking for its features, so the head reads them (``use_encoder:
    true``, the dense head's own default) unless ``use_encoder: false`` is set too.
    """
    if "head" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"head": POLYGONS_HEAD})
    if cfg.head != "dense":
        return cfg
    checkpoint = "backbone" in cfg.model_fields_set and cfg.backbone not in ("default", "small", "tiny")
    unset = {
        k: v
        for k, v in POLYGONS_DENSE.items()
        if k not in cfg.dense.model_fields_set and not (checkpoint and k == "use_encoder")
    }
    return cfg.model_copy(update={"dense": cfg.dense.model_copy(update=unset)})


def class_column(cfg: TrainConfig) -> str:
    """The polygons' class attribute (``sampling.class_column``).

    Raises:
        ConfigError: It is not given.
    """
    if cfg.sampling.class_column is None:
        from geosam.errors import ConfigError

        raise ConfigError(
            "which attribute of the label polygons holds their class? pass --field COLUMN (or "
            "class_column under sampling: in --config)"
        )
    return cfg.sampling.class_column


def train_polygons(
    scene: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    cfg: TrainConfig,
    progress: bool = False,
    **sampling: Any,
) -> TrainResult:
    """Train on a scene and label polygons with the head ``cfg.head`` (``chip`` or ``dense``).

    Chips are sampled as ``cfg.sampling`` says (:class:`~geosam.train.config.SamplingConfig`; its
    ``class_column`` is required). The chip options (``chip_size``, ``spacing``, ``max_per_polygon``,
    ``max_nodata``) apply to the chip classifier only; the dense head's are ``cfg.dense``. The radiometry
    (``radiometry``, ``dn_offset``) decides how both bring the scene to 0..1
    (:func:`geosam.train._scene_sampling.prepare_scene`).

    Args:
        scene: The image.
        labels: The label polygons.
        cfg: The training configuration; the bundle records it, ``sampling`` included.
        progress: Progress bars.
        sampling: :class:`~geosam.train.config.SamplingConfig` fields overriding ``cfg.sampling``
            (``class_column="lc", chip_size=16``...).

    Raises:
        ConfigError: No ``class_column``, or an invalid sampling option.
        DataError, RasterError, BandError: From reading the scene and the labels.
    """
    cfg = with_sampling(cfg, **sampling)
    column, s = class_column(cfg), cfg.sampling
    if cfg.head == "dense":
        from geosam.train.dense import dense_defaults, polygon_dense_data, train_dense

        cfg = dense_defaults(cfg)
        dense_data = polygon_dense_data(
            scene,
            labels,
            class_column=column,
            layer=s.layer,
            bands=s.bands,
            band_names=s.band_names,
            normalize=s.normalize,
            val_fraction=cfg.val_fraction if cfg.dense.keep == "best" else 0.0,
            seed=cfg.seed,
        )
        return train_dense(cfg, dense_data, progress=progress)
    from geosam.train.engine import train
    from geosam.train.scene_chips import polygon_chips

    data = polygon_chips(
        scene,
        labels,
        class_column=column,
        chip_size=s.chip_size,
        layer=s.layer,
        bands=s.bands,
        band_names=s.band_names,
        spacing=s.spacing,
        max_per_polygon=s.max_per_polygon,
        max_per_class=cfg.max_per_class,
        max_nodata=s.max_nodata,
        normalize=s.normalize,
        seed=cfg.seed,
        progress=progress,
    )
    return train(cfg, data, progress=progress)


def train_raster(
    scene: str | os.PathLike[str],
    label_raster: str | os.PathLike[str],
    *,
    cfg: TrainConfig,
    progress: bool = False,
    **sampling: Any,
) -> TrainResult:
    """Train on a scene and a label raster with the head ``cfg.head`` (``chip`` or ``dense``).

    Chips are sampled as ``cfg.sampling`` says; ``sampling`` keywords override its fields
    (``classes={1: "water"}``, ``chip_size=16``...), as in :func:`train_polygons`.

    Raises:
        ConfigError: An invalid sampling option.
        DataError, RasterError, BandError: From reading the scene and the labels.
    """
    cfg = with_sampling(cfg, **sampling)
    s = cfg.sampling
    if cfg.head == "dense":
        from geosam.train.dense import dense_defaults, raster_dense_data, train_dense

        cfg = dense_defaults(cfg)
        dense_data = raster_dense_data(
            scene,
            label_raster,
            classes=s.classes,
            label_nodata=s.label_nodata,
            block=s.block_chips * 16,
            bands=s.bands,
            band_names=s.band_names,
            normalize=s.normalize,
            val_fraction=cfg.val_fraction if cfg.dense.keep == "best" else 0.0,
            seed=cfg.seed,
        )
        return train_dense(cfg, dense_data, progress=progress)
    from geosam.train.engine import train
    from geosam.train.scene_chips import raster_chips

    data = raster_chips(
        scene,
        label_raster,
        chip_size=s.chip_size,
        classes=s.classes,
        label_rule=s.label_rule,
        label_nodata=s.label_nodata,
        bands=s.bands,
        band_names=s.band_names,
        spacing=s.spacing,
        block_chips=s.block_chips,
        max_per_class=cfg.max_per_class,
        max_nodata=s.max_nodata,
        normalize=s.normalize,
        seed=cfg.seed,
        progress=progress,
    )
    return train(cfg, data, progress=progress)


def train_torchgeo(
    name: str,
    root: str | os.PathLike[str],
    *,
    cfg: TrainConfig,
    split: str = "train",
    val_split: str | None = "val",
    progress: bool = False,
) -> TrainResult:
    """Train on a TorchGeo dataset (:mod:`geosam.train.torchgeo_source`; never downloads).

    Classification datasets train the chip classifier (validation: its grouped split of ``split``);
    segmentation datasets train the dense head (validation: random patches of ``val_split``).

    Raises:
        DataError: Unknown dataset, or data not found in TorchGeo's layout under ``root``.
    """
    from geosam.train.torchgeo_source import DATASETS, classification_chips, segmentation_patches

    src = DATASETS.get(name.lower())
    if src is None:
        from geosam.errors import DataError

        raise DataError(f"unknown TorchGeo dataset {name!r}; supported: {', '.join(DATASETS)}")
    if src.task == "classification":
        from geosam.train.engine import train

        data = classification_chips(name, root, split=split, max_per_class=cfg.max_per_class, seed=cfg.seed)
        return train(cfg.model_copy(update={"head": "chip"}), data, progress=progress)
    from geosam.train.dense import dense_defaults, fit_dense, patch_edge

    cfg = dense_defaults(cfg.model_copy(update={"head": "dense"}))
    patch = patch_edge(cfg)
    n_img = max(1, cfg.dense.patches // 4)
    pool, classes, bands, prep = segmentation_patches(
        name, root, patch=patch, max_images=n_img, split=split, seed=cfg.seed
    )
    val = None
    if val_split:
        val, _, _, _ = segmentation_patches(
            name, root, patch=patch, max_images=max(1, n_img // 4), split=val_split, seed=cfg.seed + 1
        )
    return fit_dense(
        cfg,
        pool,
        val,
        classes=classes,
        bands=bands,
        gsd_m=None,
        preprocessing=prep,
        provenance={"source": "torchgeo", "dataset": src.cls, "root": os.path.abspath(root)},
        progress=progress,
    )


def cv_run_config(base: RunConfig | None = None) -> RunConfig:
    """The run configuration of a cross-validation fold.

    ``base`` (default: the defaults) without the vector layers, the tiles layer and the QGIS project:
    only the class map is scored.
    """
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
        train: :class:`TrainConfig` fields (as ``geosam train`` options; ``out`` is per fold), the
            ``sampling`` section included.
        sampling: :class:`~geosam.train.config.SamplingConfig` fields overriding ``train``'s
            (``chip_size``, ``bands``...).
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
        fold = {**sampling_opts, "class_column": class_column, "layer": "labels"}  # the file just written
        res = train_polygons(scene, labels, cfg=cfg, progress=progress, **fold)
        run_cfg = cv_run_config().with_overrides(**run_opts)
        models = load_models(res.bundle, None, run_cfg)
        out = predict_scene(scene, workdir / "run", models, run_cfg, progress=progress)
        pred = read_at(out.outputs["classes"], test)
        return pred, models.bundle.meta.class_scheme.names

    return workflow


def raster_fold_workflow(
    scene: str | os.PathLike[str],
    label_raster: str | os.PathLike[str],
    *,
    classes: dict[int, str],
    block: int,
    label_nodata: float | None = None,
    train: dict[str, Any] | None = None,
    sampling: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    progress: bool = False,
) -> Any:
    """A fold of ``cross_validate_raster``: train without the held-out blocks, run the scene, read.

    ``train`` and ``sampling`` are as in :func:`polygons_fold_workflow`; the fold trains on a copy of
    the label raster without the held-out blocks' labels (:func:`masked_label_raster`), with ``classes``.
    """
    train_opts = dict(train or {})
    sampling_opts = dict(sampling or {})
    run_opts = dict(run or {})

    def workflow(test_blocks: np.ndarray, test: Any, workdir: Path) -> tuple[np.ndarray, Sequence[str]]:
        from geosam.io.read import open_scene
        from geosam.predict import predict_scene
        from geosam.runtime import load_models
        from geosam.train.label_raster import masked_label_raster
        from geosam.train.reference import read_at

        info = open_scene(scene)
        masked = masked_label_raster(
            label_raster,
            info,
            workdir / "labels.tif",
            hold_out=test_blocks,
            block=block,
            label_nodata=label_nodata,
        )
        cfg = TrainConfig.model_validate({**train_opts, "out": workdir / "model"})
        fold = {**sampling_opts, "classes": classes, "label_nodata": None}  # masked holds the labels left
        res = train_raster(scene, masked, cfg=cfg, progress=progress, **fold)
        run_cfg = cv_run_config().with_overrides(**run_opts)
        models = load_models(res.bundle, None, run_cfg)
        out = predict_scene(scene, workdir / "run", models, run_cfg, progress=progress)
        return read_at(out.outputs["classes"], test), models.bundle.meta.class_scheme.names

    return workflow
