"""Streaming Cloud-Optimized GeoTIFF writer for class maps and continuous rasters.

A :class:`RasterWriter` is created with the scene grid and receives windows (tiles) in any order, so a
scene of any size is written with memory bounded by one window plus GDAL's block cache. Windows go into
a hidden scratch GeoTIFF (tiled 512x512, DEFLATE level 1, sparse) next to the output. On a successful
:meth:`~RasterWriter.close` GDAL's COG driver copies it into a Cloud-Optimized GeoTIFF (512x512 tiles,
internal overviews down to one tile, overview resampling ``MODE`` for class maps (majority class) and
``AVERAGE`` for continuous values (nodata-aware), compression from
:class:`~geosam.config.OutputConfig`), and the COG appears atomically together with its sidecars. On an
exception or :meth:`~RasterWriter.abort` nothing is left behind. Pixels never written read as nodata.

Outputs (``x.tif``):

* **Class maps** (``kind="classes"``): ``uint8`` class ids (class ``i`` is ``scheme.names[i]``), nodata
  ``scheme.nodata`` (255). Embedded colour table: class colours, every other entry black (TIFF
  palettes have no alpha; GDAL and QGIS show the nodata entry as transparent). The
  :class:`~geosam.types.ClassScheme` is stored as JSON in the dataset tag ``GEOSAM_CLASS_SCHEME``
  (inside the TIFF; read back with :func:`read_class_scheme` or ``rasterio.open(p).tags()``).
  Sidecar ``x.tif.aux.xml`` (GDAL PAM) holds GDAL category names and a thematic raster attribute
  table (value, class_name, red, green, blue, alpha), so ``gdalinfo`` lists "Categories" and GIS
  software shows names. Sidecar ``x.qml``: QGIS paletted style, names as labels.
* **Confidence** (:func:`confidence_writer`): ``float32`` probability 0..1 with nodata -1, or ``uint8``
  percent 0..100 with nodata 255 (see :func:`encode_confidence`); ``x.qml`` is a viridis ramp over the
  fixed range.

Stale GDAL sidecars of an earlier ``x.tif`` (``x.tif.aux.xml``, ``x.tif.ovr``, ``x.tif.msk``) are removed
when the new file is committed, so they cannot attach to it. One writer per output file; a writer is not
thread-safe.

Why this module is long: the writer's life cycle (scratch raster, COG conversion with overviews sized
to the raster, atomic publication with sidecars, abort on any failure) is one state machine; the two
specialised writers and the whole-array helper are thin wrappers over it, and the class scheme reader
is its inverse. Splitting them would spread that life cycle over files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import numpy as np

from geosam.errors import NotARasterError, RasterError, RasterNotFoundError
from geosam.io.atomic import AtomicGroup, output_error
from geosam.io.pam import category_list, class_map_pam_xml, pam_path
from geosam.io.style import confidence_qml, paletted_qml, qml_path
from geosam.types import ClassScheme, PixelWindow

if TYPE_CHECKING:
    from affine import Affine

__all__ = [
    "CLASS_SCHEME_TAG",
    "COG_PROFILE",
    "CONFIDENCE_NODATA",
    "SCRATCH_BLOCK",
    "RasterWriter",
    "class_map_writer",
    "cog_options",
    "cog_overview_options",
    "confidence_writer",
    "encode_confidence",
    "read_class_scheme",
    "write_array_cog",
]

Kind = Literal["classes", "continuous"]
Compress = Literal["deflate", "lzw", "zstd"]
ConfidenceDtype = Literal["float32", "uint8"]

CLASS_SCHEME_TAG = "GEOSAM_CLASS_SCHEME"
"""Dataset tag holding the class scheme as JSON (:meth:`ClassScheme.to_json`)."""

CONFIDENCE_NODATA: dict[str, float] = {"float32": -1.0, "uint8": 255}
"""Nodata value of confidence rasters by dtype."""

COG_PROFILE: dict[str, str] = {"BLOCKSIZE": "512", "OVERVIEWS": "AUTO", "BIGTIFF": "IF_SAFER"}
"""GDAL COG driver creation options shared by every output (see :func:`cog_options`)."""

_OVERVIEW_RESAMPLING: dict[str, str] = {"classes": "MODE", "continuous": "AVERAGE"}
_COMPRESS = ("deflate", "lzw", "zstd")
#: Block edge (pixels) of a writer's scratch GeoTIFF (what GDAL's block cache holds while it is open).
SCRATCH_BLOCK = 512
# Scratch file: random-order window writes, read once by the COG driver. Cheap compression keeps it
# well below the uncompressed size; SPARSE_OK leaves unwritten blocks empty (they read as nodata).
_SCRATCH_PROFILE: dict[str, Any] = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": SCRATCH_BLOCK,
    "blockysize": SCRATCH_BLOCK,
    "compress": "deflate",
    "zlevel": 1,
    "bigtiff": "IF_SAFER",
    "sparse_ok": True,
}
_GDAL_SIDECARS = (".aux.xml", ".ovr", ".msk")


def cog_options(kind: Kind, compress: Compress = "deflate") -> dict[str, str]:
    """GDAL COG driver creation options for an output of ``kind``.

    Class maps: ``MODE`` overviews (the majority class of each 2x2 block) and no predictor (class ids
    are not smooth). Continuous rasters: ``AVERAGE`` overviews and ``PREDICTOR=YES`` (horizontal
    differencing for integers, floating-point predictor for floats).
    """
    if compress not in _COMPRESS:
        raise ValueError(f"compress must be one of {', '.join(_COMPRESS)}, not {compress!r}")
    if kind not in _OVERVIEW_RESAMPLING:
        raise ValueError(f"kind must be 'classes' or 'continuous', not {kind!r}")
    return {
        **COG_PROFILE,
        "COMPRESS": compress.upper(),
        "PREDICTOR": "NO" if kind == "classes" else "YES",
        "OVERVIEW_RESAMPLING": _OVERVIEW_RESAMPLING[kind],
    }


def cog_overview_options(width: int, height: int, blocksize: int = 512) -> dict[str, str]:
    """Overview options for a ``width x height`` COG whose overviews shrink *both* axes at every level.

    GDAL's ``OVERVIEWS=AUTO`` halves the raster until it fits one block, also when one side is a single
    pixel: a 1 x 3000 column strip gets three overviews one pixel wide, which readers (rasterio's
    ``overviews()``, rio-cogeo's validator) see as decimation 1, an invalid COG. Here the number of levels
    is GDAL's, capped at ``floor(log2(min(width, height)))`` so that every level is at least 2x smaller
    than the previous one along both axes; rasters one pixel wide or high get no overviews.

    Returns:
        ``{}`` (GDAL's default), ``{"OVERVIEW_COUNT": n}`` or ``{"OVERVIEWS": "NONE"}``.
    """
    auto = 0
    while max(-(-width // 2**auto), -(-height // 2**auto)) > blocksize:
        auto += 1
    both = max(1, min(width, height)).bit_length() - 1  # floor(log2)
    if both >= auto:
        return {}
    return {"OVERVIEWS": "NONE"} if both == 0 else {"OVERVIEW_COUNT": str(both)}


def _colormap(scheme: ClassScheme) -> dict[int, tuple[int, int, int, int]]:
    # Alpha is dropped by TIFF; GDAL re-derives alpha 0 for the nodata entry when reading.
    cmap = {i: (0, 0, 0, 0) for i in range(256)}
    for i, (r, g, b) in enumerate(scheme.colors):
        cmap[i] = (r, g, b, 255)
    return cmap


class RasterWriter:
    """Write a raster window by window, then publish it as a COG (see the module docs).

    Use as a context manager: the COG is published when the block ends normally and discarded on an
    exception. Without ``with``, call :meth:`close` (publish) or :meth:`abort` (discard).

    Args:
        path: Output ``.tif`` path.
        width: Scene width in pixels.
        height: Scene height in pixels.
        transform: Scene geotransform (:class:`affine.Affine` or its 6 coefficients), CRS units.
        crs: Scene CRS: anything :meth:`rasterio.crs.CRS.from_user_input` accepts (WKT, ``"EPSG:32633"``).
        dtype: Band data type (numpy name). Class maps must be ``uint8``.
        nodata: Nodata value, representable in ``dtype``; class maps default to ``scheme.nodata``.
            ``None`` (continuous only) writes no nodata.
        count: Number of bands.
        kind: ``"classes"`` (class ids, needs ``scheme``) or ``"continuous"``.
        scheme: Class names and colours (class maps only).
        compress: COG compression (``OutputConfig.compress``).
        qml: QGIS style XML written to ``<stem>.qml``; ``"auto"`` writes the paletted class style for
            class maps and nothing for continuous rasters; ``None`` writes none.
        band_descriptions: One description per band (default ``"class"`` for class maps).
        tags: Extra dataset tags (strings).
        overwrite: Replace an existing output (else :class:`OutputError` if it exists).

    Raises:
        ValueError: Inconsistent arguments (no CRS, nodata not representable, classes not uint8...).
        OutputError: The output directory cannot take the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        transform: Affine | Sequence[float],
        crs: Any,
        dtype: str | np.dtype[Any] = "float32",
        nodata: float | None = None,
        count: int = 1,
        kind: Kind = "continuous",
        scheme: ClassScheme | None = None,
        compress: Compress = "deflate",
        qml: str | None = "auto",
        band_descriptions: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        overwrite: bool = True,
    ) -> None:
        import rasterio
        from affine import Affine
        from rasterio.crs import CRS

        self.path = Path(path)
        self.kind = kind
        self.scheme = scheme
        self.dtype = np.dtype(dtype)
        self.count = int(count)
        self.width, self.height = int(width), int(height)
        self.options = cog_options(kind, compress) | cog_overview_options(int(width), int(height))
        if self.width <= 0 or self.height <= 0 or self.count <= 0:
            raise ValueError(f"raster size must be positive, not {self.width}x{self.height}x{self.count}")
        if kind == "classes":
            if scheme is None:
                raise ValueError("a class map needs a ClassScheme")
            if self.dtype != np.uint8 or self.count != 1:
                raise ValueError(f"a class map has one uint8 band, not {self.count} x {self.dtype}")
            nodata = scheme.nodata if nodata is None else nodata
            if nodata != scheme.nodata:
                raise ValueError(f"class map nodata {nodata} differs from the scheme's ({scheme.nodata})")
        elif scheme is not None:
            raise ValueError("a ClassScheme is only used for kind='classes'")
        if nodata is not None and not _representable(nodata, self.dtype):
            raise ValueError(f"nodata {nodata} cannot be stored as {self.dtype}")
        self.nodata = nodata
        if crs is None or (isinstance(crs, str) and not crs.strip()):
            raise ValueError("an output raster needs a CRS")
        self.crs = CRS.from_user_input(crs)
        self.transform = transform if isinstance(transform, Affine) else Affine(*list(transform)[:6])
        if qml == "auto":
            qml = paletted_qml(scheme) if scheme is not None else None
        self._qml = qml
        descriptions = (
            list(band_descriptions) if band_descriptions else (["class"] if kind == "classes" else [])
        )
        if descriptions and len(descriptions) != self.count:
            raise ValueError(f"{len(descriptions)} band descriptions for {self.count} bands")

        finals: list[Path] = [self.path]
        if kind == "classes":
            finals.append(pam_path(self.path))
        if qml is not None:
            finals.append(qml_path(self.path))
        stale = [Path(f"{self.path}{ext}") for ext in _GDAL_SIDECARS]
        self._group = AtomicGroup(finals, overwrite=overwrite, stale=stale)
        self._scratch = self._group.scratch(self.path.stem + ".tif")
        self._closed = False
        profile = {
            **_SCRATCH_PROFILE,
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": self.dtype.name,
            "crs": self.crs,
            "transform": self.transform,
            "nodata": nodata,
            # bands are data, never colour channels: GDAL would otherwise read 3-4 uint8 bands as RGB(A)
            # and QGIS would take a 4th band (e.g. a class probability) for transparency
            "photometric": "MINISBLACK",
        }
        try:
            self._ds = rasterio.open(self._scratch, "w", **profile)
            all_tags = {"GEOSAM_KIND": kind, **(dict(tags) if tags else {})}
            if scheme is not None:
                self._ds.write_colormap(1, _colormap(scheme))
                all_tags[CLASS_SCHEME_TAG] = scheme.to_json()
            self._ds.update_tags(**all_tags)
            for i, text in enumerate(descriptions, start=1):
                self._ds.set_band_description(i, text)
        except BaseException as exc:
            self._fail(exc)

    # -- writing ---------------------------------------------------------------------------------------

    def write(self, window: PixelWindow, array: Any) -> None:
        """Write ``array`` at ``window`` (scene pixels); windows may come in any order.

        Overlapping windows are allowed (the last write wins). Parts of the window outside the scene
        are dropped, so a halo-padded tile can be written as is.
        Floating-point NaN and masked pixels (:class:`numpy.ma.MaskedArray`) are written as nodata.
        Class maps accept only class ids and nodata.

        Args:
            window: Where the array goes, in scene pixel coordinates.
            array: ``(height, width)`` for one band or ``(count, height, width)``. Integers go into
                integer rasters when their values fit; integers and floats into float rasters.

        Raises:
            ValueError: Shape mismatch, window entirely outside the scene, invalid class ids, or
                integers that do not fit the output dtype.
            TypeError: Floats into an integer raster (encode them first, see :func:`encode_confidence`).
            OutputError: The disk refused the data (the writer is then aborted).
        """
        if self._closed:
            raise RuntimeError(f"{self.path}: writer is already closed")
        if isinstance(array, np.ma.MaskedArray) and self.nodata is not None:
            array = array.filled(array.dtype.type(self.nodata))  # masked pixels -> nodata
        arr = np.asarray(array)
        if arr.ndim == 2:
            arr = arr[np.newaxis]
        if arr.shape != (self.count, window.height, window.width):
            raise ValueError(
                f"array of shape {np.asarray(array).shape} does not match window "
                f"{window.width}x{window.height} with {self.count} band(s)"
            )
        _check_cast(arr.dtype, self.dtype)
        inside = window.intersection(PixelWindow(0, 0, self.width, self.height))
        if inside is None:
            raise ValueError(f"window {window} lies entirely outside the {self.width}x{self.height} scene")
        rows, cols = inside.relative_to(window)
        arr = arr[:, rows, cols]
        if arr.dtype.kind == "f" and self.nodata is not None:
            nan = np.isnan(arr)
            if nan.any():
                arr = np.where(nan, np.asarray(self.nodata, dtype=arr.dtype), arr)
        if self.kind == "classes" and self.scheme is not None:
            bad = ((arr >= len(self.scheme)) & (arr != self.scheme.nodata)) | (arr < 0)
            if bad.any():
                values = np.unique(arr[bad])[:10].tolist()
                top, nd = len(self.scheme) - 1, self.scheme.nodata
                raise ValueError(f"class ids must be 0..{top} or nodata {nd}; got {values}")
        if self.dtype.kind in "iu" and arr.dtype.kind in "iu" and arr.dtype != self.dtype and arr.size:
            info = np.iinfo(self.dtype)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise ValueError(f"values {lo}..{hi} do not fit the raster's {self.dtype}")
        try:
            self._ds.write(arr.astype(self.dtype, copy=False), window=inside.to_rasterio())
        except BaseException as exc:
            self._fail(exc)

    # -- finishing -------------------------------------------------------------------------------------

    def close(self) -> Path:
        """Convert to a COG and publish it with its sidecars; returns the output path (idempotent).

        Raises:
            OutputError: The disk refused the output; nothing is left behind.
        """
        if self._closed:
            return self.path
        import rasterio.shutil

        try:
            self._ds.close()
            rasterio.shutil.copy(self._scratch, self._group.temp_for(self.path), driver="COG", **self.options)
            if self.scheme is not None:
                aux = self._group.temp_for(pam_path(self.path))
                aux.write_text(class_map_pam_xml(self.scheme), encoding="utf-8")
            if self._qml is not None:
                self._group.temp_for(qml_path(self.path)).write_text(self._qml, encoding="utf-8")
            self._group.commit()
        except BaseException as exc:
            self._fail(exc)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written so far; existing outputs are left untouched (idempotent)."""
        if getattr(self, "_ds", None) is not None and not self._ds.closed:
            # The dataset may be broken already (disk full); it is deleted anyway.
            with contextlib.suppress(Exception):
                self._ds.close()
        self._group.abort()
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether the writer was closed or aborted."""
        return self._closed

    def _fail(self, exc: BaseException) -> NoReturn:
        err = output_error(exc, self.path.parent, self.path.name)  # before abort frees the space
        self.abort()
        if err is not None and err is not exc:
            raise err from exc
        raise exc

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close()/abort() must not leave hidden scratch files behind.
        if not getattr(self, "_closed", True) and hasattr(self, "_group"):
            with contextlib.suppress(Exception):
                self.abort()


def _check_cast(src: np.dtype[Any], dst: np.dtype[Any]) -> None:
    """Allow bool/int -> int (values are range-checked), bool/int/float -> float; refuse the rest."""
    if src == dst or (dst.kind in "iu" and src.kind in "biu") or (dst.kind == "f" and src.kind in "biuf"):
        return
    raise TypeError(
        f"cannot write {src} values into a {dst} raster without loss (round or encode them first)"
    )


def _representable(value: float, dtype: np.dtype[Any]) -> bool:
    if dtype.kind == "f":
        return math.isnan(value) or abs(value) <= float(np.finfo(dtype).max)
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def class_map_writer(
    path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    transform: Affine | Sequence[float],
    crs: Any,
    scheme: ClassScheme,
    compress: Compress = "deflate",
    tags: Mapping[str, str] | None = None,
    overwrite: bool = True,
) -> RasterWriter:
    """A :class:`RasterWriter` for a ``uint8`` class map styled with ``scheme`` (see the module docs)."""
    return RasterWriter(
        path,
        width=width,
        height=height,
        transform=transform,
        crs=crs,
        dtype="uint8",
        nodata=scheme.nodata,
        kind="classes",
        scheme=scheme,
        compress=compress,
        tags=tags,
        overwrite=overwrite,
    )


def confidence_writer(
    path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    transform: Affine | Sequence[float],
    crs: Any,
    dtype: ConfidenceDtype = "float32",
    compress: Compress = "deflate",
    tags: Mapping[str, str] | None = None,
    overwrite: bool = True,
) -> RasterWriter:
    """A :class:`RasterWriter` for a confidence raster; feed it :func:`encode_confidence` output.

    ``float32``: probability 0..1, nodata -1. ``uint8``: percent 0..100, nodata 255 (4x smaller).
    """
    if dtype not in CONFIDENCE_NODATA:
        raise ValueError(f"confidence dtype must be 'float32' or 'uint8', not {dtype!r}")
    return RasterWriter(
        path,
        width=width,
        height=height,
        transform=transform,
        crs=crs,
        dtype=dtype,
        nodata=CONFIDENCE_NODATA[dtype],
        kind="continuous",
        compress=compress,
        qml=confidence_qml(dtype),
        band_descriptions=["confidence"],
        tags={"GEOSAM_CONFIDENCE_UNITS": "probability" if dtype == "float32" else "percent", **(tags or {})},
        overwrite=overwrite,
    )


def encode_confidence(
    prob: Any, dtype: ConfidenceDtype = "float32", *, mask: Any = None
) -> np.ndarray[Any, Any]:
    """Encode probabilities 0..1 for a confidence raster of ``dtype``.

    ``float32`` keeps the probability; ``uint8`` stores ``round(100 * p)`` percent. NaN and pixels where
    ``mask`` is true become nodata (-1 or 255). Values within 1e-6 outside 0..1 (float round-off) are
    clipped.

    Raises:
        ValueError: Values clearly outside 0..1 (probably logits or percentages passed by mistake).
    """
    if dtype not in CONFIDENCE_NODATA:
        raise ValueError(f"confidence dtype must be 'float32' or 'uint8', not {dtype!r}")
    p = np.asarray(prob, dtype=np.float64)
    invalid = np.isnan(p)
    if mask is not None:
        invalid |= np.asarray(mask, dtype=bool)
    valid = p[~invalid]
    if valid.size and (valid.min() < -1e-6 or valid.max() > 1 + 1e-6):
        raise ValueError(f"probabilities must be within 0..1, got {valid.min():g}..{valid.max():g}")
    p = np.clip(np.where(invalid, 0.0, p), 0.0, 1.0)
    nodata = CONFIDENCE_NODATA[dtype]
    if dtype == "uint8":
        return np.where(invalid, np.uint8(nodata), np.rint(p * 100).astype(np.uint8))
    return np.where(invalid, np.float32(nodata), p.astype(np.float32))


def write_array_cog(
    path: str | os.PathLike[str],
    array: Any,
    *,
    transform: Affine | Sequence[float],
    crs: Any,
    kind: Kind = "continuous",
    nodata: float | None = None,
    scheme: ClassScheme | None = None,
    compress: Compress = "deflate",
    qml: str | None = "auto",
    band_descriptions: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a whole in-memory array (``(h, w)`` or ``(bands, h, w)``) as a COG; see :class:`RasterWriter`.

    For small rasters that fit in memory; use :class:`RasterWriter` to stream large scenes.
    """
    arr = array if isinstance(array, np.ma.MaskedArray) else np.asarray(array)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a (height, width) or (bands, height, width) array, not shape {arr.shape}")
    bands = 1 if arr.ndim == 2 else arr.shape[0]
    height, width = arr.shape[-2:]
    dtype = "uint8" if kind == "classes" else arr.dtype
    with RasterWriter(
        path,
        width=width,
        height=height,
        transform=transform,
        crs=crs,
        dtype=dtype,
        nodata=nodata,
        count=bands,
        kind=kind,
        scheme=scheme,
        compress=compress,
        qml=qml,
        band_descriptions=band_descriptions,
        tags=tags,
        overwrite=overwrite,
    ) as writer:
        writer.write(PixelWindow(0, 0, width, height), arr)
    return writer.path


def read_class_scheme(path: str | os.PathLike[str]) -> ClassScheme:
    """Read the :class:`ClassScheme` stored in a geosam class map.

    Reads the ``GEOSAM_CLASS_SCHEME`` tag; for class maps from elsewhere it falls back to the GDAL
    category names of the PAM sidecar with the colour table's colours.

    Raises:
        RasterNotFoundError: ``path`` does not exist.
        NotARasterError: GDAL cannot open it.
        RasterError: It holds no class names.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    p = Path(path)
    if not p.exists():
        raise RasterNotFoundError("class map not found", p)
    try:
        with rasterio.open(p) as ds:
            tags = ds.tags()
            nodata = ds.nodata
            try:
                cmap: dict[int, tuple[int, ...]] | None = ds.colormap(1)
            except ValueError:
                cmap = None
    except RasterioIOError as exc:
        raise NotARasterError(f"not a readable raster ({exc})", p) from None
    if CLASS_SCHEME_TAG in tags:
        try:
            return ClassScheme.from_dict(json.loads(tags[CLASS_SCHEME_TAG]))
        except (ValueError, KeyError, TypeError) as exc:
            raise RasterError(f"corrupt {CLASS_SCHEME_TAG} tag ({exc})", p) from None
    names = category_list(p)
    if not names:
        raise RasterError("no class names stored (no GEOSAM_CLASS_SCHEME tag, no GDAL categories)", p)
    colors = tuple(tuple(cmap[i][:3]) for i in range(len(names))) if cmap else ()
    return ClassScheme(
        names=tuple(names),
        colors=colors,  # type: ignore[arg-type]
        nodata=int(nodata) if nodata is not None else 255,
    )
