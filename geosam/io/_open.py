"""Opening rasters for reading: GDAL's failures as geosam errors, palettes expanded, VRT sources checked.

Private to :mod:`geosam.io.read` (which documents the rules); split from it to keep modules small.

* :func:`_open` opens a path inside :func:`geosam.io.env.geosam_env` and turns GDAL's messages into
  :mod:`geosam.errors` (not found, not a raster, no pixels, a VRT's missing source...).
* A single band with a colour table comes back as a VRT, built in memory, of its colour table's red,
  green and blue (and alpha) components: ``ComplexSource`` + ``ColorTableComponent``, what
  ``gdal_translate -expand rgb`` writes (GDAL VRT format); the palette's nodata index becomes the mask.
* :func:`_guarded` runs pixel reads and turns GDAL failures into :class:`TileReadError` (or a missing VRT
  source), raised without exception chain so that dask can pickle it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from geosam.errors import (
    BandError,
    EmptyRasterError,
    GeosamError,
    NotARasterError,
    RasterNotFoundError,
    TileReadError,
    UnsupportedDtypeError,
)
from geosam.io.env import is_remote
from geosam.types import PixelWindow

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

_T = TypeVar("_T")

log = logging.getLogger(__name__)


def _gdal_message(err: BaseException) -> str:
    """The most specific message in an exception chain (rasterio wraps GDAL's error in ``__cause__``)."""
    messages: list[str] = []
    e: BaseException | None = err
    while e is not None and len(messages) < 5:
        text = str(e).strip()
        if text and "see previous exception" not in text.lower():
            messages.append(text)
        e = e.__cause__ or e.__context__
    return messages[-1] if messages else type(err).__name__


def _strip_path(message: str, path: str) -> str:
    """Drop a leading ``<path>: `` that GDAL adds, since geosam errors print the path themselves."""
    for prefix in (f"{path}: ", f"'{path}' "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _open(path: str | os.PathLike[str], *, check_sources: bool = False) -> DatasetReader:
    """Open ``path`` with rasterio, turning GDAL's failures into geosam errors. Call inside the env.

    Paletted single-band rasters come back expanded to RGB(A) (see the module docstring). With
    ``check_sources`` a VRT's source files are checked for existence (once per scene, in
    :func:`open_scene`: a mosaic may have thousands).
    """
    import rasterio
    from rasterio.errors import RasterioError

    p = os.fspath(path)
    if not is_remote(p) and not p.startswith("/vsi") and not os.path.exists(p):
        raise RasterNotFoundError("file not found", p)
    if os.path.isdir(p):
        raise NotARasterError("is a directory, not a raster file", p)
    try:
        with warnings.catch_warnings():
            # A missing geotransform is reported as MissingCRSError by open_scene, not as a warning.
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(p)
    except RasterioError as err:
        msg = _strip_path(_gdal_message(err), p)
    else:
        return _usable(ds, p, check_sources=check_sources)
    # Raised outside the ``except`` block, so the geosam error carries no chained rasterio exception
    # (see _guarded).
    low = msg.lower()
    missing = _missing_source(p, msg)
    if missing is not None:
        raise RasterNotFoundError(_missing_source_message(missing), p)
    if "no such file" in low or "does not exist" in low or "response code: 404" in low:
        raise RasterNotFoundError(f"file not found ({msg})", p)
    if "invalid dataset dimensions" in low or "must be positive" in low or "missing one of" in low:
        raise EmptyRasterError(f"the raster has no pixels or no bands ({msg})", p)
    if "not recognized" in low or "not recognised" in low:
        raise NotARasterError(
            "not a raster GDAL can read (is it a GeoTIFF, COG or VRT? a text or HTML file?)", p
        )
    raise NotARasterError(f"cannot be read as a raster; the file may be corrupt or truncated ({msg})", p)


def _missing_source_message(source: str) -> str:
    return (
        f"its source file {source} is missing (moved or deleted?); restore it, or rebuild the VRT "
        "from the files that exist (gdalbuildvrt)"
    )


def _missing_source(path: str, message: str) -> str | None:
    """The local file a GDAL message says is missing, when it is not ``path`` itself (a VRT's source)."""
    low = message.lower()
    if "no such file" not in low and "does not exist" not in low:
        return None
    for candidate in re.findall(r"(/[^\s:'\"]+|[A-Za-z]:\\[^\s:'\"]+)", message):
        cand = str(candidate).rstrip(".,;)")
        if cand != path and os.path.abspath(cand) != os.path.abspath(path) and not os.path.exists(cand):
            return cand
    return None


def _usable(ds: DatasetReader, path: str, *, check_sources: bool) -> DatasetReader:
    """Check a freshly opened dataset's VRT sources; expand a paletted band (closes ``ds`` if it must).

    GDAL failures while looking (a damaged colour table, unreadable tags) are a
    :class:`NotARasterError`, raised without exception chain (see :func:`_guarded`).
    """
    import rasterio
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    try:
        if check_sources and ds.driver == "VRT":
            gone = _missing_vrt_source(list(ds.files[1:]))
            if gone is not None:
                raise RasterNotFoundError(_missing_source_message(gone), path)
        paletted = _paletted_bands(ds)
        if not paletted:
            return ds
        if ds.count > 1:
            b = paletted[0]
            raise BandError(
                f"band {b} holds palette indexes (it has a colour table), not measurements; extract it "
                f"as RGB first: gdal_translate -b {b} -expand rgb {shlex.quote(path)} "
                f"{shlex.quote(_expanded_name(path))}",
                path,
            )
        xml = _expanded_vrt_xml(ds, path)
        failure = None
    except GeosamError:
        ds.close()
        raise
    except (CPLE_BaseError, RasterioError, OSError, ValueError) as err:
        failure = _strip_path(_gdal_message(err), path)
    except BaseException:
        ds.close()
        raise
    ds.close()
    if failure is not None:
        raise NotARasterError(
            f"cannot be read as a raster; the file may be corrupt or truncated ({failure})", path
        )
    try:
        return rasterio.open(xml)
    except (CPLE_BaseError, RasterioError) as err:
        failure = _strip_path(_gdal_message(err), path)
    raise NotARasterError(f"its colour table cannot be expanded; the file may be corrupt ({failure})", path)


def _missing_vrt_source(files: list[str], depth: int = 0) -> str | None:
    """The first local source file that does not exist, following nested VRTs (up to 8 deep)."""
    import rasterio
    from rasterio.errors import RasterioError

    for f in files:
        if is_remote(f) or f.startswith("/vsi"):
            continue
        if not os.path.exists(f):
            return f
        if f.lower().endswith(".vrt") and depth < 8:
            try:
                with rasterio.open(f) as inner:
                    nested = list(inner.files[1:])
            except RasterioError:
                continue  # reported as unreadable when read
            gone = _missing_vrt_source(nested, depth + 1)
            if gone is not None:
                return gone
    return None


def _is_expanded(ds: DatasetReader) -> bool:
    """Whether ``ds`` is the in-memory RGB(A) expansion of a paletted raster (see :func:`_usable`)."""
    return ds.driver == "VRT" and str(ds.name).startswith("<VRTDataset")


def _paletted_bands(ds: DatasetReader) -> list[int]:
    from rasterio.enums import ColorInterp

    return [i for i, ci in enumerate(ds.colorinterp, start=1) if ci == ColorInterp.palette]


def _expanded_name(path: str) -> str:
    stem, _ = os.path.splitext(os.path.basename(path))
    return f"{stem}_rgb.tif"


def _expanded_vrt_xml(ds: DatasetReader, path: str) -> str:
    """A VRT (XML text) of band 1's colour table components: ``gdal_translate -of VRT -expand rgb(a)``.

    Each output band is a ``ComplexSource`` with ``ColorTableComponent`` (GDAL's VRT format). A nodata
    index becomes the dataset mask (the source band's mask, ``mask,1``); a table with transparent
    entries (and no nodata index) gets a fourth, alpha, band.
    """
    from xml.sax.saxutils import escape

    src = escape(path if is_remote(path) or path.startswith("/vsi") else os.path.abspath(path))
    alpha = ds.nodata is None and any(c[3] < 255 for c in ds.colormap(1).values())
    names = ["Red", "Green", "Blue", *(["Alpha"] if alpha else [])]
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{i}"><ColorInterp>{name}</ColorInterp><ComplexSource>'
        f'<SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>1</SourceBand>'
        f"<ColorTableComponent>{i}</ColorTableComponent></ComplexSource></VRTRasterBand>"
        for i, name in enumerate(names, start=1)
    )
    mask = (
        '<MaskBand><VRTRasterBand dataType="Byte"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>mask,1</SourceBand>'
        "</SimpleSource></VRTRasterBand></MaskBand>"
        if ds.nodata is not None
        else ""
    )
    srs = f"<SRS>{escape(ds.crs.to_wkt())}</SRS>" if ds.crs is not None else ""
    gt = ", ".join(repr(float(v)) for v in ds.transform.to_gdal())
    return (
        f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}">{srs}'
        f"<GeoTransform>{gt}</GeoTransform>{bands}{mask}</VRTDataset>"
    )


