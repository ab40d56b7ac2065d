"""Classify a scene: the one place where the pipeline stages meet.

For each tile (streamed, never the whole scene in memory): read (windowed) -> stretch (one per scene)
-> encode (ONE encoder pass) -> regions (SAM's decoder on that embedding, or the documented fallback)
-> classify the tile and every region from the same features -> stitch (provisional region ids
written over the tile's core into a scratch raster; seams matched in the overlap). Then one finishing
pass over the scratch raster, window by window, writes the class map and confidence COGs and
vectorizes the regions. Outputs for scene ``<s>`` in ``out_dir``:

=========================== ===================================================================
``<s>_classes.tif``         COG, uint8 class per pixel (region class; tile class where no region),
                            colour table, class names, nodata 255 where the input is nodata
``<s>_confidence.tif``      COG, probability of the chosen class (float32, nodata -1)
``<s>_regions.geojson``     regions in EPSG:4326 (RFC 7946)
``<s>_regions.gpkg``        regions in the scene CRS
``<s>_tiles.gpkg``          tile cores with the tile class and per-class probabilities
``<s>.qgs``                 QGIS project opening all layers styled (``.qml`` beside each output)
``<s>_run.json``            run record: inputs, model hash, config, versions, timings (written last)
=========================== ===================================================================

Every file is written under a temporary name and renamed into place; the run record appears last,
so its presence means the scene is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import geosam
from geosam.config import RunConfig
from geosam.errors import EmptyRasterError, OutputError
from geosam.hashing import sha256_file
from geosam.runtime import Models
from geosam.types import ClassScheme, SceneInfo, TileSpec

__all__ = ["SceneResult", "TileResult", "output_paths", "output_stem", "predict_scene", "process_tile"]

log = logging.getLogger(__name__)

RECORD_VERSION = 1


@dataclass(frozen=True)
class TileResult:
    """What one tile produced (arrays are over the tile's read window)."""

    spec: TileSpec
    labels: np.ndarray
    valid: np.ndarray
    region_probs: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    tile_probs: np.ndarray
    seconds: dict[str, float]
    dense_probs: np.ndarray | None = None  # (K, T, T) pixel probabilities of a dense model


@dataclass(frozen=True)
class SceneResult:
    """Where a scene's outputs are and what they hold."""

    scene: str
    outputs: dict[str, Path]
    n_tiles: int
    n_skipped: int
    n_regions: int
    region_source: str
    seconds: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


#: Characters of scene names that are not kept in output names: control characters; ``;`` and ``!``,
#: which GDAL's vector writers (pyogrio) read as URI parameters and archive separators and so write to
#: another file; ``|`` (QGIS data-source separator); and ``\\``.
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f;!|\\]")
#: Stems longer than this (UTF-8 bytes) are cut and suffixed with a hash of the whole stem, so
#: ``<stem>_confidence.tif`` and its temporary names stay under the 255-byte file-name limit.
_MAX_STEM_BYTES = 160


def output_stem(scene: str | os.PathLike[str]) -> str:
    """The name a scene's outputs start with: the scene file's stem, made safe for GDAL and QGIS.

    Only the stem is used, so outputs stay inside the output directory whatever the scene's path
    (``../../x.tif`` gives ``x``). Characters in :data:`_UNSAFE_NAME_CHARS` become ``_``; a stem longer
    than 160 bytes is cut and gets ``-<8 hex digits of its sha256>``.
    """
    raw = Path(scene).stem
    stem = _UNSAFE_NAME_CHARS.sub("_", raw) or "scene"
    data = stem.encode("utf-8", "surrogateescape")
    if len(data) > _MAX_STEM_BYTES:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        stem = data[: _MAX_STEM_BYTES - 9].decode("utf-8", "ignore") + "-" + digest
    return stem


