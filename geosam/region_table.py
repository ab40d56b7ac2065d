"""The region attribute table: one row per stitched region, with its polygon, classes and scores.

Columns (stable names, documented in ``docs/outputs.md``): ``region_id``, ``class_id``, ``class_name``,
``probability`` (of the chosen class), ``class_2``/``probability_2`` and ``class_3``/``probability_3``
(the runners-up, ``None`` when there are fewer classes), ``top3`` (``"name:p, ..."``), ``area_px``,
``predicted_iou`` and ``stability_score`` (SAM's, area-weighted over the region's pieces; ``None`` for
other sources), ``tile_id`` (the owning tile), ``pieces`` (tile pieces merged across seams),
``region_source``, ``scene_id`` and ``area_m2``.

``area_m2``: the region's true ground area in m², on the ellipsoid of the scene CRS's datum, in every CRS
(:func:`geosam.geodesy.geodesic_areas_m2`: Karney's geodesic polygon area, or the planar area times the
local areal scale factor for regions under 100 m), 7 significant digits (centimetre pixels keep theirs).
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

__all__ = ["areas_m2", "region_frame"]


def areas_m2(geoms: Any, info: SceneInfo) -> list[float]:
    """True ground area of each geometry in m², 7 significant digits (see :mod:`geosam.geodesy`).

    Edges are densified to the pixel, so a region's area is that of its pixels in the scene CRS.
    """
    from geosam.geodesy import densify_length, geodesic_areas_m2, round_significant

    seg = densify_length(info.crs, info.transform, info.width, info.height, pixel=True)
    return [round_significant(float(a), 7) for a in geodesic_areas_m2(geoms, info.crs, max_segment=seg)]


def _top3(probs: np.ndarray, scheme: ClassScheme) -> list[str]:
    order = np.argsort(-probs)[:3]
    return [f"{scheme.names[i]}:{probs[i]:.3f}" for i in order]


def _score(v: float) -> float:
    """A number rounded to 4 decimals, NaN where there is none.

    NaN, not ``None``: the column stays numeric (a Real field in the GeoPackage, null in GeoJSON) also
    when every region lacks it (superpixels have no SAM scores).
    """
    return round(float(v), 4) if np.isfinite(v) else float("nan")


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
                "probability_2": _score(probs[order[1]]) if _ranked(order, 1) else float("nan"),
                "class_3": scheme.names[int(order[2])] if _ranked(order, 2) else None,
                "probability_3": _score(probs[order[2]]) if _ranked(order, 2) else float("nan"),
                "top3": ", ".join(_top3(probs, scheme)),
                "area_px": int(table.area_px[i]),
                "predicted_iou": _score(table.predicted_iou[i]),
                "stability_score": _score(table.stability_score[i]),
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
    gdf["area_m2"] = areas_m2(gdf.geometry.values, info) if len(gdf) else []
    return gdf
