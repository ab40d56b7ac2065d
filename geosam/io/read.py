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
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from geosam.errors import (
    BandError,
    EmptyRasterError,
    GeosamError,
    MissingCRSError,
    NotARasterError,
    RasterNotFoundError,
    TileReadError,
    UnsupportedDtypeError,
)
from geosam.io.env import geosam_env, is_remote
from geosam.types import PixelWindow, SceneInfo, TileSpec, as_tuple6

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

_T = TypeVar("_T")

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

#: numpy dtype names geosam reads. 64-bit integers do not fit float32 exactly and complex values have
#: no meaning for land cover, so both are refused with :class:`UnsupportedDtypeError`.
SUPPORTED_DTYPES: frozenset[str] = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
)

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
    """Check a freshly opened dataset's VRT sources; expand a paletted band (closes ``ds`` if it must)."""
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
    except BaseException:
        ds.close()
        raise
    ds.close()
    import rasterio

    return rasterio.open(xml)


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
        hint = " (it has ground control points: warp it first, e.g. gdalwarp)" if ds.gcps[0] else ""
        raise MissingCRSError(f"the raster has no geotransform, so its pixels have no location{hint}", path)
    if ds.crs is None:
        raise MissingCRSError(
            "the raster has no coordinate reference system; assign one (gdal_edit -a_srs EPSG:<code>)", path
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


def _nodata_in_dtype(nodata: float | None, dtype: np.dtype[Any]) -> Any:
    """``nodata`` as a scalar of ``dtype``, or ``None`` when no value of that dtype can equal it."""
    if nodata is None:
        return None
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not np.isfinite(nodata) or nodata != int(nodata) or not info.min <= nodata <= info.max:
            return None
        return dtype.type(int(nodata))
    return dtype.type(nodata)


def _band_validity(
    ds: DatasetReader,
    bands: Sequence[int],
    raw: np.ndarray,
    window: Any,
    out_shape: tuple[int, int] | None,
) -> np.ndarray:
    """Per-band validity ``(bands, h, w)`` of ``raw`` (native dtype) from nodata values and masks."""
    from rasterio.enums import MaskFlags

    valid = np.ones(raw.shape, dtype=bool)
    shared: np.ndarray | None = None  # a per-dataset mask is the same for every band: read it once
    for i, b in enumerate(bands):
        flags = ds.mask_flag_enums[b - 1]
        if MaskFlags.per_dataset in flags and shared is not None:
            valid[i] = shared
        elif MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
            kw: dict[str, Any] = {"window": window}
            if out_shape is not None:
                kw["out_shape"] = out_shape
            valid[i] = ds.read_masks(b, **kw) > 0
            if MaskFlags.per_dataset in flags:
                shared = valid[i]
        # GDAL ignores the nodata value once a mask exists; geosam honours both, since a nodata pixel
        # holds no measurement whatever the mask says. NaN is caught by the finiteness test later.
        nd = _nodata_in_dtype(ds.nodatavals[b - 1], raw.dtype)
        if nd is not None and not (isinstance(nd, np.floating) and np.isnan(nd)):
            valid[i] &= raw[i] != nd
    return valid


def _to_float32(raw: np.ndarray, band_valid: np.ndarray) -> np.ndarray:
    """float32 copy of ``raw``; marks non-finite values invalid in ``band_valid`` (in place)."""
    with np.errstate(over="ignore", invalid="ignore"):
        data = raw.astype(np.float32)
    if np.issubdtype(raw.dtype, np.floating):
        band_valid &= np.isfinite(data)
    return data


def _decode(
    ds: DatasetReader, bands: Sequence[int], raw: np.ndarray, window: Any, out_shape: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(data, valid)``: float32 with invalid pixels 0, and the joint (all bands) validity."""
    band_valid = _band_validity(ds, bands, raw, window, out_shape)
    data = _to_float32(raw, band_valid)
    valid = np.asarray(band_valid.all(axis=0))
    if not valid.all():
        data[:, ~valid] = 0
    return data, valid


def _check_bands(path: str, count: int, bands: Sequence[int] | None) -> tuple[int, ...]:
    if bands is None:
        return tuple(range(1, count + 1))
    out = tuple(int(b) for b in bands)
    bad = [b for b in out if not 1 <= b <= count]
    if not out or bad:
        raise BandError(f"band(s) {bad or '[]'} do not exist; the raster has bands 1..{count}", path)
    return out


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


def _describe(w: PixelWindow) -> str:
    return f"rows {w.row_off}..{w.row_end - 1}, cols {w.col_off}..{w.col_end - 1}"


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


def decimated_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    """Shape of a scene scaled so its longest side is at most ``max_side`` (never enlarged)."""
    scale = min(1.0, max_side / max(height, width))
    return (max(1, round(height * scale)), max(1, round(width * scale)))


#: Source bytes one chunk of a decimated read may touch. Without overviews GDAL reads (and caches until
#: the dataset closes) every block under a downsampled read, so whole-scene reads are split into chunks
#: of about this size, each with its own short-lived dataset: peak memory stays bounded by the sample
#: and this budget instead of growing with the scene.
_CHUNK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class _Chunk:
    rows: slice  # rows of the decimated result
    cols: slice
    window: PixelWindow  # scene pixels they are sampled from


def _chunks(ds: DatasetReader, bands: Sequence[int], shape: tuple[int, int]) -> list[_Chunk]:
    """Split a decimated read of the whole scene into block-aligned chunks of about ``_CHUNK_BYTES``.

    Sizes are counted at the resolution GDAL will read: the coarsest overview not coarser than the
    requested decimation (GDAL's own choice, roughly), else full resolution. A COG read at overview
    level is usually a single chunk; a raster without overviews is read in many.
    """
    big_h, big_w = ds.height, ds.width
    h, w = shape
    itemsize = sum(np.dtype(ds.dtypes[b - 1]).itemsize for b in bands)
    block_h, block_w = ds.block_shapes[bands[0] - 1]
    factor = max(big_h / h, big_w / w)
    ov = max([f for f in ds.overviews(bands[0]) if f <= factor], default=1)
    # chunk size in pixels of the level GDAL reads, whole blocks, then back to scene pixels
    side = max(1, int((_CHUNK_BYTES / itemsize) ** 0.5))
    cols = min(-(-big_w // ov), -(-max(side, block_w) // block_w) * block_w)
    rows = max(1, _CHUNK_BYTES // (cols * itemsize))
    rows = min(-(-big_h // ov), -(-max(rows, block_h) // block_h) * block_h)
    step_r = max(1, rows * ov * h // big_h)
    step_c = max(1, cols * ov * w // big_w)
    out = []
    for i0 in range(0, h, step_r):
        i1 = min(h, i0 + step_r)
        y0, y1 = i0 * big_h // h, (big_h if i1 == h else i1 * big_h // h)
        for j0 in range(0, w, step_c):
            j1 = min(w, j0 + step_c)
            x0, x1 = j0 * big_w // w, (big_w if j1 == w else j1 * big_w // w)
            out.append(_Chunk(slice(i0, i1), slice(j0, j1), PixelWindow(x0, y0, x1 - x0, y1 - y0)))
    return out


def _read_chunk(p: str, bands: tuple[int, ...], chunk: _Chunk) -> tuple[np.ndarray, np.ndarray]:
    """Raw-decoded ``(float32 data, per-band validity)`` of one chunk, from a dataset opened for it."""
    shape = (chunk.rows.stop - chunk.rows.start, chunk.cols.stop - chunk.cols.start)
    rw = chunk.window.to_rasterio()
    decimate = shape != (chunk.window.height, chunk.window.width)

    def read(ds: DatasetReader) -> tuple[np.ndarray, np.ndarray]:
        raw = (
            ds.read(list(bands), window=rw, out_shape=(len(bands), *shape))
            if decimate
            else ds.read(list(bands), window=rw)
        )
        band_valid = _band_validity(ds, bands, raw, rw, shape if decimate else None)
        return _to_float32(raw, band_valid), band_valid

    with geosam_env(p), _open(p) as ds:
        return _guarded(p, f"reading pixels {_describe(chunk.window)}", lambda: read(ds))


def _plan_decimated(
    p: str, bands: Sequence[int] | None, max_side: int | None
) -> tuple[tuple[int, ...], tuple[int, int], list[_Chunk]]:
    with geosam_env(p), _open(p) as ds:
        b = _check_bands(p, ds.count, bands)
        _scene_dtype(p, [ds.dtypes[i - 1] for i in b])
        shape = (ds.height, ds.width) if max_side is None else decimated_shape(ds.height, ds.width, max_side)
        return b, shape, _chunks(ds, b, shape)


def read_decimated(
    path: str | os.PathLike[str], bands: Sequence[int] | None = None, *, max_side: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Read a whole scene at reduced resolution, for statistics and previews (out of core).

    GDAL answers from the closest overview when the file has overviews (COGs do), so the cost depends
    on ``max_side`` and not on the scene size. Without overviews every block is read once, in chunks of
    about 32 MB each, so memory stays bounded either way. Resampling is nearest-neighbour: sampled values
    are real pixel values (no mixing with nodata); validity is decided per sampled pixel as in
    :func:`read_tile`.

    Args:
        path: File path or GDAL URI.
        bands: 1-based band indexes; ``None`` reads all bands.
        max_side: Longest side of the result in pixels; scenes already smaller are read at full size.

    Returns:
        ``(data, valid)``: float32 ``(len(bands), h, w)`` with invalid pixels 0, and bool ``(h, w)``,
        where ``(h, w)`` is :func:`decimated_shape` of the scene.

    Raises:
        TileReadError: GDAL failed to decode the pixels.
        BandError: A band index does not exist.
    """
    p = os.fspath(path)
    b, shape, chunks = _plan_decimated(p, bands, max_side)
    data = np.zeros((len(b), *shape), dtype=np.float32)
    valid = np.zeros(shape, dtype=bool)
    for chunk in chunks:
        block, band_valid = _read_chunk(p, b, chunk)
        v = band_valid.all(axis=0)
        block[:, ~v] = 0
        data[:, chunk.rows, chunk.cols] = block
        valid[chunk.rows, chunk.cols] = v
    return data, valid


def read_validity(
    path: str | os.PathLike[str],
    window: PixelWindow | None = None,
    *,
    max_side: int | None = None,
    any_band: bool = False,
) -> np.ndarray:
    """Validity of a window, or of the whole (optionally decimated) scene, without keeping the pixels.

    Args:
        path: File path or GDAL URI.
        window: Scene pixels to test (may reach outside the scene: outside is invalid); ``None`` for the
            whole scene, read in bounded chunks as :func:`read_decimated` does.
        max_side: With ``window=None``, read the scene decimated so its longest side is at most this
            (nearest-neighbour, from overviews when present); ``None`` reads at full resolution.
        any_band: ``False``: valid where every band is valid (as :func:`read_tile` reports);
            ``True``: valid where at least one band is (GDAL's dataset-mask convention).

    Returns:
        bool array ``(h, w)``.

    Raises:
        TileReadError: GDAL failed to decode the pixels.
    """
    p = os.fspath(path)

    def combine(band_valid: np.ndarray) -> np.ndarray:
        return np.asarray(band_valid.any(axis=0) if any_band else band_valid.all(axis=0))

    if window is None:
        b, shape, chunks = _plan_decimated(p, None, max_side)
        out = np.zeros(shape, dtype=bool)
        for chunk in chunks:
            out[chunk.rows, chunk.cols] = combine(_read_chunk(p, b, chunk)[1])
        return out
    out = np.zeros((window.height, window.width), dtype=bool)
    with geosam_env(p), _open(p) as ds:
        b = tuple(range(1, ds.count + 1))
        _scene_dtype(p, ds.dtypes)
        inside = window.intersection(PixelWindow(0, 0, ds.width, ds.height))
        if inside is None:
            return out
        rw = inside.to_rasterio()

        def validity() -> np.ndarray:
            raw = ds.read(window=rw)
            band_valid = _band_validity(ds, b, raw, rw, None)
            _to_float32(raw, band_valid)
            return band_valid

        band_valid = _guarded(p, f"reading pixels {_describe(inside)}", validity)
    rows, cols = inside.relative_to(window)
    out[rows, cols] = combine(band_valid)
    return out
