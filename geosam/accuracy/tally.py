"""One windowed pass over a class map that counts its pixels and the reference units on it.

:func:`tally` reads the map in ``window_size`` square windows (1024 px by default), so memory is bounded
by a window whatever the map's size; a 20,000 x 20,000 px map is never loaded whole. Each window adds:

* the pixels of every map value (over the *whole* map: the stratum sizes of
  :func:`geosam.accuracy.estimators.stratified_estimate`);
* pairs ``(map value, reference class)`` of the reference units in it (:mod:`geosam.accuracy.units`).

Reference units, by kind of reference:

* **Polygons** (reprojected to the map CRS): the pixels whose centre lies inside a polygon
  (``all_touched=False``). A pixel inside polygons of different classes is left out (counted as
  ``overlapping_classes``); one inside several polygons of one class counts once. Each polygon also
  gets a histogram of the map values under it, for the per-polygon majority matrix; a polygon too
  small to hold a pixel centre takes the map value under its representative point (shapely's
  ``representative_point``).
* **Points**: the pixel holding each point; each point is one unit (two points in one pixel count
  twice). Points outside the map are counted as ``outside_map``.
* **Label raster** (any CRS, resolution and extent): read on the map grid, through a nearest-neighbour
  warped VRT when the grids differ, so each map pixel takes the reference value at its centre. Valid
  reference pixels are whole numbers that are not nodata (the raster's nodata or mask, or
  ``reference_nodata``).

Units where the map has nodata are left out and counted as ``map_nodata``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geosam.accuracy.classmap import MapInfo, open_raster, whole_ids
from geosam.accuracy.reference import ReferenceFeatures, read_features, reference_kind
from geosam.accuracy.units import Counts, PointUnits, PolygonUnits, RasterUnits, grow
from geosam.errors import DataError
from geosam.types import PixelWindow

__all__ = ["Kind", "Tally", "tally"]

Kind = Literal["polygons", "points", "raster"]


def _windows(width: int, height: int, size: int) -> Iterator[PixelWindow]:
    for r0 in range(0, height, size):
        for c0 in range(0, width, size):
            yield PixelWindow(c0, r0, min(size, width - c0), min(size, height - r0))


def _read_map(ds: Any, win: PixelWindow, counts: Counts, path: str) -> np.ndarray:
    """Map codes of a window (``-1`` where nodata); adds the window's pixels to the mapped counts."""
    rw = win.to_rasterio()
    raw = ds.read(1, window=rw)
    ok = ds.read_masks(1, window=rw) > 0
    values = whole_ids(raw, ok, path, "class map")
    codes = np.full(values.shape, -1, np.int64)
    codes[ok] = counts.maps.encode(values[ok])
    counts.add_map(codes[ok])
    return codes


# ------------------------------------------------------------------------------------------------ tally


@dataclass(frozen=True, eq=False)
class Tally:
    """What one pass over the map counted, before classes are matched.

    Attributes:
        kind: ``polygons``, ``points`` or ``raster``.
        map_values: int64 ``(V,)`` map values found on valid pixels, sorted.
        mapped_pixels: int64 ``(V,)`` pixels of each value over the whole map.
        reference_names: ``(R,)`` reference class names (field values; category names or ids).
        pairs: int64 ``(V, R)`` reference units (pixels or points) per map value and reference class.
        polygon_classes: int64 ``(P,)`` reference class index of each polygon (polygons only).
        polygon_histograms: int64 ``(P, V)`` valid map pixels of each value under each polygon.
        excluded: Units left out, by reason (``map_nodata``, ``overlapping_classes``, ``outside_map``).
        info: Facts about the reference (field used, feature counts, whether it was warped...).
    """

    kind: Kind
    map_values: np.ndarray
    mapped_pixels: np.ndarray
    reference_names: tuple[str, ...]
    pairs: np.ndarray
    polygon_classes: np.ndarray | None
    polygon_histograms: np.ndarray | None
    excluded: dict[str, int]
    info: dict[str, Any]


