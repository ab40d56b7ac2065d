"""Distances and areas on the ground: one rule for every CRS.

geosam measures a scene's pixels and its regions *on the ellipsoid* of the scene CRS's datum, never in
CRS units, so that a scene gives the same numbers in UTM, Web Mercator, a state plane in feet or plain
longitude/latitude:

* **Ground sampling distance** (:func:`ground_resolution`): the geodesic length of one pixel step
  along a row and down a column, measured at the centre of the scene. For a projected CRS this is the
  pixel size times the CRS unit (feet...) divided by the projection's local scale factor (what
  ``pyproj.Proj.get_factors`` reports), for a geographic CRS it is the pixel's size in degrees turned
  into metres at that latitude. Both come out of one computation: the pixel's corners are transformed
  to longitude/latitude on the CRS's own datum and the geodesic between them is solved (Karney 2013, as
  wrapped by :class:`pyproj.Geod`). Unlike the scale factors of ``get_factors``, this stays right for
  projections defined on a sphere over an ellipsoidal datum: EPSG:3857 (Web Mercator) reports a scale
  of exactly ``sec(lat)``, but its metres lie on the WGS 84 ellipsoid, where 10 "Mercator metres" at
  60 N are 5.01 m along the parallel, not 5.00 m.
* **Areas** (:func:`geodesic_areas_m2`): the ellipsoidal area of each polygon: Karney's geodesic
  polygon area with the edges densified so that straight edges in the CRS keep their course on the
  ground; for polygons under about 100 m, the planar area times the local areal scale factor measured
  the same way on a 100 m square (Karney's area sum loses precision on centimetre polygons).
  Equal-area projections give the same value (to their own ellipsoid's precision); conformal ones
  (UTM, Mercator, Lambert conformal conic) do not: Web Mercator overstates an area at 60 N about four
  times, UTM understates it by 0.08 % at the central meridian.

Reference: C. F. F. Karney, "Algorithms for geodesics", J. Geodesy 87, 43-55 (2013),
doi:10.1007/s00190-012-0578-z; PROJ/pyproj implement it (``geod_inverse``, ``geod_polygonarea``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pyproj import CRS, Geod, Transformer

__all__ = [
    "GroundResolution",
    "bounded_segment",
    "densify_length",
    "geodesic_areas_m2",
    "ground_resolution",
    "lonlat_transformer",
    "round_significant",
    "unwrap_longitudes",
]

#: Longest polygon edge, as a ground distance in metres, that :func:`densify_length` allows by default.
#: A straight edge in a projected CRS (or along a parallel in a geographic one) is not a geodesic; over
#: 1 km the two differ by millimetres: invisible in a drawing (the GeoJSON), while areas are densified
#: down to the pixel (``pixel=True``), which keeps them within 1e-6 of the CRS-straight polygon.
DENSIFY_GROUND_M = 1000.0


@dataclass(frozen=True, slots=True)
class GroundResolution:
    """The ground size of a scene's pixels, measured at one point.

    Attributes:
        x_m: Geodesic length in metres of one pixel step along a row (from column ``c`` to ``c + 1``).
        y_m: Geodesic length in metres of one pixel step down a column (row ``r`` to ``r + 1``).
        lon: Longitude in degrees (on the CRS's datum) of the point measured: the scene centre.
        lat: Latitude in degrees of that point.
        crs_pixel_m: Pixel size in the CRS's linear unit converted to metres, the mean of both axes
            (``None`` for geographic CRSs, whose unit is an angle). ``crs_pixel_m / mean_m`` is the local
            scale factor of the projection.
    """

    x_m: float
    y_m: float
    lon: float
    lat: float
    crs_pixel_m: float | None = None

    @property
    def mean_m(self) -> float:
        """Side in metres of the square with the pixel's ground area: ``sqrt(x_m * y_m)``.

        The GSD geosam matches to a model's training resolution: it keeps a chip's ground *area*, also
        for pixels that are not square on the ground (longitude/latitude pixels away from the equator).
        """
        return math.sqrt(self.x_m * self.y_m)

    @property
    def scale_factor(self) -> float | None:
        """CRS metres per ground metre at this point (``None`` for geographic CRSs)."""
        return None if self.crs_pixel_m is None else self.crs_pixel_m / self.mean_m

    def describe(self) -> str:
        """One phrase for logs, e.g. ``4.98 m on the ground (10 CRS m, scale factor 2.01)``."""
        if abs(self.x_m - self.y_m) > 0.01 * max(self.x_m, self.y_m):
            size = f"{self.x_m:.3g} x {self.y_m:.3g} m on the ground"
        else:
            size = f"{self.mean_m:.3g} m on the ground"
        k = self.scale_factor
        if self.crs_pixel_m is not None and k is not None and abs(k - 1) > 0.005:
            return f"{size} ({self.crs_pixel_m:.4g} CRS m, scale factor {k:.3g})"
        return size


def _crs(crs: Any) -> CRS:
    from pyproj import CRS

    return crs if isinstance(crs, CRS) else CRS.from_user_input(crs)


def _geod(crs: CRS) -> Geod | None:
    """The ellipsoid of the CRS's datum (``None`` for engineering CRSs, which have none)."""
    try:
        return crs.get_geod()
    except Exception:  # pragma: no cover - defensive: pyproj raises CRSError on odd WKT
        return None


def lonlat_transformer(crs: Any) -> Transformer | None:
    """A transformer from ``crs`` to longitude/latitude in degrees on the CRS's own datum (x = lon).

    Staying on the datum avoids datum shifts (metres between NAD27 and WGS 84) that have nothing to do
    with a distance or an area. ``None`` for CRSs without a geodetic datum (engineering/local CRSs).
    """
    from pyproj import Transformer

    c = _crs(crs)
    geodetic = c.geodetic_crs
    if geodetic is None:
        return None
    return Transformer.from_crs(c, geodetic, always_xy=True)


def _unit_factor(crs: CRS) -> float | None:
    """Metres per CRS linear unit (``None`` for geographic CRSs and unknown units)."""
    if not crs.is_projected:
        return None
    for axis in crs.axis_info:
        if axis.unit_conversion_factor and axis.unit_name not in ("degree", "radian", "grad"):
            return float(axis.unit_conversion_factor)
    return None


def ground_resolution(
    crs: Any, transform: Sequence[float], width: int, height: int
) -> GroundResolution | None:
    """Measure the ground size of a scene's pixels at the scene centre (see the module docstring).

    Args:
        crs: The scene CRS: WKT, ``"EPSG:32633"`` or a :class:`pyproj.CRS`; projected or geographic.
        transform: Geotransform coefficients ``(a, b, c, d, e, f)`` (rasterio's order); rotated and
            south-up transforms are fine.
        width: Scene columns.
        height: Scene rows.

    Returns:
        The along-row and along-column ground lengths of a pixel in metres, or ``None`` when the CRS has
        no ellipsoid (an engineering CRS) or the scene centre lies outside the projection's domain.
    """
    c = _crs(crs)
    geod = _geod(c)
    to_ll = lonlat_transformer(c)
    a, b, xoff, d, e, yoff = (float(v) for v in list(transform)[:6])
    col, row = width / 2.0, height / 2.0
    # the pixel step at the centre, as two centred differences: (col -+ 0.5, row) and (col, row -+ 0.5)
    cols = np.array([col - 0.5, col + 0.5, col, col, col])
    rows = np.array([row, row, row - 0.5, row + 0.5, row])
    xs, ys = a * cols + b * rows + xoff, d * cols + e * rows + yoff
    factor = _unit_factor(c)
    crs_pixel = (
        None
        if factor is None
        else factor * (math.hypot(a, d) + math.hypot(b, e)) / 2.0  # mean pixel size in metres
    )
    if geod is None or to_ll is None:
        return None
    try:
        lon, lat = to_ll.transform(xs, ys, errcheck=True)
    except Exception:  # outside the projection's domain
        return None
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()) or np.abs(lat).max() > 90:
        return None
    _, _, dist = geod.inv(lon[[0, 2]], lat[[0, 2]], lon[[1, 3]], lat[[1, 3]])
    x_m, y_m = (float(v) for v in np.asarray(dist))
    if not (x_m > 0 and y_m > 0):
        return None
    return GroundResolution(x_m, y_m, float(lon[4]), float(lat[4]), crs_pixel)