def _guarded(path: str, what: str, fn: Callable[[], _T]) -> _T:
    """Run GDAL reads in ``fn``, turning GDAL failures into :class:`TileReadError` naming ``path``.

    The error is raised after the ``except`` block so it has no ``__context__``: dask.distributed pickles
    exceptions with their chain (tblib), and rasterio's GDAL exceptions cannot be unpickled, which would
    turn a clear "corrupt file" error into a serialisation failure on the client.
    """
    from rasterio.errors import RasterioError

    try:
        return fn()
    except GeosamError:
        raise
    except (RasterioError, OSError) as err:
        failure = _strip_path(_gdal_message(err), path)
    missing = _missing_source(path, failure)
    if missing is not None:
        raise RasterNotFoundError(f"{what} failed: {_missing_source_message(missing)}", path)
    raise TileReadError(f"{what} failed; the file may be corrupt or truncated ({failure})", path)


#: numpy dtype names geosam reads. 64-bit integers do not fit float32 exactly and complex values have
#: no meaning for land cover, so both are refused with :class:`UnsupportedDtypeError`.
SUPPORTED_DTYPES: frozenset[str] = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
)


def _scene_dtype(path: str, dtypes: Sequence[str]) -> str:
    """The one dtype geosam reports for a scene (VRTs may mix band types), or raise."""
    for dt in dtypes:
        if dt not in SUPPORTED_DTYPES:
            kind = "complex" if "complex" in dt else dt
            raise UnsupportedDtypeError(
                f"band data type {kind} is not supported; geosam reads "
                f"{', '.join(sorted(SUPPORTED_DTYPES))} (convert with gdal_translate -ot Float32)",
                path,
            )
    return str(np.result_type(*[np.dtype(d) for d in dtypes]))


def _describe(w: PixelWindow) -> str:
    return f"rows {w.row_off}..{w.row_end - 1}, cols {w.col_off}..{w.col_end - 1}"
