"""Polygons made fit for RFC 7946 GeoJSON: longitude/latitude, valid, counter-clockwise, within +-180.

Reprojecting polygons that are valid in a scene's CRS does not keep them valid: where one part of a
region touches another part's straight edge (a T-junction along a tile seam), the edge bends when
projected and the vertex does not, so the parts overlap by millimetres; rounding coordinates to 7
decimals (about 1 cm) collapses regions of centimetre pixels into lines. GDAL's RFC 7946 writer then
emits self-intersecting multipolygons and geometry collections. :func:`rfc7946_geometries` does, for
each geometry:

1. keep its polygonal parts, densify long edges (so they follow their true course in longitude/
   latitude) and transform it to EPSG:4326 with longitude first;
2. make each ring's longitudes continuous (:func:`geosam.geodesy.unwrap_longitudes`); a ring that goes
   round a pole is closed along the pole;
3. repair it (GEOS ``make_valid``, "structure" method: overlaps dissolved, collapsed parts dropped);
4. move it to ``[-180, 180]`` and split it at the antimeridian when it crosses it;
5. snap it to a grid of ``10**-precision`` degrees with GEOS's precision reducer, which keeps
   polygons valid (``shapely.set_precision``); the precision is the smallest number of decimals, 7 or
   more, that moves no polygon by more than 1 % of its area (the symmetric difference between the
   polygon and its snapped version; centimetre pixels get 9 or 10 decimals);
6. orient exterior rings counter-clockwise and holes clockwise (RFC 7946 section 3.1.6).

Coordinates snapped to ``10**-d`` degrees are the doubles nearest to decimals with ``d`` places, and
:func:`write_feature_collection` writes each as its shortest round-trip representation (Python's
``repr``), so reading the file back gives the same coordinates and the same valid geometry. (GDAL's
GeoJSON writer does not: it rounds what it takes for floating-point noise, writing 44.99999991 as 45.0,
which collapsed centimetre pixels into lines.)
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from geosam.geodesy import bounded_segment, unwrap_longitudes

__all__ = ["MAX_PRECISION", "MIN_PRECISION", "rfc7946_geometries", "write_feature_collection"]

#: Fewest decimals written (RFC 7946 suggests 6; 7 is about 1 cm, GDAL's default).
MIN_PRECISION = 7
#: Most decimals written (1e-15 degrees is 0.1 nm: beyond double precision of longitudes).
MAX_PRECISION = 15
#: Largest relative area change snapping may cause before more decimals are used.
_AREA_TOLERANCE = 0.01


def _polygonal(geom: Any) -> Any:
    """The polygonal part of a geometry as a Polygon/MultiPolygon, or ``None`` when there is none."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts = [
        p
        for g in shapely.get_parts(geom)
        for p in shapely.get_parts(_polygonal(g) if g.geom_type == "GeometryCollection" else g)
        if p.geom_type == "Polygon" and not p.is_empty
    ]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _repair(geom: Any) -> Any:
    """A valid polygonal version of ``geom`` (``None`` when nothing polygonal is left)."""
    import shapely

    geom = _polygonal(geom)
    if geom is None:
        return None
    if not geom.is_valid:
        geom = _polygonal(shapely.make_valid(geom, method="structure", keep_collapsed=False))
    return geom


