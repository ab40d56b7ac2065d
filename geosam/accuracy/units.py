"""Reference units on the windows of a class map: running counts of (map value, reference class).

Each kind of reference has a visitor that, given the map codes of a window, adds its units to
:class:`Counts` (rules in :mod:`geosam.accuracy.tally`):

* :class:`PolygonUnits`: pixels whose centre lies inside a polygon (``rasterio.features.rasterize``,
  one polygon at a time over its bounding box, so a pixel's polygons and a polygon's pixels are both
  exact), and a histogram of map values per polygon;
* :class:`PointUnits`: the pixel holding each point, points grouped by window;
* :class:`RasterUnits`: a label raster on the map grid (a nearest-neighbour ``WarpedVRT`` when the
  grids differ).

Map values and label-raster ids are arbitrary integers; :class:`Codebook` gives them dense codes as
they appear, so counts are ``bincount`` calls on small arrays.
"""

from __future__ import annotations

import math
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.accuracy.classmap import MapInfo, open_raster, whole_ids
from geosam.accuracy.reference import ReferenceFeatures
from geosam.errors import DataError
from geosam.types import PixelWindow

if TYPE_CHECKING:
    from affine import Affine

__all__ = ["Codebook", "Counts", "PointUnits", "PolygonUnits", "RasterUnits", "grow"]


class Codebook:
    """Dense codes ``0..V-1`` for integer values, in order of first appearance."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self._index: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.values)

    def _code(self, v: int) -> int:
        c = self._index.get(v)
        if c is None:
            c = self._index[v] = len(self.values)
            self.values.append(v)
        return c

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Codes of a 1-D int64 array (new values get new codes)."""
        if values.size == 0:
            return np.empty(0, np.int64)
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 1 << 16:  # small range (any class map): a lookup table instead of a sort
            present = np.flatnonzero(np.bincount(values - lo, minlength=hi - lo + 1))
            lut = np.zeros(hi - lo + 1, np.int64)
            lut[present] = [self._code(int(v) + lo) for v in present]
            out: np.ndarray = lut[values - lo]
            return out
        uniq, inverse = np.unique(values, return_inverse=True)
        return np.array([self._code(int(v)) for v in uniq], np.int64)[inverse.ravel()]


