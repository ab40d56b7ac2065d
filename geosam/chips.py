"""Chip files: small images (JPEG, PNG, GeoTIFF) read without georeferencing, for training and ``classify``.

:func:`read_chip` returns the stored values ``(bands, H, W)`` in their dtype, the pixels' validity
(GeoTIFF nodata and masks; JPEG/PNG chips are valid everywhere) and the radiometric header metadata
(GDAL scale/offset, ``NBITS``, band descriptions) that :mod:`geosam.radiometry` decides their meaning
from. :func:`list_chip_folder` lists a chip folder, flat or class-per-subfolder.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geosam.errors import DataError
from geosam.radiometry import BandScaling

__all__ = [
    "IMAGE_SUFFIXES",
    "ChipImage",
    "decode_chips",
    "list_chip_folder",
    "read_chip",
    "resized_chip",
    "stack_chips",
    "value_sample",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})


@dataclass(frozen=True, eq=False)
class ChipImage:
    """One chip as stored.

    Attributes:
        data: ``(bands, H, W)`` stored values (uint8 for JPEG/PNG; the file's dtype for GeoTIFF).
        valid: ``(H, W)`` bool, or ``None`` when every pixel is valid.
        meta: dtype, GDAL scale/offset, ``NBITS`` and band names (:class:`~geosam.radiometry.BandScaling`).
    """

    data: np.ndarray
    valid: np.ndarray | None
    meta: BandScaling


def read_chip(path: str | os.PathLike[str]) -> ChipImage:
    """Read a chip file (GeoTIFF through rasterio with its nodata/mask; JPEG/PNG through Pillow).

    Palette and other JPEG/PNG modes are converted to RGB (palette indexes are never classified);
    greyscale stays one band.

    Raises:
        DataError: The file cannot be read as an image.
    """
    p = Path(path)
    if p.suffix.lower() in (".tif", ".tiff"):
        import rasterio
        from rasterio.errors import RasterioIOError

        try:
            with rasterio.open(p) as ds:
                data = np.asarray(ds.read())
                masks = ds.read_masks()
                meta = BandScaling(
                    dtype=str(data.dtype),
                    scale=tuple(float(v if v is not None else 1.0) for v in ds.scales),
                    offset=tuple(float(v if v is not None else 0.0) for v in ds.offsets),
                    nbits=_nbits(ds),
                    names=tuple((d or None) for d in ds.descriptions),
                )
        except RasterioIOError as err:
            raise DataError(f"cannot read chip ({err})", p) from None
        valid = (masks > 0).all(axis=0)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        return ChipImage(data, None if valid.all() else valid, meta)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read chip ({err})", p) from None
    data = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    n = data.shape[0]
    return ChipImage(np.ascontiguousarray(data), None, BandScaling(str(data.dtype), (1.0,) * n, (0.0,) * n))


def _nbits(ds: object) -> int | None:
    tags = ds.tags(1, "IMAGE_STRUCTURE")  # type: ignore[attr-defined]
    v = tags.get("NBITS")
    return int(v) if v and str(v).isdigit() else None


def list_chip_folder(root: str | os.PathLike[str]) -> tuple[list[Path], list[str | None]]:
    """Chip files under ``root``: ``(files, folder class)`` sorted by path.

    A folder with sub-folders is read class-per-subfolder (the sub-folder's name is each chip's class,
    chips directly in ``root`` have class ``None``); a flat folder has no classes.

    Raises:
        DataError: ``root`` is missing or holds no chip file.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError("chip folder not found", base)
    files: list[Path] = []
    classes: list[str | None] = []
    for p in sorted(base.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
            classes.append(None)
        elif p.is_dir() and not p.name.startswith("."):
            for q in sorted(p.iterdir()):
                if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(q)
                    classes.append(p.name)
    if not files:
        raise DataError(
            f"no chip files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder or its sub-folders", base
        )
    return files, classes


def stack_chips(chips: Sequence[ChipImage], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Stack chips of one band count into ``(N, bands, H, W)``; invalid pixels of any chip become ``NaN``.

    Chips must already be ``size``; with any invalid pixel the result is float32, else the chips' dtype.
    """
    dtype = np.result_type(*{c.data.dtype for c in chips})
    has_invalid = any(c.valid is not None for c in chips)
    out = np.empty((len(chips), chips[0].data.shape[0], *size), np.float32 if has_invalid else dtype)
    valid = np.ones((len(chips), *size), bool) if has_invalid else None
    for i, c in enumerate(chips):
        out[i] = c.data
        if c.valid is not None and valid is not None:
            out[i][:, ~c.valid] = np.nan
            valid[i] = c.valid
    return out, valid


def value_sample(images: np.ndarray, seed: int, chips: int = 256) -> np.ndarray:
    """Valid stored values ``(bands, n)`` float64 of up to ``chips`` random chips (NaN excluded)."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), size=min(chips, len(images)), replace=False))
    x = np.asarray(images[idx], dtype=np.float64).transpose(1, 0, 2, 3).reshape(images.shape[1], -1)
    keep = ~np.isnan(x).any(axis=0)
    out: np.ndarray = x[:, keep]
    return out


def decode_chips(files: Sequence[Path], progress: bool = False) -> np.ndarray:
    """Read chip files into one ``(N, bands, H, W)`` array (invalid pixels ``NaN``).

    Chips of another size than the most common one are resized to it
    (:func:`geosam.preprocess.resample_chips`).

    Raises:
        DataError: Unreadable chips, or chips with another band count than the first.
    """
    from geosam.progress import progress_iter

    chips: list[ChipImage] = []
    sizes: Counter[tuple[int, int]] = Counter()
    bands = None
    for f in progress_iter(files, "decoding chips", enabled=progress, unit="chips"):
        chip = read_chip(f)
        if bands is not None and chip.data.shape[0] != bands:
            raise DataError(f"chip has {chip.data.shape[0]} bands but the first chip has {bands}", f)
        bands = chip.data.shape[0]
        sizes[(int(chip.data.shape[1]), int(chip.data.shape[2]))] += 1
        chips.append(chip)
    (h, w), _ = sizes.most_common(1)[0]
    chips = [c if c.data.shape[1:] == (h, w) else resized_chip(c, (h, w)) for c in chips]
    out, _ = stack_chips(chips, (h, w))
    return out


def resized_chip(chip: ChipImage, size: tuple[int, int]) -> ChipImage:
    """A chip resized with the run's chip kernel (square sizes) into float32 (invalid pixels NaN)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(chip.data.astype(np.float32))[None]
    if chip.valid is not None:
        x[:, :, torch.from_numpy(~chip.valid)] = float("nan")
    if size[0] == size[1]:
        from geosam.preprocess import resample_chips

        y = resample_chips(x, size[0])
    else:
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    data = y[0].numpy()
    valid = ~np.isnan(data).any(axis=0)
    if chip.data.dtype.kind in "ui" and valid.all():  # keep the storage dtype (rounded)
        info = np.iinfo(chip.data.dtype)
        return ChipImage(np.clip(np.rint(data), info.min, info.max).astype(chip.data.dtype), None, chip.meta)
    return ChipImage(
        data,
        None if valid.all() else valid,
        chip.meta,
    )
