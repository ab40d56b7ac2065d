"""Reading scenes: headers (:func:`open_scene`), tiles (:func:`read_tile`) and decimated samples.

Every function takes a *path* (or GDAL URI) and opens the file itself, inside :func:`geosam_env`, and
closes it before returning. Nothing here holds an open dataset between calls, so the functions are safe
to call from dask tasks in threads or processes (rasterio's concurrency guidance: one handle per task).

Validity. A pixel is *valid* when, in every band read,

* it is not the band's nodata value,
* the raster's internal or side-car mask (or alpha band) marks it valid (both rules apply when a raster
  has a mask *and* a nodata value, where GDAL would use the mask alone), and
* its value is finite after conversion to float32 (``NaN``, ``inf`` and float64 values beyond the
  float32 range are invalid).

Pixels outside the scene are invalid too. Invalid pixels read as ``0`` in the data array, so that no
sentinel value (``-99999``, ``NaN``) reaches a model; callers use the ``valid`` array instead.

Paletted rasters. A single band with a colour table holds palette indexes, not measurements: every
function here reads it expanded into the red, green and blue components of its colour table (plus an
alpha band when the table has transparent entries), as ``gdal_translate -expand rgb`` would, through a
VRT built in memory; the palette's nodata index stays nodata. A paletted band in a multi-band raster is
refused (:class:`BandError`) with the ``gdal_translate`` command that extracts and expands it.

VRTs. A VRT whose source files are missing is refused when opened (:class:`RasterNotFoundError` naming
the missing source), not reported as a corrupt file when its pixels are read.

Opening (GDAL errors, palettes, VRT sources) lives in :mod:`geosam.io._open`, pixel decoding and the
decimated whole-scene reads in :mod:`geosam.io._pixels`; this module is their public face.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geosam.errors import EmptyRasterError, MissingCRSError, NotARasterError
from geosam.io._open import SUPPORTED_DTYPES, _describe, _guarded, _is_expanded, _open, _scene_dtype
from geosam.io._pixels import _check_bands, _decode, decimated_shape, read_decimated, read_validity
from geosam.io.env import geosam_env
from geosam.types import PixelWindow, SceneInfo, TileSpec, as_tuple6

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

log = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_DTYPES",
    "TileArray",
    "decimated_shape",
    "open_scene",
    "read_decimated",
    "read_tile",
    "read_validity",
    "read_window",
]


# Colour interpretations that name a band. Gray/undefined say nothing (GDAL gives them to any band 1).
_COLORINTERP_NAMES = {
    "red": "red",
    "green": "green",
    "blue": "blue",
    "alpha": "alpha",
    "pan": "pan",
    "coastal": "coastal",
    "rededge": "rededge",
    "nir": "nir",
    "swir": "swir",
    "lwir": "lwir",
}

_TIFF_SUFFIXES = (".tif", ".tiff", ".gtif")
_TIFF_DRIVERS = ("GTiff", "COG", "LIBERTIFF")


@dataclass(frozen=True, eq=False)
class TileArray:
    """Pixels of one tile as read, with their validity.

    Attributes:
        data: float32 array ``(bands, H, W)``, where ``(H, W)`` is ``spec.size``; invalid pixels are 0.
        valid: bool array ``(H, W)``; ``True`` where every band read holds a real value (see the module
            docstring). Pixels outside the scene (padding of edge tiles) are ``False``.
        spec: The tile that was read (its ``window`` is the array's footprint in the scene).
        bands: The 1-based band indexes read, in the order of ``data``'s first axis.
    """

    data: np.ndarray
    valid: np.ndarray
    spec: TileSpec
    bands: tuple[int, ...]

    @property
    def core_data(self) -> np.ndarray:
        """The core of ``data`` (the part the tile owns), a view ``(bands, h, w)``."""
        rows, cols = self.spec.core_slices
        return self.data[:, rows, cols]

    @property
    def core_valid(self) -> np.ndarray:
        """The core of ``valid``, a view ``(h, w)``."""
        rows, cols = self.spec.core_slices
        return self.valid[rows, cols]


def _band_names(ds: DatasetReader) -> tuple[str | None, ...]:
    names: list[str | None] = []
    for desc, ci in zip(ds.descriptions, ds.colorinterp, strict=True):
        if desc and desc.strip():
            names.append(desc.strip())
        else:
            names.append(_COLORINTERP_NAMES.get(ci.name.lower()))
    return tuple(names)


def _has_mask(ds: DatasetReader) -> bool:
    from rasterio.enums import MaskFlags

    return any(MaskFlags.per_dataset in flags or MaskFlags.alpha in flags for flags in ds.mask_flag_enums)


def not_georeferenced_message(path: str | os.PathLike[str], *, has_gcps: bool = False) -> str:
    """The error text for a raster without a geotransform: what is wrong and the commands that fix it.

    With ground control points, ``gdalwarp`` turns them into a geotransform; without, the corners must
    be given (``gdal_translate -a_ullr``); image chips that have no location at all go the chip-folder
    way instead.
    """
    name = os.path.basename(os.fspath(path)) or os.fspath(path)
    if has_gcps:
        return (
            "the raster has no geotransform, only ground control points; warp it onto a grid first: "
            f"gdalwarp -t_srs EPSG:<code> {name} warped.tif"
        )
    return (
        "the raster has no geotransform, so its pixels have no location; georeference it with its corner "
        f"coordinates: gdal_translate -a_srs EPSG:<code> -a_ullr <ulx> <uly> <lrx> <lry> {name} fixed.tif, "
        "or, for image chips without a location, use the chip-folder commands (see `geosam --help`)"
    )


def _scene_info(ds: DatasetReader, path: str) -> SceneInfo:
    if ds.width <= 0 or ds.height <= 0 or ds.count <= 0:
        raise EmptyRasterError(f"the raster has no pixels ({ds.width} x {ds.height}, {ds.count} bands)", path)
    suffix = os.path.splitext(path.lower())[1]
    if suffix in _TIFF_SUFFIXES and ds.driver not in _TIFF_DRIVERS and not _is_expanded(ds):
        raise NotARasterError(
            f"named {suffix} but the file is a {ds.driver} image, not a GeoTIFF; export it as a GeoTIFF", path
        )
    dtype = _scene_dtype(path, ds.dtypes)
    if ds.transform.is_identity:
        raise MissingCRSError(not_georeferenced_message(path, has_gcps=bool(ds.gcps[0])), path)
    if ds.crs is None:
        name = os.path.basename(path) or path
        raise MissingCRSError(
            "the raster has no coordinate reference system; assign the one its coordinates are in: "
            f"gdal_edit.py -a_srs EPSG:<code> {name} (in place), or gdal_translate -a_srs EPSG:<code> "
            f"{name} fixed.tif",
            path,
        )
    return SceneInfo(
        path=path,
        width=ds.width,
        height=ds.height,
        count=ds.count,
        dtype=dtype,
        crs=ds.crs.to_wkt(),
        transform=as_tuple6(ds.transform),
        nodata=tuple(None if v is None else float(v) for v in ds.nodatavals),
        band_names=_band_names(ds),
        has_mask=_has_mask(ds),
    )


def open_scene(path: str | os.PathLike[str]) -> SceneInfo:
    """Read a raster's header (no pixels) and check that geosam can use it.

    Accepts anything GDAL opens with a CRS and a geotransform: GeoTIFF, COG, VRT, remote ``/vsicurl/``
    paths..., in any CRS, with 1..N bands of a dtype in :data:`SUPPORTED_DTYPES`. Band names come from
    band descriptions, else from the colour interpretation (``red``, ``green``, ``nir``...), else ``None``.

    Args:
        path: File path or GDAL URI.

    Returns:
        The scene's size, CRS (WKT), geotransform, dtype, per-band nodata and names.

    A single paletted band is described as the red, green and blue bands of its colour table (see the
    module docstring).

    Raises:
        RasterNotFoundError: The file does not exist, or a VRT's source file is missing.
        NotARasterError: GDAL cannot read it (a text file, truncated header...), or a ``.tif`` that is
            really another format (a JPEG renamed ``.tif``).
        BandError: A paletted band in a multi-band raster.
        EmptyRasterError: Zero width, height or bands.
        UnsupportedDtypeError: Complex or 64-bit integer bands.
        MissingCRSError: No CRS or no geotransform.
    """
    p = os.fspath(path)
    with geosam_env(p), _open(p, check_sources=True) as ds:
        info = _scene_info(ds, p)
        if _is_expanded(ds):
            log.info(
                "%s: band 1 is paletted (palette indexes): read as the red, green, blue%s of its colour "
                "table, as gdal_translate -expand rgb would",
                os.path.basename(p),
                ", alpha" if ds.count == 4 else "",
            )
        return info


def _read_into(
    ds: DatasetReader, path: str, bands: tuple[int, ...], window: PixelWindow
) -> tuple[np.ndarray, np.ndarray]:
    """Boundless read of ``window``: exact, no resampling; outside pixels are 0 and invalid."""
    _scene_dtype(path, [ds.dtypes[b - 1] for b in bands])
    data = np.zeros((len(bands), window.height, window.width), dtype=np.float32)
    valid = np.zeros((window.height, window.width), dtype=bool)
    inside = window.intersection(PixelWindow(0, 0, ds.width, ds.height))
    if inside is None:
        return data, valid
    rw = inside.to_rasterio()
    block, v = _guarded(
        path,
        f"reading pixels {_describe(inside)}",
        lambda: _decode(ds, bands, ds.read(list(bands), window=rw), rw, None),
    )
    rows, cols = inside.relative_to(window)
    data[:, rows, cols] = block
    valid[rows, cols] = v
    return data, valid


def read_window(
    path: str | os.PathLike[str], window: PixelWindow, bands: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read any pixel window of a scene, which may reach outside it (a boundless read).

    The part of ``window`` inside the scene is read at full resolution (no resampling); the rest is
    filled with 0 and marked invalid.

    Args:
        path: File path or GDAL URI.
        window: Scene pixels to read (``col_off``/``row_off`` may be negative).
        bands: 1-based band indexes, in output order; ``None`` reads all bands.

    Returns:
        ``(data, valid)``: float32 ``(len(bands), height, width)`` with invalid pixels 0, and bool
        ``(height, width)``. See the module docstring for what is valid.

    Raises:
        TileReadError: GDAL failed to decode the pixels (corrupt or truncated file).
        BandError: A band index does not exist.
    """
    p = os.fspath(path)
    with geosam_env(p), _open(p) as ds:
        return _read_into(ds, p, _check_bands(p, ds.count, bands), window)


def read_tile(path: str | os.PathLike[str], spec: TileSpec, bands: Sequence[int] | None = None) -> TileArray:
    """Read one tile's full read window (core plus halo), padding outside the scene.

    Opens and closes ``path`` on each call, so tasks carry the path and the small :class:`TileSpec`
    instead of arrays or open datasets.

    Args:
        path: File path or GDAL URI of the scene the tile was planned on.
        spec: The tile (from :func:`geosam.tiling.plan_tiles`).
        bands: 1-based band indexes in model order (see :func:`geosam.bands.resolve_bands`); ``None``
            reads all bands.

    Returns:
        A :class:`TileArray` of shape ``(len(bands), *spec.size)``.

    Raises:
        TileReadError: GDAL failed to decode the pixels (corrupt or truncated data), naming the file.
        BandError: A band index does not exist.
    """
    p = os.fspath(path)
    with geosam_env(p), _open(p) as ds:
        b = _check_bands(p, ds.count, bands)
        data, valid = _read_into(ds, p, b, spec.window)
    return TileArray(data=data, valid=valid, spec=spec, bands=b)
