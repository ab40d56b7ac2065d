"""Training chips: one in-memory (or memory-mapped) array of labelled chips, whatever the source.

Sources (each returns a :class:`ChipData`):

* :func:`load_folder_chips` - folder-per-class chips (EuroSAT layout): ``root/<class>/*.jpg|png|tif``,
  any band count. Decoded once and cached as ``.npy`` (memory-mapped on later runs).
* :mod:`geosam.train.scene_chips` - chips sampled from a scene with label polygons or a label raster.

Pixel values stay in their storage dtype; ``low``/``high`` per band map them to 0..1
(``clip((x - low) / (high - low), 0, 1)``), the same kind of stretch the inference pipeline applies to
scenes, so a model sees inputs on one scale in training and in ``geosam run``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geosam.errors import DataError

__all__ = ["ChipData", "load_folder_chips", "percentile_range", "stratified_split"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
#: Band order of EuroSAT's 13-band GeoTIFFs (Sentinel-2 L1C, all bands).
SENTINEL2_L1C_BANDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)


@dataclass(frozen=True)
class ChipData:
    """Labelled chips ready for training.

    Attributes:
        images: ``(N, C, H, W)`` pixel values in their storage dtype (may be a read-only memmap).
        labels: ``(N,)`` class ids.
        classes: Class names; ``labels`` index into them.
        bands: Band names of the ``C`` channels.
        low: Per-band value mapped to 0.
        high: Per-band value mapped to 1.
        groups: ``(N,)`` group ids kept together in the train/validation split (e.g. the polygon a
            chip was sampled from, to avoid leakage); by default every chip is its own group.
        provenance: Where the chips came from (recorded in the bundle).
        gsd_m: Ground sampling distance in metres if known.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    bands: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    groups: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    gsd_m: float | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if n == 0:
            raise DataError("no training chips")
        if self.images.ndim != 4:
            raise DataError(f"chips must be (N, C, H, W), got shape {self.images.shape}")
        if len(self.labels) != n or (self.groups is not None and len(self.groups) != n):
            raise DataError("images, labels and groups must have the same length")
        if len(self.bands) != self.images.shape[1]:
            raise DataError(f"{self.images.shape[1]} channels but {len(self.bands)} band names")
        if self.labels.min() < 0 or self.labels.max() >= len(self.classes):
            raise DataError("labels outside the class list")

    @property
    def chip_size(self) -> int:
        """Chip edge in pixels."""
        return int(self.images.shape[-1])

    def to_unit(self, idx: np.ndarray) -> np.ndarray:
        """Chips ``idx`` as float32 in 0..1, ``(n, C, H, W)``."""
        x = np.asarray(self.images[idx], dtype=np.float32)
        lo = self.low.reshape(1, -1, 1, 1).astype(np.float32)
        hi = self.high.reshape(1, -1, 1, 1).astype(np.float32)
        out: np.ndarray = np.clip((x - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)
        return out

    def class_counts(self) -> dict[str, int]:
        """Chips per class."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(counts[i]) for i, c in enumerate(self.classes)}


def percentile_range(
    images: np.ndarray, low: float = 2.0, high: float = 98.0, sample: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band percentiles over a random sample of chips (uint8 data: the full 0..255 range)."""
    if images.dtype == np.uint8:
        c = images.shape[1]
        return np.zeros(c, np.float64), np.full(c, 255.0)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), size=min(sample, len(images)), replace=False))
    x = np.asarray(images[idx], dtype=np.float64).transpose(1, 0, 2, 3).reshape(images.shape[1], -1)
    lo = np.nanpercentile(x, low, axis=1)
    hi = np.nanpercentile(x, high, axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return lo, hi


def _read_chip(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio
        from rasterio.errors import RasterioIOError

        try:
            with rasterio.open(path) as ds:
                return np.asarray(ds.read())
        except RasterioIOError as err:
            raise DataError(f"cannot read chip ({err})", path) from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read chip ({err})", path) from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _list_folder(root: Path, max_per_class: int | None, seed: int) -> tuple[list[Path], list[int], list[str]]:
    if not root.is_dir():
        raise DataError("training folder not found (expected <root>/<class>/<chips>)", root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        chips = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if max_per_class is not None and len(chips) > max_per_class:
            chips = [chips[i] for i in sorted(rng.choice(len(chips), max_per_class, replace=False))]
        files += chips
        labels += [ci] * len(chips)
    used = [c for ci, c in enumerate(classes) if ci in set(labels)]
    if len(used) < 2:
        raise DataError(
            f"need chips of at least 2 classes in <root>/<class>/ folders; found {len(used)}", root
        )
    if len(used) != len(classes):
        empty = sorted(set(classes) - set(used))
        raise DataError(f"class folders without chips: {', '.join(empty)}", root)
    return files, labels, classes


def load_folder_chips(
    root: str | Path,
    *,
    band_names: Sequence[str] | None = None,
    max_per_class: int | None = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ChipData:
    """Load folder-per-class chips (``root/<class>/*.jpg|png|tif``).

    Chips of other sizes than the most common one are resized to it (bilinear). Decoded chips are
    cached in ``cache_dir`` as a ``.npy`` keyed by the file list, sizes and modification times.

    Args:
        root: Folder whose sub-folders are the classes (sorted names = class ids).
        band_names: Names of the chip bands; default ``red, green, blue`` for 3-band chips, the
            EuroSAT MS order (``B01..B12, B8A``) for 13-band chips, else ``b1..bN``.
        max_per_class: Use at most this many chips per class (random, seeded).
        cache_dir: Cache folder (``None``: no cache).
        seed: Seed for ``max_per_class`` sampling.
        progress: Show a progress bar while decoding.

    Raises:
        DataError: Missing folder, fewer than two classes, unreadable chips, mixed band counts.
    """
    root = Path(root)
    files, labels, classes = _list_folder(root, max_per_class, seed)
    key = hashlib.sha256(
        json.dumps([(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]).encode()
    ).hexdigest()[:20]
    cached = Path(cache_dir) / f"chips-{key}.npy" if cache_dir else None
    if cached is not None and cached.is_file():
        images = np.load(cached, mmap_mode="r")
    else:
        images = _decode_all(files, progress)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.name + ".tmp.npy")
            np.save(tmp, images)
            tmp.replace(cached)
    c = images.shape[1]
    if band_names is None:
        band_names = (
            ("red", "green", "blue")
            if c == 3
            else SENTINEL2_L1C_BANDS
            if c == 13
            else tuple(f"b{i + 1}" for i in range(c))
        )
        if c == 13:
            log.info(
                "13-band chips: assuming the Sentinel-2 L1C band order %s", ",".join(SENTINEL2_L1C_BANDS)
            )
    if len(band_names) != c:
        raise DataError(f"chips have {c} bands but {len(band_names)} band names were given", root)
    lo, hi = percentile_range(images, seed=seed)
    return ChipData(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        classes=tuple(classes),
        bands=tuple(band_names),
        low=lo,
        high=hi,
        provenance={
            "source": "folder",
            "root": str(root.resolve()),
            "files": len(files),
            "per_class": dict(Counter(classes[i] for i in labels)),
            "scaling": {
                "method": "dtype" if images.dtype == np.uint8 else "percentile 2-98 over a sample",
                "low": [float(v) for v in lo],
                "high": [float(v) for v in hi],
            },
        },
    )


def _decode_all(files: list[Path], progress: bool) -> np.ndarray:
    from geosam.progress import progress_iter

    first = _read_chip(files[0])
    sizes: Counter[tuple[int, int]] = Counter()
    out: np.ndarray | None = None
    chips: list[np.ndarray] = []
    for f in progress_iter(files, "decoding chips", enabled=progress, unit="chips"):
        a = _read_chip(f)
        if a.shape[0] != first.shape[0]:
            raise DataError(f"chip has {a.shape[0]} bands but the first chip has {first.shape[0]}", f)
        sizes[a.shape[1:]] += 1
        chips.append(a)
    (h, w), _ = sizes.most_common(1)[0]
    out = np.empty((len(chips), first.shape[0], h, w), dtype=np.result_type(*{c.dtype for c in chips}))
    for i, a in enumerate(chips):
        if a.shape[1:] != (h, w):
            from skimage.transform import resize

            a = resize(a.transpose(1, 2, 0), (h, w), order=1, preserve_range=True).transpose(2, 0, 1)
        out[i] = a
    return out


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train/validation, stratified by class, keeping each group on one side.

    Whole groups (e.g. all chips of one polygon, or of one spatial block) go to one side, so no group
    leaks between training and validation. A group is assigned to the class of most of its samples;
    per class, randomly chosen groups go to validation until they hold ``val_fraction`` of that class's
    samples, always leaving at least one group for training. Returns sorted index arrays ``(train, val)``.

    Raises:
        DataError: No class has two groups (nothing can be held out).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    n_classes = int(labels.max()) + 1
    counts = np.zeros((len(uniq), n_classes), np.int64)
    np.add.at(counts, (inverse, labels), 1)
    majority = counts.argmax(axis=1)
    sizes = counts.sum(axis=1)
    val_groups: list[int] = []
    for c in range(n_classes):
        g = np.flatnonzero(majority == c)
        if len(g) < 2:
            continue
        rng.shuffle(g)
        target = val_fraction * sizes[g].sum()
        total = 0
        for k, gi in enumerate(g):
            if (total >= target and k > 0) or k == len(g) - 1:
                break
            val_groups.append(int(gi))
            total += int(sizes[gi])
    is_val = np.zeros(len(uniq), bool)
    is_val[val_groups] = True
    v = np.flatnonzero(is_val[inverse])
    t = np.flatnonzero(~is_val[inverse])
    if len(v) == 0:
        raise DataError("not enough data for a validation split (need at least 2 samples/groups per class)")
    return t, v
