"""Vectorize region labels into polygons (rasterio.features.shapes + shapely 2), window by window.

Polygons follow pixel edges in the scene CRS. Each window (a tile core) is vectorized separately and
the pieces of one region are dissolved with ``shapely.union_all`` afterwards: pieces of a region share
exact pixel edges at window boundaries, so the union is one seamless polygon (or a multipolygon when
the region really is in several parts). Memory holds the polygons, never the label raster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["PolygonCollector", "window_polygons"]


def window_polygons(ids: np.ndarray, transform: Any) -> list[tuple[int, Any]]:
    """Polygons of the non-zero ids of an int32 ``(h, w)`` label window.

    Args:
        ids: Region ids (0 = no region).
        transform: Affine transform of the window's top-left pixel (scene CRS).

    Returns:
        ``(id, shapely Polygon)`` pairs, one per 4-connected patch.
    """
    from rasterio.features import shapes
    from shapely.geometry import shape

    if not (ids > 0).any():
        return []
    ids32 = np.ascontiguousarray(ids, dtype=np.int32)
    return [
        (int(value), shape(geom))
        for geom, value in shapes(ids32, mask=ids32 > 0, transform=transform, connectivity=4)
    ]


class PolygonCollector:
    """Accumulates polygon pieces per region id and dissolves them at the end."""

    def __init__(self) -> None:
        self._pieces: dict[int, list[Any]] = defaultdict(list)

    def add(self, pairs: Iterable[tuple[int, Any]]) -> None:
        """Add ``(id, polygon)`` pieces."""
        for rid, poly in pairs:
            self._pieces[rid].append(poly)

    def __len__(self) -> int:
        return len(self._pieces)

    def dissolve(self) -> dict[int, Any]:
        """One (multi)polygon per id, with pieces unioned and made valid."""
        return {rid: _dissolve(polys) for rid, polys in self._pieces.items()}

    def pop_dissolved(self, ids: Iterable[int]) -> dict[int, Any]:
        """Dissolve the pieces of ``ids`` (those collected) and forget them (streamed region layers)."""
        out: dict[int, Any] = {}
        for rid in ids:
            polys = self._pieces.pop(int(rid), None)
            if polys:
                out[int(rid)] = _dissolve(polys)
        return out


def _dissolve(polys: list[Any]) -> Any:
    import shapely

    geom = polys[0] if len(polys) == 1 else shapely.union_all(polys)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom
