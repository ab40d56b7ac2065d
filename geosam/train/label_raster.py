"""A label raster read on a scene's grid: what the raster training sources and their checks read.

The label raster may have any CRS, resolution and extent: :func:`label_grid` gives it on the scene grid
(directly when the grids are equal, else through a nearest-neighbour ``WarpedVRT``), :func:`read_labels`
reads a window of it as whole-number class ids and their validity (nodata, mask, ``label_nodata``),
:func:`scan_lattice` keeps the labelled pixels of a lattice window by window (memory of one 1024-pixel
window). Used by :func:`geosam.train.scene_chips.raster_chips`, the dense head
(:mod:`geosam.train.dense`), cross-validation (:mod:`geosam.train.cv`) and its folds
(:func:`masked_label_raster`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from geosam.errors import DataError
from geosam.types import PixelWindow, SceneInfo

__all__ = ["classes_of", "label_grid", "majority", "masked_label_raster", "read_labels", "scan_lattice"]

_SCAN_BLOCK = 1024  # label-raster scan window edge in pixels: bounds the scan's memory to a few MB


@contextmanager
def label_grid(path: Path, info: SceneInfo) -> Iterator[tuple[Any, bool]]:
    """Yield ``(dataset, warped)``: the label raster on the scene grid (nearest-neighbour warp if needed)."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError
    from rasterio.vrt import WarpedVRT

    from geosam.io.env import geosam_env

    if not path.exists():
        raise DataError("label raster not found", path)
    with geosam_env(path):
        try:
            src = rasterio.open(path)
        except RasterioError as err:
            raise DataError(f"cannot read the label raster ({str(err).splitlines()[0]})", path) from None
        with src:
            if src.crs is None or src.transform.is_identity:
                raise DataError(
                    "the label raster has no CRS or geotransform, so it cannot be matched to the scene; "
                    "give it the scene's: gdal_translate -a_srs EPSG:<code> -a_ullr <ulx> <uly> <lrx> <lry> "
                    f"{path.name} fixed.tif (the scene's corners, from `geosam info SCENE` or gdalinfo)",
                    path,
                )
            if np.issubdtype(np.dtype(src.dtypes[0]), np.complexfloating):
                raise DataError("the label raster holds complex values, not class ids", path)
            scene_crs = CRS.from_wkt(info.crs)
            grid = Affine(*info.transform)
            same = (
                src.crs == scene_crs
                and (src.width, src.height) == (info.width, info.height)
                and src.transform.almost_equals(grid)
            )
            if same:
                yield src, False
                return
            with WarpedVRT(
                src,
                crs=scene_crs,
                transform=grid,
                width=info.width,
                height=info.height,
                resampling=Resampling.nearest,
                add_alpha=True,  # so that pixels outside the label raster read as invalid
            ) as vrt:
                yield vrt, True