def output_paths(scene: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Output file of each kind for a scene (named after :func:`output_stem`)."""
    stem = output_stem(scene)
    d = Path(out_dir)
    return {
        "classes": d / f"{stem}_classes.tif",
        "confidence": d / f"{stem}_confidence.tif",
        "regions_geojson": d / f"{stem}_regions.geojson",
        "regions_gpkg": d / f"{stem}_regions.gpkg",
        "tiles_gpkg": d / f"{stem}_tiles.gpkg",
        "probabilities": d / f"{stem}_probabilities.tif",
        "qgis_project": d / f"{stem}.qgs",
        "record": d / f"{stem}_run.json",
    }


def process_tile(
    models: Models,
    tile_data: np.ndarray,
    valid: np.ndarray,
    spec: TileSpec,
    cfg: RunConfig,
    *,
    chip_size: int | None = None,
) -> TileResult:
    """Encode once, make regions, classify tile and regions (pure compute on one tile).

    Args:
        models: Loaded models.
        tile_data: ``(N, T, T)`` stretched 0..1 pixels of the model bands (invalid pixels any value).
        valid: ``(T, T)`` valid pixels.
        spec: The tile.
        cfg: Run configuration (segment settings used).
        chip_size: Encoder chip edge in scene pixels (see :func:`scene_encoding`); default the model's.
    """
    import torch

    from geosam.classify import TileClasses, classify_tile
    from geosam.encode import EncoderPlan, encode_tiles, fill_invalid
    from geosam.segment import Regions, felzenszwalb_regions, sam_regions

    secs: dict[str, float] = {}
    model = models.bundle.model
    t0 = time.perf_counter()
    mean = model.mean.detach().cpu().numpy().reshape(-1)
    x = torch.from_numpy(fill_invalid(tile_data, valid, mean))[None].to(models.device)
    grid = models.input_size // int(model.encoder.patch_embed.proj.kernel_size[0])
    plan = EncoderPlan(tile_data.shape[-1], chip_size or models.chip_size, models.input_size, grid)
    feats = encode_tiles(model, x, plan, precision=models.precision, chip_batch=max(1, cfg.batch_size) * 16)
    t1 = time.perf_counter()
    secs["encode"] = t1 - t0
    if not valid.any():
        regions = Regions.empty(valid.shape)
    elif models.region_source == "sam":
        regions = sam_regions(models.sam, feats, valid, cfg.segment)
    elif models.region_source == "felzenszwalb":
        regions = felzenszwalb_regions(tile_data, valid, cfg.segment)
    else:
        regions = Regions.empty(valid.shape, "tiles")
    t2 = time.perf_counter()
    secs["segment"] = t2 - t1
    dense = None
    if model.dense is not None:  # per-pixel classes; regions and tile take their mean (geosam.dense)
        from geosam.dense import dense_probabilities, mean_probabilities

        dense = dense_probabilities(model, feats, x[0].cpu().numpy(), valid)
        classes = TileClasses(
            mean_probabilities(dense, valid.astype(np.int32), 1)[0],
            mean_probabilities(dense, regions.labels, regions.count),
        )
    else:
        classes = classify_tile(model, feats[0], valid, regions.labels, regions.count)
    secs["classify"] = time.perf_counter() - t2
    return TileResult(
        spec,
        regions.labels,
        valid,
        classes.regions,
        regions.predicted_iou,
        regions.stability_score,
        classes.tile,
        secs,
        dense,
    )


def scene_encoding(models: Models, info: SceneInfo, cfg: RunConfig) -> tuple[int, int]:
    """Chip and tile size, in scene pixels, for encoding this scene.

    SAM tiles and models without a known ground sampling distance use the model's sizes. Otherwise,
    with ``cfg.match_resolution``, the chip covers the ground of a training chip:
    ``chip = round(model_chip * model_gsd / scene_gsd)``, and a tile holds as many chips per side as
    the model's default tile (a user-set tile size is rounded to a multiple of the chip).
    """
    chip, tile = models.chip_size, models.tile_size
    gsd = models.bundle.meta.gsd_m
    if models.region_source == "sam" or not cfg.match_resolution or not gsd:
        return chip, tile
    scene_gsd = info.gsd_m
    if scene_gsd is None or abs(scene_gsd - gsd) / gsd < 0.05:
        return chip, tile
    per_side = max(1, round(tile / chip))
    new_chip = max(4, round(chip * gsd / scene_gsd))
    new_tile = new_chip * per_side
    if cfg.tiling.tile_size is not None:
        new_tile = max(new_chip, round(cfg.tiling.tile_size / new_chip) * new_chip)
    log.info(
        "%s: %.3g m pixels, model trained at %.3g m: encoding %d px chips resampled to %d px",
        Path(info.path).name,
        scene_gsd,
        gsd,
        new_chip,
        models.input_size,
    )
    return new_chip, new_tile


def _scene_id(path: str) -> str:
    return Path(path).stem


def _top3(probs: np.ndarray, scheme: ClassScheme) -> list[str]:
    order = np.argsort(-probs)[:3]
    return [f"{scheme.names[i]}:{probs[i]:.3f}" for i in order]


def _pixel_area_m2(info: Any) -> float | None:
    """Area of one pixel in m^2 for projected CRSs in metres (``None`` otherwise)."""
    from rasterio.crs import CRS

    crs = CRS.from_user_input(info.crs)
    if not crs.is_projected:
        return None
    a, b, _, d, e, _ = info.transform
    factor = float(crs.linear_units_factor[1]) if crs.linear_units_factor else 1.0
    return float(abs(a * e - b * d)) * factor * factor


def _geodesic_areas(gdf: Any) -> np.ndarray:
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    wgs = gdf.to_crs(4326)
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in wgs.geometry])


def predict_scene(
    scene: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    models: Models,
    cfg: RunConfig,
    *,
    progress: bool = False,
    model_path: str | os.PathLike[str] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> SceneResult:
    """Classify one scene and write its outputs (see the module docstring).

    Args:
        scene: Input raster path.
        out_dir: Output directory (created if needed).
        models: From :func:`geosam.runtime.load_models`.
        cfg: Run configuration.
        progress: Show a progress bar over tiles.
        model_path: Bundle path, recorded in the run record.
        on_tile: Callback ``(done, total)`` after each tile (batch progress).

    Raises:
        RasterError: The scene cannot be read (missing, corrupt, no CRS, wrong bands...).
        OutputError: The outputs cannot be written; nothing partial is left behind.
    """
    import rasterio
    import torch

    from geosam.bands import resolve_bands
    from geosam.io.read import open_scene, read_tile
    from geosam.stitch import SceneStitcher
    from geosam.stretch import apply_stretch, compute_stretch
    from geosam.tiling import plan_tiles

    t_start = time.perf_counter()
    secs: dict[str, float] = defaultdict(float)
    path = os.fspath(scene)
    info = open_scene(path)
    meta = models.bundle.meta
    scheme = meta.class_scheme
    bands = resolve_bands(info, cfg.bands, meta.bands)
    stretch = compute_stretch(path, bands, cfg.normalize)
    chip, tile_size = scene_encoding(models, info, cfg)
    tiling = cfg.tiling.model_copy(update={"tile_size": tile_size}).resolved(tile_size)
    plan = plan_tiles(info, tiling, scene_id=_scene_id(path))
    if not plan.tiles:
        raise EmptyRasterError("every pixel is nodata: nothing to classify", path)
    secs["plan"] = time.perf_counter() - t_start
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the output directory ({err.strerror})", out) from None
    paths = output_paths(path, out)
    k = len(scheme)
    from geosam.io.atomic import output_error

    try:
        scratch_dir = Path(tempfile.mkdtemp(prefix=f".{output_stem(path)}.work-", dir=out))
    except OSError as err:
        raise output_error(err, out, f"{plan.scene_id}'s scratch folder", creating=True) or OutputError(
            f"cannot write here ({err.strerror or err})", out
        ) from None
    before = _output_state(paths)
    try:
        prov_path = scratch_dir / "regions_provisional.tif"
        profile = {
            "driver": "GTiff",
            "width": info.width,
            "height": info.height,
            "count": 1,
            "dtype": "int32",
            "crs": info.crs,
            "transform": rasterio.Affine(*info.transform),
            "nodata": -1,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        stitcher = SceneStitcher(list(plan.tiles), info.shape, plan.halo, k, cfg.segment.seam_match_iou)
        dense = None
        if models.bundle.model.dense is not None:
            from geosam.dense_output import ProbabilityScratch

            dense = ProbabilityScratch(scratch_dir / "probabilities.tif", info, k)
        tile_probs: dict[int, np.ndarray] = {}
        tile_valid_px: dict[int, int] = {}
        from geosam.progress import progress_iter

        # no_grad scoped to the tile loop: a global set_grad_enabled(False) would leak into the caller
        # (a training run later in the same process would have no gradients)
        with torch.no_grad(), rasterio.open(prov_path, "w", **profile) as prov:
            # the scratch raster starts as nodata (-1) everywhere; skipped tiles stay so
            for done, spec in enumerate(
                progress_iter(plan.tiles, f"{plan.scene_id}: tiles", enabled=progress), 1
            ):
                t0 = time.perf_counter()
                tile = read_tile(path, spec, bands)
                data = apply_stretch(tile.data, tile.valid, stretch)
                secs["read"] += time.perf_counter() - t0
                res = process_tile(models, data, tile.valid, spec, cfg, chip_size=chip)
                for key_, v in res.seconds.items():
                    secs[key_] += v
                t1 = time.perf_counter()
                scene_labels = stitcher.add_tile(
                    spec, res.labels, res.region_probs, res.predicted_iou, res.stability_score
                )
                rs, cs = spec.core_slices
                core = np.where(res.valid[rs, cs], scene_labels[rs, cs], -1).astype(np.int32)
                prov.write(core, 1, window=spec.core.to_rasterio())
                if dense is not None and res.dense_probs is not None:
                    dense.write(spec.core, res.dense_probs[:, rs, cs])
                tile_probs[spec.index] = res.tile_probs
                tile_valid_px[spec.index] = int(res.valid[rs, cs].sum())
                secs["stitch"] += time.perf_counter() - t1
                if on_tile:
                    on_tile(done, len(plan.tiles))
        t2 = time.perf_counter()
        table = stitcher.finish(cfg.segment.min_region_area)
        n_regions = _finish_outputs(
            path, info, plan, table, tile_probs, prov_path, paths, scheme, cfg, models, dense
        )
        if dense is not None:
            dense.close()
        secs["finish"] += time.perf_counter() - t2
        _write_tiles_layer(info, plan, tile_probs, tile_valid_px, scheme, paths, cfg)
        if cfg.output.qgis_project:
            _write_project(info, paths, scheme, cfg)
        total = time.perf_counter() - t_start
        secs["total"] = total
        record = _run_record(
            path, info, plan, models, cfg, paths, secs, n_regions, model_path, stitcher.matches, stretch
        )
        record["tiling"]["chip_size"] = chip  # scene pixels per encoder chip (after resolution matching)
        record["tiling"]["scene_gsd_m"] = info.gsd_m
        record["classes_from"] = _classes_from(models, cfg)
        from geosam.io.atomic import atomic_path

        with atomic_path(paths["record"]) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except BaseException as exc:
        _discard_outputs(paths, before, overwrite=cfg.output.overwrite)
        failure = output_error(exc, out, f"the outputs of {plan.scene_id}")  # full disk, scratch raster
        if failure is not None and failure is not exc:
            raise failure from None
        raise
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    outputs = {k_: v for k_, v in paths.items() if v.exists()}
    return SceneResult(
        path, outputs, len(plan.tiles), len(plan.skipped), n_regions, models.region_source, dict(secs), record
    )


def _output_files(paths: dict[str, Path]) -> list[Path]:
    """Every file of a scene's outputs: the outputs with their ``.qml`` and GDAL ``.aux.xml`` sidecars."""
    from geosam.io.style import qml_path

    files: dict[Path, None] = {}
    for kind, p in paths.items():
        files[p] = None
        if kind not in ("qgis_project", "record"):
            files[qml_path(p)] = None
        if p.suffix == ".tif":
            files[Path(f"{p}.aux.xml")] = None
    return list(files)


def _output_state(paths: dict[str, Path]) -> dict[Path, tuple[int, int, int]]:
    """Identity ``(inode, mtime, size)`` of each existing output file, to tell what a run replaced."""
    state = {}
    for f in _output_files(paths):
        try:
            st = f.stat()
        except OSError:
            continue
        state[f] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return state


def _discard_outputs(
    paths: dict[str, Path], before: dict[Path, tuple[int, int, int]], *, overwrite: bool
) -> None:
    """After a failed run, leave no mix of new and old outputs of the scene.

    Once a run has written any output, the scene's files no longer belong together: with ``overwrite``
    every output of the scene is removed (rerun it); without it, only the files this run wrote.
    """
    now = _output_state(paths)
    written = [f for f, ident in now.items() if before.get(f) != ident]
    if not written:
        return  # failed before touching any output: earlier results stay as they were
    doomed = list(now) if overwrite else written
    for f in doomed:
        with contextlib.suppress(OSError):
            f.unlink()
    log.info("%s: run failed; removed %d incomplete output file(s)", paths["record"].parent, len(doomed))


def _finish_outputs(
    path: str,
    info: Any,
    plan: Any,
    table: Any,
    tile_probs: dict[int, np.ndarray],
    prov_path: Path,
    paths: dict[str, Path],
    scheme: ClassScheme,
    cfg: RunConfig,
    models: Models,
    dense: Any = None,
) -> int:
    """Second pass over the scratch raster: class map, confidence, polygons (and pixel probabilities)."""
    import geopandas as gpd
    import rasterio

    from geosam.io.cog import class_map_writer, confidence_writer, encode_confidence
    from geosam.io.style import categorized_fill_qml
    from geosam.io.vector import write_geojson, write_gpkg
    from geosam.vectorize import PolygonCollector, window_polygons

    region_class = table.class_id.astype(np.uint8)
    region_conf = table.probs.max(axis=1) if table.count else np.zeros(0, np.float32)
    polys = PolygonCollector()
    common = {
        "width": info.width,
        "height": info.height,
        "transform": info.transform,
        "crs": info.crs,
        "compress": cfg.output.compress,
        "overwrite": cfg.output.overwrite,
    }
    tags = {
        "GEOSAM_SCENE": Path(path).name,
        "GEOSAM_MODEL": models.bundle.meta.name,
        "GEOSAM_REGION_SOURCE": models.region_source,
    }
    with (
        class_map_writer(paths["classes"], scheme=scheme, tags=tags, **common) as cls_w,
        confidence_writer(
            paths["confidence"], dtype=cfg.output.confidence_dtype, tags=tags, **common
        ) as conf_w,
        rasterio.open(prov_path) as prov,
        contextlib.ExitStack() as stack,
    ):
        prob_w = None
        if dense is not None and cfg.dense.probabilities:
            from geosam.dense_output import probability_writer

            prob_w = stack.enter_context(
                probability_writer(paths["probabilities"], info, scheme, tags=tags, **common)
            )
        all_cores = [(s, True) for s in plan.tiles] + [(s, False) for s in plan.skipped]
        for spec, processed in all_cores:
            win = spec.core
            if not processed:
                cls_w.write(win, np.full((win.height, win.width), scheme.nodata, np.uint8))
                conf_w.write(
                    win,
                    encode_confidence(np.full((win.height, win.width), np.nan), cfg.output.confidence_dtype),
                )
                if prob_w is not None:
                    prob_w.write(win, np.full((len(scheme), win.height, win.width), 255, np.uint8))
                continue
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
                    refine=cfg.dense.refine == "regions",
                    nodata=scheme.nodata,
                    prob_writer=prob_w,
                )
            cls[invalid] = scheme.nodata
            cls_w.write(win, cls)
            conf_w.write(win, encode_confidence(conf, cfg.output.confidence_dtype, mask=invalid))
            if cfg.output.regions and has.any():
                a, b, c, d, e, f = info.transform
                from affine import Affine

                wt = Affine(a, b, c, d, e, f) @ Affine.translation(win.col_off, win.row_off)
                polys.add(window_polygons(final.astype(np.int32), wt))
    if not cfg.output.regions:
        return int(table.count)
    geoms = polys.dissolve()
    ids = sorted(geoms)
    pix_area = _pixel_area_m2(info)
    tiles_by_index = {s.index: s for s in plan.tiles}
    rows = []
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
                "class_2": scheme.names[int(order[1])] if k_ok(order, 1) else None,
                "probability_2": round(float(probs[order[1]]), 4) if k_ok(order, 1) else None,
                "class_3": scheme.names[int(order[2])] if k_ok(order, 2) else None,
                "probability_3": round(float(probs[order[2]]), 4) if k_ok(order, 2) else None,
                "top3": ", ".join(_top3(probs, scheme)),
                "area_px": int(table.area_px[i]),
                "predicted_iou": _nan_none(table.predicted_iou[i]),
                "stability_score": _nan_none(table.stability_score[i]),
                "tile_id": tiles_by_index[int(table.tile_index[i])].tile_id,
                "pieces": int(table.pieces[i]),
                "region_source": models.region_source,
                "scene_id": plan.scene_id,
            }
        )
    gdf = gpd.GeoDataFrame(rows, geometry=[geoms[r] for r in ids], crs=info.crs)
    if len(gdf) == 0:
        gdf = gpd.GeoDataFrame(
            {c: [] for c in ("region_id", "class_id", "class_name", "probability")}, geometry=[], crs=info.crs
        )
    if pix_area is not None:
        gdf["area_m2"] = (gdf["area_px"] * pix_area).round(1) if len(gdf) else []
    else:
        gdf["area_m2"] = np.round(_geodesic_areas(gdf), 1) if len(gdf) else []
    qml = categorized_fill_qml(scheme)
    write_gpkg(
        gdf,
        paths["regions_gpkg"],
        layer="regions",
        qml=qml,
        geometry_type="MultiPolygon",
        overwrite=cfg.output.overwrite,
    )
    write_geojson(gdf, paths["regions_geojson"], qml=qml, overwrite=cfg.output.overwrite)
    return len(gdf)


