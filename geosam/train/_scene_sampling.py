"""Shared machinery of :mod:`geosam.train.scene_chips`: scene preparation, visiting order, chip reads.

Private: the public entry points and the sampling rules are documented in
:mod:`geosam.train.scene_chips`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import NormalizeConfig
from geosam.errors import DataError
from geosam.types import PixelWindow, SceneInfo

if TYPE_CHECKING:
    from geosam.preprocess import Preprocessing
    from geosam.stretch import Stretch

log = logging.getLogger("geosam.train.scene_chips")

#: ``(read_labels, label_of)`` of :func:`select_and_read`: ``read_labels(window)`` reads label arrays
#: for a window; ``label_of(arrays)`` gives a chip's class index from their chip slices, or ``None``.
Relabel = tuple[
    Callable[[PixelWindow], tuple[np.ndarray, ...]], Callable[[tuple[np.ndarray, ...]], "int | None"]
]


@dataclass(frozen=True)
class Scene:
    """A scene prepared for chip reads: header, selected bands, their names, its stretch and the record.

    ``record`` is the :class:`~geosam.preprocess.Preprocessing` a model trained on these chips writes
    into its bundle, so that runs bring scenes to what the chips hold.
    """

    info: SceneInfo
    bands: tuple[int, ...]
    band_names: tuple[str, ...]
    stretch: Stretch
    normalize: NormalizeConfig
    record: Preprocessing


@dataclass(frozen=True)
class Candidates:
    """Candidate chip centres (scene pixel rows/cols) with their class index and group id."""

    rows: np.ndarray
    cols: np.ndarray
    cls: np.ndarray
    group: np.ndarray


@dataclass(frozen=True)
class Selection:
    """Chips read by :func:`select_and_read`."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    skipped: dict[str, int]


def check_common(chip_size: int, spacing: int | None, max_nodata: float, dtype: str) -> int:
    """Validate the shared arguments; return the lattice step (default ``chip_size // 2``)."""
    if not 1 <= chip_size <= 4096:
        raise DataError(f"chip size must be 1..4096 pixels, not {chip_size}")
    if spacing is not None and spacing < 1:
        raise DataError(f"spacing must be at least 1 pixel, not {spacing}")
    if not 0.0 <= max_nodata < 1.0:
        raise DataError(f"max_nodata is a fraction in [0, 1), not {max_nodata}")
    if dtype not in ("float16", "float32"):
        raise DataError(f"chips are stored as float16 or float32, not {dtype}")
    return spacing or max(1, chip_size // 2)


def prepare_scene(
    scene: str | os.PathLike[str],
    bands: Sequence[int | str] | None,
    band_names: Sequence[str] | None,
    normalize: NormalizeConfig | None,
    model: tuple[Preprocessing, Sequence[float]] | None = None,
) -> Scene:
    """Open the scene header, choose its bands, name them and decide its preprocessing (one decimated read).

    Without ``model``: the radiometry rule (:mod:`geosam.radiometry`, ``normalize.radiometry``) and
    ``normalize.method`` (``auto`` = a per-scene ``low``-``high`` percentile stretch) decide the chips'
    0..1 values, recorded as the chips' preprocessing. With ``model`` (a bundle's preprocessing and mean,
    for fine-tuning it): chips get exactly what ``geosam run`` gives this scene for that model.
    """
    from geosam.bands import resolve_bands
    from geosam.io.read import open_scene
    from geosam.preprocess import FixedScaling, PercentileScaling, Preprocessing
    from geosam.radiometry import BandScaling, decide_radiometry, read_band_scaling
    from geosam.scene_preprocessing import scene_preprocessing
    from geosam.stretch import compute_stretch, read_sample

    info = open_scene(scene)
    idx = resolve_bands(info, bands)
    if band_names is not None:
        names = tuple(str(n).strip() for n in band_names)
        if len(names) != len(idx) or not all(names):
            raise DataError(
                f"{len(names)} band names ({', '.join(names)}) for {len(idx)} selected bands "
                f"({', '.join(map(str, idx))}); give one non-empty name per band",
                info.path,
            )
    else:
        names = tuple(info.band_names[i - 1] or f"b{i}" for i in idx)
    norm = normalize or NormalizeConfig.model_validate({})
    if model is not None:
        prep = scene_preprocessing(info.path, idx, model[0], model[1], norm, info=info, log_to=log)
        return Scene(info, idx, names, prep.stretch, norm, model[0])
    head = read_band_scaling(info.path, idx)
    meta = BandScaling(head.dtype, head.scale, head.offset, head.nbits, names)
    method = "percentile" if norm.method == "auto" else norm.method
    pct = norm.model_copy(update={"method": method})
    sample, _ = read_sample(info.path, idx, norm.sample_size)
    r = decide_radiometry(
        meta,
        sample,
        option=norm.radiometry,
        dn_offset=norm.dn_offset,
        where=os.fspath(info.path),
        warn=method != "percentile",  # a percentile stretch does not depend on what the values mean
    )
    stretch = compute_stretch(info.path, idx, pct, radiometry=r, sample=sample)
    scaling: FixedScaling | PercentileScaling = (
        PercentileScaling(low=norm.low, high=norm.high, sample_size=norm.sample_size)
        if method == "percentile"
        else FixedScaling(
            low=stretch.low,
            high=tuple(max(h, lo + 1e-6) for lo, h in zip(stretch.low, stretch.high, strict=True)),
        )
    )
    record = Preprocessing.from_radiometry(r, info.dtype, scaling, note="scene chips")
    return Scene(info, idx, names, stretch, norm, record)


def scaling(scene: Scene) -> str:
    """How chips were brought to 0..1, in words (provenance; the bundle records :attr:`Scene.record`)."""
    return f"{scene.record.describe()}; values read as {scene.record.space} ({scene.record.input.rule})"


def proj_crs(info: SceneInfo) -> Any:
    """The scene CRS as a :class:`pyproj.CRS` (what geopandas compares and reprojects with)."""
    from pyproj import CRS

    return CRS.from_wkt(info.crs)


def to_pixels(geoms: np.ndarray, info: SceneInfo) -> np.ndarray:
    """Geometries in scene CRS coordinates -> scene pixel coordinates (x = column, y = row)."""
    import shapely
    from affine import Affine

    inv = ~Affine(*info.transform)

    def f(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f])

    out: np.ndarray = shapely.transform(geoms, f)
    return out


