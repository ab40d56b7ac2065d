"""``geosam evaluate``'s recipe: tally the map against the reference, match classes, estimate.

:func:`evaluate` reads (:func:`geosam.accuracy.tally.tally`), matches class names
(:func:`geosam.accuracy.classes.match_classes`) and computes (:mod:`geosam.accuracy.estimators`);
:mod:`geosam.accuracy.report` turns the :class:`Evaluation` into JSON, PNG and a terminal table.

Two assessments come out:

* **units** (pixels for polygons and label rasters, points for points): the error matrix of every
  reference unit, its sample statistics, and the area-weighted estimates of Olofsson et al. (2014) with
  the map classes as strata and the stratum weights from the whole map.
* **polygons** (polygon references only): each polygon counted once, labelled by the map's majority
  class inside it (after class mapping; ties go to the class listed first). Only sample statistics:
  polygons are not area units of one size, so area-weighted estimates from them would have no
  population to refer to.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geosam.accuracy.classes import ClassMapping, ClassMatch, load_class_mapping, match_classes
from geosam.accuracy.classmap import MapInfo, open_map
from geosam.accuracy.config import EvaluateConfig
from geosam.accuracy.estimators import Agreement, StratifiedEstimate, agreement, stratified_estimate
from geosam.accuracy.tally import Tally, tally
from geosam.errors import DataError

__all__ = ["Assessment", "Evaluation", "evaluate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Assessment:
    """One error matrix and what is estimated from it.

    Attributes:
        units: ``pixels``, ``points`` or ``polygons``.
        agreement: Sample statistics (:func:`geosam.accuracy.estimators.agreement`).
        stratified: Area-weighted estimates (``None`` for polygons).
        excluded: Units left out, by reason.
    """

    units: Literal["pixels", "points", "polygons"]
    agreement: Agreement
    stratified: StratifiedEstimate | None
    excluded: dict[str, int]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes:
        map: The class map's grid and names.
        reference: Path of the reference data.
        kind: ``polygons``, ``points`` or ``raster``.
        classes: The assessment's classes (both matrix axes, in this order).
        match: How map and reference classes were matched.
        mapping: The class mapping used, if any.
        mapped_pixels: int64 ``(K,)`` pixels of each class over the whole map (the strata sizes).
        units: The assessment of every reference unit.
        polygons: The per-polygon majority assessment (polygon references only).
        reference_info: Facts about the reference (field, features, warped...).
        config: The options used.
    """

    map: MapInfo
    reference: str
    kind: Literal["polygons", "points", "raster"]
    classes: tuple[str, ...]
    match: ClassMatch
    mapping: ClassMapping | None
    mapped_pixels: np.ndarray
    units: Assessment
    polygons: Assessment | None
    reference_info: dict[str, Any]
    config: EvaluateConfig


def _map_names(info: MapInfo, t: Tally) -> tuple[list[str], np.ndarray]:
    """Every map class name (scheme first, then unnamed values found) and the name of each found value."""
    names = [info.names[v] for v in sorted(info.names)]
    value_names = [info.names.get(int(v), str(int(v))) for v in t.map_values]
    for n in value_names:
        if n not in names:
            names.append(n)
    return names, np.array(value_names, dtype=object)


def _index(names: Any, table: Any) -> np.ndarray:
    """Evaluation class index per name (``-1``: dropped)."""
    out = [table.get(n) for n in names]
    return np.array([-1 if i is None else i for i in out], np.int64)


def _units_matrix(
    t: Tally, mi: np.ndarray, ri: np.ndarray, match: ClassMatch, k: int
) -> tuple[np.ndarray, dict[str, int]]:
    n = np.zeros((k, k), np.int64)
    excluded = dict(t.excluded)
    vi, rj = np.nonzero(t.pairs)
    c = t.pairs[vi, rj]
    a, b = mi[vi], ri[rj]
    ok = (a >= 0) & (b >= 0)
    np.add.at(n, (a[ok], b[ok]), c[ok])
    ref_names = np.array(t.reference_names, dtype=object)
    dropped_ref = set(match.dropped["reference"])
    by_mapping = (a < 0) | np.isin(ref_names[rj], list(dropped_ref))
    unmatched = ~ok & ~by_mapping
    for reason, sel in (("dropped_by_mapping", by_mapping), ("reference_class_not_in_map", unmatched)):
        if sel.any():
            excluded[reason] = excluded.get(reason, 0) + int(c[sel].sum())
    return n, excluded


