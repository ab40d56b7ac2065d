"""The region attribute table: one row per stitched region, with its polygon, classes and scores.

Columns (stable names, documented in ``docs/outputs.md``): ``region_id``, ``class_id``, ``class_name``,
``probability`` (of the chosen class), ``class_2``/``probability_2`` and ``class_3``/``probability_3``
(the runners-up, ``None`` when there are fewer classes), ``top3`` (``"name:p, ..."``), ``area_px``,
``predicted_iou`` and ``stability_score`` (SAM's, area-weighted over the region's pieces; ``None`` for
other sources), ``tile_id`` (the owning tile), ``pieces`` (tile pieces merged across seams),
``region_source``, ``scene_id`` and ``area_m2``.

``area_m2``: for projected CRSs, ``area_px`` times the pixel area in square metres (CRS units converted);
for geographic CRSs, the geodesic area on the WGS 84 ellipsoid (``pyproj.Geod.geometry_area_perimeter``).
Rounded to 0.1 m².
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.types import ClassScheme, SceneInfo

if TYPE_CHECKING:
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

    from geosam.stitch import RegionTable
    from geosam.tiling import TilePlan

__all__ = ["pixel_area_m2", "region_frame"]


def pixel_area_m2(info: SceneInfo) -> float | None:
    """Area of one pixel in m² for projected CRSs in metres or other linear units (``None`` otherwise)."""
    from rasterio.crs import CRS

    crs = CRS.from_user_input(info.crs)
    if not crs.is_projected:
        return None
    a, b, _, d, e, _ = info.transform
    factor = float(crs.linear_units_factor[1]) if crs.linear_units_factor else 1.0
    return float(abs(a * e - b * d)) * factor * factor


def _geodesic_areas(gdf: gpd.GeoDataFrame) -> np.ndarray:
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    wgs = gdf.to_crs(4326)
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in wgs.geometry])


def _top3(probs: np.ndarray, scheme: ClassScheme) -> list[str]:
    order = np.argsort(-probs)[:3]
    return [f"{scheme.names[i]}:{probs[i]:.3f}" for i in order]


def _nan_none(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


def _ranked(order: np.ndarray, i: int) -> bool:
    """Whether there is an ``i``-th ranked class."""
    return len(order) > i


def region_frame(
    polygons: Mapping[int, BaseGeometry],
    table: RegionTable,
    tiles: TilePlan,
    scheme: ClassScheme,
    region_source: str,
) -> gpd.GeoDataFrame:
    """The regions as a GeoDataFrame in the scene CRS, ordered by ``region_id``.

    Args:
        polygons: Final region id -> its dissolved (Multi)Polygon in scene coordinates.
        table: The stitched regions (:meth:`geosam.stitch.SceneStitcher.finish`).
        tiles: The scene's tile plan (its ``scene`` header gives CRS and pixel size).
        scheme: Class names.
        region_source: ``sam``, ``felzenszwalb`` or ``tiles``.
    """
    import geopandas as gpd

    info = tiles.scene
    tiles_by_index = {s.index: s for s in tiles.tiles}
    ids = sorted(polygons)
    rows: list[dict[str, Any]] = []
    for rid in ids:
        i = rid - 1
        probs = table.probs[i]
        order = np.argsort(-probs)
        rows.append(
            {
                "region_id": rid,
                "class_id": int(order[0]),
                "class_name": scheme.names[int(order[0])],
                "probability": round(float(probs[order[0]]), 4),
                "class_2": scheme.names[int(order[1])] if _ranked(order, 1) else None,
                "probability_2": round(float(probs[order[1]]), 4) if _ranked(order, 1) else None,
                "class_3": scheme.names[int(order[2])] if _ranked(order, 2) else None,
                "probability_3": round(float(probs[order[2]]), 4) if _ranked(order, 2) else None,
                "top3": ", ".join(_top3(probs, scheme)),
                "area_px": int(table.area_px[i]),
                "predicted_iou": _nan_none(table.predicted_iou[i]),
                "stability_score": _nan_none(table.stability_score[i]),
                "tile_id": tiles_by_index[int(table.tile_index[i])].tile_id,
                "pieces": int(table.pieces[i]),
                "region_source": region_source,
                "scene_id": tiles.scene_id,
            }
        )
    gdf = gpd.GeoDataFrame(rows, geometry=[polygons[r] for r in ids], crs=info.crs)
    if len(gdf) == 0:
        gdf = gpd.GeoDataFrame(
            {c: [] for c in ("region_id", "class_id", "class_name", "probability")}, geometry=[], crs=info.crs
        )
    pix_area = pixel_area_m2(info)
    if pix_area is not None:
        gdf["area_m2"] = (gdf["area_px"] * pix_area).round(1) if len(gdf) else []
    else:
        gdf["area_m2"] = np.round(_geodesic_areas(gdf), 1) if len(gdf) else []
    return gdf