def scene_bounds(info: SceneInfo) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of the scene in its CRS (rotated grids included)."""
    from affine import Affine

    t = Affine(*info.transform)
    corners = [t @ (c, r) for c, r in ((0, 0), (info.width, 0), (0, info.height), (info.width, info.height))]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    return (min(xs), min(ys), max(xs), max(ys))


def round_robin(cand: Candidates, rng: np.random.Generator) -> np.ndarray:
    """Visit order: per class, groups in random order, each group's candidates shuffled, interleaved.

    The k-th candidate of every group of a class comes before the (k+1)-th of any group of that class,
    so caps keep as many groups (polygons, blocks) as possible.
    """
    n = len(cand.rows)
    if n == 0:
        return np.empty(0, np.int64)
    keys = cand.cls.astype(np.int64) * (int(cand.group.max()) + 1) + cand.group.astype(np.int64)
    shuffle = rng.permutation(n)
    order = shuffle[np.argsort(keys[shuffle], kind="stable")]
    _, start, counts = np.unique(keys[order], return_index=True, return_counts=True)
    pos = np.empty(n, np.int64)  # position of the candidate within its (shuffled) group
    group_rank = np.empty(n, np.int64)  # random rank of its group
    for s, k, rank in zip(start, counts, rng.permutation(len(start)), strict=True):
        members = order[s : s + k]
        pos[members] = np.arange(k)
        group_rank[members] = rank
    out: np.ndarray = np.lexsort((group_rank, pos, cand.cls))
    return out


class _Tiles:
    """Candidates grouped into square tiles of the scene, each read once with a chip-sized halo.

    Reading one window per tile instead of one per chip keeps the number of file opens (a few
    milliseconds each, more for remote files) proportional to the area sampled, not to the number of
    chips; a tile's core is ``4 x chip_size`` pixels so that its read stays small (a few MB).
    """

    def __init__(self, cand: Candidates, chip_size: int) -> None:
        self.chip = chip_size
        self.core = 4 * chip_size
        tr, tc = cand.rows // self.core, cand.cols // self.core
        self.key = tr * (int(tc.max()) + 1 if len(tc) else 1) + tc
        self.rows, self.cols = cand.rows, cand.cols
        self.members: dict[int, np.ndarray] = {}
        order = np.argsort(self.key, kind="stable")
        keys, start = np.unique(self.key[order], return_index=True)
        for k, s, e in zip(keys, start, [*start[1:], len(order)], strict=True):
            self.members[int(k)] = order[s:e]

    def window(self, key: int) -> PixelWindow:
        """Read window of a tile: the bounding box of its chips."""
        idx = self.members[key]
        half = self.chip // 2
        r0, c0 = int(self.rows[idx].min()) - half, int(self.cols[idx].min()) - half
        r1, c1 = int(self.rows[idx].max()) - half + self.chip, int(self.cols[idx].max()) - half + self.chip
        return PixelWindow(c0, r0, c1 - c0, r1 - r0)

    def chip_slices(self, i: int, window: PixelWindow) -> tuple[slice, slice]:
        """Row and column slices of candidate ``i``'s chip in an array covering ``window``."""
        half = self.chip // 2
        r, c = int(self.rows[i]) - half - window.row_off, int(self.cols[i]) - half - window.col_off
        return slice(r, r + self.chip), slice(c, c + self.chip)


