"""Reference features (polygons or points) read for an assessment, in the class map's CRS.

Any vector file OGR reads (GeoPackage, Shapefile, GeoJSON, FlatGeobuf...) with a class field. Features
with an empty class or geometry are left out and counted; MultiPoints become one unit per point; lines
are refused. Files that are neither vector nor raster by suffix are probed with rasterio, then pyogrio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geosam.accuracy.classes import label_text
from geosam.accuracy.classmap import MapInfo
from geosam.errors import DataError

__all__ = ["FIELD_CANDIDATES", "ReferenceFeatures", "read_features", "reference_kind"]

#: Class-field names tried, case-insensitively, when no field is given.
FIELD_CANDIDATES = ("class_name", "classname", "class", "label", "landcover", "land_cover", "lc", "category")
_VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml", ".sqlite", ".gdb", ".zip")
_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".asc", ".bil", ".rst", ".kea")


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
class ReferenceFeatures:
    """Reference features in the map's CRS.

    Attributes:
        kind: ``polygons`` or ``points``.
        geoms: ``(F,)`` shapely geometries in the map CRS (points: one per unit).
        codes: int64 ``(F,)`` class of each feature, an index into ``names``.
        names: Class names found (numbers in numeric order, then text in alphabetical order).
        info: Field used, feature counts, features left out and why, the CRS reprojected from.
    """

    kind: Literal["polygons", "points"]
    geoms: np.ndarray
    codes: np.ndarray
    names: tuple[str, ...]
    info: dict[str, Any]


def _sort_names(names: set[str]) -> list[str]:
    def key(n: str) -> tuple[int, float, str]:
        try:
            return (0, float(n), n)
        except ValueError:
            return (1, 0.0, n.casefold())

    return sorted(names, key=key)


def read_features(
    path: str | os.PathLike[str],
    info: MapInfo,
    field_name: str | None = None,
    layer: str | None = None,
    where: str | None = None,
) -> ReferenceFeatures:
    """Read reference polygons or points with their classes, reprojected to the map's CRS.

    Args:
        path: Vector file.
        info: The class map (its CRS and extent).
        field_name: Class field (case-insensitive); ``None``: the first of :data:`FIELD_CANDIDATES`
            present, else the only text field.
        layer: Layer of a multi-layer file; ``None``: the first.
        where: OGR SQL ``WHERE`` clause selecting features (``"fold = 3"``).

    Raises:
        DataError: Unreadable file or layer, invalid ``where``, no CRS, no such field, lines, points
            mixed with polygons, or no feature overlapping the map.
    """
    import geopandas as gpd
    import shapely
    from pyogrio.errors import DataLayerError, DataSourceError
    from pyproj import CRS

    path = Path(path)
    try:
        gdf = gpd.read_file(path, layer=layer, where=where)
    except (DataSourceError, DataLayerError, ValueError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        remedy = "; pass --layer NAME" if "layer" in first.lower() else ""
        if where and ("sql" in first.lower() or "where" in first.lower() or "attribute" in first.lower()):
            remedy = f'; check the --where expression {where!r} (OGR SQL, e.g. "fold = 3")'
        raise DataError(f"cannot read the reference features ({first}){remedy}", path) from None
    if where and gdf.empty:
        raise DataError(f"no feature matches --where {where!r}", path)
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
    kind: Literal["polygons", "points"] = "points" if types and types <= pointal else "polygons"
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
    return ReferenceFeatures(
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
            "features_outside_map": int((~hits).sum()),
            "crs": CRS.from_user_input(gdf.crs).to_string(),
            "reprojected_to_map_crs": not CRS.from_user_input(gdf.crs).equals(map_crs),
        },
    )
