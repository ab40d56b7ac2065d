"""Cutting a scene into tiles: a pure plan (:func:`plan_tiles`) and its summary (:func:`summarize_plan`).

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geosam.config import TilingConfig
from geosam.errors import ConfigError
from geosam.types import PixelWindow, SceneInfo, TileSpec

__all__ = [
    "PlanSummary",
    "TilePlan",
    "grid_shape",
    "plan_tiles",
    "summarize_plan",
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


def _hit_cores(info: SceneInfo, stride: int) -> tuple[np.ndarray, bool]:
    """``(hit, exact)``: the cores a decimated validity read marks as holding data, ``(rows, cols)`` bool.

    Every valid sample marks all cores its footprint touches, so no core with a valid pixel is missed
    where the sample is valid; ``exact`` is ``True`` when the sample was the full-resolution mask (then
    ``hit`` is exactly the non-empty cores). Without it, the cores not hit are only candidates for being
    empty (see :func:`_confirm_cores`).
    """
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
    return hit, sample.shape == (info.height, info.width)


def _core_window(info: SceneInfo, stride: int, row: int, col: int) -> PixelWindow:
    r0, c0 = row * stride, col * stride
    return PixelWindow(c0, r0, min(stride, info.width - c0), min(stride, info.height - r0))


def _confirm_cores(info: SceneInfo, stride: int, cells: np.ndarray) -> np.ndarray:
    """For ``cells`` ``(n, 2)`` of ``(row, col)``, whether each core holds a valid pixel (full-resolution)."""
    from geosam.io.read import read_validity

    return np.array(
        [bool(read_validity(info.path, _core_window(info, stride, int(r), int(c)), any_band=True).any())
         for r, c in cells],
        dtype=bool,
    )  # fmt: skip


def _nonempty_cores(info: SceneInfo, specs: Sequence[TileSpec], stride: int) -> set[int]:
    """Indexes of the tiles whose core holds at least one valid pixel (exact; see the module docstring)."""
    hit, exact = _hit_cores(info, stride)
    keep = {s.index for s in specs if hit[s.row, s.col]}
    if exact:
        return keep  # the sample was the full-resolution mask: exact already
    candidates = [s for s in specs if s.index not in keep]
    cells = np.array([(s.row, s.col) for s in candidates], dtype=np.int64).reshape(-1, 2)
    keep.update(s.index for s, ok in zip(candidates, _confirm_cores(info, stride, cells), strict=True) if ok)
    return keep


def _checked(
    info_or_path: SceneInfo | str | os.PathLike[str], cfg: TilingConfig
) -> tuple[SceneInfo, int, int]:
    """The scene header and the checked ``(tile_size, halo)`` of a resolved tiling config."""
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
    return info, tile_size, halo


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
    info, tile_size, halo = _checked(info_or_path, cfg)
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


#: Pixels ``summarize_plan`` reads at most for the empty-tile screen (decimated sample plus confirmed
#: cores): enough for scenes up to 4096 x 4096 px, or any scene with overviews, at full precision.
SUMMARY_READ_PX = 4096 * 4096


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """What :func:`plan_tiles` would plan for a scene, counted without building a :class:`TileSpec`.

    Attributes:
        scene: The scene header.
        tile_size: Read-window edge ``T`` in pixels.
        halo: Context ``h`` in pixels on each side of a core.
        grid: ``(rows, cols)`` of the full tile grid.
        n_tiles: Tiles :func:`plan_tiles` keeps, when known exactly (``None`` otherwise).
        n_tiles_min: Tiles certainly kept (the decimated screen saw valid pixels in their cores).
        screening: How empty tiles were counted: ``off`` (``skip_empty`` is off), ``not-needed``
            (the scene cannot hold invalid pixels), ``exact`` (as :func:`plan_tiles` does it),
            ``decimated`` (too many candidate cores to confirm: ``n_tiles`` is between ``n_tiles_min``
            and ``n_grid``) or ``skipped`` (the screen would read more than the budget: a large scene
            without overviews).
    """

    scene: SceneInfo
    tile_size: int
    halo: int
    grid: tuple[int, int]
    n_tiles: int | None
    n_tiles_min: int
    screening: str

    @property
    def stride(self) -> int:
        """Distance in pixels between neighbouring cores."""
        return self.tile_size - 2 * self.halo

    @property
    def n_grid(self) -> int:
        """Tiles in the full grid, empty ones included."""
        return self.grid[0] * self.grid[1]

    @property
    def n_skipped(self) -> int | None:
        """Empty tiles left out, when known."""
        return None if self.n_tiles is None else self.n_grid - self.n_tiles


def _screen_read_px(info: SceneInfo) -> int:
    """Pixels the decimated validity read of :func:`_hit_cores` touches (GDAL reads an overview level)."""
    import rasterio

    from geosam.io.env import geosam_env
    from geosam.io.read import decimated_shape

    h, w = decimated_shape(info.height, info.width, _SCREEN_SIDE)
    factor = max(info.height / h, info.width / w)
    with geosam_env(info.path), rasterio.open(info.path) as ds:
        overviews = ds.overviews(1)
    ov = max([f for f in overviews if f <= factor], default=1)
    return -(-info.height // ov) * -(-info.width // ov)


def summarize_plan(
    info_or_path: SceneInfo | str | os.PathLike[str],
    cfg: TilingConfig,
    *,
    max_read_px: int = SUMMARY_READ_PX,
) -> PlanSummary:
    """Count what :func:`plan_tiles` would plan, in memory and time independent of the tile count.

    The grid is counted, not built, so a 200,000 x 200,000 px scene in 88 px tiles (9 million tiles)
    is summarized in milliseconds. Empty tiles are screened as :func:`plan_tiles` screens them (same
    decimated read, same confirmation of candidate cores) as long as that reads at most
    ``max_read_px`` pixels; beyond, the summary says so (see :attr:`PlanSummary.screening`).

    Args:
        info_or_path: A scene header, or a raster path.
        cfg: Resolved tiling (``tile_size`` and ``halo`` set).
        max_read_px: Pixel budget of the empty-tile screen.

    Raises:
        ConfigError: As :func:`plan_tiles`.
        RasterError: From reading the scene.
    """
    info, tile_size, halo = _checked(info_or_path, cfg)
    stride = tile_size - 2 * halo
    grid = grid_shape(info.height, info.width, stride)
    n_grid = grid[0] * grid[1]

    def summary(n: int | None, n_min: int, how: str) -> PlanSummary:
        return PlanSummary(info, tile_size, halo, grid, n, n_min, how)

    if not cfg.skip_empty:
        return summary(n_grid, n_grid, "off")
    if not _may_have_invalid(info):
        return summary(n_grid, n_grid, "not-needed")
    if _screen_read_px(info) > max_read_px:
        return summary(None, 0, "skipped")
    hit, exact = _hit_cores(info, stride)
    n_hit = int(hit.sum())
    if exact:
        return summary(n_hit, n_hit, "exact")
    # pixels of the candidate cores, row by row (no (rows x cols) temporaries beyond ``hit``)
    widths = np.minimum(stride, info.width - stride * np.arange(grid[1], dtype=np.int64))
    heights = np.minimum(stride, info.height - stride * np.arange(grid[0], dtype=np.int64))
    core_px = sum(int(heights[r]) * int(widths[~hit[r]].sum()) for r in range(grid[0]))
    if core_px > max_read_px:
        return summary(None, n_hit, "decimated")
    n = n_hit + int(_confirm_cores(info, stride, np.argwhere(~hit)).sum())
    return summary(n, n, "exact")
