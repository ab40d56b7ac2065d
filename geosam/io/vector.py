"""Atomic GeoJSON and GeoPackage writers for region and tile polygons.

* :func:`write_geojson`: RFC 7946 GeoJSON, always in EPSG:4326 longitude/latitude. The geometries are
  prepared by :func:`geosam.io.rfc7946.rfc7946_geometries` (reprojected, repaired, split at the
  antimeridian, snapped to a grid that keeps them valid, counter-clockwise exteriors), so every feature
  is a valid Polygon or MultiPolygon, also after the coordinates are rounded to as many decimals as
  the grid needs (7, about 1 cm, or more for centimetre pixels); written by
  :func:`geosam.io.rfc7946.write_feature_collection` (no ``crs`` member; properties as JSON values,
  NaN as null), which keeps every coordinate exact. Use it for the web and for exchange.
* :func:`write_gpkg`: GeoPackage 1.2 (readable by GDAL >= 2.2 and so by every QGIS 3) in the data's
  native CRS, one named layer, with an R-tree spatial index. Use it for area-accurate work.

Both write the file under a temporary name and rename it into place together with its optional
``.qml`` style (``x.geojson``/``x.gpkg`` -> ``x.qml``, see :func:`geosam.io.style.qml_path`), so readers
never see partial files and a failure leaves nothing behind.

Schema: GeoPackage columns are written in order with types from their dtypes (int32 -> Integer,
int64 -> Integer64, float -> Real, str -> String, bool -> Integer(Boolean), datetime -> DateTime);
GeoJSON properties are JSON numbers, strings, booleans and null (NaN), datetimes ISO 8601 text; the
DataFrame index is not written (put identifiers in columns). geosam's region layers use the
documented property names ``class_id``, ``class_name``, ``score``, ``area_m2``, ``scene_id``. An empty
GeoDataFrame still gives a valid file: the GeoPackage keeps every field and the geometry type; a
GeoJSON ``FeatureCollection`` cannot declare a schema, so an empty one has no fields (QGIS shows it as
a table without geometry).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosam.io.atomic import atomic_paths
from geosam.io.style import qml_path

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["GPKG_VERSION", "write_geojson", "write_gpkg"]

log = logging.getLogger(__name__)

GPKG_VERSION = "1.2"
"""GeoPackage version written: 1.2 is read without warnings by the GDAL versions QGIS 3.x ships."""


def _require_crs(gdf: gpd.GeoDataFrame, path: Path) -> None:
    import geopandas as gpd

    if not isinstance(gdf, gpd.GeoDataFrame):
        raise TypeError(f"{path}: expected a GeoDataFrame, not {type(gdf).__name__}")
    if gdf.crs is None:
        raise ValueError(f"{path}: the GeoDataFrame has no CRS; set it (gdf.set_crs(...)) before writing")


def _targets(path: Path, qml: str | None) -> list[Path]:
    return [path, qml_path(path)] if qml is not None else [path]


def _write_qml(temps: tuple[Path, ...], qml: str | None) -> None:
    if qml is not None:
        temps[1].write_text(qml, encoding="utf-8")


def write_geojson(
    gdf: gpd.GeoDataFrame,
    path: str | os.PathLike[str],
    *,
    qml: str | None = None,
    precision: int | None = None,
    max_segment: float | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``gdf`` as RFC 7946 GeoJSON in EPSG:4326 (lon/lat), atomically, with an optional style.

    Args:
        gdf: Polygon features in any CRS (it must be set); reprojected to EPSG:4326. Features with
            nothing polygonal (empty, or outside the CRS's domain) are left out, with a warning.
        path: Output ``.geojson`` path; the ``FeatureCollection`` is named after its stem.
        qml: QGIS style XML written to ``<stem>.qml`` (see :mod:`geosam.io.style`).
        precision: Decimal places of coordinates (7 = about 1 cm at the equator); ``None`` uses the
            fewest, from 7, that move no polygon by more than 1 % of its area.
        max_segment: Densify longer edges (CRS units) before reprojecting, so they keep their course
            (:func:`geosam.geodesy.densify_length`); ``None`` keeps the vertices as they are.
        overwrite: Replace existing files (else :class:`~geosam.errors.OutputError`).

    Returns:
        ``path``.

    Raises:
        ValueError: ``gdf`` has no CRS.
        OutputError: The directory cannot take the files; nothing is left behind.
    """
    from geosam.io.rfc7946 import rfc7946_geometries, write_feature_collection

    target = Path(path)
    _require_crs(gdf, target)
    geoms, _ = rfc7946_geometries(gdf.geometry.values, gdf.crs, precision=precision, max_segment=max_segment)
    keep = [g is not None for g in geoms]
    if not all(keep):
        log.warning(
            "%s: %d feature(s) without a polygon in longitude/latitude were left out",
            target.name,
            len(keep) - sum(keep),
        )
    rows = gdf.drop(columns=gdf.geometry.name).to_dict(orient="records")
    with atomic_paths(_targets(target, qml), overwrite=overwrite) as temps:
        write_feature_collection(
            temps[0],
            target.stem,
            [r for r, k in zip(rows, keep, strict=True) if k],
            [g for g in geoms if g is not None],
        )
        _write_qml(temps, qml)
    return target


def write_gpkg(
    gdf: gpd.GeoDataFrame,
    path: str | os.PathLike[str],
    *,
    layer: str,
    qml: str | None = None,
    geometry_type: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``gdf`` to a single-layer GeoPackage in its own CRS, atomically, with an optional style.

    Polygons and lines are promoted to their multi types so a layer has one stable geometry type.

    Args:
        gdf: Features; the CRS must be set and is kept.
        path: Output ``.gpkg`` path (the whole file is replaced; other layers in it are not kept).
        layer: Layer (table) name, for example ``"regions"``.
        qml: QGIS style XML written to ``<stem>.qml``.
        geometry_type: Declared geometry type (``"MultiPolygon"``...); needed to give an *empty*
            layer a geometry type. ``None`` infers it from the geometries.
        overwrite: Replace an existing file (else :class:`~geosam.errors.OutputError`).

    Returns:
        ``path``.

    Raises:
        ValueError: ``gdf`` has no CRS or ``layer`` is empty.
        OutputError: The directory cannot take the files; nothing is left behind.
    """
    import pyogrio

    target = Path(path)
    _require_crs(gdf, target)
    if not layer or not layer.strip():
        raise ValueError(f"{target}: a GeoPackage layer needs a name")
    kwargs: dict[str, Any] = {"promote_to_multi": True}
    if geometry_type is not None:
        kwargs["geometry_type"] = geometry_type
    with atomic_paths(_targets(target, qml), overwrite=overwrite) as temps:
        pyogrio.write_dataframe(
            gdf,
            temps[0],
            layer=layer,
            driver="GPKG",
            dataset_options={"VERSION": GPKG_VERSION},
            layer_options={"SPATIAL_INDEX": "YES"},
            **kwargs,
        )
        _write_qml(temps, qml)
    return target
