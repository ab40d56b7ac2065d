"""Reference data read against a class map, one map window at a time.

:func:`tally` makes a single pass over the map in ``window_size`` square windows (1024 px by default),
so memory is bounded by a window whatever the map's size; a 20,000 x 20,000 px map is never loaded
whole. Each window contributes:

* the mapped pixels of every map value (the whole map, for the stratum weights of
  :func:`geosam.accuracy.estimators.stratified_estimate`);
* pairs ``(map value, reference class)`` of the reference units in it.

Reference units, by kind of reference:

* **Polygons** (any vector file OGR reads: GPKG, Shapefile, GeoJSON..., reprojected to the map CRS):
  the pixels whose centre lies inside a polygon (``rasterio.features.rasterize``, ``all_touched=False``).
  A pixel inside polygons of different classes is left out (counted as ``overlapping_classes``); one
  inside several polygons of one class counts once. Each polygon also gets a histogram of the map
  values under it, for the per-polygon majority matrix; a polygon too small to hold a pixel centre
  takes the map value under its representative point (shapely's ``representative_point``).
* **Points**: the pixel holding each point; each point is one unit (two points in one pixel count
  twice). Points outside the map are counted as ``outside_map``.
* **Label raster** (any CRS, resolution and extent): read on the map grid, through a nearest-neighbour
  warped VRT when the grids differ, so each map pixel takes the reference value at its centre. Valid
  reference pixels are whole numbers that are not nodata (the raster's nodata or mask, or
  ``reference_nodata``).

Units where the map has nodata (its nodata value, mask, or a non-finite value) are left out and
counted as ``map_nodata``. Map values are whole numbers of any integer or float dtype (band 1).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from geosam.accuracy.classes import label_text
from geosam.errors import DataError, MissingCRSError, NotARasterError, RasterNotFoundError
from geosam.types import PixelWindow

if TYPE_CHECKING:
    from affine import Affine

__all__ = [
    "FIELD_CANDIDATES",
    "MapInfo",
    "Tally",
    "open_map",
    "reference_kind",
    "tally",
]

log = logging.getLogger(__name__)

#: Class-field names tried, case-insensitively, when no field is given.
FIELD_CANDIDATES = ("class_name", "classname", "class", "label", "landcover", "land_cover", "lc", "category")
_VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml", ".sqlite", ".gdb", ".zip")
_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".asc", ".bil", ".rst", ".kea")
Kind = Literal["polygons", "points", "raster"]


# ----------------------------------------------------------------------------------------------- map


@dataclass(frozen=True)
class MapInfo:
    """The class map's grid and class names.

    Attributes:
        path: The map.
        width: Columns.
        height: Rows.
        transform: Geotransform ``(a, b, c, d, e, f)`` in CRS units.
        crs: CRS as WKT.
        crs_name: Short CRS name (``EPSG:32119`` where it has a code).
        dtype: Band 1 data type.
        names: Map value -> class name (empty when the map stores none).
        names_from: Where the names came from (``geosam class scheme``, ``category names``,
            ``attribute table`` or ``values``).
        pixel_area_m2: Area of a pixel in m² for projected CRSs with linear units, else ``None``.
    """

    path: str
    width: int
    height: int
    transform: tuple[float, float, float, float, float, float]
    crs: str
    crs_name: str
    dtype: str
    names: dict[int, str]
    names_from: str
    pixel_area_m2: float | None

    @property
    def affine(self) -> Affine:
        """:attr:`transform` as an :class:`affine.Affine`."""
        from affine import Affine

        return Affine(*self.transform)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the map in its CRS (rotated grids included)."""
        t = self.affine
        corners = [
            t @ (c, r) for c, r in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height))
        ]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        return (min(xs), min(ys), max(xs), max(ys))


