"""Pixel decoding and decimated whole-scene reads, private to :mod:`geosam.io.read` (rules documented there).

* Validity of raw pixels (:func:`_band_validity`, :func:`_decode`): nodata values, masks, finiteness.
* :func:`read_decimated` and :func:`read_validity` read a whole scene in bounded chunks (re-exported by
  :mod:`geosam.io.read`, their public home).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.errors import BandError
from geosam.io._open import _describe, _guarded, _open, _scene_dtype
from geosam.io.env import geosam_env
from geosam.types import PixelWindow

if TYPE_CHECKING:
    from rasterio.io import DatasetReader


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


def _read_chunk_validity(p: str, bands: tuple[int, ...], chunk: _Chunk) -> np.ndarray:
    """Per-band validity of one chunk, as :func:`_read_chunk` decides it, without its float32 copy.

    Integer pixels need no copy; floating ones are cast (and dropped) only to mark the values that are
    not finite as float32 invalid. Memory: the raw chunk and the validity, not 4 more bytes per band and
    pixel (45 MB for the 2048 px screen of a 3-band scene).
    """
    shape = (chunk.rows.stop - chunk.rows.start, chunk.cols.stop - chunk.cols.start)
    rw = chunk.window.to_rasterio()
    decimate = shape != (chunk.window.height, chunk.window.width)

    def read(ds: DatasetReader) -> np.ndarray:
        raw = (
            ds.read(list(bands), window=rw, out_shape=(len(bands), *shape))
            if decimate
            else ds.read(list(bands), window=rw)
        )
        band_valid = _band_validity(ds, bands, raw, rw, shape if decimate else None)
        if np.issubdtype(raw.dtype, np.floating):
            _to_float32(raw, band_valid)
        return band_valid

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
            out[chunk.rows, chunk.cols] = combine(_read_chunk_validity(p, b, chunk))
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