def select_and_read(
    scene: Scene,
    cand: Candidates,
    *,
    chip_size: int,
    max_per_group: int | None,
    max_per_class: int | None,
    max_nodata: float,
    dtype: str,
    seed: int,
    progress: bool,
    relabel: Relabel | None = None,
    n_classes: int | None = None,
) -> Selection:
    """Keep chips in :func:`round_robin` order until the caps are reached; skip nodata chips; read them.

    Two passes over tiles (:class:`_Tiles`): the first screens the tiles the visit reaches (nodata
    fraction, centre validity, ``relabel``) and decides which chips are kept; the second reads the
    kept chips' tiles again and cuts the chips out. Memory: one tile plus the kept chips.

    Args:
        scene: The prepared scene.
        cand: Candidate centres with their class and group.
        chip_size: Chip edge in pixels.
        max_per_group: Cap per group (``None``: none).
        max_per_class: Cap per class (``None``: none), counted on the final label.
        max_nodata: Largest accepted fraction of nodata pixels in a chip.
        dtype: Storage dtype of the chips.
        seed: Seed of the visiting order.
        progress: Show progress bars.
        relabel: ``(read_labels, label_of)``: ``read_labels(window)`` returns a label window, and
            ``label_of(labels)`` a chip's final class index from its slice (``None``: no label).
        n_classes: Number of classes, to stop early once every class is full.

    Returns:
        The kept chips (stretched, 0..1, invalid pixels ``NaN``) in visiting order, their labels and
        groups, and counts of screened candidates rejected for nodata or for having no label.
    """
    from geosam.io.read import read_window
    from geosam.progress import progress_iter
    from geosam.stretch import unit_values

    tiles = _Tiles(cand, chip_size)
    order = round_robin(cand, np.random.default_rng(seed + 1))
    ok = np.zeros(len(cand.rows), bool)
    final = cand.cls.astype(np.int64)
    screened: set[int] = set()
    skipped = {"nodata": 0, "no_label": 0}
    centre = chip_size // 2

    def screen(key: int) -> None:
        win = tiles.window(key)
        _, valid = read_window(scene.info.path, win, scene.bands)
        labels = relabel[0](win) if relabel is not None else None
        for i in tiles.members[key]:
            sl = tiles.chip_slices(int(i), win)
            v = valid[sl]
            ok[i] = bool(v[centre, centre]) and 1.0 - float(v.mean()) <= max_nodata
            if not ok[i]:
                skipped["nodata"] += 1
            elif relabel is not None and labels is not None:
                c = relabel[1](tuple(a[sl] for a in labels))
                if c is None:
                    ok[i] = False
                    skipped["no_label"] += 1
                else:
                    final[i] = c
        screened.add(key)

    per_group: Counter[int] = Counter()
    per_class: Counter[int] = Counter()
    kept: list[int] = []

    def full(c: int, g: int) -> bool:
        return (max_per_class is not None and per_class[c] >= max_per_class) or (
            max_per_group is not None and per_group[g] >= max_per_group
        )

    for i in progress_iter(order, "screening chips", enabled=progress, unit="chips"):
        g, key = int(cand.group[i]), int(tiles.key[i])
        if key not in screened:
            # skip reads for chips that cannot be kept (with relabel, the class is known after reading)
            if max_per_group is not None and per_group[g] >= max_per_group:
                continue
            if relabel is None and full(int(cand.cls[i]), g):
                continue
            cap = max_per_class
            if (
                n_classes is not None
                and cap is not None
                and all(per_class[c] >= cap for c in range(n_classes))
            ):
                break
            screen(key)
        if not ok[i] or full(int(final[i]), g):
            continue
        per_group[g] += 1
        per_class[int(final[i])] += 1
        kept.append(int(i))
    if not kept:
        raise DataError(
            f"no chip could be read: all {len(order)} candidate chips have nodata at their centre or more "
            f"than {max_nodata:.0%} nodata pixels (raise max_nodata, or check the scene's nodata)",
            scene.info.path,
        )
    keep = np.asarray(kept)
    images = np.empty((len(keep), len(scene.bands), chip_size, chip_size), dtype=dtype)
    slot = {i: k for k, i in enumerate(kept)}
    keys = sorted({int(tiles.key[i]) for i in kept})
    for key in progress_iter(keys, "reading chips", enabled=progress, unit="chips"):
        win = tiles.window(key)
        data, valid = read_window(scene.info.path, win, scene.bands)
        data = unit_values(data, scene.stretch)
        data[:, ~valid] = np.nan  # invalid pixels get the model's nodata fill at training time
        for i in tiles.members[key]:
            if int(i) in slot:
                r, c = tiles.chip_slices(int(i), win)
                images[slot[int(i)]] = data[:, r, c]
    return Selection(images, final[keep], cand.group[keep].astype(np.int64), skipped)


def compact_classes(
    labels: np.ndarray, names: Sequence[str], source: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Drop classes without chips; returns the relabelled labels and the kept names.

    Raises:
        DataError: Fewer than two classes have chips.
    """
    present = [int(v) for v in np.unique(labels)]
    missing = [names[i] for i in range(len(names)) if i not in present]
    if missing:
        log.warning("no chips for class(es) %s; they are left out of the model", ", ".join(missing))
    if len(present) < 2:
        only = ", ".join(names[i] for i in present)
        raise DataError(f"chips of only one class ({only}); a classifier needs at least two", source)
    remap = np.full(len(names), -1, np.int64)
    remap[present] = np.arange(len(present))
    return remap[labels], tuple(names[i] for i in present)
