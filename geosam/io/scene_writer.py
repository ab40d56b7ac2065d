"""Writing a scene's outputs: the provisional region raster, then one finishing pass over it.

First pass (during tile inference): :func:`provisional_raster` is a scratch GeoTIFF on the scene grid
that receives, for each tile's core, the provisional region ids of the stitcher (``int32``, nodata
``-1`` where the input is nodata or the tile was skipped; ``0`` = no region).

Finishing pass (:func:`write_maps`): window by window (tile cores) over the provisional raster, the
class map and confidence COGs are written (region class and probability where there is a region, the
tile's otherwise; nodata where the input is nodata) and region polygons are collected, so memory stays
bounded by one window. For a model with a dense head, the pixels' own probabilities (kept by the
first pass in a :class:`~geosam.dense_output.ProbabilityScratch`) decide each pixel's class, refined by
its region unless ``refine`` is off, and may be written as the probability COG. Then
:func:`write_regions`, :func:`write_tiles_layer` and :func:`write_project`
write the vector layers and the QGIS project. Every file is written atomically with its ``.qml`` style
(see :mod:`geosam.io.atomic`); file names come from :class:`~geosam.outputs.SceneOutputs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import OutputConfig
from geosam.io.tiles_layer import write_tiles_layer
from geosam.outputs import SceneOutputs
from geosam.types import ClassScheme, SceneInfo

if TYPE_CHECKING:
    import geopandas as gpd
    from rasterio.io import DatasetWriter
    from shapely.geometry.base import BaseGeometry

    from geosam.dense_output import ProbabilityScratch
    from geosam.domain_check import DomainReport
    from geosam.inference import TileResult
    from geosam.io.region_stream import RegionLayerStream
    from geosam.stitch import RegionTable, SceneStitcher
    from geosam.tiling import TilePlan

__all__ = [
    "PROVISIONAL_PROFILE",
    "provisional_raster",
    "scene_tags",
    "stitch_tile",
    "streamed_column_bytes",
    "write_maps",
    "write_project",
    "write_regions",
    "write_tiles_layer",
]

PROVISIONAL_PROFILE: dict[str, Any] = {
    "driver": "GTiff",
    "count": 1,
    "dtype": "int32",
    "nodata": -1,
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
    "BIGTIFF": "IF_SAFER",
}
"""GDAL creation profile of the provisional region-id raster (scene grid added per scene)."""


@contextmanager
def provisional_raster(path: Path, info: SceneInfo) -> Iterator[DatasetWriter]:
    """Open the provisional region-id raster for the scene grid (``int32``; every pixel starts at -1)."""
    import rasterio

    profile = {
        **PROVISIONAL_PROFILE,
        "width": info.width,
        "height": info.height,
        "crs": info.crs,
        "transform": rasterio.Affine(*info.transform),
    }
    with rasterio.open(path, "w", **profile) as ds:
        yield ds


def streamed_column_bytes(k: int, confidence_dtype: str, *, dense: bool, probabilities: bool) -> int:
    """Bytes per scene column in one block row of every raster a run streams (for the block cache).

    The provisional region ids (``int32``, :data:`PROVISIONAL_PROFILE` blocks), the class map
    (``uint8``) and confidence (``confidence_dtype``) scratch rasters of their COG writers, and with a
    dense head its probability scratch (``K x uint8``) and, when ``probabilities``, the probability
    COG's scratch (``K x uint8``). Feeds :func:`geosam.io.block_cache.streaming_cache_bytes`.

    Args:
        k: Number of classes ``K``.
        confidence_dtype: ``float32`` or ``uint8``.
        dense: The model has a dense head.
        probabilities: The probability COG is written.
    """
    from geosam.dense_output import SCRATCH_BLOCK as DENSE_BLOCK
    from geosam.io.cog import SCRATCH_BLOCK

    out = int(PROVISIONAL_PROFILE["blockysize"]) * np.dtype(PROVISIONAL_PROFILE["dtype"]).itemsize
    out += SCRATCH_BLOCK * (1 + np.dtype(confidence_dtype).itemsize)
    if dense:
        out += DENSE_BLOCK * k + (SCRATCH_BLOCK * k if probabilities else 0)
    return int(out)


def stitch_tile(stitcher: SceneStitcher, provisional: DatasetWriter, res: TileResult) -> int:
    """Add a tile's regions to the stitcher and its core's provisional ids to the provisional raster.

    Returns:
        The number of valid pixels in the tile's core.
    """
    spec = res.spec
    scene_labels = stitcher.add_tile(
        spec, res.labels, res.region_probs, res.predicted_iou, res.stability_score
    )
    rs, cs = spec.core_slices
    core_valid = res.valid[rs, cs]
    provisional.write(
        np.where(core_valid, scene_labels[rs, cs], -1).astype(np.int32), 1, window=spec.core.to_rasterio()
    )
    return int(core_valid.sum())


def scene_tags(scene: str, model_name: str, region_source: str) -> dict[str, str]:
    """GDAL dataset tags written into the class map and confidence COGs."""
    return {
        "GEOSAM_SCENE": Path(scene).name,
        "GEOSAM_MODEL": model_name,
        "GEOSAM_REGION_SOURCE": region_source,
    }


def write_maps(
    provisional: Path,
    tiles: TilePlan,
    table: RegionTable,
    tile_probs: Mapping[int, np.ndarray],
    outputs: SceneOutputs,
    scheme: ClassScheme,
    cfg: OutputConfig,
    tags: Mapping[str, str],
    *,
    progress: bool = False,
    regions: RegionLayerStream | None = None,
    complete_after: np.ndarray | None = None,
    dense: ProbabilityScratch | None = None,
    refine: bool = True,
    probabilities: bool = False,
) -> dict[int, BaseGeometry] | None:
    """The finishing pass: class map and confidence COGs, and the regions' polygons.

    With ``regions`` and ``complete_after`` the polygons are streamed: after each tile core, the
    regions that no later core can reach are dissolved and handed to ``regions``
    (:class:`~geosam.io.region_stream.RegionLayerStream`), so memory holds only the open ones.

    Args:
        provisional: The provisional region-id raster of the first pass.
        tiles: The scene's tile plan (processed and skipped tiles).
        table: Final regions (``lookup`` maps provisional ids to final ids).
        tile_probs: Tile index -> ``(K,)`` tile class probabilities (processed tiles).
        outputs: Where to write.
        scheme: Class names and colours.
        cfg: Output settings (compression, confidence dtype, overwrite, regions).
        tags: Dataset tags for both COGs.
        progress: Report progress over the tiles' cores (:func:`geosam.progress.progress_iter`).
        regions: Where completed regions go (streamed region layers), or ``None`` to return them all.
        complete_after: ``(M + 1,)`` position in ``tiles.tiles`` after which each final region is
            complete (:func:`~geosam.io.region_stream.completion_positions`); needed with ``regions``.
        dense: A dense model's pixel probabilities (``None``: region and tile classes only).
        refine: Dense models: a pixel in a region takes the region's class
            (:func:`geosam.dense.pixel_classes`).
        probabilities: Dense models: also write the probability COG (``outputs.path("probabilities")``).

    Returns:
        Final region id -> dissolved (Multi)Polygon in scene coordinates; ``None`` when
        ``cfg.regions`` is off or the polygons were streamed to ``regions``.
    """
    import rasterio
    from affine import Affine

    from geosam.dense_output import PROBABILITY_NODATA
    from geosam.io.cog import class_map_writer, confidence_writer, encode_confidence
    from geosam.progress import progress_iter
    from geosam.vectorize import PolygonCollector, window_polygons

    info = tiles.scene
    region_class = table.class_id.astype(np.uint8)
    region_conf = table.probs.max(axis=1) if table.count else np.zeros(0, np.float32)
    polys = PolygonCollector()
    common: dict[str, Any] = {
        "width": info.width,
        "height": info.height,
        "transform": info.transform,
        "crs": info.crs,
        "compress": cfg.compress,
        "overwrite": cfg.overwrite,
    }
    scene_transform = Affine(*info.transform)
    with (
        class_map_writer(outputs.classes, scheme=scheme, tags=dict(tags), **common) as cls_w,
        confidence_writer(
            outputs.confidence, dtype=cfg.confidence_dtype, tags=dict(tags), **common
        ) as conf_w,
        rasterio.open(provisional) as prov,
        ExitStack() as stack,
    ):
        prob_w = None
        if dense is not None and probabilities:
            from geosam.dense_output import probability_writer

            prob_w = stack.enter_context(
                probability_writer(outputs.path("probabilities"), info, scheme, tags=dict(tags), **common)
            )
        items = progress_iter(tiles.tiles, f"{tiles.scene_id}: writing", enabled=progress, unit="tiles")
        for pos, spec in enumerate(items):
            win = spec.core
            p = prov.read(1, window=win.to_rasterio())
            invalid = p < 0
            final = np.where(p > 0, table.lookup[np.clip(p, 0, None)], 0)
            tp = tile_probs[spec.index]
            cls = np.full(p.shape, int(np.argmax(tp)), np.uint8)
            conf = np.full(p.shape, float(np.max(tp)), np.float32)
            has = final > 0
            cls[has] = region_class[final[has] - 1]
            conf[has] = region_conf[final[has] - 1]
            if dense is not None:  # per-pixel classes, refined by the regions (geosam.dense_output)
                from geosam.dense_output import finish_window

                cls, conf = finish_window(
                    dense,
                    win,
                    final,
                    region_class,
                    region_conf,
                    invalid,
                    refine=refine,
                    nodata=scheme.nodata,
                    prob_writer=prob_w,
                )
            cls[invalid] = scheme.nodata
            cls_w.write(win, cls)
            conf_w.write(win, encode_confidence(conf, cfg.confidence_dtype, mask=invalid))
            if cfg.regions and has.any():
                wt = scene_transform @ Affine.translation(win.col_off, win.row_off)
                polys.add(window_polygons(final.astype(np.int32), wt))
            if cfg.regions and regions is not None and complete_after is not None:
                done = np.flatnonzero(complete_after == pos)
                if len(done):
                    regions.add(polys.pop_dissolved(done.tolist()))
        for spec in tiles.skipped:
            win = spec.core
            cls_w.write(win, np.full((win.height, win.width), scheme.nodata, np.uint8))
            conf_w.write(
                win, encode_confidence(np.full((win.height, win.width), np.nan), cfg.confidence_dtype)
            )
            if prob_w is not None:
                prob_w.write(win, np.full((len(scheme), win.height, win.width), PROBABILITY_NODATA, np.uint8))
    if not cfg.regions:
        return None
    if regions is not None:
        regions.add(polys.dissolve())  # regions without a completion position (none expected)
        return None
    return polys.dissolve()


def write_regions(
    regions: gpd.GeoDataFrame, outputs: SceneOutputs, scheme: ClassScheme, cfg: OutputConfig
) -> None:
    """The region layers: GeoPackage in the scene CRS and GeoJSON in EPSG:4326, styled by class."""
    from geosam.io.style import categorized_fill_qml
    from geosam.io.vector import write_geojson, write_gpkg

    qml = categorized_fill_qml(scheme)
    write_gpkg(
        regions,
        outputs.path("regions_gpkg"),
        layer="regions",
        qml=qml,
        geometry_type="MultiPolygon",
        overwrite=cfg.overwrite,
    )
    write_geojson(regions, outputs.path("regions_geojson"), qml=qml, overwrite=cfg.overwrite)


def write_project(
    outputs: SceneOutputs, crs: str, cfg: OutputConfig, *, domain: DomainReport | None = None
) -> None:
    """The QGIS project opening every written layer styled (tiles and confidence hidden at first).

    With a ``domain`` report, the project's abstract says whether the scene is like the model's training
    data, and an out-of-domain scene's project title carries a warning. Nothing when
    ``cfg.qgis_project`` is off.
    """
    if not cfg.qgis_project:
        return
    from geosam.io.qgis_project import QgisLayer, write_qgis_project
    from geosam.io.style import qml_path

    layers = []
    tiles_gpkg, regions_gpkg = outputs.path("tiles_gpkg"), outputs.path("regions_gpkg")
    if cfg.tiles and tiles_gpkg.exists():
        layers.append(
            QgisLayer(
                tiles_gpkg.name,
                "tiles",
                "vector",
                layer_name="tiles",
                style=qml_path(tiles_gpkg).name,
                visible=False,
            )
        )
    if cfg.regions and regions_gpkg.exists():
        layers.append(
            QgisLayer(
                regions_gpkg.name,
                "regions",
                "vector",
                layer_name="regions",
                style=qml_path(regions_gpkg).name,
            )
        )
    probabilities = outputs.path("probabilities")
    if probabilities.exists():
        layers.append(
            QgisLayer(
                probabilities.name,
                "class probabilities",
                "raster",
                style=qml_path(probabilities).name,
                visible=False,
            )
        )
    layers.append(
        QgisLayer(
            outputs.confidence.name,
            "confidence",
            "raster",
            style=qml_path(outputs.confidence).name,
            visible=False,
        )
    )
    layers.append(QgisLayer(outputs.classes.name, "classes", "raster", style=qml_path(outputs.classes).name))
    project = outputs.path("qgis_project")
    title = project.stem
    if domain is not None and domain.out_of_domain:
        title += " - WARNING: unlike the model's training data"
    elif domain is not None and domain.partly_out_of_domain:
        title += " - WARNING: partly unlike the model's training data"
    abstract = domain.note() if domain is not None else None
    write_qgis_project(project, layers, crs=crs, title=title, abstract=abstract, overwrite=cfg.overwrite)
