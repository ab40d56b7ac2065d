"""Training chips: one in-memory (or memory-mapped) array of labelled chips, whatever the source.

Sources (each returns a :class:`ChipData`):

* :func:`load_folder_chips` - folder-per-class chips (EuroSAT layout): ``root/<class>/*.jpg|png|tif``,
  any band count. Decoded once and cached as ``.npy`` (memory-mapped on later runs).
* :mod:`geosam.train.scene_chips` - chips sampled from a scene with label polygons or a label raster.

Pixel values stay in their storage dtype (invalid pixels of float chips are ``NaN``). Per band,
``value = stored * scale + offset`` (the radiometry, :mod:`geosam.radiometry`) and then
``clip((value - low) / (high - low), 0, 1)`` gives the 0..1 model input: the same function
(:func:`geosam.stretch.apply_stretch`'s arithmetic) that ``geosam run`` applies to scenes. Each
:class:`ChipData` carries the :class:`~geosam.preprocess.Preprocessing` record a model trained on it
writes into its bundle, so runs apply exactly this.
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

from geosam.chips import IMAGE_SUFFIXES, decode_chips, read_chip, value_sample
from geosam.errors import DataError
from geosam.preprocess import DisplayMapping, FixedScaling, InputRecord, Preprocessing
from geosam.radiometry import BandScaling, RadiometryOption

__all__ = ["EUROSAT_CLASSES", "EUROSAT_MS_BANDS", "ChipData", "load_folder_chips", "stratified_split"]

log = logging.getLogger(__name__)

#: Band order of EuroSAT's 13-band GeoTIFFs (Sentinel-2 L1C): B01..B12, then B8A *last*, as the data set's
#: provenance says and the data confirm (band 13 correlates 0.98-1.00 with B07/B08, band 9 is water
#: vapour B09, band 10 cirrus B10 at ~11 DN).
EUROSAT_MS_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
#: EuroSAT's ten land-cover classes, in the order of its class folders (sorted): the classes of the
#: packaged default model.
EUROSAT_CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)


@dataclass(frozen=True)
class ChipData:
    """Labelled chips ready for training.

    Attributes:
        images: ``(N, C, H, W)`` pixel values in their storage dtype (may be a read-only memmap);
            invalid pixels of float chips are ``NaN``.
        labels: ``(N,)`` class ids.
        classes: Class names; ``labels`` index into them.
        bands: Band names of the ``C`` channels.
        low: Per-band value (after ``scale``/``offset``) mapped to 0.
        high: Per-band value mapped to 1.
        groups: ``(N,)`` group ids kept together in the train/validation split (e.g. the polygon a
            chip was sampled from, to avoid leakage); by default every chip is its own group.
        provenance: Where the chips came from (recorded in the bundle).
        gsd_m: Ground sampling distance in metres if known.
        scale: Per-band factor from stored to physical values (empty: 1).
        offset: Per-band offset from stored to physical values (empty: 0).
        preprocessing: The record a model trained on these chips writes into its bundle: how a run must
            bring a scene's pixels to what these chips give. Default: the fixed ``low``/``high`` on
            stored values (``display`` for uint8 chips scaled 0..255).
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
    scale: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()
    preprocessing: Preprocessing | None = None

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
        if self.preprocessing is None:
            object.__setattr__(self, "preprocessing", self._default_preprocessing())

    def _default_preprocessing(self) -> Preprocessing:
        c = self.images.shape[1]
        lo = [float(v) for v in np.asarray(self.low).reshape(-1)]
        hi = [float(v) for v in np.asarray(self.high).reshape(-1)]
        scale = self.scale or (1.0,) * c
        offset = self.offset or (0.0,) * c
        dtype = str(self.images.dtype)
        if dtype == "uint8" and set(lo) == {0.0} and set(hi) == {255.0} and not self.scale:
            return Preprocessing(
                space="display",
                scaling=FixedScaling(low=(0.0,) * c, high=(1.0,) * c),
                input=InputRecord(dtype=dtype, scale=(1 / 255,) * c, offset=(0.0,) * c, rule="stored / 255"),
            )
        return Preprocessing(
            space="raw",
            scaling=FixedScaling(
                low=tuple(lo), high=tuple(max(h, v + 1e-6) for v, h in zip(lo, hi, strict=True))
            ),
            input=InputRecord(dtype=dtype, scale=tuple(scale), offset=tuple(offset), rule="chip values"),
        )

    @classmethod
    def for_model(
        cls,
        images: np.ndarray,
        labels: np.ndarray,
        classes: Sequence[str],
        bands: Sequence[str],
        pre: Preprocessing,
    ) -> ChipData:
        """Held-out chips read as a model's training data was (its recorded radiometry and fixed scaling).

        For evaluating chips stored like the training chips (same dtype, no other metadata) through the
        training/validation path; ``geosam classify`` resolves other inputs.

        Raises:
            DataError: The preprocessing is a per-scene percentile stretch (no fixed bounds).
        """
        if not isinstance(pre.scaling, FixedScaling):
            raise DataError("the model's preprocessing is a per-scene stretch: use geosam classify")
        c = images.shape[1]
        return cls(
            images,
            np.asarray(labels, np.int64),
            tuple(classes),
            tuple(bands),
            np.asarray(pre.scaling.low, np.float64),
            np.asarray(pre.scaling.high, np.float64),
            scale=pre.input.scale or (1.0,) * c,
            offset=pre.input.offset or (0.0,) * c,
            preprocessing=pre,
        )

    @property
    def chip_size(self) -> int:
        """Chip edge in pixels."""
        return int(self.images.shape[-1])

    @property
    def record(self) -> Preprocessing:
        """:attr:`preprocessing` (never ``None`` after construction)."""
        assert self.preprocessing is not None  # set in __post_init__
        return self.preprocessing

    def stretch(self) -> Any:
        """The :class:`geosam.stretch.Stretch` from stored chip values to 0..1."""
        from geosam.stretch import Stretch

        lo = tuple(float(v) for v in np.asarray(self.low).reshape(-1))
        hi = tuple(float(v) for v in np.asarray(self.high).reshape(-1))
        return Stretch("fixed", lo, hi, (), self.scale, self.offset)

    def to_unit(self, idx: np.ndarray) -> np.ndarray:
        """Chips ``idx`` as float32 in 0..1, ``(n, C, H, W)``; invalid (NaN) pixels stay ``NaN``.

        The arithmetic is :func:`geosam.stretch.apply_stretch`'s (float32 ``stored * a + c``, then
        clipped), so a chip and the same pixels of a scene reach the model bit for bit alike.
        """
        from geosam.stretch import unit_values

        return unit_values(np.asarray(self.images[idx]), self.stretch(), band_axis=1)

    def model_input(self, idx: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """:meth:`to_unit` with invalid pixels set to the per-band ``fill`` (the nodata fill)."""
        x = self.to_unit(idx)
        bad = np.isnan(x)
        if bad.any():
            x = np.where(bad, np.asarray(fill, np.float32).reshape(1, -1, 1, 1), x)
        return x

    def class_counts(self) -> dict[str, int]:
        """Chips per class."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(counts[i]) for i, c in enumerate(self.classes)}


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
    radiometry: RadiometryOption = "auto",
    dn_offset: float | None = None,
    reflectance_to_display: DisplayMapping | None = None,
) -> ChipData:
    """Load folder-per-class chips (``root/<class>/*.jpg|png|tif``) and decide their preprocessing.

    Chips of other sizes than the most common one are resized to it (:func:`geosam.preprocess.resample_chips`,
    the kernel runs use). Decoded chips are cached in ``cache_dir`` as a ``.npy`` keyed by the file list,
    sizes and modification times. Invalid GeoTIFF pixels (nodata, masks) are stored as ``NaN``.

    What the values mean is decided by :func:`geosam.radiometry.decide_radiometry` over a sample of the
    chips (logged): uint8 chips are display levels and map 0..255 -> 0..1 exactly as before; other
    chips map their 2nd..98th percentiles (over a sample, after the radiometry: Sentinel-2 DN become
    reflectance) to 0..1. The result's ``preprocessing`` records this for the bundle.

    Args:
        root: Folder whose sub-folders are the classes (sorted names = class ids).
        band_names: Names of the chip bands; default ``red, green, blue`` for 3-band chips, the
            EuroSAT MS order (``B01..B12, B8A``) for 13-band chips, else ``b1..bN``.
        max_per_class: Use at most this many chips per class (random, seeded).
        cache_dir: Cache folder (``None``: no cache).
        seed: Seed for ``max_per_class`` sampling and the statistics sample.
        progress: Show a progress bar while decoding.
        radiometry: What the stored values are (``auto``: the rule of :mod:`geosam.radiometry`).
        dn_offset: Sentinel-2 DN offset (-1000 for processing baseline >= 04.00).
        reflectance_to_display: For display chips rendered from reflectance (EuroSAT RGB:
            :data:`geosam.preprocess.EUROSAT_RGB_FROM_L1C`): recorded so that runs can feed reflectance
            scenes to the model as these chips were.

    Raises:
        DataError: Missing folder, fewer than two classes, unreadable chips, mixed band counts.
        ConfigError: A radiometry option that does not fit the chips.
    """
    from geosam.radiometry import decide_radiometry

    root = Path(root)
    files, labels, classes = _list_folder(root, max_per_class, seed)
    key = hashlib.sha256(
        json.dumps(["v2", *[(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]]).encode()
    ).hexdigest()[:20]
    cached = Path(cache_dir) / f"chips-{key}.npy" if cache_dir else None
    first = read_chip(files[0])
    if cached is not None and cached.is_file():
        images = np.load(cached, mmap_mode="r")
    else:
        images = decode_chips(files, progress)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.name + ".tmp.npy")
            np.save(tmp, images)
            tmp.replace(cached)
    c = images.shape[1]
    if band_names is None:
        named = [n for n in first.meta.names if n]
        band_names = (
            tuple(str(n) for n in first.meta.names)
            if len(named) == c
            else ("red", "green", "blue")
            if c == 3
            else EUROSAT_MS_BANDS
            if c == 13
            else tuple(f"b{i + 1}" for i in range(c))
        )
        if c == 13 and len(named) != c:
            log.info("13-band chips: assuming the EuroSAT MS band order %s", ",".join(EUROSAT_MS_BANDS))
    if len(band_names) != c:
        raise DataError(f"chips have {c} bands but {len(band_names)} band names were given", root)
    meta = BandScaling(
        dtype=first.meta.dtype,  # the files' dtype (chips with nodata are stored as float32 with NaN)
        scale=first.meta.scale,
        offset=first.meta.offset,
        nbits=first.meta.nbits,
        names=tuple(band_names),
    )
    if len(meta.scale) != c:
        meta = BandScaling(meta.dtype, (1.0,) * c, (0.0,) * c, meta.nbits, meta.names)
    sample = value_sample(images, seed)
    r = decide_radiometry(meta, sample, option=radiometry, dn_offset=dn_offset, where=str(root))
    log.info("%s: chip values read as %s (%s)", root, r.kind, r.rule)
    if r.kind == "display":
        lo, hi = np.zeros(c), np.ones(c)
        how = "display levels 0..full scale -> 0..1"
    else:
        values = r.values(sample)
        if values.shape[1] == 0:
            raise DataError("no valid pixel in a sample of the chips", root)
        lo, hi = np.percentile(values, [2.0, 98.0], axis=1)
        hi = np.where(hi > lo, hi, lo + (1.0 if r.kind == "raw" else 1e-4))
        how = f"{r.kind} values, 2nd..98th percentiles over a sample of chips -> 0..1"
    mapping = reflectance_to_display if r.kind == "display" else None
    if reflectance_to_display is not None and mapping is None:
        raise DataError(
            f"a reflectance-to-display mapping needs display chips, but these are {r.kind} ({r.rule})", root
        )
    pre = Preprocessing.from_radiometry(
        r,
        meta.dtype,
        FixedScaling(low=tuple(float(v) for v in lo), high=tuple(float(v) for v in hi)),
        reflectance_to_display=mapping,
    )
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
            "scaling": how,
        },
        scale=r.scale,
        offset=r.offset,
        preprocessing=pre,
    )


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
