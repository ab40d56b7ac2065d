"""Chips as files: a chip folder to train on, chips as georeferenced scenes, and per-chip predictions.

:func:`write_chip_folder` writes a small class-per-subfolder PNG chip folder (EuroSAT layout) that
``geosam train folder`` learns in an epoch.

For parity checks between the training/validation path (a chip through the bundle's preprocessing and
the model) and ``geosam run`` (the same chip inside a scene): :func:`write_chip_scene` writes one chip
as a GeoTIFF, :func:`write_mosaic` lays chips out on a grid in one GeoTIFF, and
:func:`chip_classes_from_map` reads the class of each chip back from a run's class map (the majority
class of the chip's pixels; with ``--regions chips`` every pixel of a chip holds the chip's class).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["chip_classes_from_map", "tile_classes", "write_chip_folder", "write_chip_scene", "write_mosaic"]


def write_chip_folder(
    root: str | os.PathLike[str],
    per_class: int,
    size: int,
    *,
    classes: Sequence[str] = ("Forest", "Water"),
    seed: int = 0,
) -> Path:
    """Write ``per_class`` RGB PNG chips of ``size`` px per class as ``root/<class>/<class>_<i>.png``.

    Chips are uint8 noise in 0..59 with 150 added to one band per class (green for the first class,
    blue for the second, then red...): classes a tiny model tells apart after one epoch. Returns ``root``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = Path(root)
    for ci, name in enumerate(classes):
        (out / name).mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            a[..., (1 + ci) % 3] += 150
            Image.fromarray(a).save(out / name / f"{name}_{i}.png")
    return out


def write_chip_scene(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    crs: str = "EPSG:32631",
    origin: tuple[float, float] = (500000.0, 5000000.0),
    gsd: float = 10.0,
    band_names: Sequence[str] | None = None,
    rgb: bool = False,
) -> Path:
    """Write ``(bands, H, W)`` stored values as a north-up GeoTIFF at ``gsd`` metres (top-left ``origin``)."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    p = Path(path)
    b, h, w = data.shape
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=b,
        dtype=str(data.dtype),
        crs=crs,
        transform=from_origin(origin[0], origin[1], gsd, gsd),
    ) as ds:
        ds.write(data)
        if rgb and b == 3:
            ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        for i, name in enumerate(band_names or ()):
            ds.set_band_description(i + 1, name)
    return p


def write_mosaic(
    path: str | os.PathLike[str],
    chips: Sequence[np.ndarray],
    per_side: int,
    **kw: object,
) -> tuple[Path, list[tuple[int, int]]]:
    """Lay ``chips`` (equal ``(bands, c, c)``) row-major on a ``per_side``-wide grid in one GeoTIFF.

    Returns the path and each chip's ``(row, col)`` pixel offset. A last, incomplete row is filled
    with copies of the first chips (the caller scores only the positions returned).
    """
    c = chips[0].shape[-1]
    rows = -(-len(chips) // per_side)
    canvas = np.zeros((chips[0].shape[0], rows * c, per_side * c), chips[0].dtype)
    where = []
    for k in range(rows * per_side):
        r, q = divmod(k, per_side)
        canvas[:, r * c : (r + 1) * c, q * c : (q + 1) * c] = chips[k % len(chips)]
        if k < len(chips):
            where.append((r * c, q * c))
    return write_chip_scene(path, canvas, **kw), where  # type: ignore[arg-type]


def chip_classes_from_map(
    classes_tif: str | os.PathLike[str], offsets: Sequence[tuple[int, int]], chip: int, nodata: int = 255
) -> np.ndarray:
    """Majority class id of each chip footprint ``(row, col, chip, chip)`` in a class map (-1: none)."""
    import rasterio

    with rasterio.open(classes_tif) as ds:
        cls = ds.read(1)
    out = np.full(len(offsets), -1, np.int64)
    for i, (r, c) in enumerate(offsets):
        v = cls[r : r + chip, c : c + chip].ravel()
        v = v[v != nodata]
        if v.size:
            out[i] = int(np.bincount(v).argmax())
    return out


def tile_classes(tiles_gpkg: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(class ids, probability of that class)`` of a run's tiles layer, in tile order."""
    import geopandas as gpd

    t = gpd.read_file(tiles_gpkg).sort_values("tile_index")
    return t["class_id"].to_numpy(np.int64), t["probability"].to_numpy(np.float64)
