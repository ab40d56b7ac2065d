"""The tiles layer of a scene (GeoPackage): each tile core with its class, probabilities and domain scores.

Written in the describe phase of :func:`geosam.predict.predict_scene`, after the class map and regions
(:mod:`geosam.io.scene_writer` re-exports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import OutputConfig
from geosam.outputs import SceneOutputs
from geosam.types import ClassScheme

if TYPE_CHECKING:
    from geosam.tiling import TilePlan

__all__ = ["write_tiles_layer"]


def _field(name: str) -> str:
    s = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
    return s or "class"


def write_tiles_layer(
    tiles: TilePlan,
    tile_probs: Mapping[int, np.ndarray],
    tile_valid_px: Mapping[int, int],
    outputs: SceneOutputs,
    scheme: ClassScheme,
    cfg: OutputConfig,
    domain_ratio: Mapping[int, float | None] | None = None,
    domain_share: Mapping[int, float | None] | None = None,
) -> None:
    """The tiles layer (GeoPackage): each processed tile's core with its class and probabilities.

    Columns: ``tile_id``, ``tile_index``, ``row``, ``col``, ``class_id``, ``class_name``,
    ``probability``, ``valid_px``, ``padded``, ``p_<class>`` per class and, when given,
    ``domain_ratio``: the tile's median chip domain score over the model's threshold (> 1: most of the
    tile is unlike the training data, :mod:`geosam.domain`) and ``domain_share_out``: the share of the
    tile's chips above the threshold (about 0.05 for imagery like the training data; it shows where a
    partly unlike scene departs even when a tile's median does not). Nothing when ``cfg.tiles`` is off.
    """
    if not cfg.tiles:
        return
    import geopandas as gpd
    from affine import Affine
    from shapely.geometry import Polygon

    from geosam.io.style import outline_labels_qml
    from geosam.io.vector import write_gpkg

    t = Affine(*tiles.scene.transform)
    rows, geoms = [], []
    for spec in tiles.tiles:
        c = spec.core
        corners = [
            t @ (c.col_off, c.row_off),
            t @ (c.col_end, c.row_off),
            t @ (c.col_end, c.row_end),
            t @ (c.col_off, c.row_end),
        ]
        geoms.append(Polygon(corners))
        p = tile_probs[spec.index]
        best = int(np.argmax(p))
        row: dict[str, Any] = {
            "tile_id": spec.tile_id,
            "tile_index": spec.index,
            "row": spec.row,
            "col": spec.col,
            "class_id": best,
            "class_name": scheme.names[best],
            "probability": round(float(p[best]), 4),
            "valid_px": tile_valid_px[spec.index],
            "padded": spec.padded,
        }
        for i, name in enumerate(scheme.names):
            row[f"p_{_field(name)}"] = round(float(p[i]), 4)
        if domain_ratio is not None:
            ratio = domain_ratio.get(spec.index)
            row["domain_ratio"] = None if ratio is None else round(ratio, 3)
        if domain_share is not None:
            share = domain_share.get(spec.index)
            row["domain_share_out"] = None if share is None else round(share, 3)
        rows.append(row)
    gdf = gpd.GeoDataFrame(rows, geometry=geoms, crs=tiles.scene.crs)
    write_gpkg(
        gdf,
        outputs.path("tiles_gpkg"),
        layer="tiles",
        qml=outline_labels_qml(label_field="class_name"),
        geometry_type="MultiPolygon",
        overwrite=cfg.overwrite,
    )
