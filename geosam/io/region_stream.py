"""Region layers written while the finishing pass runs: completed regions leave memory at once.

The finishing pass (:func:`geosam.io.scene_writer.write_maps`) walks the tile cores in plan order and
vectorizes each core's regions. A region is *complete* once the pass has left the last tile whose core
holds part of it (:func:`completion_positions`): no later window can add a piece. Completed regions are
dissolved, turned into attribute rows (:func:`geosam.region_table.region_frame`) and handed to
:class:`RegionLayerStream`, which appends them to the GeoPackage (scene CRS) and the GeoJSON
(EPSG:4326, RFC 7946) in batches. Memory then holds the polygons of the regions still open (those that
reach the current row of tiles), not of the scene: peak memory no longer grows with the number of
regions (``benchmarks/bench_memory.py``).

Both files are built in the run's scratch folder and renamed into place, with their QGIS style, only
when :meth:`RegionLayerStream.close` succeeds (:func:`geosam.io.atomic.atomic_paths`): a failed run
leaves neither. The GeoPackage is appended to with GDAL (``pyogrio``, one layer, spatial index). The
GeoJSON is written batch by batch by :func:`geosam.io.vector.write_geojson` (reprojection and the
RFC 7946 rules in one place) to a scratch file, whose features are then streamed into one
``FeatureCollection``; GDAL's GeoJSON driver cannot append, hence the splice.

Features appear in the order regions were completed (row by row of tiles), not sorted by ``region_id``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import OutputConfig
from geosam.outputs import SceneOutputs
from geosam.types import ClassScheme

if TYPE_CHECKING:
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

    from geosam.stitch import RegionTable
    from geosam.tiling import TilePlan

__all__ = ["BATCH_REGIONS", "RegionLayerStream", "completion_positions"]

BATCH_REGIONS = 512
"""Completed regions gathered before they are written (fewer, larger GDAL writes)."""


def completion_positions(
    lookup: np.ndarray, piece_tiles: np.ndarray, tile_order: Sequence[int], count: int
) -> np.ndarray:
    """For each final region, the position in ``tile_order`` after which it is complete.

    Args:
        lookup: ``(P + 1,)`` provisional id -> final id (0 = none), :attr:`RegionTable.lookup`.
        piece_tiles: ``(P + 1,)`` provisional id -> tile index (:meth:`SceneStitcher.piece_tiles`).
        tile_order: Tile indices in the order the finishing pass visits their cores.
        count: Number of final regions ``M``.

    Returns:
        ``(M + 1,)`` int64; entry ``f`` is the largest position of a tile holding a piece of region
        ``f`` (-1 for ids without pieces; entry 0 unused).
    """
    position = np.full(int(max(tile_order, default=-1)) + 2, -1, np.int64)
    position[np.asarray(tile_order, np.int64)] = np.arange(len(tile_order))
    last = np.full(count + 1, -1, np.int64)
    has = lookup > 0
    tiles = np.asarray(piece_tiles)[has]
    known = (tiles >= 0) & (tiles < len(position) - 1)
    np.maximum.at(last, lookup[has][known], position[tiles[known]])
    return last


class RegionLayerStream:
    """Appends completed regions to the scene's region GeoPackage and GeoJSON (see the module docstring).

    Use as a context manager; :meth:`add` takes dissolved polygons of completed regions, :meth:`close`
    (called on a clean exit) renames both files into place. On an exception nothing is renamed and
    the scratch files are removed with the scratch folder.

    Args:
        outputs: The scene's output names.
        scratch: The run's scratch folder (same file system as the outputs).
        table: The final regions (attributes by id).
        tiles: The tile plan (CRS, pixel size, tile ids).
        scheme: Class names and colours (the style).
        region_source: ``sam``, ``felzenszwalb``...
        cfg: Output settings (``overwrite``).
        batch: Regions per write (:data:`BATCH_REGIONS`).
    """

    def __init__(
        self,
        outputs: SceneOutputs,
        scratch: Path,
        table: RegionTable,
        tiles: TilePlan,
        scheme: ClassScheme,
        region_source: str,
        cfg: OutputConfig,
        *,
        batch: int = BATCH_REGIONS,
    ) -> None:
        self.outputs = outputs
        self.table = table
        self.tiles = tiles
        self.scheme = scheme
        self.region_source = region_source
        self.cfg = cfg
        self.batch = max(1, batch)
        self._gpkg = scratch / "regions_stream.gpkg"
        self._features = scratch / "regions_stream.features"
        self._chunk = scratch / "regions_chunk.geojson"
        self._header: dict[str, Any] | None = None
        self._pending: dict[int, BaseGeometry] = {}
        self.count = 0

    def __enter__(self) -> RegionLayerStream:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()

    def add(self, polygons: dict[int, BaseGeometry]) -> None:
        """Queue dissolved polygons (final id -> geometry in the scene CRS) of completed regions."""
        self._pending.update(polygons)
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Write the queued regions to both scratch layers."""
        if not self._pending:
            return
        from geosam.region_table import region_frame

        frame = region_frame(self._pending, self.table, self.tiles, self.scheme, self.region_source)
        self._pending = {}
        self._append_gpkg(frame)
        self._append_geojson(frame)
        self.count += len(frame)

    def _append_gpkg(self, frame: gpd.GeoDataFrame) -> None:
        import pyogrio

        from geosam.io.atomic import output_error
        from geosam.io.vector import GPKG_VERSION

        first = not self._gpkg.exists()
        try:
            pyogrio.write_dataframe(
                frame,
                self._gpkg,
                layer="regions",
                driver="GPKG",
                append=not first,
                promote_to_multi=True,
                geometry_type="MultiPolygon",
                dataset_options={"VERSION": GPKG_VERSION} if first else None,
                layer_options={"SPATIAL_INDEX": "YES"} if first else None,
            )
        except Exception as exc:  # a full disk: one line naming the layer, as write_gpkg does
            target = self.outputs.path("regions_gpkg")
            err = output_error(exc, self._gpkg.parent, target.name)
            if err is None:
                raise
            raise err from exc

    def _append_geojson(self, frame: gpd.GeoDataFrame) -> None:
        from geosam.io.vector import write_geojson

        write_geojson(frame, self._chunk, overwrite=True)
        with self._chunk.open(encoding="utf-8") as f:
            chunk = json.load(f)
        self._chunk.unlink()
        features = chunk.pop("features", [])
        if self._header is None:
            self._header = chunk
        with self._features.open("a", encoding="utf-8") as out:
            for feat in features:
                out.write(json.dumps(feat, ensure_ascii=False, separators=(", ", ": ")))
                out.write("\n")

    def close(self) -> None:
        """Write what is queued and rename both layers (with their style) into place."""
        from geosam.io.atomic import atomic_paths
        from geosam.io.style import categorized_fill_qml, qml_path

        self.flush()
        if self.count == 0:
            self._write_empty()
            return
        qml = categorized_fill_qml(self.scheme)
        gpkg = self.outputs.path("regions_gpkg")
        geojson = self.outputs.path("regions_geojson")
        header = dict(self._header or {"type": "FeatureCollection"})
        header["name"] = geojson.stem
        # one style file serves both layers (<stem>_regions.qml)
        with atomic_paths([gpkg, geojson, qml_path(gpkg)], overwrite=self.cfg.overwrite) as temps:
            os.replace(self._gpkg, temps[0])
            _write_feature_collection(temps[1], header, self._features)
            temps[2].write_text(qml, encoding="utf-8")

    def _write_empty(self) -> None:
        """No region at all: empty layers with the usual columns (``write_regions``)."""
        from geosam.io.scene_writer import write_regions
        from geosam.region_table import region_frame

        empty = region_frame({}, self.table, self.tiles, self.scheme, self.region_source)
        write_regions(empty, self.outputs, self.scheme, self.cfg)


def _write_feature_collection(path: Path, header: dict[str, Any], features: Path) -> None:
    """A GeoJSON ``FeatureCollection`` from ``header``'s members and one feature per line of ``features``."""
    with path.open("w", encoding="utf-8") as out:
        out.write("{\n")
        for key, value in header.items():
            out.write(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},\n")
        out.write('"features": [\n')
        first = True
        with features.open(encoding="utf-8") as lines:
            for line in lines:
                line = line.rstrip("\n")
                if not line:
                    continue
                if not first:
                    out.write(",\n")
                out.write(line)
                first = False
        out.write("\n]\n}\n")