def read_labels(
    ds: Any, window: PixelWindow, label_nodata: float | None, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Boundless read of band 1 on the scene grid: int64 class ids and their validity."""
    ids = np.zeros((window.height, window.width), np.int64)
    valid = np.zeros((window.height, window.width), bool)
    inside = window.intersection(PixelWindow(0, 0, ds.width, ds.height))
    if inside is None:
        return ids, valid
    rw = inside.to_rasterio()
    raw = ds.read(1, window=rw)
    ok = ds.read_masks(1, window=rw) > 0
    if np.issubdtype(raw.dtype, np.floating):
        ok &= np.isfinite(raw)
    if label_nodata is not None:
        ok &= raw != label_nodata
    values = raw[ok]
    if values.size and np.issubdtype(raw.dtype, np.floating) and not np.array_equal(values, np.rint(values)):
        bad = values[values != np.rint(values)][0]
        raise DataError(
            f"the label raster holds non-integer values (e.g. {bad:g}); class ids must be whole numbers "
            "(is it a continuous raster? set its nodata or pass --label-nodata if that value marks no data)",
            path,
        )
    rows, cols = inside.relative_to(window)
    ids[rows, cols] = np.where(ok, raw, 0).astype(np.int64)
    valid[rows, cols] = ok
    return ids, valid


def scan_lattice(
    ds: Any, step: int, offset: tuple[int, int], label_nodata: float | None, path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, cols and class ids of the lattice pixels with a valid label, scanned window by window."""
    lat_r = np.arange(offset[0], ds.height, step)
    lat_c = np.arange(offset[1], ds.width, step)
    out_r: list[np.ndarray] = []
    out_c: list[np.ndarray] = []
    out_v: list[np.ndarray] = []
    for r0 in range(0, ds.height, _SCAN_BLOCK):
        rr = lat_r[(lat_r >= r0) & (lat_r < r0 + _SCAN_BLOCK)]
        if not len(rr):
            continue
        for c0 in range(0, ds.width, _SCAN_BLOCK):
            cc = lat_c[(lat_c >= c0) & (lat_c < c0 + _SCAN_BLOCK)]
            if not len(cc):
                continue
            win = PixelWindow(int(cc[0]), int(rr[0]), int(cc[-1] - cc[0] + 1), int(rr[-1] - rr[0] + 1))
            ids, valid = read_labels(ds, win, label_nodata, path)
            sub = np.ix_(rr - rr[0], cc - cc[0])
            v, ok = ids[sub], valid[sub]
            gr, gc = np.meshgrid(rr, cc, indexing="ij")
            out_r.append(gr[ok])
            out_c.append(gc[ok])
            out_v.append(v[ok])
    if not out_r:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    return np.concatenate(out_r), np.concatenate(out_c), np.concatenate(out_v)


def classes_of(ids: np.ndarray, known: np.ndarray, cls_of_id: np.ndarray) -> np.ndarray:
    """Class index of each id (``-1`` for ids not in ``known``, which is sorted)."""
    pos = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
    out: np.ndarray = np.where(known[pos] == ids, cls_of_id[pos], -1)
    return out


def majority(ids: np.ndarray, valid: np.ndarray, known: np.ndarray, cls_of_id: np.ndarray) -> int | None:
    """Most frequent class in a chip; ties go to the centre pixel's class, else the smallest class index."""
    cls = np.where(valid, classes_of(ids, known, cls_of_id), -1)
    counts = np.bincount(cls[cls >= 0], minlength=int(cls_of_id.max()) + 1)
    if not counts.any():
        return None
    tied = np.flatnonzero(counts == counts.max())
    h, w = ids.shape
    centre = int(cls[h // 2, w // 2])
    return centre if centre in tied else int(tied[0])


#: Nodata of the masked label rasters written for raster cross-validation folds.
_MASKED_NODATA = -1


def masked_label_raster(
    label_raster: str | os.PathLike[str],
    info: Any,
    out: Path,
    *,
    hold_out: np.ndarray,
    block: int,
    label_nodata: float | None = None,
) -> Path:
    """Copy a label raster onto the scene grid without the labels of the ``hold_out`` blocks.

    Written window by window (memory of one 1024 px window) as int32 with nodata ``-1``; pixels that
    were unlabelled stay unlabelled. Block ids are those of :func:`geosam.train.cv.raster_reference`.
    """
    import rasterio
    from affine import Affine

    path = Path(label_raster)
    blocks_per_row = -(-info.width // block)
    held = np.asarray(hold_out, np.int64)
    profile = {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": 1,
        "dtype": "int32",
        "crs": info.crs,
        "transform": Affine(*info.transform),
        "nodata": _MASKED_NODATA,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with label_grid(path, info) as (ds, _), rasterio.open(out, "w", **profile) as dst:
        for r0 in range(0, info.height, 1024):
            for c0 in range(0, info.width, 1024):
                win = PixelWindow(c0, r0, min(1024, info.width - c0), min(1024, info.height - r0))
                ids, valid = read_labels(ds, win, label_nodata, path)
                rr, cc = np.indices(ids.shape)
                group = ((rr + r0) // block) * blocks_per_row + (cc + c0) // block
                keep = valid & ~np.isin(group, held) & (ids >= 0)
                dst.write(np.where(keep, ids, _MASKED_NODATA).astype(np.int32), 1, window=win.to_rasterio())
    return out