def _polygon_matrix(t: Tally, mi: np.ndarray, ri: np.ndarray, k: int) -> tuple[np.ndarray, dict[str, int]]:
    if t.polygon_histograms is None or t.polygon_classes is None:
        raise ValueError("a per-polygon matrix needs a polygon tally")
    onehot = np.zeros((len(mi), k), np.int64)
    keep = mi >= 0
    onehot[np.flatnonzero(keep), mi[keep]] = 1
    per_class = t.polygon_histograms @ onehot  # (P, K) valid map pixels of each class under a polygon
    majority = per_class.argmax(axis=1)  # ties: the first class
    has_pixels = per_class.sum(axis=1) > 0
    ref = ri[t.polygon_classes]
    n = np.zeros((k, k), np.int64)
    ok = has_pixels & (ref >= 0)
    np.add.at(n, (majority[ok], ref[ok]), 1)
    excluded = {
        "polygons_without_valid_map_pixels": int((~has_pixels).sum()),
        "polygons_of_left_out_classes": int((has_pixels & (ref < 0)).sum()),
    }
    return n, {reason: c for reason, c in excluded.items() if c}


def evaluate(
    map_path: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    config: EvaluateConfig | None = None,
    *,
    progress: bool = False,
) -> Evaluation:
    """Assess a class map against reference polygons, points or a label raster.

    Args:
        map_path: Class raster (band 1 holds class ids; any CRS and integer dtype; geosam's
            ``*_classes.tif`` or another tool's). Class names from the geosam tag, GDAL category names
            or attribute table, else the values.
        reference: Vector file of polygons or points with a class field, or a label raster (any grid
            and CRS).
        config: Options (:class:`~geosam.accuracy.config.EvaluateConfig`); default options if ``None``.
        progress: Show a progress bar over the map windows.

    Returns:
        The evaluation; write it with :func:`geosam.accuracy.report.write_report`.

    Raises:
        RasterError: The map cannot be read or has no CRS.
        DataError: The reference cannot be read, has no such field, does not overlap the map, no class
            matches, or no reference unit falls on a valid map pixel.
        ConfigError: The class-mapping file is missing or invalid.
    """
    from geosam.accuracy.provenance import training_reference

    cfg = config or EvaluateConfig()
    mapping = load_class_mapping(cfg.classes) if cfg.classes else None
    info = open_map(map_path)
    trained_by = training_reference(map_path, reference)
    if trained_by is not None:
        log.warning(
            "%s is the label file the map's model (%s) was trained on: these figures say how well the "
            "model fits its training labels, not how right the map is; assess it on labels held out "
            "from training (a spatial split, or `geosam train ... --cv K`)",
            Path(reference).name,
            trained_by,
        )
    t = tally(
        info,
        reference,
        field=cfg.field,
        layer=cfg.layer,
        where=cfg.where,
        reference_nodata=cfg.reference_nodata,
        window_size=cfg.window_size,
        progress=progress,
    )
    map_names, value_names = _map_names(info, t)
    match = match_classes(
        map_names,
        list(dict.fromkeys(t.reference_names)),
        mapping,
        drop_unmatched=cfg.drop_unmatched,
        map_path=map_path,
    )
    k = len(match.classes)
    mi = _index(value_names, match.map_index)
    ri = _index(t.reference_names, match.reference_index)
    mapped = np.bincount(mi[mi >= 0], weights=t.mapped_pixels[mi >= 0], minlength=k).astype(np.int64)
    n, excluded = _units_matrix(t, mi, ri, match, k)
    if n.sum() == 0:
        raise DataError(
            "no reference unit falls on a valid map pixel (excluded: "
            + (", ".join(f"{r} {c}" for r, c in excluded.items()) or "none")
            + "); check that the reference covers the map's data",
            reference,
        )
    if mapped.sum() == 0:
        raise DataError("the map has no valid pixel of a class being assessed", map_path)
    strat = stratified_estimate(n, mapped, confidence=cfg.confidence)
    if not strat.sampled.all():
        missing = [match.classes[i] for i in np.flatnonzero(~strat.sampled & (mapped > 0))]
        if missing:
            log.warning(
                "map classes without reference units: %s (%.1f %% of the map); the area estimates leave "
                "that area out",
                ", ".join(missing),
                100 * strat.unsampled_weight,
            )
    unit_kind: Literal["pixels", "points"] = "points" if t.kind == "points" else "pixels"
    units = Assessment(unit_kind, agreement(n), strat, excluded)
    polygons = None
    if t.kind == "polygons":
        pn, pex = _polygon_matrix(t, mi, ri, k)
        polygons = Assessment("polygons", agreement(pn), None, pex)
    return Evaluation(
        map=info,
        reference=os.fspath(Path(reference)),
        kind=t.kind,
        classes=match.classes,
        match=match,
        mapping=mapping,
        mapped_pixels=mapped,
        units=units,
        polygons=polygons,
        reference_info=t.info,
        config=cfg,
    )