def _close_round_pole(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Close a ring that goes round a pole (its unwrapped longitudes end 360 degrees from the start)."""
    if abs(lon[-1] - lon[0]) < 180:
        return lon, lat
    pole = 90.0 if float(np.mean(lat)) > 0 else -90.0
    lon = np.concatenate([lon, [lon[-1], lon[0], lon[0]]])
    lat = np.concatenate([lat, [pole, pole, lat[0]]])
    return lon, lat


def _continuous(poly: Any) -> Any:
    """``poly`` (lon/lat) with each ring's longitudes made continuous; holes follow their exterior."""
    from shapely.geometry import Polygon

    ext = np.asarray(poly.exterior.coords)
    lon = unwrap_longitudes(ext[:, 0])
    lon, lat = _close_round_pole(lon, ext[:, 1])
    centre = float(np.mean(lon))
    holes = []
    for h in poly.interiors:
        xy = np.asarray(h.coords)
        hl = unwrap_longitudes(xy[:, 0])
        hl = hl - 360.0 * round((float(np.mean(hl)) - centre) / 360.0)
        holes.append(np.column_stack([hl, xy[:, 1]]))
    return Polygon(np.column_stack([lon, lat]), holes)


def _wrap(geom: Any) -> Any:
    """Move a continuous-longitude geometry into [-180, 180], split at the antimeridian if needed."""
    import shapely
    from shapely.affinity import translate
    from shapely.geometry import box

    minx, _, maxx, _ = geom.bounds
    k = math.floor((minx + 180.0) / 360.0)
    if k:
        geom = translate(geom, xoff=-360.0 * k)
        minx, maxx = minx - 360.0 * k, maxx - 360.0 * k
    if maxx <= 180.0:
        return geom
    pieces = [shapely.intersection(geom, box(-180.0, -90.0, 180.0, 90.0))]
    east = box(180.0, -90.0, 540.0, 90.0)
    pieces.append(translate(shapely.intersection(geom, east), xoff=-360.0))
    return _repair(shapely.union_all([p for p in (_polygonal(x) for x in pieces) if p is not None]))


def _to_lonlat(geom: Any, transformer: Any) -> Any:
    """Transform, unwrap, repair and wrap one polygonal geometry (steps 1-4 of the module docstring)."""
    import shapely
    from shapely.affinity import translate

    def fn(xy: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    ll = shapely.transform(geom, fn)
    if not np.isfinite(shapely.get_coordinates(ll)).all():
        return None  # outside the projection's domain
    parts = [_continuous(p) for p in shapely.get_parts(ll) if not p.is_empty]
    if not parts:
        return None
    # parts are unwrapped one by one: bring each within 180 degrees of the largest (a region straddling
    # the antimeridian has parts on both sides of it)
    ref = float(max(parts, key=lambda q: q.area).centroid.x)
    parts = [translate(q, xoff=-360.0 * round((q.centroid.x - ref) / 360.0)) for q in parts]
    merged = _repair(shapely.union_all([_repair(p) for p in parts if _repair(p) is not None]))
    return None if merged is None else _wrap(merged)


def _snap(geoms: np.ndarray, decimals: int) -> np.ndarray:
    """Snap to a ``10**-decimals`` degree grid, keep polygons, orient them (steps 5-6)."""
    import shapely

    out = np.empty(len(geoms), dtype=object)
    ok = np.array([g is not None for g in geoms], dtype=bool)
    if ok.any():
        snapped = shapely.set_precision(geoms[ok], 10.0**-decimals, mode="valid_output")
        fixed = [_repair(g) for g in snapped]
        out[ok] = [None if g is None else shapely.orient_polygons(g, exterior_cw=False) for g in fixed]
    return out


def _moved(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether snapping lost a polygon or moved more than the tolerance of its area.

    The moved area is the symmetric difference between the polygon and its snapped version, so a
    shift that keeps the area but displaces the outline counts too.
    """
    import shapely

    ok = np.array([b is not None for b in before], dtype=bool)
    if not ok.any():
        return False
    if any(a is None or a.is_empty for a in after[ok]):
        return True
    b, a = before[ok], after[ok]
    moved = shapely.area(shapely.symmetric_difference(b, a))
    return bool((moved > _AREA_TOLERANCE * shapely.area(b)).any())


def rfc7946_geometries(
    geoms: Any, crs: Any, *, precision: int | None = None, max_segment: float | None = None
) -> tuple[list[Any], int]:
    """Transform polygons to RFC 7946 longitude/latitude geometries that stay valid when written.

    Args:
        geoms: Polygons/multipolygons (a GeoSeries, an array or a list; ``None`` allowed) in ``crs``.
            Other geometry types contribute nothing.
        crs: Their CRS (WKT, ``"EPSG:..."``, :class:`pyproj.CRS`), projected or geographic; longitudes
            outside [-180, 180] (0..360 grids) are wrapped.
        precision: Decimals of the output grid; ``None`` chooses the fewest from 7 to 15 that move no
            polygon by more than 1 % of its area.
        max_segment: Densify edges longer than this (CRS units) before transforming
            (:func:`geosam.geodesy.densify_length`); ``None`` keeps the vertices as they are.

    Returns:
        ``(geometries, precision)``: one valid Polygon or MultiPolygon per input in EPSG:4326 (x =
        longitude), within [-180, 180] x [-90, 90], exteriors counter-clockwise, snapped to
        ``10**-precision`` degrees; ``None`` where nothing polygonal is left (an empty input, or a
        geometry outside the projection's domain). ``precision`` is the number of decimals to write.
    """
    import shapely
    from pyproj import CRS, Transformer

    src = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    transformer = Transformer.from_crs(src, CRS.from_epsg(4326), always_xy=True)
    items = list(geoms)
    lonlat = np.empty(len(items), dtype=object)
    polys = np.empty(len(items), dtype=object)
    polys[:] = [_repair(g) for g in items]
    present = np.array([p is not None for p in polys], dtype=bool)
    if max_segment is not None and max_segment > 0 and present.any():
        polys[present] = shapely.segmentize(polys[present], bounded_segment(polys[present], max_segment))
    for i, poly in enumerate(polys):
        lonlat[i] = None if poly is None else _to_lonlat(poly, transformer)
    if precision is not None:
        return list(_snap(lonlat, precision)), precision
    for decimals in range(MIN_PRECISION, MAX_PRECISION + 1):
        snapped = _snap(lonlat, decimals)
        if not _moved(lonlat, snapped) or decimals == MAX_PRECISION:
            return list(snapped), decimals
    raise AssertionError("unreachable")  # pragma: no cover


def _jsonable(value: Any) -> Any:
    """A property value as JSON: numpy scalars as Python numbers, NaN and missing values as null."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, _dt.date | _dt.datetime):
        return value.isoformat()
    try:
        import pandas as pd

        if pd.isna(value):
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
    except (TypeError, ValueError):
        pass
    return str(value)


def write_feature_collection(
    path: str | os.PathLike[str],
    name: str,
    properties: Sequence[Mapping[str, Any]],
    geometries: Sequence[Any],
) -> None:
    """Write an RFC 7946 ``FeatureCollection`` whose coordinates read back exactly (module docstring).

    Args:
        path: File to write (UTF-8, one feature per line).
        name: The collection's ``name`` member (GDAL and QGIS show it as the layer name).
        properties: One mapping of property values per feature (numpy scalars, NaN allowed).
        geometries: One shapely Polygon/MultiPolygon per feature, in EPSG:4326 (from
            :func:`rfc7946_geometries`).
    """
    from shapely.geometry import mapping

    features = (
        json.dumps(
            {
                "type": "Feature",
                "properties": {str(k): _jsonable(v) for k, v in props.items()},
                "geometry": mapping(geom),
            },
            ensure_ascii=False,
            allow_nan=False,
        )
        for props, geom in zip(properties, geometries, strict=True)
    )
    head = json.dumps({"type": "FeatureCollection", "name": name}, ensure_ascii=False)[:-1]
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + ', "features": [\n')
        f.write(",\n".join(features))
        f.write("\n]}\n")