def round_significant(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (``0`` and non-finite values unchanged).

    >>> round_significant(4.97731), round_significant(10.004), round_significant(0.000123456, 3)
    (4.977, 10.0, 0.000123)
    """
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def unwrap_longitudes(lon: np.ndarray) -> np.ndarray:
    """Make a ring's longitudes continuous: no step between consecutive vertices exceeds 180 degrees.

    PROJ returns longitudes in [-180, 180], so a ring that crosses the antimeridian jumps from 179.9 to
    -179.9; unwrapped it runs 179.9 -> 180.1. A ring around a pole ends 360 degrees from where it
    started.
    """
    return np.unwrap(np.asarray(lon, dtype=float), period=360.0)


def densify_length(
    crs: Any, transform: Sequence[float], width: int, height: int, *, pixel: bool = False
) -> float | None:
    """Longest polygon edge, in CRS units, before an edge is split for reprojection or measurement.

    Args:
        crs: The scene CRS.
        transform: The scene geotransform.
        width: Scene columns.
        height: Scene rows.
        pixel: Also split at every pixel (for areas: a pixel-edge polygon's edges are straight in the
            CRS, and a geodesic through a pixel's corners follows them to well under 1e-6 of its area).

    Returns:
        The length keeping ground edges under :data:`DENSIFY_GROUND_M` metres (and one pixel with
        ``pixel``); ``None`` when the ground resolution is unknown (no densification then).
    """
    res = ground_resolution(crs, transform, width, height)
    if res is None:
        return None
    a, b, _, d, e, _ = (float(v) for v in list(transform)[:6])
    # CRS units per ground metre along each pixel axis; the smaller bound wins
    per_m_x = math.hypot(a, d) / res.x_m
    per_m_y = math.hypot(b, e) / res.y_m
    length = min(per_m_x, per_m_y) * DENSIFY_GROUND_M
    return min(length, math.hypot(a, d), math.hypot(b, e)) if pixel else length


#: Side, in metres on the ground, of the square on which :func:`geodesic_areas_m2` measures the local
#: areal scale factor for polygons smaller than it.
PROBE_GROUND_M = 100.0

#: Most vertices densification may add to a set of geometries (bounds memory: 16 bytes each).
MAX_DENSIFIED_VERTICES = 1_000_000


def bounded_segment(geoms: Any, max_segment: float) -> float:
    """``max_segment``, lengthened if needed to keep densification bounded.

    Densifying ``geoms`` adds about their total boundary length over the segment length in vertices;
    this keeps that under :data:`MAX_DENSIFIED_VERTICES`.
    """
    import shapely

    total = float(np.sum(shapely.length(shapely.boundary(np.asarray(geoms, dtype=object)))))
    return max(max_segment, total / MAX_DENSIFIED_VERTICES)


def _probe_size(crs: CRS) -> float:
    """CRS units spanning about :data:`PROBE_GROUND_M` metres on the ground (order of magnitude)."""
    factor = _unit_factor(crs)
    if factor is not None:
        return PROBE_GROUND_M / factor
    angle = crs.axis_info[0].unit_conversion_factor or math.radians(1.0)  # radians per unit
    return PROBE_GROUND_M / 6_371_000.0 / angle


def geodesic_areas_m2(geoms: Any, crs: Any, *, max_segment: float | None = None) -> np.ndarray:
    """Ellipsoidal areas in m^2 of polygons given in any CRS (see the module docstring).

    Polygons wider than about :data:`PROBE_GROUND_M` metres are densified (``max_segment``, in CRS
    units), transformed to longitude/latitude on the CRS's datum and measured with Karney's geodesic
    polygon area on that datum's ellipsoid; a polygon's area is its exterior's minus its holes', whatever
    the rings' orientation, and rings may cross the antimeridian. Each ring is taken to bound the smaller
    of the two parts of the ellipsoid it divides, so regions larger than half the Earth are not
    supported.

    Smaller polygons are measured as their planar area times the local areal scale factor, itself
    measured the same way on a square of about :data:`PROBE_GROUND_M` metres centred on the polygon's
    centroid (exact to first order in the polygon's size, a few 1e-10 at 100 m): Karney's
    polygon area sums per-edge areas reaching down to the equator, which cancel to micrometres of
    precision, so a centimetre pixel measured directly comes out a few percent wrong (found in tests).

    For CRSs without an ellipsoid (engineering/local CRSs) the planar area times the square of the unit's
    metre factor is returned, or ``NaN`` when even the unit is unknown.

    Args:
        geoms: Polygons and multipolygons (shapely geometries, a GeoSeries or an array); other geometry
            types count 0, missing or empty ones too.
        crs: Their CRS (WKT, ``"EPSG:..."`` or :class:`pyproj.CRS`).
        max_segment: Longest edge in CRS units before measuring (see :func:`densify_length`); ``None``
            measures the edges as they are (fine for polygons of pixel edges at metre resolution).

    Returns:
        float64 array, one non-negative area per geometry, in square metres.
    """
    import shapely

    arr = np.empty(len(geoms), dtype=object)
    arr[:] = list(geoms)
    out = np.zeros(len(arr), dtype=np.float64)
    if not len(arr):
        return out
    c = _crs(crs)
    geod = _geod(c)
    to_ll = lonlat_transformer(c)
    ok = np.array([g is not None and not g.is_empty for g in arr], dtype=bool)
    planar = np.zeros(len(arr))
    planar[ok] = shapely.area(arr[ok])
    if geod is None or to_ll is None:
        factor = _unit_factor(c)
        return planar * factor * factor if factor is not None else np.full(len(arr), np.nan)

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        lon, lat = to_ll.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    def ring_area(ring: Any) -> float:
        ll = np.asarray(ring.coords)
        if len(ll) < 4 or not np.isfinite(ll).all():
            return 0.0
        area, _ = geod.polygon_area_perimeter(unwrap_longitudes(ll[:, 0]), ll[:, 1])
        return abs(float(area))

    def karney(g: Any) -> float:
        total = 0.0
        for p in shapely.get_parts(g):
            if p.geom_type == "Polygon":
                total += ring_area(p.exterior) - sum(ring_area(h) for h in p.interiors)
        return max(total, 0.0)

    probe = _probe_size(c)
    bounds = np.zeros((len(arr), 4))
    bounds[ok] = shapely.bounds(arr[ok])
    extent = np.hypot(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    small = ok & (extent < probe)
    large = ok & ~small
    if large.any():
        big = arr[large]
        if max_segment is not None and max_segment > 0:
            big = shapely.segmentize(big, bounded_segment(big, max_segment))
        out[large] = [karney(g) for g in shapely.transform(big, to_lonlat)]  # one PROJ call
    if small.any():
        # the areal scale at each polygon's (area-weighted) centroid: exact to first order
        cxy = shapely.get_coordinates(shapely.centroid(arr[small]))
        h = probe / 2
        squares = shapely.box(cxy[:, 0] - h, cxy[:, 1] - h, cxy[:, 0] + h, cxy[:, 1] + h)
        scales = np.array([karney(g) for g in shapely.transform(squares, to_lonlat)]) / (probe * probe)
        out[small] = planar[small] * scales
    return out