def _open_raster(path: Path, role: str) -> Any:
    """Open a raster with rasterio (call inside :func:`geosam.io.env.geosam_env`); geosam errors."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    if not path.exists():
        raise RasterNotFoundError(f"{role} not found", path)
    if path.is_dir():
        raise NotARasterError(f"the {role} is a directory, not a raster file", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except RasterioError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise NotARasterError(f"cannot read the {role} as a raster ({first})", path) from None
    if ds.crs is None or ds.transform.is_identity:
        ds.close()
        raise MissingCRSError(
            f"the {role} has no CRS or geotransform, so it cannot be placed on the ground; assign its CRS "
            "(gdal_edit -a_srs EPSG:<code>)",
            path,
        )
    dt = np.dtype(ds.dtypes[0])
    if not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        ds.close()
        raise NotARasterError(f"the {role} holds {dt.name} values, not class ids", path)
    return ds


def _map_names(ds: Any, path: Path) -> tuple[dict[int, str], str]:
    import json

    from geosam.io.cog import CLASS_SCHEME_TAG
    from geosam.train._scene_sampling import category_names
    from geosam.types import ClassScheme

    tag = ds.tags().get(CLASS_SCHEME_TAG)
    if tag:
        try:
            scheme = ClassScheme.from_dict(json.loads(tag))
            return dict(enumerate(scheme.names)), "geosam class scheme"
        except (ValueError, KeyError, TypeError) as err:
            log.warning("%s: ignored a corrupt %s tag (%s)", path, CLASS_SCHEME_TAG, err)
    names, where = category_names(path)
    return (names, where) if names and where else ({}, "values")


def _pixel_area_m2(crs: Any, transform: Affine) -> float | None:
    from pyproj import CRS

    pcrs = CRS.from_wkt(crs.to_wkt())
    if not pcrs.is_projected:
        return None
    factor = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
    return abs(transform.a * transform.e - transform.b * transform.d) * factor * factor


def open_map(path: str | os.PathLike[str]) -> MapInfo:
    """Read the header and class names of a class map (band 1).

    Raises:
        RasterNotFoundError: ``path`` does not exist.
        NotARasterError: GDAL cannot read it, or band 1 holds neither integers nor floats.
        MissingCRSError: It has no CRS or geotransform.
    """
    from geosam.io.env import geosam_env

    p = Path(path)
    with geosam_env(p), _open_raster(p, "class map") as ds:
        names, where = _map_names(ds, p)
        crs = ds.crs
        epsg = crs.to_epsg()
        return MapInfo(
            path=os.fspath(p),
            width=ds.width,
            height=ds.height,
            transform=tuple(ds.transform)[:6],  # type: ignore[arg-type]
            crs=crs.to_wkt(),
            crs_name=f"EPSG:{epsg}" if epsg else (crs.to_string() or "custom"),
            dtype=ds.dtypes[0],
            names=names,
            names_from=where,
            pixel_area_m2=_pixel_area_m2(crs, ds.transform),
        )


# --------------------------------------------------------------------------------------- accumulators


class _Codebook:
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


def _grow(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if a.shape == shape:
        return a
    out = np.zeros(shape, a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


@dataclass
class _Counts:
    """Running counts of one pass (codes index :attr:`maps` values and :attr:`refs` values)."""

    maps: _Codebook = field(default_factory=_Codebook)
    refs: _Codebook = field(default_factory=_Codebook)
    mapped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    hist: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # (polygons, map codes)
    excluded: dict[str, int] = field(default_factory=dict)

    def exclude(self, reason: str, count: int) -> None:
        if count:
            self.excluded[reason] = self.excluded.get(reason, 0) + int(count)

    def add_map(self, codes: np.ndarray) -> None:
        self.mapped = _grow(self.mapped, (len(self.maps),))
        self.mapped += np.bincount(codes, minlength=len(self.maps))

    def add_pairs(self, map_codes: np.ndarray, ref_codes: np.ndarray) -> None:
        v, r = len(self.maps), len(self.refs)
        self.pairs = _grow(self.pairs, (v, r))
        if map_codes.size:
            self.pairs += np.bincount(map_codes * r + ref_codes, minlength=v * r).reshape(v, r)

    def add_polygon(self, p: int, map_codes: np.ndarray) -> None:
        if self.hist.shape[1] < len(self.maps):
            self.hist = _grow(self.hist, (self.hist.shape[0], len(self.maps)))
        self.hist[p] += np.bincount(map_codes, minlength=self.hist.shape[1])


def _windows(width: int, height: int, size: int) -> Iterator[PixelWindow]:
    for r0 in range(0, height, size):
        for c0 in range(0, width, size):
            yield PixelWindow(c0, r0, min(size, width - c0), min(size, height - r0))


def _whole(raw: np.ndarray, ok: np.ndarray, path: str, role: str) -> np.ndarray:
    """Valid float values must be whole class ids; returns int64 values (0 where not ``ok``)."""
    if np.issubdtype(raw.dtype, np.floating):
        ok &= np.isfinite(raw)
        vals = raw[ok]
        if vals.size and not np.array_equal(vals, np.rint(vals)):
            bad = vals[vals != np.rint(vals)][0]
            raise DataError(
                f"the {role} holds non-integer values (e.g. {bad:g}); class ids must be whole numbers "
                f"(is it an image or a confidence raster rather than classes?)",
                path,
            )
    return np.where(ok, raw, 0).astype(np.int64)


def _read_map(ds: Any, win: PixelWindow, counts: _Counts, path: str) -> np.ndarray:
    """Map codes of a window (``-1`` where nodata); adds the window's pixels to the mapped counts."""
    rw = win.to_rasterio()
    raw = ds.read(1, window=rw)
    ok = ds.read_masks(1, window=rw) > 0
    values = _whole(raw, ok, path, "class map")
    codes = np.full(values.shape, -1, np.int64)
    codes[ok] = counts.maps.encode(values[ok])
    counts.add_map(codes[ok])
    return codes


