"""Public helpers for geosam's tests and for users writing tests of their own pipelines.

* :func:`make_raster` writes a small georeferenced GeoTIFF (real projected CRS and geotransform, so
  georeferencing mistakes show), block by block, so large test rasters stay cheap in memory.
* Coordinate-encoding images (``fill="coords"``): every pixel holds its own position, so a window read
  from the wrong place, a transposed array or a lost halo fails loudly. :func:`coords_image` gives the
  expected values of any window.
* :func:`make_large_vrt` makes a scene of any size that is only metadata (no pixels written).

Nothing here is imported by ``import geosam``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from geosam.types import PixelWindow

__all__ = ["DEFAULT_TRANSFORM", "coords_image", "make_large_vrt", "make_raster"]

#: 10 m pixels in UTM zone 33N (EPSG:32633), upper-left corner at (500000, 5000000).
DEFAULT_TRANSFORM: tuple[float, float, float, float, float, float] = (
    10.0,
    0.0,
    500000.0,
    0.0,
    -10.0,
    5000000.0,
)


_VRT_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


def _wrap(values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        return values % (int(np.iinfo(dtype).max) + 1)
    return values


def coords_image(window: PixelWindow, count: int = 3, dtype: str | np.dtype[Any] = "float32") -> np.ndarray:
    """Expected values of a coordinate-encoding raster in ``window``, as float64 ``(count, h, w)``.

    Band 1 holds ``col + 1``, band 2 ``row + 1`` and band ``k >= 3`` holds ``10000 * (k - 2) + row + col
    + 1``, where ``row``/``col`` are scene pixel coordinates (so no pixel is 0, and 0 can be nodata).
    Integer dtypes wrap modulo their range (use uint16/int32/float32 for exact positions in scenes up to
    65535 pixels; float32 is exact to 16 million). Pixels outside the scene get the formula's value too;
    callers mask them.
    """
    dt = np.dtype(dtype)
    rows = np.arange(window.row_off, window.row_end, dtype=np.int64)[:, None]
    cols = np.arange(window.col_off, window.col_end, dtype=np.int64)[None, :]
    out = np.empty((count, window.height, window.width), dtype=np.float64)
    for k in range(1, count + 1):
        if k == 1:
            v = np.broadcast_to(cols + 1, (window.height, window.width))
        elif k == 2:
            v = np.broadcast_to(rows + 1, (window.height, window.width))
        else:
            v = 10000 * (k - 2) + rows + cols + 1
        out[k - 1] = _wrap(np.asarray(v), dt)
    return out


def make_raster(
    path: str | os.PathLike[str],
    width: int,
    height: int,
    count: int = 3,
    dtype: str = "uint16",
    crs: str | None = "EPSG:32633",
    transform: Sequence[float] | None = DEFAULT_TRANSFORM,
    nodata: float | None = None,
    fill: str | float | np.ndarray = "coords",
    *,
    mask: np.ndarray | None = None,
    nodata_where: np.ndarray | None = None,
    tiled: bool = True,
    blocksize: int = 256,
    band_names: Sequence[str | None] | None = None,
    colorinterp: Sequence[str] | None = None,
    compress: str | None = "deflate",
    seed: int = 0,
    overviews: Sequence[int] = (),
) -> Path:
    """Write a test GeoTIFF and return its path.

    Args:
        path: Output file (``.tif``).
        width: Columns.
        height: Rows.
        count: Bands.
        dtype: numpy dtype name (``uint8``, ``uint16``, ``int16``, ``float32``, ``complex64``...).
        crs: CRS for the file (``None`` writes none).
        transform: Geotransform ``(a, b, c, d, e, f)``; rotated and south-up ones are fine; ``None``
            writes none.
        nodata: Nodata value recorded in the file.
        fill: ``"coords"`` (see :func:`coords_image`), ``"random"`` (seeded, over the dtype's range, 0..1
            for floats), a constant, or an array ``(count, height, width)``.
        mask: bool ``(height, width)``, ``True`` where valid: written as an internal per-dataset mask.
        nodata_where: bool ``(height, width)``: these pixels get ``nodata`` (``NaN`` when ``nodata`` is
            ``None`` and the dtype is floating) in every band.
        tiled: Tiled GeoTIFF with ``blocksize`` square blocks (else strips).
        blocksize: Block edge in pixels (multiple of 16).
        band_names: Band descriptions.
        colorinterp: Colour interpretation names per band (``"red"``, ``"alpha"``...).
        compress: GeoTIFF compression, or ``None``.
        seed: Seed for ``fill="random"``.
        overviews: Overview factors to build (``(2, 4)``...).

    Returns:
        ``Path(path)``.
    """
    import rasterio
    from affine import Affine
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.windows import Window

    dt = np.dtype(dtype)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dt.name,
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = Affine(*transform[:6])
    if nodata is not None:
        profile["nodata"] = nodata
    if compress:
        profile["compress"] = compress
    if tiled:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    rng = np.random.default_rng(seed)
    fill_value: Any = nodata if nodata is not None else (np.nan if np.issubdtype(dt, np.floating) else 0)
    strip = blocksize if tiled else max(1, min(height, 256))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, height, strip):
            h = min(strip, height - r0)
            win = PixelWindow(0, r0, width, h)
            if isinstance(fill, str) and fill == "coords":
                block = coords_image(win, count, dt)
            elif isinstance(fill, str) and fill == "random":
                if np.issubdtype(dt, np.integer):
                    info = np.iinfo(dt)
                    block = rng.integers(info.min, int(info.max) + 1, size=(count, h, width), dtype=np.int64)
                else:
                    block = rng.random((count, h, width))
            elif isinstance(fill, np.ndarray):
                block = fill[:, r0 : r0 + h, :]
            else:
                block = np.full((count, h, width), fill, dtype=np.float64)
            block = np.array(block, dtype=dt)
            if nodata_where is not None:
                block[:, nodata_where[r0 : r0 + h]] = fill_value
            rw = Window(0, r0, width, h)
            ds.write(block, window=rw)
            if mask is not None:
                ds.write_mask(np.where(mask[r0 : r0 + h], 255, 0).astype(np.uint8), window=rw)
        if band_names is not None:
            for i, name in enumerate(band_names, start=1):
                if name is not None:
                    ds.set_band_description(i, name)
        if colorinterp is not None:
            ds.colorinterp = [ColorInterp[c] for c in colorinterp]
    if overviews:
        with rasterio.open(path, "r+") as ds:
            ds.build_overviews(list(overviews), Resampling.nearest)
    return Path(path)


def make_large_vrt(
    path: str | os.PathLike[str],
    source: str | os.PathLike[str],
    width: int,
    height: int,
    *,
    overview_from_source: bool = True,
) -> Path:
    """Write a ``width x height`` VRT that stretches ``source`` over its whole extent (nearest).

    The result covers the same ground as ``source`` with smaller pixels; no pixel is written, so scenes
    of 100,000 x 100,000 pixels cost a few hundred bytes. Reading it at full resolution is as slow as
    such a scene would be, so it suits tests of what must *not* read everything (planning, decimated
    statistics). With ``overview_from_source`` the source doubles as the VRT's overview, as a COG's
    overviews would, so decimated reads cost what they cost on a large COG.

    Returns:
        ``Path(path)``.
    """
    import rasterio

    src = Path(source).resolve()
    with rasterio.open(src) as ds:
        t = ds.transform
        sx, sy = ds.width / width, ds.height / height
        gt = (t.c, t.a * sx, t.b * sy, t.f, t.d * sx, t.e * sy)
        wkt = ds.crs.to_wkt() if ds.crs else ""
        bands = []
        for b in range(1, ds.count + 1):
            dtype = _VRT_TYPES[ds.dtypes[b - 1]]
            nd = ds.nodatavals[b - 1]
            nd_xml = f"<NoDataValue>{nd!r}</NoDataValue>" if nd is not None else ""
            overview = (
                f"<Overview><SourceFilename>{escape(str(src))}</SourceFilename>"
                f"<SourceBand>{b}</SourceBand></Overview>"
                if overview_from_source
                else ""
            )
            bands.append(
                f'<VRTRasterBand dataType="{dtype}" band="{b}">{nd_xml}<SimpleSource>'
                f"<SourceFilename>{escape(str(src))}</SourceFilename><SourceBand>{b}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{ds.width}" ySize="{ds.height}"/>'
                f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
                f"</SimpleSource>{overview}</VRTRasterBand>"
            )
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{escape(wkt)}</SRS>'
        f"<GeoTransform>{', '.join(repr(float(v)) for v in gt)}</GeoTransform>"
        + "".join(bands)
        + "</VRTDataset>"
    )
    Path(path).write_text(xml, encoding="utf-8")
    return Path(path)
