"""Helpers for the field-case tests (issue 11): inputs built from real or synthetic scenes; CLI runs.

Real scenes come from ../shared/data/scenes (read in place, derived files written to ``tmp_path``);
every test module also builds synthetic variants, so nothing here needs the shared data.

* :func:`crop`, :func:`relabel` and :func:`warp` derive small inputs from any raster: a window, the
  same pixels under other georeferencing (``NAIP pixels relabelled as 1 cm``), a reprojection.
* :func:`run_geosam` runs ``geosam`` in-process and returns the exit code, stdout, stderr and the log
  records, so tests can assert on the one error line *and* on the warnings the run logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from geosam.testing_models import make_tiny_bundle

#: Utm zone 33N: 10 m pixels at the central meridian (scale factor 0.9996).
UTM33 = "EPSG:32633"


def crop(
    src: Path, dst: Path, col: int, row: int, width: int, height: int, bands: Sequence[int] | None = None
) -> Path:
    """Write the window ``(col, row, width, height)`` of ``src`` (selected bands) as a GeoTIFF."""
    with rasterio.open(src) as ds:
        b = list(bands) if bands else list(range(1, ds.count + 1))
        win = rasterio.windows.Window(col, row, width, height)
        data = ds.read(b, window=win)
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": len(b),
            "dtype": data.dtype.name,
            "crs": ds.crs,
            "transform": ds.window_transform(win),
            "nodata": ds.nodata,
        }
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def relabel(
    src: Path,
    dst: Path,
    *,
    crs: Any,
    transform: Affine | Sequence[float],
    bands: Sequence[int] | None = None,
    colorinterp: Sequence[str] | None = None,
    nodata: float | None = None,
) -> Path:
    """The pixels of ``src`` (selected bands) under another CRS and geotransform."""
    with rasterio.open(src) as ds:
        b = list(bands) if bands else list(range(1, ds.count + 1))
        data = ds.read(b)
    t = transform if isinstance(transform, Affine) else Affine(*list(transform)[:6])
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": t,
        "nodata": nodata,
        "tiled": data.shape[1] >= 16 and data.shape[2] >= 16,
        "blockxsize": 16 if data.shape[2] < 256 else 256,
        "blockysize": 16 if data.shape[1] < 256 else 256,
    }
    if not profile["tiled"]:
        for k in ("tiled", "blockxsize", "blockysize"):
            profile.pop(k)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        if colorinterp is not None:
            from rasterio.enums import ColorInterp

            out.colorinterp = [ColorInterp[c] for c in colorinterp]
    return dst


def warp(src: Path, dst: Path, crs: Any, *, resolution: float | tuple[float, float] | None = None) -> Path:
    """Reproject ``src`` to ``crs`` (bilinear, nodata 0 outside), as ``gdalwarp -t_srs`` would."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(src) as ds:
        transform, width, height = calculate_default_transform(
            ds.crs, crs, ds.width, ds.height, *ds.bounds, resolution=resolution
        )
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": ds.count,
            "dtype": ds.dtypes[0],
            "crs": crs,
            "transform": transform,
            "nodata": 0,
        }
        with rasterio.open(dst, "w", **profile) as out:
            for b in range(1, ds.count + 1):
                reproject(
                    rasterio.band(ds, b),
                    rasterio.band(out, b),
                    src_nodata=ds.nodata if ds.nodata is not None else 0,
                    dst_nodata=0,
                    resampling=Resampling.bilinear,
                )
    return dst


def rotated(pixel: float, angle_deg: float, x0: float, y0: float) -> Affine:
    """A north-up-ish geotransform of square ``pixel`` units rotated by ``angle_deg`` about the corner."""
    return Affine.translation(x0, y0) @ Affine.rotation(angle_deg) @ Affine.scale(pixel, -pixel)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone of a point."""
    zone = min(60, max(1, math.floor((lon + 180) / 6) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def run_geosam(
    args: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> tuple[int, str, str, list[logging.LogRecord]]:
    """Run ``geosam ARGS`` in-process; returns (exit code, stdout, stderr, log records at INFO and up)."""
    from geosam.cli.main import main

    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err, [r for r in caplog.records if r.levelno >= logging.INFO]


def one_error_line(err: str) -> str:
    """The single ``geosam: error:`` line on stderr (fails on tracebacks and extra lines)."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("geosam: error: "), err
    assert "Traceback" not in err
    return lines[0]


def tiny_bundle_at(
    path: Path, *, gsd_m: float | None = 10.0, bands: Sequence[str] = ("red", "green", "blue")
) -> Path:
    """A tiny random bundle: 32 px chips, 128 px tiles, trained (nominally) at ``gsd_m``."""
    return make_tiny_bundle(path, input_size=32, tile_size=128, gsd_m=gsd_m, bands=bands)


def blocky(height: int, width: int, count: int = 3, *, seed: int = 0, block: int = 8) -> np.ndarray:
    """uint8 ``(count, height, width)`` image of random flat blocks (regions with clear edges)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(20, 235, size=(count, -(-height // block), -(-width // block)), dtype=np.uint8)
    return np.repeat(np.repeat(small, block, axis=1), block, axis=2)[:, :height, :width].copy()
