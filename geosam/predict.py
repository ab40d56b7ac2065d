"""Classify a scene: the one place where the pipeline stages meet, composed as a recipe.

:func:`predict_scene` runs six phases, like segment-anything's ``SamAutomaticMaskGenerator.generate``:

1. **plan** (:func:`plan_scene`): read the scene's header, choose bands, resolve the model's own
   preprocessing (:mod:`geosam.scene_preprocessing`: radiometry, stretch, nodata fill), match the
   model's ground resolution on the scene's chip grid (:func:`geosam.encode.plan_encoder`), cut tiles;
2. **open** the scene's transaction (:class:`~geosam.io.transaction.SceneTransaction`): outputs are
   staged in a hidden folder beside their final place (:class:`~geosam.outputs.SceneOutputs`);
3. **infer** tile by tile (streamed, never the whole scene in memory): read -> preprocess -> encode once ->
   regions -> classify tile and regions (:mod:`geosam.inference`), then stitch: provisional region ids
   go into a scratch raster over each tile's core, seams matched in the overlap (:mod:`geosam.stitch`);
   the chips' domain scores tell whether the scene is like the training data (:mod:`geosam.domain_check`);
   a model with a dense head also keeps its pixel probabilities in a scratch raster
   (:mod:`geosam.dense_output`);
4. **finish**: regions merged across seams; one pass over the scratch raster writes the class map and
   confidence COGs and collects the region polygons (:mod:`geosam.io.scene_writer`); the region
   attribute table (:mod:`geosam.region_table`) is written as GeoPackage and GeoJSON;
5. **describe**: the tiles layer and the QGIS project;
6. **record**: the run record (:mod:`geosam.record`, with the sha256 of every file) and, when asked,
   the STAC item are staged; the commit then swaps the whole set in, the run record last.

The files are listed in :mod:`geosam.outputs`. A run that fails, is interrupted (SIGINT, SIGTERM) or is
killed leaves the scene's earlier complete set or the new complete set, never a mix (what holds under
``kill -9`` is spelled out in :mod:`geosam.io.transaction`).

Why this module is long: it is the one recipe where the phases meet (plan, infer, finish, record, and
``process_tile`` for a single tile); each phase is a short function over modules that hold the work, and
splitting the recipe would scatter the order of the phases over several files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import RunConfig
from geosam.dense import classes_from
from geosam.dense_output import probability_scratch
from geosam.errors import EmptyRasterError
from geosam.inference import TileResult, tile_inference
from geosam.outputs import SceneOutputs, output_paths, output_stem
from geosam.record import RunRecord, build_run_record
from geosam.timing import StageTimer
from geosam.types import ClassScheme

if TYPE_CHECKING:
    from rasterio.io import DatasetWriter

    from geosam.dense_output import ProbabilityScratch
    from geosam.domain_check import DomainReport
    from geosam.encode import EncoderPlan
    from geosam.runtime import Models
    from geosam.scene_preprocessing import ScenePreprocessing
    from geosam.stitch import SceneStitcher
    from geosam.stretch import Stretch
    from geosam.tiling import TilePlan
    from geosam.types import SceneInfo, TileSpec

__all__ = [
    "ScenePlan",
    "SceneResult",
    "TileResult",
    "output_paths",
    "output_stem",
    "plan_scene",
    "predict_scene",
    "process_tile",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScenePlan:
    """What a run will do with a scene, decided before any pixel is classified.

    Attributes:
        path: The scene path as given.
        info: Its header.
        bands: 1-based scene bands fed to the model, in model order.
        preprocessing: The model's preprocessing resolved for this scene (:mod:`geosam.preprocess`).
        encoder: Tile and chip sizes for the encoder (after resolution matching, on the chip grid).
        tiles: The tiles to process and those skipped as empty.
    """

    path: str
    info: SceneInfo
    bands: tuple[int, ...]
    preprocessing: ScenePreprocessing
    encoder: EncoderPlan
    tiles: TilePlan

    @property
    def stretch(self) -> Stretch:
        """The per-scene stretch to 0..1 (``preprocessing.stretch``)."""
        return self.preprocessing.stretch


@dataclass(frozen=True)
class SceneResult:
    """Where a scene's outputs are and what they hold.

    Attributes:
        scene: The scene path.
        outputs: Output kind -> path, for every output written (the record included).
        n_tiles: Tiles processed.
        n_skipped: Tiles skipped as empty.
        n_regions: Regions written.
        region_source: ``sam``, ``felzenszwalb`` or ``tiles``.
        seconds: Seconds per stage.
        record: The run record written.
    """

    scene: str
    outputs: dict[str, Path]
    n_tiles: int
    n_skipped: int
    n_regions: int
    region_source: str
    seconds: dict[str, float]
    record: RunRecord


def plan_scene(scene: str | os.PathLike[str], models: Models, cfg: RunConfig) -> ScenePlan:
    """Phase 1: header, bands, preprocessing, encoder plan and tiles (reads no full-resolution pixels).

    Raises:
        RasterError: The scene cannot be read or has no usable bands; ``EmptyRasterError`` when every
            pixel is nodata.
    """
    from geosam.bands import resolve_bands
    from geosam.encode import plan_encoder
    from geosam.io.read import open_scene
    from geosam.preprocess import model_preprocessing
    from geosam.scene_preprocessing import scene_preprocessing
    from geosam.tiling import plan_tiles

    path = os.fspath(scene)
    info = open_scene(path)
    meta = models.bundle.meta
    bands = resolve_bands(info, cfg.bands, meta.bands)
    prep = scene_preprocessing(path, bands, model_preprocessing(meta), meta.mean, cfg.normalize, info=info)
    encoder = plan_encoder(
        models,
        info,
        match_resolution=cfg.match_resolution,
        tile_size=cfg.tiling.tile_size,
        halo=cfg.tiling.halo,
    )
    update = {"tile_size": encoder.tile_size, "halo": encoder.halo}  # whole chips on the scene grid
    tiling = cfg.tiling.model_copy(update=update).resolved(encoder.tile_size)
    tiles = plan_tiles(info, tiling, scene_id=Path(path).stem)
    if not tiles.tiles:
        raise EmptyRasterError("every pixel is nodata: nothing to classify", path)
    return ScenePlan(path, info, bands, prep, encoder, tiles)


def predict_scene(
    scene: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    models: Models,
    cfg: RunConfig,
    *,
    progress: bool = False,
    model_path: str | os.PathLike[str] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    stac_item_id: str | None = None,
) -> SceneResult:
    """Classify one scene and write its outputs as one transaction (see the module docstring).

    Args:
        scene: Input raster path.
        out_dir: Output directory (created if needed).
        models: From :func:`geosam.runtime.load_models`.
        cfg: Run configuration.
        progress: Show a progress bar over tiles.
        model_path: Bundle path, recorded in the run record.
        on_tile: Callback ``(done, total)`` after each tile (batch progress).
        stac_item_id: Also write the scene's STAC item (:mod:`geosam.stac`) with this id, committed
            with the other outputs.

    Raises:
        RasterError: The scene cannot be read (missing, corrupt, no CRS, wrong bands...).
        OutputError: The outputs cannot be written; the earlier outputs, if any, are left as they were.
    """
    from geosam.io import legend, scene_writer
    from geosam.io.block_cache import block_cache_limit, streaming_cache_bytes
    from geosam.io.transaction import SceneTransaction

    timer = StageTimer()
    # 1. Plan: header, bands, the model's preprocessing, resolution matching and tiles.
    with timer.stage("plan"):
        plan = plan_scene(scene, models, cfg)
    # 2. Open the scene's transaction: outputs are staged out of sight until the commit.
    outputs = SceneOutputs.for_scene(plan.path, out_dir)
    what = f"the outputs of {plan.tiles.scene_id}"
    # GDAL's block cache holds two block rows of the streamed rasters, not all of them (memory grows
    # with the scene's width, not its area; geosam.io.block_cache)
    column = scene_writer.streamed_column_bytes(
        len(_scheme(models)),
        cfg.output.confidence_dtype,
        dense=models.dense,
        probabilities=cfg.dense.probabilities,
    )
    with (
        block_cache_limit(streaming_cache_bytes(plan.info.width, column)),
        SceneTransaction(outputs, overwrite=cfg.output.overwrite, what=what) as txn,
        probability_scratch(
            txn.work / _PROBABILITIES, plan.info, len(_scheme(models)), models.dense
        ) as dense,
    ):
        staged = txn.staged
        # 3. Infer: per tile read, preprocess, encode once, regions, classify; stitch into a scratch raster.
        stitched = _infer_tiles(
            plan, models, cfg, txn.work, timer, progress=progress, on_tile=on_tile, dense=dense
        )
        # 4. Finish: merge regions across seams; class map, confidence and region layers in one pass.
        with timer.stage("finish"):
            n_regions = _finish(plan, models, cfg, stitched, txn.work, staged, progress=progress, dense=dense)
            legend.restyle_scene(staged, _scheme(models), cfg.output)
        _warn_no_masks(plan.path, models.region_source, n_regions, dense is not None)
        # 5. Describe: the tiles layer and the QGIS project.
        probs, valid_px, ratio = stitched.tile_probs, stitched.tile_valid_px, stitched.domain_ratio
        scene_writer.write_tiles_layer(
            plan.tiles, probs, valid_px, staged, _scheme(models), cfg.output, ratio, stitched.domain_share
        )
        scene_writer.write_project(staged, plan.info.crs, cfg.output, domain=stitched.domain)
        # 6. Record: run record (and STAC item) staged; the commit swaps the set in, record last.
        timer.add("total", timer.elapsed())
        record = _record(plan, models, cfg, staged, timer, n_regions, stitched, model_path, stac_item_id)
        txn.commit(record)
    written = {kind: p for kind, p in outputs.paths.items() if p.exists()}
    if stac_item_id is not None:
        written["stac_item"] = outputs.stac_item
    return SceneResult(
        plan.path,
        written,
        len(plan.tiles.tiles),
        len(plan.tiles.skipped),
        n_regions,
        models.region_source,
        dict(timer.seconds),
        record,
    )


# -- phases --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stitched:
    """What tile inference leaves for the finishing pass (the region ids are in the scratch raster)."""

    stitcher: SceneStitcher
    tile_probs: dict[int, np.ndarray]
    tile_valid_px: dict[int, int]
    domain: DomainReport | None = None  # is the scene like the training data? (geosam.domain_check)
    domain_ratio: dict[int, float | None] | None = None  # per tile: median chip score / threshold
    domain_share: dict[int, float | None] | None = None  # per tile: share of chips above the threshold


_PROVISIONAL = "regions_provisional.tif"
_PROBABILITIES = "probabilities.tif"


def _scheme(models: Models) -> ClassScheme:
    return models.bundle.meta.class_scheme


def _infer_tiles(
    plan: ScenePlan,
    models: Models,
    cfg: RunConfig,
    scratch: Path,
    timer: StageTimer,
    *,
    progress: bool,
    on_tile: Callable[[int, int], None] | None,
    dense: ProbabilityScratch | None = None,
) -> _Stitched:
    """Phase 3: every tile through :class:`~geosam.inference.TileInference`, stitched as it comes.

    The next tiles are read and stretched on a background thread while the current ones are encoded,
    finished tiles are stitched on another (:mod:`geosam.tile_pipeline`), and on a GPU several tiles
    share one encoder call; on a CPU tiles go one at a time, as before.
    """
    import torch

    from geosam.io.read import read_tile
    from geosam.io.scene_writer import provisional_raster, stitch_tile
    from geosam.progress import progress_iter
    from geosam.stitch import SceneStitcher
    from geosam.tile_pipeline import SerialWorker, batched, prefetch, tiles_per_call

    tiles = plan.tiles
    infer = tile_inference(models, plan.encoder, cfg.segment, batch_size=cfg.batch_size)
    stitcher = SceneStitcher(
        list(tiles.tiles), plan.info.shape, tiles.halo, len(_scheme(models)), cfg.segment.seam_match_iou
    )
    tile_probs: dict[int, np.ndarray] = {}
    tile_valid_px: dict[int, int] = {}
    tile_domain: dict[int, np.ndarray] = {}
    run_batch = getattr(infer, "run_batch", None)
    per_call = tiles_per_call(models.device, cfg.batch_size, plan.encoder.chips_per_tile) if run_batch else 1

    def read(spec: TileSpec) -> tuple[np.ndarray, np.ndarray, float]:
        t0 = time.perf_counter()
        tile = read_tile(plan.path, spec, plan.bands)
        data = plan.preprocessing.apply(tile.data, tile.valid)
        return data, tile.valid, time.perf_counter() - t0

    def stitch(res: TileResult, provisional: DatasetWriter) -> None:
        t0 = time.perf_counter()
        tile_valid_px[res.spec.index] = stitch_tile(stitcher, provisional, res)
        tile_probs[res.spec.index] = res.tile_probs
        tile_domain[res.spec.index] = res.domain_scores
        if dense is not None and res.dense_probs is not None:  # a dense model's pixel probabilities
            rs, cs = res.spec.core_slices
            dense.write(res.spec.core, res.dense_probs[:, rs, cs])
        timer.add("stitch", time.perf_counter() - t0)

    done = 0
    # no_grad scoped to the tile loop: a global set_grad_enabled(False) would leak into the caller
    # (a training run later in the same process would have no gradients)
    with (
        torch.no_grad(),
        provisional_raster(scratch / _PROVISIONAL, plan.info) as provisional,
        SerialWorker[None]() as post,
    ):
        # the scratch raster starts as nodata (-1) everywhere; skipped tiles stay so
        items = progress_iter(tiles.tiles, f"{tiles.scene_id}: tiles", enabled=progress, unit="tiles")
        for group in batched(prefetch(items, read, depth=max(2, per_call)), per_call):
            for _, (_, _, read_s) in group:
                timer.add("read", read_s)
            batch = [(data, valid, spec) for spec, (data, valid, _) in group]
            results = run_batch(batch) if run_batch else [infer(*batch[0])]
            for res in results:
                for stage, seconds in res.seconds.items():
                    timer.add(stage, seconds)
                post.submit(stitch, res, provisional)
                done += 1
                if on_tile:
                    on_tile(done, len(tiles.tiles))
    from geosam.domain_check import check_scene, tile_ratios, tile_shares

    stats, name = models.bundle.domain, Path(plan.path).name
    domain = check_scene(tile_domain, stats, name, models.bundle.meta.name)  # one WARNING if out of domain
    return _Stitched(
        stitcher,
        tile_probs,
        tile_valid_px,
        domain,
        tile_ratios(tile_domain, stats),
        tile_shares(tile_domain, stats),
    )


def _finish(
    plan: ScenePlan,
    models: Models,
    cfg: RunConfig,
    stitched: _Stitched,
    scratch: Path,
    outputs: SceneOutputs,
    *,
    progress: bool = False,
    dense: ProbabilityScratch | None = None,
) -> int:
    """Phase 4: final regions, the class map and confidence COGs, and the region layers.

    Returns:
        The number of regions (written, or found when region layers are off).
    """
    from geosam.io import scene_writer
    from geosam.io.region_stream import RegionLayerStream, completion_positions

    scheme = _scheme(models)
    table = stitched.stitcher.finish(cfg.segment.min_region_area)
    tags = scene_writer.scene_tags(plan.path, models.bundle.meta.name, models.region_source)
    finish_kw: dict[str, Any] = {
        "progress": progress,
        "dense": dense,
        "refine": cfg.dense.refine == "regions",
        "probabilities": cfg.dense.probabilities,
    }
    maps = (scratch / _PROVISIONAL, plan.tiles, table, stitched.tile_probs, outputs, scheme, cfg.output, tags)
    if not cfg.output.regions:
        scene_writer.write_maps(*maps, **finish_kw)
        return int(table.count)
    # region polygons are written as soon as no later tile can touch them (memory: the open ones)
    order = [spec.index for spec in plan.tiles.tiles]
    complete = completion_positions(table.lookup, stitched.stitcher.piece_tiles(), order, table.count)
    with RegionLayerStream(
        outputs, scratch, table, plan.tiles, scheme, models.region_source, cfg.output
    ) as stream:
        scene_writer.write_maps(*maps, regions=stream, complete_after=complete, **finish_kw)
    return stream.count


#: Region sources whose regions are masks of a segmentation model (a run may find none).
_MASK_SOURCES = ("sam", "sam2", "sam2.1", "sam3")


def _warn_no_masks(path: str, region_source: str, n_regions: int, dense: bool) -> None:
    """One WARNING when a SAM model made no mask on the whole scene (its maps then carry no regions)."""
    if n_regions or region_source not in _MASK_SOURCES:
        return
    where = "every pixel keeps its own class" if dense else "every pixel takes its tile's class"
    log.warning(
        "%s: %s made no region on any tile, so the regions layers are empty and %s; with real weights, "
        "lower --pred-iou-thresh / --stability-score-thresh or raise --points-per-side, or check that the "
        "checkpoint is Meta's trained one",
        Path(path).name,
        region_source,
        where,
    )


def _record(
    plan: ScenePlan,
    models: Models,
    cfg: RunConfig,
    staged: SceneOutputs,
    timer: StageTimer,
    n_regions: int,
    stitched: _Stitched,
    model_path: str | os.PathLike[str] | None,
    stac_item_id: str | None,
) -> RunRecord:
    """Phase 6: the run record of the staged set (and its STAC item, written into the set)."""
    from geosam.domain_check import record_entry

    record = build_run_record(
        scene=plan.path,
        info=plan.info,
        stretch=plan.stretch,
        preprocessing=plan.preprocessing.to_record(),
        models=models,
        tiles=plan.tiles,
        encoder=plan.encoder,
        cfg=cfg,
        outputs=staged,
        seconds=timer.seconds,
        n_regions=n_regions,
        seam_matches=stitched.stitcher.matches,
        model_path=model_path,
        domain=record_entry(
            stitched.domain,
            models.bundle.domain is not None,
            models.region_source,
            shared_encoder=bool(getattr(models.sam, "shared", False)),
        ),
        classes_from=classes_from(models.dense, cfg.dense),
    )
    if stac_item_id is None:
        return record
    from geosam.stac import write_item

    item = write_item(record, staged, item_id=stac_item_id)
    return record.model_copy(update={"outputs": {**record.outputs, "stac_item": item.name}})


# -- one tile on its own ---------------------------------------------------------------------------------


def process_tile(
    models: Models,
    tile_data: np.ndarray,
    valid: np.ndarray,
    spec: TileSpec,
    cfg: RunConfig,
    *,
    chip_size: int | None = None,
) -> TileResult:
    """Encode once, make regions, classify tile and regions for one tile (tests, benchmarks).

    A run builds its :class:`~geosam.inference.TileInference` once per scene; this builds one for a
    single call, from ``cfg``'s segmentation settings and batch size.

    Args:
        models: Loaded models.
        tile_data: ``(N, T, T)`` stretched 0..1 pixels of the model bands (invalid pixels any value).
        valid: ``(T, T)`` valid pixels.
        spec: The tile.
        cfg: Run configuration (``segment`` and ``batch_size`` are used).
        chip_size: Encoder chip edge in scene pixels; default the model's.
    """
    from geosam.encode import EncoderPlan, patch_size

    grid = models.input_size // patch_size(models.bundle.model.encoder)
    encoder = EncoderPlan(tile_data.shape[-1], chip_size or models.chip_size, models.input_size, grid)
    return tile_inference(models, encoder, cfg.segment, batch_size=cfg.batch_size)(tile_data, valid, spec)
