"""Cutting a scene into tiles: a pure plan (:func:`plan_tiles`), a generator and a dask graph.

Grid rule. With ``T = tile_size``, ``h = halo`` and stride ``s = T - 2h`` (all in scene pixels):

* tile ``(row, col)`` *owns* the core ``[col*s, min((col+1)*s, W)) x [row*s, min((row+1)*s, H))``:
  cores start at pixel ``(0, 0)``, never overlap and cover the scene exactly; the last row and column
  of cores are clipped to the scene (they may be narrower than ``s``);
* it *reads* the window ``[col*s - h, col*s - h + T)`` (same for rows): always ``T x T``, the core
  grown by ``h`` on every side. Windows reaching outside the scene are ``padded`` (the outside is read
  as invalid, zero). The first tile's window therefore starts at ``(-h, -h)``.

So every pixel is predicted by exactly one tile, and each tile sees at least ``h`` pixels of context
around the pixels it owns (more on the clipped last row/column). Stitching keeps cores only
(``TileSpec.core_slices``). The grid has ``ceil(H / s)`` rows and ``ceil(W / s)`` columns.

Coordinates. Windows are in the scene's pixel grid (``col``, ``row``; rows grow downwards). Each
``TileSpec.transform`` is the scene geotransform moved to the read window's top-left pixel, in the scene
CRS, so rotated and south-up scenes keep their orientation.

Empty tiles (``skip_empty``). A tile is skipped when *no pixel of its core* is valid (valid as in
:mod:`geosam.io.read`, with any band counting: a pixel with one valid band keeps its tile). The halo does
not count, since those pixels belong to neighbouring cores. Skipping never drops a tile with a valid
core pixel: a decimated read first marks tiles that certainly hold valid pixels (every sample is mapped
to all cores its footprint touches), then each remaining candidate is confirmed by a full-resolution
read of its core alone. Scenes that cannot hold invalid pixels (integer bands, no nodata, no mask) are
not read at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.config import TilingConfig
from geosam.errors import ConfigError
from geosam.types import PixelWindow, SceneInfo, TileSpec

if TYPE_CHECKING:
    import dask.array
    from dask.delayed import Delayed

    from geosam.io.read import TileArray

__all__ = [
    "TilePlan",
    "grid_shape",
    "iter_tiles",
    "plan_tiles",
    "scene_array",
    "tile_graph",
    "tile_transform",
]

#: Longest side of the decimated read used to pre-screen empty tiles.
_SCREEN_SIDE = 2048


@dataclass(frozen=True, slots=True)
class TilePlan:
    """The tiles of one scene, in row-major order, and what was left out.

    Attributes:
        scene: The scene header the plan was made from.
        scene_id: Identifier copied into every :class:`TileSpec`.
        tiles: Tiles to process (skipped ones excluded).
        tile_size: Read-window edge ``T`` in pixels.
        halo: Context ``h`` in pixels on each side of a core.
        skipped: Tiles left out because their core holds no valid pixel.
    """

    scene: SceneInfo
    scene_id: str
    tiles: tuple[TileSpec, ...]
    tile_size: int
    halo: int
    skipped: tuple[TileSpec, ...] = ()

    @property
    def stride(self) -> int:
        """Distance in pixels between the origins of neighbouring cores (``tile_size - 2 * halo``)."""
        return self.tile_size - 2 * self.halo

    @property
    def grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the full tile grid, skipped tiles included."""
        return grid_shape(self.scene.height, self.scene.width, self.stride)

    @property
    def n_skipped(self) -> int:
        """Number of tiles skipped as empty."""
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.tiles)


def grid_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """``(rows, cols)`` of the tile grid of a ``height x width`` scene for a core stride in pixels."""
    return (math.ceil(height / stride), math.ceil(width / stride))


def tile_transform(
    scene_transform: Sequence[float], window: PixelWindow
) -> tuple[float, float, float, float, float, float]:
    """Geotransform of a window's top-left pixel, in the scene CRS (rotation and flips preserved).

    Equal to ``Affine(*scene_transform) @ Affine.translation(window.col_off, window.row_off)``, computed
    directly because plans of large scenes hold tens of thousands of tiles.
    """
    a, b, c, d, e, f = (float(v) for v in scene_transform[:6])
    x, y = window.col_off, window.row_off
    return (a, b, a * x + b * y + c, d, e, d * x + e * y + f)


def _grid_specs(info: SceneInfo, scene_id: str, tile_size: int, halo: int) -> list[TileSpec]:
    stride = tile_size - 2 * halo
    n_rows, n_cols = grid_shape(info.height, info.width, stride)
    specs = []
    for r in range(n_rows):
        for c in range(n_cols):
            r0, c0 = r * stride, c * stride
            core = PixelWindow(c0, r0, min(stride, info.width - c0), min(stride, info.height - r0))
            window = PixelWindow(c0 - halo, r0 - halo, tile_size, tile_size)
            padded = window.intersection(PixelWindow(0, 0, info.width, info.height)) != window
            specs.append(
                TileSpec(
                    scene_id=scene_id,
                    index=r * n_cols + c,
                    row=r,
                    col=c,
                    window=window,
                    core=core,
                    halo=halo,
                    transform=tile_transform(info.transform, window),
                    crs=info.crs,
                    padded=padded,
                )
            )
    return specs