# ------------------------------------------------------------------------------------------ reference


def reference_kind(path: str | os.PathLike[str]) -> Literal["vector", "raster"]:
    """``vector`` or ``raster``, by suffix, else by which library opens it.

    Raises:
        DataError: The file does not exist, or neither GDAL raster nor OGR vector drivers read it.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("reference data not found", p)
    suffix = p.suffix.lower()
    if suffix in _VECTOR_SUFFIXES:
        return "vector"
    if suffix in _RASTER_SUFFIXES:
        return "raster"
    import pyogrio
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(p):
            return "raster"
    except RasterioError:
        pass
    try:
        pyogrio.read_info(p)
        return "vector"
    except Exception:
        pass
    raise DataError(
        "reference data must be polygons or points (GPKG, Shapefile, GeoJSON...) or a label raster "
        "(GeoTIFF...), and neither GDAL nor OGR reads this file",
        p,
    )


def _pick_field(columns: list[str], wanted: str | None, path: Path, gdf: Any) -> str:
    if wanted is not None:
        if wanted in columns:
            return wanted
        folded = {c.casefold(): c for c in columns}
        if wanted.casefold() in folded:
            return folded[wanted.casefold()]
        raise DataError(
            f"no class field {wanted!r}; the fields are {', '.join(columns) or '(none)'}: "
            "pass one with --field",
            path,
        )
    folded = {c.casefold(): c for c in columns}
    for cand in FIELD_CANDIDATES:
        if cand in folded:
            return folded[cand]
    texts = [c for c in columns if gdf[c].dtype == object or str(gdf[c].dtype) in ("str", "string")]
    if len(texts) == 1:
        return texts[0]
    raise DataError(
        f"which field holds the classes? the fields are {', '.join(columns) or '(none)'}: "
        "pass one with --field",
        path,
    )


@dataclass(frozen=True, eq=False)
class _Vector:
    kind: Kind
    geoms: np.ndarray  # shapely geometries in the map CRS
    codes: np.ndarray  # class code per feature (index into names)
    names: tuple[str, ...]
    info: dict[str, Any]


def _sort_names(names: set[str]) -> list[str]:
    def key(n: str) -> tuple[int, float, str]:
        try:
            return (0, float(n), n)
        except ValueError:
            return (1, 0.0, n.casefold())

    return sorted(names, key=key)


def _read_vector(path: Path, info: MapInfo, field_name: str | None, layer: str | None) -> _Vector:
    import geopandas as gpd
    import shapely
    from pyogrio.errors import DataLayerError, DataSourceError
    from pyproj import CRS

    try:
        gdf = gpd.read_file(path, layer=layer)
    except (DataSourceError, DataLayerError, ValueError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        remedy = "; pass --layer NAME" if "layer" in first.lower() else ""
        raise DataError(f"cannot read the reference features ({first}){remedy}", path) from None
    if gdf.crs is None:
        raise DataError(
            "the reference features have no CRS, so they cannot be placed on the map; assign the CRS they "
            "were drawn in (ogr2ogr -a_srs EPSG:<code> fixed.gpkg reference.shp)",
            path,
        )
    columns = [str(c) for c in gdf.columns if c != gdf.geometry.name]
    col = _pick_field(columns, field_name, path, gdf)
    n_features = len(gdf)
    labels = [label_text(v) for v in gdf[col]]
    geoms = gdf.geometry.to_numpy()
    has_geom = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    keep = np.array([lab is not None for lab in labels], bool) & has_geom
    types = set(shapely.get_type_id(geoms[keep]).tolist())
    polygonal = {3, 6}  # Polygon, MultiPolygon
    pointal = {0, 4}  # Point, MultiPoint
    if types - polygonal - pointal:
        raise DataError(
            "reference features must be polygons or points; lines or collections cannot label pixels "
            "(buffer lines into polygons first)",
            path,
        )
    if types & polygonal and types & pointal:
        raise DataError(
            "the reference mixes points and polygons; put them in separate files or layers and evaluate each",
            path,
        )
    kind: Kind = "points" if types and types <= pointal else "polygons"
    sub = gdf[keep]
    map_crs = CRS.from_wkt(info.crs)
    if not CRS.from_user_input(sub.crs).equals(map_crs):
        sub = sub.to_crs(map_crs)
    kept_labels = [lab for lab, k in zip(labels, keep, strict=True) if k]
    geoms_map = sub.geometry.to_numpy()
    if kind == "points":  # MultiPoints become one unit per point
        parts, index = shapely.get_parts(geoms_map, return_index=True)
        geoms_map = parts
        kept_labels = [kept_labels[i] for i in index]
    names = _sort_names({lab for lab in kept_labels if lab is not None})
    lookup = {n: i for i, n in enumerate(names)}
    codes = np.array([lookup[lab] for lab in kept_labels if lab is not None], np.int64)
    x0, y0, x1, y1 = info.bounds
    hits = shapely.intersects(geoms_map, shapely.box(x0, y0, x1, y1)) if len(geoms_map) else np.zeros(0, bool)
    if not hits.any():
        gx0, gy0, gx1, gy1 = shapely.total_bounds(geoms_map) if len(geoms_map) else (math.nan,) * 4
        raise DataError(
            f"no reference feature overlaps the map (features x {gx0:.0f}..{gx1:.0f}, "
            f"y {gy0:.0f}..{gy1:.0f}; "
            f"map x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f}, in {info.crs_name}); check that the reference "
            "covers the map and that its CRS is right",
            path,
        )
    return _Vector(
        kind=kind,
        geoms=geoms_map,
        codes=codes,
        names=tuple(names),
        info={
            "field": col,
            "layer": layer,
            "features": n_features,
            "features_without_class": int(sum(lab is None for lab in labels)),
            "features_without_geometry": int((~has_geom).sum()),
            "units_outside_map": int((~hits).sum()),
            "reprojected_from": CRS.from_user_input(gdf.crs).to_string(),
        },
    )


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


class _Polygons:
    """Per-window rasterisation of reference polygons (rules in the module docstring)."""

    def __init__(self, vec: _Vector, info: MapInfo, counts: _Counts) -> None:
        import shapely

        self.vec = vec
        self.info = info
        self.boxes = _pixel_boxes(vec.geoms, ~info.affine)
        self.tree = shapely.STRtree(shapely.box(*self.boxes.T.astype(np.float64)))
        self.pixels = np.zeros(len(vec.geoms), np.int64)
        self.nodata = np.zeros(len(vec.geoms), np.int64)
        counts.refs.encode(np.arange(len(vec.names)))  # reference codes are the class indexes 0..R-1
        counts.hist = np.zeros((len(vec.geoms), 0), np.int64)

    def visit(self, win: PixelWindow, codes: np.ndarray, counts: _Counts) -> None:
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

    def finish(self, ds: Any, counts: _Counts) -> dict[str, Any]:
        """Small-polygon fallback (representative point); returns polygon statistics."""
        import shapely
        from rasterio.windows import Window

        inv = ~self.info.affine
        fallback = outside = 0
        for p in np.flatnonzero(self.pixels == 0):
            pt = shapely.get_coordinates(self.vec.geoms[p].representative_point())[0]
            col, row = (math.floor(v) for v in inv @ (float(pt[0]), float(pt[1])))
            if not (0 <= row < self.info.height and 0 <= col < self.info.width):
                outside += 1
                continue
            raw = ds.read(1, window=Window(col, row, 1, 1))
            ok = ds.read_masks(1, window=Window(col, row, 1, 1)) > 0
            values = _whole(raw, ok, self.info.path, "class map")
            self.pixels[p] = 1
            if ok[0, 0]:
                counts.add_polygon(int(p), counts.maps.encode(values[ok]))
            else:
                self.nodata[p] = 1
            fallback += 1
        return {
            "polygons_outside_map": outside,
            "polygons_without_pixel_centre": fallback,
            "polygons_all_map_nodata": int(((self.pixels > 0) & (self.nodata == self.pixels)).sum()),
        }


class _Points:
    """Map values at reference points, grouped by window."""

    def __init__(self, vec: _Vector, info: MapInfo, counts: _Counts, size: int) -> None:
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

    def visit(self, win: PixelWindow, codes: np.ndarray, counts: _Counts) -> None:
        w = (win.row_off // self.size) * self.per_row + win.col_off // self.size
        lo, hi = np.searchsorted(self.wid, [w, w + 1])
        if hi <= lo:
            return
        m = codes[self.rows[lo:hi] - win.row_off, self.cols[lo:hi] - win.col_off]
        ok = m >= 0
        counts.exclude("map_nodata", int((~ok).sum()))
        counts.add_pairs(m[ok], self.cls[lo:hi][ok])

    def finish(self, ds: Any, counts: _Counts) -> dict[str, Any]:
        return {}


class _LabelRaster:
    """A label raster on the map grid (warped with nearest neighbour when the grids differ)."""

    def __init__(self, path: Path, info: MapInfo, nodata: float | None, stack: ExitStack) -> None:
        from rasterio.crs import CRS
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT
        from rasterio.warp import transform_bounds

        self.path, self.nodata = path, nodata
        src = stack.enter_context(_open_raster(path, "reference raster"))
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

    def visit(self, win: PixelWindow, codes: np.ndarray, counts: _Counts) -> None:
        rw = win.to_rasterio()
        raw = self.ds.read(1, window=rw)
        ok = self.ds.read_masks(1, window=rw) > 0
        if self.nodata is not None:
            ok &= raw != self.nodata
        ids = _whole(raw, ok, os.fspath(self.path), "reference raster")
        counts.exclude("map_nodata", int((ok & (codes < 0)).sum()))
        use = ok & (codes >= 0)
        counts.add_pairs(codes[use], counts.refs.encode(ids[use]))

    def finish(self, ds: Any, counts: _Counts) -> dict[str, Any]:
        return {"warped_to_map_grid": self.warped}


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
    reference_nodata: float | None = None,
    window_size: int = 1024,
    progress: bool = False,
) -> Tally:
    """Count map values and reference units in one windowed pass over the map (see module docstring).

    Args:
        map_info: The class map (:func:`open_map`).
        reference: Polygons or points (vector file) or a label raster.
        field: Class field of a vector reference (default: the first of :data:`FIELD_CANDIDATES`, else
            the only text field).
        layer: Layer of a multi-layer vector file (GeoPackage).
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
    counts = _Counts()
    handler: _Polygons | _Points | _LabelRaster
    with ExitStack() as stack:
        stack.enter_context(geosam_env(map_info.path))
        ds = stack.enter_context(_open_raster(Path(map_info.path), "class map"))
        names: tuple[str, ...] = ()
        vec: _Vector | None = None
        if kind_of_file == "vector":
            vec = _read_vector(ref_path, map_info, field, layer)
            names = vec.names
            kind: Kind = vec.kind
            handler = (
                _Polygons(vec, map_info, counts)
                if vec.kind == "polygons"
                else _Points(vec, map_info, counts, window_size)
            )
        else:
            kind = "raster"
            handler = _LabelRaster(ref_path, map_info, reference_nodata, stack)
        wins = list(_windows(map_info.width, map_info.height, window_size))
        for win in progress_iter(wins, "evaluate", enabled=progress):
            codes = _read_map(ds, win, counts, map_info.path)
            handler.visit(win, codes, counts)
        info = {**(vec.info if vec is not None else {}), **handler.finish(ds, counts)}
    classes = vec.codes if vec is not None and kind == "polygons" else None
    return _finish(kind, counts, names, classes, ref_path, info)


def _finish(
    kind: Kind,
    counts: _Counts,
    names: tuple[str, ...],
    classes: np.ndarray | None,
    ref_path: Path,
    info: dict[str, Any],
) -> Tally:
    """Sort map values and reference ids, and name the reference classes."""
    v, r = len(counts.maps), len(counts.refs)
    pairs = _grow(counts.pairs, (v, r))
    mapped = _grow(counts.mapped, (v,))
    morder = np.argsort(np.array(counts.maps.values, np.int64), kind="stable")
    hist = None
    if kind == "raster":
        from geosam.train._scene_sampling import category_names

        ids = np.array(counts.refs.values, np.int64)
        rorder = np.argsort(ids, kind="stable")
        cats, where = category_names(ref_path)
        names = tuple(cats.get(int(i), str(int(i))) for i in ids[rorder])
        info = {**info, "class_names_from": where or "values", "reference_ids": [int(i) for i in ids[rorder]]}
        pairs = pairs[:, rorder]
    if kind == "polygons":
        hist = _grow(counts.hist, (counts.hist.shape[0], v))[:, morder]
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
