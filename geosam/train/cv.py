"""Leave-polygons-out cross-validation of a whole mapping workflow on one scene.

Each fold trains on the polygons of the other folds and maps the scene; the map is then scored on the
reference pixels of the held-out polygons only (:mod:`geosam.train.reference`). The folds come from
:func:`geosam.train.spatial_cv.grouped_folds` with the polygons as groups, so a polygon is never split.
Scores are reported per fold and *pooled* (one confusion matrix over every held-out pixel: each
reference pixel is predicted exactly once, by the model that did not see its polygon), which is the
headline figure; the mean and standard deviation over folds show how much it varies.

The workflow is a callable, so that ``geosam train polygons --cv K`` and
``benchmarks/bench_vs_random_forest.py`` score geosam and a Random Forest on the *same* folds and the
*same* pixels with the same code.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.train.metrics import confusion_matrix, summarize
from geosam.train.reference import (
    LabelPolygons,
    ReferencePixels,
    miou,
    read_label_polygons,
    reference_pixels,
    score_classes,
)
from geosam.train.spatial_cv import GroupFolds, grouped_folds

if TYPE_CHECKING:
    import geopandas as gpd

    from geosam.types import SceneInfo

__all__ = [
    "CVResult",
    "FoldResult",
    "FoldWorkflow",
    "cross_validate_polygons",
    "cross_validate_raster",
    "polygon_folds",
    "raster_reference",
    "run_folds",
]

log = logging.getLogger(__name__)

#: ``workflow(train_polygons, test_pixels, workdir) -> (class ids at the test pixels, class names)``.
#: ``train_polygons`` is a GeoDataFrame (scene CRS) of the training folds' polygons with the class in
#: column ``_class`` (and the original class column); ``workdir`` is an empty scratch folder.
FoldWorkflow = Callable[["gpd.GeoDataFrame", ReferencePixels, Path], tuple[np.ndarray, Sequence[str]]]

_SUMMARY_KEYS = ("overall_accuracy", "kappa", "macro_f1", "miou")


@dataclass(frozen=True)
class FoldResult:
    """One fold: held-out polygon ids, metrics on their pixels, and the time the workflow took."""

    fold: int
    test_polygons: list[int]
    metrics: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class CVResult:
    """Cross-validation outcome.

    Attributes:
        folds: The folds (polygon ids per fold).
        per_fold: One :class:`FoldResult` per fold.
        pooled: Metrics over all held-out pixels together (the headline).
        mean: Mean of each of ``overall_accuracy``, ``kappa``, ``macro_f1``, ``miou`` over folds.
        std: Their standard deviation over folds.
        n_pixels: Reference pixels scored (each once).
        extra: Anything the caller wants recorded (scene, labels, settings).
    """

    folds: GroupFolds
    per_fold: list[FoldResult]
    pooled: dict[str, Any]
    mean: dict[str, float]
    std: dict[str, float]
    n_pixels: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "folds": self.folds.to_dict(),
            "pooled": self.pooled,
            "mean_over_folds": self.mean,
            "std_over_folds": self.std,
            "n_pixels": self.n_pixels,
            "per_fold": [
                {
                    "fold": f.fold,
                    "test_polygons": f.test_polygons,
                    "seconds": round(f.seconds, 1),
                    **{k: f.metrics[k] for k in (*_SUMMARY_KEYS, "n", "unclassified")},
                }
                for f in self.per_fold
            ],
            **self.extra,
        }


def polygon_folds(ref: ReferencePixels, k: int, seed: int = 0) -> GroupFolds:
    """Folds of whole polygons, stratified by the classes of their reference pixels."""
    return grouped_folds(ref.label, ref.polygon, k, seed)


def cross_validate_polygons(
    info: SceneInfo,
    labels: str | os.PathLike[str] | LabelPolygons,
    workflow: FoldWorkflow,
    *,
    k: int = 5,
    seed: int = 0,
    class_column: str | None = None,
    layer: str | None = None,
    folds: GroupFolds | None = None,
    workdir: str | os.PathLike[str] | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> CVResult:
    """Run ``workflow`` once per fold and score it on the held-out polygons' pixels.

    Args:
        info: The scene header (grid and CRS the reference pixels are taken on).
        labels: Label polygons (a file, with ``class_column``), or already read.
        workflow: Trains on the training polygons and returns class ids at the test pixels.
        k: Number of folds.
        seed: Seed of the fold assignment.
        class_column: Class attribute (needed when ``labels`` is a path).
        layer: Layer of a multi-layer label file.
        folds: Use these folds instead of computing them (e.g. the benchmark's recorded folds).
        workdir: Where per-fold scratch folders go (default: a temporary folder, removed after).
        on_fold: Called after each fold (progress reports).

    Raises:
        DataError: Unreadable labels, fewer polygons than folds, or a workflow returning the wrong
            number of predictions.
    """
    from geosam.errors import DataError

    if isinstance(labels, LabelPolygons):
        polys = labels
    else:
        if class_column is None:
            raise DataError("class_column is needed to read label polygons")
        polys = read_label_polygons(labels, class_column, info, layer)
    ref = reference_pixels(polys, info)
    folds = folds or polygon_folds(ref, k, seed)

    def fold(i: int, test: ReferencePixels, fold_dir: Path) -> tuple[np.ndarray, Sequence[str]]:
        return workflow(polys.subset(folds.train_groups(i)), test, fold_dir)

    return run_folds(ref, folds, fold, workdir=workdir, on_fold=on_fold)


def run_folds(
    ref: ReferencePixels,
    folds: GroupFolds,
    fold: Callable[[int, ReferencePixels, Path], tuple[np.ndarray, Sequence[str]]],
    *,
    workdir: str | os.PathLike[str] | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> CVResult:
    """Score ``fold(i, test_pixels, scratch_dir) -> (class ids, class names)`` on each fold's held-out pixels.

    ``ref.polygon`` holds the group (polygon or block) of each reference pixel; fold ``i`` tests the
    pixels of ``folds.test_groups(i)``.

    Raises:
        DataError: A fold returning the wrong number of predictions or unknown class names.
    """
    from geosam.errors import DataError

    results: list[FoldResult] = []
    preds = np.full(len(ref), -1, np.int64)
    with tempfile.TemporaryDirectory(prefix="geosam-cv-", dir=workdir) as tmp:
        for i in range(folds.k):
            test_ids = folds.test_groups(i)
            is_test = np.isin(ref.polygon, test_ids)
            test = ref.select(is_test)
            fold_dir = Path(tmp) / f"fold{i}"
            fold_dir.mkdir()
            t0 = time.perf_counter()
            pred, names = fold(i, test, fold_dir)
            seconds = time.perf_counter() - t0
            pred = np.asarray(pred)
            if pred.shape != (len(test),):
                raise DataError(f"the fold workflow returned {pred.shape} predictions for {len(test)} pixels")
            metrics = score_classes(pred, test, names)
            lookup = np.array([ref.classes.index(n) for n in names], np.int64)
            ok = (pred >= 0) & (pred < len(lookup))
            pooled_pred = np.full(len(test), -1, np.int64)
            pooled_pred[ok] = lookup[pred[ok]]
            preds[np.flatnonzero(is_test)] = pooled_pred
            res = FoldResult(i, [int(g) for g in test_ids], metrics, seconds)
            results.append(res)
            log.info(
                "fold %d/%d: %d test pixels, overall accuracy %.3f, kappa %.3f (%.0f s)",
                i + 1,
                folds.k,
                len(test),
                metrics["overall_accuracy"],
                metrics["kappa"],
                seconds,
            )
            if on_fold is not None:
                on_fold(res)
    scored = preds >= 0
    cm = confusion_matrix(ref.label[scored], preds[scored], len(ref.classes))
    pooled = summarize(cm, ref.classes)
    pooled["miou"] = miou(cm)
    pooled["unclassified"] = int((~scored).sum())
    per = {key: np.array([r.metrics[key] for r in results], np.float64) for key in _SUMMARY_KEYS}
    return CVResult(
        folds=folds,
        per_fold=results,
        pooled=pooled,
        mean={key: float(v.mean()) for key, v in per.items()},
        std={key: float(v.std()) for key, v in per.items()},
        n_pixels=len(ref),
        extra={"classes": list(ref.classes), "ambiguous_pixels": ref.ambiguous},
    )


def raster_reference(
    info: SceneInfo,
    label_raster: str | os.PathLike[str],
    *,
    classes: dict[int, str] | None = None,
    label_nodata: float | None = None,
    block: int = 64,
    max_pixels: int = 2_000_000,
) -> tuple[ReferencePixels, dict[int, str]]:
    """Reference pixels of a label raster on the scene grid, grouped in ``block`` x ``block`` pixel blocks.

    Every labelled pixel is a reference pixel (a regular lattice thins them to at most ``max_pixels``);
    its group (``polygon`` field) is its block. Returns the pixels and the id -> class name mapping
    used (``classes``, else the raster's category names, else ``class_<id>``).

    Raises:
        DataError: Unreadable label raster, or no labelled pixel of a listed class on the scene.
    """
    from geosam.errors import DataError
    from geosam.io.pam import class_names
    from geosam.train.label_raster import label_grid, scan_lattice

    path = Path(label_raster)
    step = max(1, int(np.ceil(np.sqrt(info.width * info.height / max_pixels))))
    with label_grid(path, info) as (ds, _):
        rows, cols, ids = scan_lattice(ds, step, (0, 0), label_nodata, path)
    if classes is None:
        cats, _src = class_names(path)
        classes = {int(i): cats.get(int(i), f"class_{int(i)}") for i in np.unique(ids)}
    names = tuple(sorted(set(classes.values())))
    known = np.isin(ids, list(classes))
    if not known.any():
        raise DataError("no labelled pixel of a listed class on the scene", path)
    rows, cols, ids = rows[known], cols[known], ids[known]
    label = np.array([names.index(classes[int(i)]) for i in ids], np.int64)
    group = (rows // block) * (-(-info.width // block)) + cols // block
    return ReferencePixels(rows, cols, group, label, names), classes


def cross_validate_raster(
    info: SceneInfo,
    label_raster: str | os.PathLike[str],
    workflow: Callable[[np.ndarray, ReferencePixels, Path], tuple[np.ndarray, Sequence[str]]],
    *,
    k: int = 5,
    seed: int = 0,
    classes: dict[int, str] | None = None,
    label_nodata: float | None = None,
    block: int = 64,
    workdir: str | os.PathLike[str] | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> CVResult:
    """Leave-blocks-out cross-validation with a label raster: blocks of ``block`` pixels are the groups.

    ``workflow(test_blocks, test_pixels, workdir)`` trains without the held-out blocks' labels (see
    :func:`geosam.train.workflows.raster_fold_workflow`) and returns class ids at the test pixels.

    Raises:
        DataError: See :func:`raster_reference`; fewer blocks than folds.
    """
    ref, _ = raster_reference(info, label_raster, classes=classes, label_nodata=label_nodata, block=block)
    folds = grouped_folds(ref.label, ref.polygon, k, seed)

    def fold(i: int, test: ReferencePixels, fold_dir: Path) -> tuple[np.ndarray, Sequence[str]]:
        return workflow(folds.test_groups(i), test, fold_dir)

    res = run_folds(ref, folds, fold, workdir=workdir, on_fold=on_fold)
    res.extra["block"] = block
    return res