def _sample_ranges(size: int, n_samples: int, stride: int, n_cells: int) -> list[tuple[int, int]]:
    """For each core index along one axis, the slice of samples whose footprint touches that core.

    Sample ``i`` of ``n_samples`` covering ``size`` pixels spans pixels
    ``floor(i * size / n) .. ceil((i + 1) * size / n) - 1``.
    """
    i = np.arange(n_samples, dtype=np.int64)
    first = (i * size) // n_samples
    last = -((-(i + 1) * size) // n_samples) - 1
    out = []
    for cell in range(n_cells):
        lo, hi = cell * stride, min((cell + 1) * stride, size) - 1
        out.append((int(np.searchsorted(last, lo, "left")), int(np.searchsorted(first, hi, "right"))))
    return out


def _may_have_invalid(info: SceneInfo) -> bool:
    floating = info.dtype.startswith("float")
    return floating or info.has_mask or any(v is not None for v in info.nodata)


def _nonempty_cores(info: SceneInfo, specs: Sequence[TileSpec], stride: int) -> set[int]:
    """Indexes of the tiles whose core holds at least one valid pixel (exact; see the module docstring)."""
    from geosam.io.read import read_validity

    sample = read_validity(info.path, max_side=_SCREEN_SIDE, any_band=True)
    n_rows, n_cols = grid_shape(info.height, info.width, stride)
    # A sample stands for the scene pixels its footprint covers; a core is hit when any sample whose
    # footprint touches it is valid. Footprints are monotone, so each core sees a contiguous range of
    # sample rows (and columns): reduce rows per core row, then columns per core column.
    row_ranges = _sample_ranges(info.height, sample.shape[0], stride, n_rows)
    col_ranges = _sample_ranges(info.width, sample.shape[1], stride, n_cols)
    by_row = np.stack([sample[a:b].any(axis=0) for a, b in row_ranges])  # (n_rows, sample width)
    hit = np.stack([by_row[:, a:b].any(axis=1) for a, b in col_ranges], axis=1)  # (n_rows, n_cols)
    keep = {s.index for s in specs if hit[s.row, s.col]}
    if sample.shape == (info.height, info.width):
        return keep  # the sample was the full-resolution mask: exact already
    for s in specs:
        if s.index not in keep and read_validity(info.path, s.core, any_band=True).any():
            keep.add(s.index)
    return keep


def plan_tiles(
    info_or_path: SceneInfo | str | os.PathLike[str],
    cfg: TilingConfig,
    *,
    scene_id: str | None = None,
) -> TilePlan:
    """Plan the tiles of a scene (see the module docstring for the grid and skip rules).

    Cheap: with ``cfg.skip_empty=False`` it does no I/O when given a :class:`SceneInfo` (only the header
    is read when given a path); with ``skip_empty`` it reads a decimated validity mask (from overviews
    when the file has them, else every block once, in chunks of bounded memory) plus the cores of
    candidate empty tiles, and nothing for scenes that cannot hold invalid pixels.

    Args:
        info_or_path: A scene header from :func:`geosam.io.read.open_scene`, or a raster path.
        cfg: ``tile_size`` (read window edge, pixels), ``halo`` (context per side, pixels) and
            ``skip_empty``.
        scene_id: Identifier for the tiles; defaults to the file name without its extension.

    Returns:
        The :class:`TilePlan`; its tiles are row-major and ``TileSpec.index`` is the position in the full
        grid (``row * cols + col``), so indexes stay stable when tiles are skipped.

    Raises:
        ConfigError: ``tile_size`` or ``halo`` unset (``None``: call ``cfg.resolved(...)`` first), or
            ``tile_size <= 2 * halo`` (no core left).
        RasterError: From :func:`geosam.io.read.open_scene` when given a path.
    """
    if isinstance(info_or_path, SceneInfo):
        info = info_or_path
    else:
        from geosam.io.read import open_scene

        info = open_scene(info_or_path)
    if cfg.tile_size is None or cfg.halo is None:
        raise ConfigError(
            "tiling.tile_size and tiling.halo must be set; fill in the model's choice first with "
            "TilingConfig.resolved(default_tile_size)"
        )
    tile_size, halo = int(cfg.tile_size), int(cfg.halo)
    if halo < 0 or tile_size - 2 * halo < 1:
        raise ConfigError(f"tile_size ({tile_size}) must be larger than 2 * halo ({2 * halo})")
    sid = scene_id if scene_id is not None else Path(info.path).stem
    specs = _grid_specs(info, sid, tile_size, halo)
    skipped: list[TileSpec] = []
    if cfg.skip_empty and _may_have_invalid(info):
        keep = _nonempty_cores(info, specs, tile_size - 2 * halo)
        skipped = [s for s in specs if s.index not in keep]
        specs = [s for s in specs if s.index in keep]
    return TilePlan(
        scene=info, scene_id=sid, tiles=tuple(specs), tile_size=tile_size, halo=halo, skipped=tuple(skipped)
    )


def iter_tiles(plan: TilePlan) -> Iterator[TileSpec]:
    """Yield the plan's tiles in row-major order (lazily; skipped tiles are not yielded)."""
    yield from plan.tiles


def _run_tile(
    path: str, spec: TileSpec, bands: tuple[int, ...] | None, fn: Callable[[TileArray], Any]
) -> Any:
    from geosam.io.read import read_tile

    return fn(read_tile(path, spec, bands))


def tile_graph(
    path: str | os.PathLike[str],
    plan: TilePlan,
    fn: Callable[[TileArray], Any],
    bands: Sequence[int] | None = None,
) -> list[Delayed]:
    """One :func:`dask.delayed` task per tile: read it (:func:`geosam.io.read.read_tile`), apply ``fn``.

    Tasks carry the path, the :class:`TileSpec` and the band indexes (a few hundred bytes each), never
    arrays or open datasets: each task opens the file itself, so the graph can be shipped to
    ``dask.distributed`` workers and its size does not grow with the tile size. Keys are deterministic
    (``<scene_id>-<tile_id>-<token>``), so resubmitting a graph reuses finished results.

    Args:
        path: The scene file the plan was made for.
        plan: From :func:`plan_tiles`.
        fn: Per-tile function of a :class:`~geosam.io.read.TileArray`; it must be picklable for
            multi-process schedulers, and should return something small (a result object, not the tile).
        bands: 1-based band indexes (:func:`geosam.bands.resolve_bands`); ``None`` reads all bands.

    Returns:
        Delayed results in the plan's tile order; compute them with ``dask.compute(*tasks)``.
    """
    from dask.base import tokenize
    from dask.delayed import delayed

    p = os.fspath(path)
    b = None if bands is None else tuple(int(i) for i in bands)
    run = delayed(_run_tile, pure=True)
    return [
        run(p, spec, b, fn, dask_key_name=f"{spec.scene_id}-{spec.tile_id}-{tokenize(p, spec, b, fn)}")
        for spec in plan.tiles
    ]


@dataclass(frozen=True, slots=True)
class _SceneReader:
    """Array-like view of a scene for :func:`dask.array.from_array`: reads on indexing, holds a path only."""

    path: str
    bands: tuple[int, ...]
    shape: tuple[int, int, int]

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        from geosam.io.read import read_window

        bsl, rsl, csl = key
        b0, b1, _ = bsl.indices(self.shape[0])
        r0, r1, _ = rsl.indices(self.shape[1])
        c0, c1, _ = csl.indices(self.shape[2])
        if r1 <= r0 or c1 <= c0 or b1 <= b0:
            return np.zeros((max(b1 - b0, 0), max(r1 - r0, 0), max(c1 - c0, 0)), dtype=np.float32)
        data, valid = read_window(self.path, PixelWindow(c0, r0, c1 - c0, r1 - r0), self.bands[b0:b1])
        data[:, ~valid] = np.nan
        return data


def scene_array(
    path: str | os.PathLike[str], bands: Sequence[int] | None = None, *, chunks: int = 1024
) -> dask.array.Array:
    """The whole scene as a lazy float32 :class:`dask.array.Array` ``(bands, height, width)``.

    For array-parallel stages (normalisation, indices, smoothing with ``map_overlap``). Each chunk is read
    by its own task that opens the file (tasks carry the path, not data); invalid pixels are ``NaN``, so
    ``~np.isnan(a).any(axis=0)`` is the validity mask. Chunks hold all bands and ``chunks x chunks``
    pixels; choose a multiple of the file's block size.

    Args:
        path: File path or GDAL URI.
        bands: 1-based band indexes; ``None`` selects all bands.
        chunks: Chunk edge in pixels.
    """
    import dask.array as da
    from dask.base import tokenize

    from geosam.io.read import open_scene

    info = open_scene(path)
    b = tuple(range(1, info.count + 1)) if bands is None else tuple(int(i) for i in bands)
    if any(not 1 <= i <= info.count for i in b):
        from geosam.errors import BandError

        raise BandError(f"band indexes {list(b)} outside 1..{info.count}", info.path)
    reader = _SceneReader(info.path, b, (len(b), info.height, info.width))
    stamp = os.stat(info.path).st_mtime_ns if os.path.exists(info.path) else None  # re-read edited files
    arr: da.Array = da.from_array(
        reader,
        chunks=(len(b), chunks, chunks),
        name=f"geosam-scene-{tokenize(info, b, chunks, stamp)}",
        meta=np.empty((0, 0, 0), dtype=np.float32),
        asarray=False,
        fancy=False,
    )
    return arr