def grow(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` zero-padded to ``shape`` (each axis at least as long as ``a``'s)."""
    if a.shape == shape:
        return a
    out = np.zeros(shape, a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


@dataclass
class Counts:
    """Running counts of one pass (codes index :attr:`maps` values and :attr:`refs` values)."""

    maps: Codebook = field(default_factory=Codebook)
    refs: Codebook = field(default_factory=Codebook)
    mapped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    hist: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # (polygons, map codes)
    excluded: dict[str, int] = field(default_factory=dict)

    def exclude(self, reason: str, count: int) -> None:
        """Count ``count`` units left out for ``reason``."""
        if count:
            self.excluded[reason] = self.excluded.get(reason, 0) + int(count)

    def add_map(self, codes: np.ndarray) -> None:
        """Add valid map pixels (1-D map codes) to the whole-map counts."""
        self.mapped = grow(self.mapped, (len(self.maps),))
        self.mapped += np.bincount(codes, minlength=len(self.maps))

    def add_pairs(self, map_codes: np.ndarray, ref_codes: np.ndarray) -> None:
        """Add units with these map codes and reference codes (1-D, same length)."""
        v, r = len(self.maps), len(self.refs)
        self.pairs = grow(self.pairs, (v, r))
        if map_codes.size:
            self.pairs += np.bincount(map_codes * r + ref_codes, minlength=v * r).reshape(v, r)

    def add_polygon(self, p: int, map_codes: np.ndarray) -> None:
        """Add valid map pixels (1-D map codes) under polygon ``p`` to its histogram."""
        if self.hist.shape[1] < len(self.maps):
            self.hist = grow(self.hist, (self.hist.shape[0], len(self.maps)))
        self.hist[p] += np.bincount(map_codes, minlength=self.hist.shape[1])


def _pixel_boxes(geoms: np.ndarray, inv: Affine) -> np.ndarray:
    """``(P, 4)`` int64 pixel bounding boxes ``(c0, r0, c1, r1)`` (half-open) of geometries."""
    import shapely

    b = shapely.bounds(geoms)  # (P, 4) xmin, ymin, xmax, ymax
    xs = np.stack([b[:, 0], b[:, 2], b[:, 0], b[:, 2]], axis=1)
    ys = np.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3]], axis=1)
    cols = inv.a * xs + inv.b * ys + inv.c
    rows = inv.d * xs + inv.e * ys + inv.f
    return np.stack(
        [
            np.floor(cols.min(axis=1)),
            np.floor(rows.min(axis=1)),
            np.ceil(cols.max(axis=1)),
            np.ceil(rows.max(axis=1)),
        ],
        axis=1,
    ).astype(np.int64)


class PolygonUnits:
    """Per-window rasterisation of reference polygons (rules in the module docstring)."""

    def __init__(self, vec: ReferenceFeatures, info: MapInfo, counts: Counts) -> None:
        import shapely

        self.vec = vec
        self.info = info
        self.boxes = _pixel_boxes(vec.geoms, ~info.affine)
        self.tree = shapely.STRtree(shapely.box(*self.boxes.T.astype(np.float64)))
        self.pixels = np.zeros(len(vec.geoms), np.int64)
        self.nodata = np.zeros(len(vec.geoms), np.int64)
        counts.refs.encode(np.arange(len(vec.names)))  # reference codes are the class indexes 0..R-1
        counts.hist = np.zeros((len(vec.geoms), 0), np.int64)

    def visit(self, win: PixelWindow, codes: np.ndarray, counts: Counts) -> None:
        """Add the polygon pixels of window ``win``; ``codes`` are its map codes (``-1``: nodata)."""
        import shapely
        from affine import Affine
        from rasterio.features import rasterize

        cand = self.tree.query(shapely.box(win.col_off, win.row_off, win.col_end, win.row_end))
        if not len(cand):
            return
        first = np.full(codes.shape, -1, np.int64)
        conflict = np.zeros(codes.shape, bool)
        t = self.info.affine
        for p in np.sort(cand):
            c0, r0, c1, r1 = self.boxes[p]
            c0, r0 = max(c0, win.col_off), max(r0, win.row_off)
            c1, r1 = min(c1, win.col_end), min(r1, win.row_end)
            if c1 <= c0 or r1 <= r0:
                continue
            mask = rasterize(
                [(self.vec.geoms[p], 1)],
                out_shape=(r1 - r0, c1 - c0),
                transform=t @ Affine.translation(c0, r0),
                fill=0,
                dtype="uint8",
            ).astype(bool)
            if not mask.any():
                continue
            rs = slice(r0 - win.row_off, r1 - win.row_off)
            cs = slice(c0 - win.col_off, c1 - win.col_off)
            under = codes[rs, cs][mask]
            ok = under >= 0
            counts.add_polygon(int(p), under[ok])
            self.pixels[p] += mask.sum()
            self.nodata[p] += (~ok).sum()
            cls = self.vec.codes[p]
            f = first[rs, cs]  # a view: writes go into ``first``
            conflict[rs, cs] |= mask & (f >= 0) & (f != cls)
            f[mask & (f < 0)] = cls
        covered = first >= 0
        counts.exclude("overlapping_classes", int((covered & conflict).sum()))
        use = covered & ~conflict
        m, r = codes[use], first[use]
        ok = m >= 0
        counts.exclude("map_nodata", int((~ok).sum()))
        counts.add_pairs(m[ok], r[ok])

    def finish(self, ds: Any, counts: Counts) -> dict[str, Any]:
        """Small-polygon fallback (representative point); returns polygon statistics."""
        import shapely
        from rasterio.windows import Window

        inv = ~self.info.affine
        fallback = 0
        for p in np.flatnonzero(self.pixels == 0):
            pt = shapely.get_coordinates(self.vec.geoms[p].representative_point())[0]
            col, row = (math.floor(v) for v in inv @ (float(pt[0]), float(pt[1])))
            if not (0 <= row < self.info.height and 0 <= col < self.info.width):
                continue  # outside the map: in no matrix
            raw = ds.read(1, window=Window(col, row, 1, 1))
            ok = ds.read_masks(1, window=Window(col, row, 1, 1)) > 0
            values = whole_ids(raw, ok, self.info.path, "class map")
            self.pixels[p] = 1
            if ok[0, 0]:
                counts.add_polygon(int(p), counts.maps.encode(values[ok]))
            else:
                self.nodata[p] = 1
            fallback += 1
        return {
            "polygons_without_pixel_centre": fallback,
            "polygons_all_map_nodata": int(((self.pixels > 0) & (self.nodata == self.pixels)).sum()),
        }


class PointUnits:
    """Map values at reference points, grouped by window."""

    def __init__(self, vec: ReferenceFeatures, info: MapInfo, counts: Counts, size: int) -> None:
        import shapely

        xy = shapely.get_coordinates(vec.geoms)
        inv = ~info.affine
        cols = np.floor(inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c)
        rows = np.floor(inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f)
        inside = (cols >= 0) & (cols < info.width) & (rows >= 0) & (rows < info.height)
        counts.exclude("outside_map", int((~inside).sum()))
        self.rows, self.cols = rows[inside].astype(np.int64), cols[inside].astype(np.int64)
        self.cls = vec.codes[inside]
        per_row = -(-info.width // size)
        wid = (self.rows // size) * per_row + self.cols // size
        order = np.argsort(wid, kind="stable")
        self.rows, self.cols, self.cls, self.wid = (
            self.rows[order],
            self.cols[order],
            self.cls[order],
            wid[order],
        )
        self.size, self.per_row = size, per_row
        counts.refs.encode(np.arange(len(vec.names)))  # reference codes are the class indexes 0..R-1

    def visit(self, win: PixelWindow, codes: np.ndarray, counts: Counts) -> None:
        """Add the points in window ``win``; ``codes`` are its map codes (``-1``: nodata)."""
        w = (win.row_off // self.size) * self.per_row + win.col_off // self.size
        lo, hi = np.searchsorted(self.wid, [w, w + 1])
        if hi <= lo:
            return
        m = codes[self.rows[lo:hi] - win.row_off, self.cols[lo:hi] - win.col_off]
        ok = m >= 0
        counts.exclude("map_nodata", int((~ok).sum()))
        counts.add_pairs(m[ok], self.cls[lo:hi][ok])

    def finish(self, ds: Any, counts: Counts) -> dict[str, Any]:
        """Nothing left to do for points; no extra facts."""
        return {}


class RasterUnits:
    """A label raster on the map grid (warped with nearest neighbour when the grids differ)."""

    def __init__(self, path: Path, info: MapInfo, nodata: float | None, stack: ExitStack) -> None:
        from rasterio.crs import CRS
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT
        from rasterio.warp import transform_bounds

        self.path, self.nodata = path, nodata
        src = stack.enter_context(open_raster(path, "reference raster"))
        map_crs = CRS.from_wkt(info.crs)
        same = (
            src.crs == map_crs
            and (src.width, src.height) == (info.width, info.height)
            and src.transform.almost_equals(info.affine)
        )
        x0, y0, x1, y1 = transform_bounds(src.crs, map_crs, *src.bounds)
        mx0, my0, mx1, my1 = info.bounds
        if x1 <= mx0 or x0 >= mx1 or y1 <= my0 or y0 >= my1:
            raise DataError(
                f"the reference raster does not overlap the map (reference x {x0:.0f}..{x1:.0f}, "
                f"y {y0:.0f}..{y1:.0f}; map x {mx0:.0f}..{mx1:.0f}, y {my0:.0f}..{my1:.0f}, in "
                f"{info.crs_name}); check that it covers the map and that its CRS is right",
                path,
            )
        self.warped = not same
        self.ds = (
            src
            if same
            else stack.enter_context(
                WarpedVRT(
                    src,
                    crs=map_crs,
                    transform=info.affine,
                    width=info.width,
                    height=info.height,
                    resampling=Resampling.nearest,
                    add_alpha=True,  # pixels outside the reference read as invalid
                )
            )
        )

    def visit(self, win: PixelWindow, codes: np.ndarray, counts: Counts) -> None:
        """Add the labelled pixels of window ``win``; ``codes`` are its map codes (``-1``: nodata)."""
        rw = win.to_rasterio()
        raw = self.ds.read(1, window=rw)
        ok = self.ds.read_masks(1, window=rw) > 0
        if self.nodata is not None:
            ok &= raw != self.nodata
        ids = whole_ids(raw, ok, os.fspath(self.path), "reference raster")
        counts.exclude("map_nodata", int((ok & (codes < 0)).sum()))
        use = ok & (codes >= 0)
        counts.add_pairs(codes[use], counts.refs.encode(ids[use]))

    def finish(self, ds: Any, counts: Counts) -> dict[str, Any]:
        """Facts: whether the label raster was warped onto the map grid."""
        return {"warped_to_map_grid": self.warped}
