"""Label polygons for training: reading them, and candidate chip centres inside them (pixel space).

:func:`read_polygons` reads a label file (anything GDAL/OGR reads) with its class column and CRS
checked; :func:`class_values` turns the class column into names; :func:`polygon_candidates` puts a
seeded lattice of candidate chip centres inside each polygon (rules in :mod:`geosam.train.scene_chips`)
and :func:`ambiguous_candidates` flags those also inside a polygon of another class. Used by
:func:`geosam.train.scene_chips.polygon_chips` and :func:`geosam.train.reference.read_label_polygons`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.errors import DataError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["ambiguous_candidates", "class_values", "polygon_candidates", "read_polygons"]


def read_polygons(path: Path, layer: str | None, class_column: str) -> gpd.GeoDataFrame:
    """Read a label file's ``layer`` (default the first) with its CRS (not reprojected).

    Raises:
        DataError: Missing or unreadable file, no ``class_column`` (the message lists the columns), no CRS.
    """
    import geopandas as gpd
    from pyogrio.errors import DataLayerError, DataSourceError

    if not path.exists():
        raise DataError("label file not found", path)
    try:
        gdf = gpd.read_file(path, layer=layer)
    except (DataSourceError, DataLayerError, ValueError, OSError) as err:
        raise DataError(f"cannot read label polygons ({str(err).splitlines()[0]})", path) from None
    if class_column not in gdf.columns:
        cols = [str(c) for c in gdf.columns if c != gdf.geometry.name]
        raise DataError(
            f"no class column {class_column!r}; available columns: {', '.join(cols) or '(none)'}", path
        )
    if gdf.crs is None:
        raise DataError(
            "the label file has no CRS, so it cannot be matched to the scene; assign the CRS it was "
            "drawn in (e.g. ogr2ogr -a_srs EPSG:<code> fixed.gpkg labels.shp)",
            path,
        )
    return gdf


def class_values(values: Sequence[Any]) -> list[str | None]:
    """Class column values as names; whole floats print as integers (``2.0`` -> ``2``), blanks are None."""
    out: list[str | None] = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v).strip() or None)
    return out


def polygon_candidates(
    geoms_px: np.ndarray, width: int, height: int, step: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Lattice candidates of each polygon (pixel space): rows, cols, polygon position, fallbacks used."""
    import shapely

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    fallbacks = 0
    for k, g in enumerate(geoms_px):
        x0, y0, x1, y1 = g.bounds
        c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        c1, r1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
        if c1 <= c0 or r1 <= r0:
            continue  # outside the scene
        off_r, off_c = (int(v) for v in rng.integers(0, step, size=2))
        mr, mc = np.meshgrid(np.arange(r0 + off_r, r1, step), np.arange(c0 + off_c, c1, step), indexing="ij")
        gr, gc = mr.ravel(), mc.ravel()
        inside = shapely.contains_xy(g, gc + 0.5, gr + 0.5)
        gr, gc = gr[inside], gc[inside]
        if len(gr) == 0:  # the lattice misses this (small) polygon
            p = g.representative_point()
            r, c = math.floor(p.y), math.floor(p.x)
            if not (0 <= r < height and 0 <= c < width):
                continue  # its part inside the scene holds no representative point
            gr, gc = np.array([r]), np.array([c])
            fallbacks += 1
        rows.append(gr)
        cols.append(gc)
        owner.append(np.full(len(gr), k))
    if not rows:
        empty = np.empty(0, np.int64)
        return empty, empty, empty, fallbacks
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(owner), fallbacks


def ambiguous_candidates(
    geoms_px: np.ndarray, poly_cls: np.ndarray, rows: np.ndarray, cols: np.ndarray, owner: np.ndarray
) -> np.ndarray:
    """Flag the candidates whose centre pixel's centre lies inside a polygon of another class."""
    import shapely

    tree = shapely.STRtree(geoms_px)
    pi, gi = tree.query(shapely.points(cols + 0.5, rows + 0.5), predicate="intersects")
    bad = np.zeros(len(rows), bool)
    bad[pi[poly_cls[gi] != poly_cls[owner[pi]]]] = True
    return bad