def k_ok(order: np.ndarray, i: int) -> bool:
    """Whether there is an ``i``-th ranked class."""
    return len(order) > i


def _nan_none(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


def _write_tiles_layer(
    info: Any,
    plan: Any,
    tile_probs: dict[int, np.ndarray],
    tile_valid_px: dict[int, int],
    scheme: ClassScheme,
    paths: dict[str, Path],
    cfg: RunConfig,
) -> None:
    import geopandas as gpd
    from affine import Affine
    from shapely.geometry import Polygon

    from geosam.io.style import outline_labels_qml
    from geosam.io.vector import write_gpkg

    if not cfg.output.tiles:
        return
    t = Affine(*info.transform)
    rows, geoms = [], []
    for spec in plan.tiles:
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
        rows.append(row)
    gdf = gpd.GeoDataFrame(rows, geometry=geoms, crs=info.crs)
    write_gpkg(
        gdf,
        paths["tiles_gpkg"],
        layer="tiles",
        qml=outline_labels_qml(label_field="class_name"),
        geometry_type="MultiPolygon",
        overwrite=cfg.output.overwrite,
    )


def _field(name: str) -> str:
    s = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
    return s or "class"


def _write_project(info: Any, paths: dict[str, Path], scheme: ClassScheme, cfg: RunConfig) -> None:
    from geosam.io.qgis_project import QgisLayer, write_qgis_project
    from geosam.io.style import qml_path

    layers = []
    if cfg.output.tiles and paths["tiles_gpkg"].exists():
        layers.append(
            QgisLayer(
                paths["tiles_gpkg"].name,
                "tiles",
                "vector",
                layer_name="tiles",
                style=qml_path(paths["tiles_gpkg"]).name,
                visible=False,
            )
        )
    if cfg.output.regions and paths["regions_gpkg"].exists():
        layers.append(
            QgisLayer(
                paths["regions_gpkg"].name,
                "regions",
                "vector",
                layer_name="regions",
                style=qml_path(paths["regions_gpkg"]).name,
            )
        )
    if paths["probabilities"].exists():
        layers.append(
            QgisLayer(
                paths["probabilities"].name,
                "class probabilities",
                "raster",
                style=qml_path(paths["probabilities"]).name,
                visible=False,
            )
        )
    layers.append(
        QgisLayer(
            paths["confidence"].name,
            "confidence",
            "raster",
            style=qml_path(paths["confidence"]).name,
            visible=False,
        )
    )
    layers.append(
        QgisLayer(paths["classes"].name, "classes", "raster", style=qml_path(paths["classes"]).name)
    )
    write_qgis_project(
        paths["qgis_project"],
        layers,
        crs=info.crs,
        title=paths["qgis_project"].stem,
        overwrite=cfg.output.overwrite,
    )


def _versions() -> dict[str, str]:
    import rasterio
    import torch

    out = {
        "geosam": geosam.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
    }
    for mod in ("segment_anything", "shapely", "geopandas", "numpy"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod.replace("_", "-"))
        except Exception:  # pragma: no cover - metadata missing
            out[mod] = "unknown"
    return out


def _run_record(
    path: str,
    info: Any,
    plan: Any,
    models: Models,
    cfg: RunConfig,
    paths: dict[str, Path],
    secs: dict[str, float],
    n_regions: int,
    model_path: Any,
    seam_matches: int,
    stretch: Any,
) -> dict[str, Any]:
    meta = models.bundle.meta
    bundle_dir = models.bundle.path
    model_json = bundle_dir / "model.json"
    return {
        "record_version": RECORD_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scene": {
            "path": os.path.abspath(path),
            "sha256": sha256_file(path),
            "width": info.width,
            "height": info.height,
            "bands_used": list(stretch.bands),
            "crs": info.crs,
            "stretch": stretch.to_dict(),
        },
        "model": {
            "path": str(model_path) if model_path else str(bundle_dir),
            "name": meta.name,
            "version": meta.version,
            "weights_sha256": meta.weights_sha256,
            "model_json_sha256": sha256_file(model_json) if model_json.exists() else None,
            "classes": list(meta.class_scheme.names),
            "bands": meta.bands,
        },
        "sam_checkpoint": models.sam_checkpoint,
        "region_source": models.region_source,
        "region_source_note": _SOURCE_NOTES[models.region_source],
        "device": str(models.device),
        "precision": models.precision,
        "tiling": {
            "tile_size": plan.tile_size,
            "halo": plan.halo,
            "tiles": len(plan.tiles),
            "skipped_empty": len(plan.skipped),
            "chip_size": models.chip_size,
            "encoder_input_size": models.input_size,
        },
        "config": cfg.to_json_dict(),
        "results": {"regions": n_regions, "seam_matches": seam_matches},
        "outputs": {k: p.name for k, p in paths.items() if k != "record" and p.exists()},
        "timings_s": {k: round(v, 3) for k, v in secs.items()},
        "versions": _versions(),
    }


def _classes_from(models: Models, cfg: RunConfig) -> dict[str, str]:
    """Which head produced which output (recorded in the run record)."""
    if models.bundle.model.dense is None:
        return {
            "head": "chip",
            "class_map": "region class (classifier on the encoder features pooled over the region); "
            "the tile's class where no region",
            "regions": "classifier on the encoder features pooled over the region",
        }
    refine = cfg.dense.refine == "regions"
    return {
        "head": "dense",
        "class_map": "region class (arg-max of the mean pixel probabilities of the dense head inside the "
        "region); the pixel's own class where no region"
        if refine
        else "the dense head's class of each pixel",
        "regions": "arg-max of the mean pixel probabilities of the dense head inside the region",
        "probabilities": "dense head, per pixel" if cfg.dense.probabilities else "not written",
    }


_SOURCE_NOTES = {
    "sam": "regions are SAM automatic masks (segment-anything mask decoder on the tile embedding)",
    "felzenszwalb": "no SAM mask decoder was used: regions are Felzenszwalb graph-based superpixels "
    "(scikit-image) of the stretched tile; SAM scores are empty",
    "tiles": "no regions: classes are tile labels",
}