def tally(
    map_info: MapInfo,
    reference: str | os.PathLike[str],
    *,
    field: str | None = None,
    layer: str | None = None,
    where: str | None = None,
    reference_nodata: float | None = None,
    window_size: int = 1024,
    progress: bool = False,
) -> Tally:
    """Count map values and reference units in one windowed pass over the map (see module docstring).

    Args:
        map_info: The class map (:func:`geosam.accuracy.classmap.open_map`).
        reference: Polygons or points (vector file) or a label raster.
        field: Class field of a vector reference (default: see
            :func:`geosam.accuracy.reference.read_features`).
        layer: Layer of a multi-layer vector file (GeoPackage).
        where: OGR SQL filter of vector features (``"fold = 3"``).
        reference_nodata: An extra label-raster value meaning "no label" (e.g. 0).
        window_size: Edge of the square map windows read at a time, in pixels.
        progress: Show a progress bar over the windows.

    Raises:
        DataError: The reference cannot be read, has no CRS, no such field, lines, non-integer labels,
            or does not overlap the map; or the map holds non-integer values.
        RasterError: The map cannot be read.
    """
    from geosam.io.env import geosam_env
    from geosam.progress import progress_iter

    if window_size < 16:
        raise DataError(f"window size must be at least 16 pixels, not {window_size}")
    ref_path = Path(reference)
    kind_of_file = reference_kind(ref_path)
    counts = Counts()
    handler: PolygonUnits | PointUnits | RasterUnits
    with ExitStack() as stack:
        stack.enter_context(geosam_env(map_info.path))
        ds = stack.enter_context(open_raster(Path(map_info.path), "class map"))
        names: tuple[str, ...] = ()
        vec: ReferenceFeatures | None = None
        if kind_of_file == "vector":
            vec = read_features(ref_path, map_info, field, layer, where)
            names = vec.names
            kind: Kind = vec.kind
            handler = (
                PolygonUnits(vec, map_info, counts)
                if vec.kind == "polygons"
                else PointUnits(vec, map_info, counts, window_size)
            )
        else:
            kind = "raster"
            handler = RasterUnits(ref_path, map_info, reference_nodata, stack)
        wins = list(_windows(map_info.width, map_info.height, window_size))
        for win in progress_iter(wins, "map windows", enabled=progress):
            codes = _read_map(ds, win, counts, map_info.path)
            handler.visit(win, codes, counts)
        info = {**(vec.info if vec is not None else {}), **handler.finish(ds, counts)}
    classes = vec.codes if vec is not None and kind == "polygons" else None
    return _finish(kind, counts, names, classes, ref_path, info)


def _finish(
    kind: Kind,
    counts: Counts,
    names: tuple[str, ...],
    classes: np.ndarray | None,
    ref_path: Path,
    info: dict[str, Any],
) -> Tally:
    """Sort map values and reference ids, and name the reference classes."""
    v, r = len(counts.maps), len(counts.refs)
    pairs = grow(counts.pairs, (v, r))
    mapped = grow(counts.mapped, (v,))
    morder = np.argsort(np.array(counts.maps.values, np.int64), kind="stable")
    hist = None
    if kind == "raster":
        from geosam.io.pam import class_names

        ids = np.array(counts.refs.values, np.int64)
        rorder = np.argsort(ids, kind="stable")
        cats, source = class_names(ref_path)
        names = tuple(cats.get(int(i), str(int(i))) for i in ids[rorder])
        info = {
            **info,
            "class_names_from": source or "values",
            "reference_ids": [int(i) for i in ids[rorder]],
        }
        pairs = pairs[:, rorder]
    if kind == "polygons":
        hist = grow(counts.hist, (counts.hist.shape[0], v))[:, morder]
    return Tally(
        kind=kind,
        map_values=np.array(counts.maps.values, np.int64)[morder],
        mapped_pixels=mapped[morder],
        reference_names=names,
        pairs=pairs[morder],
        polygon_classes=classes,
        polygon_histograms=hist,
        excluded=dict(counts.excluded),
        info=info,
    )
