"""The chip grid of a scene: encoder chips anchored to the scene's pixel grid, as training chips were.

A model trained on chips (the default model: 64 px EuroSAT chips at 10 m) classifies what one chip
shows. For ``geosam run`` to give it the same inputs, each encoder chip must cover what a training chip
covered, and chips must not straddle what the scene holds:

* **Resolution.** At the model's ground sampling distance (GSD) a chip is ``chip_size`` scene pixels;
  at another GSD (``match_resolution``) it is ``round(chip_size * model_gsd / scene_gsd)`` pixels
  resampled to the encoder input with the model's kernel (:func:`geosam.preprocess.resample_chips`).
* **Anchoring.** Chip ``(i, j)`` covers scene pixels ``[j*c, (j+1)*c) x [i*c, (i+1)*c)``: the grid
  starts at the scene's top-left pixel. Tiles are whole numbers of chips and so are halos, so every
  tile's read window starts on the grid (it starts at ``-halo``) and no chip is ever split between two
  encoder inputs. A 64 x 64 scene at 10 m is therefore exactly one encoder chip, a 512 x 512 mosaic of
  8 x 8 training chips exactly 64.
* **Edges.** Chips reaching past the scene's right or bottom edge are padded with invalid pixels, which
  get the model's nodata fill (:mod:`geosam.preprocess`), as scene chips reaching past an edge are in
  training.

Defaults: tiles of ``max(8, recommended_tile_size / chip_size)`` chips per side with a halo of one
chip, or, for a scene that fits in one such tile, one tile of the scene's size in whole chips (no
halo); a ``--tile-size`` is rounded to whole chips and a ``--halo`` up to whole chips, and a tile too
small for its halo (``halo >= tile / 4``) grows to hold it (all logged). SAM tiles (``--regions sam``)
are encoded whole, at the scene's resolution, as before.

:func:`chip_regions` makes each chip of a tile one region (``--regions chips``,
:class:`geosam.segment.ChipRegions`): the class map then
holds, for every pixel, the class of the chip that contains it, which is what the training and
validation path predicts for that chip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from geosam.config import TilingConfig
from geosam.errors import ConfigError
from geosam.resolution import MAX_MATCHED_TILE, MAX_TILE
from geosam.resolution import TOLERANCE as GSD_TOLERANCE

__all__ = ["ChipGrid", "chip_regions", "plan_chip_grid"]

log = logging.getLogger(__name__)

#: Default chips per tile side (with a halo of one chip: (8/6)^2 = 1.78 encoder inputs per owned chip).
TILE_CHIPS = 8


@dataclass(frozen=True, slots=True)
class ChipGrid:
    """How one scene is cut for the encoder (all sizes in scene pixels).

    Attributes:
        chip: Encoder chip edge (``tile`` and ``halo`` are multiples of it).
        tile: Tile (read window) edge.
        halo: Context per tile side.
        input_size: Encoder input edge the chips are resampled to.
        matched: Whether resolution matching changed the chip size.
        scene_gsd_m: The scene's GSD used (``None`` when unknown).
    """

    chip: int
    tile: int
    halo: int
    input_size: int
    matched: bool = False
    scene_gsd_m: float | None = None

    def tiling(self, cfg: TilingConfig) -> TilingConfig:
        """``cfg`` with this grid's tile size and halo (validated)."""
        return TilingConfig(tile_size=self.tile, halo=self.halo, skip_empty=cfg.skip_empty)


def _round_to(value: int, unit: int, minimum: int) -> int:
    return max(minimum, round(value / unit) * unit)


def plan_chip_grid(
    *,
    model_chip: int,
    model_tile: int,
    input_size: int,
    model_gsd: float | None,
    scene_gsd: float | None,
    tiling: TilingConfig,
    match_resolution: bool,
    whole_tiles: bool = False,
    scene_shape: tuple[int, int] | None = None,
    name: str = "scene",
    chip: int | None = None,
) -> ChipGrid:
    """The chip grid of one scene (rules in the module docstring).

    Args:
        model_chip: The model's chip size (scene pixels at the model's GSD).
        model_tile: The model's default tile size (``Models.tile_size``).
        input_size: Encoder input edge.
        model_gsd: GSD of the training data in metres (``None``: unknown, no matching).
        scene_gsd: The scene's GSD in metres (``None``: unknown, no matching).
        tiling: The run's tiling options (user ``tile_size``/``halo`` or ``None``).
        match_resolution: Resample chips to the model's GSD.
        whole_tiles: SAM mode: tiles are encoded whole (``chip = tile``), no matching.
        scene_shape: ``(height, width)``; a scene that fits one default tile gets one tile of whole chips
            covering it, without halo.
        name: Scene name for log lines.
        chip: The chip edge already chosen by :func:`geosam.resolution.encoding_sizes` (ground GSD,
            clamps, refusals, logged there); ``None``: derived here from ``model_gsd``/``scene_gsd``.

    Returns:
        The :class:`ChipGrid`.
    """
    if whole_tiles:
        tile = tiling.tile_size or model_tile
        halo = tiling.halo if tiling.halo is not None else tile // 8
        return ChipGrid(tile, tile, halo, input_size, False, scene_gsd)
    if chip is not None:
        matched = chip != model_chip
    else:
        chip, matched = model_chip, False
    if (
        not matched
        and chip == model_chip
        and match_resolution
        and model_gsd
        and scene_gsd
        and abs(scene_gsd - model_gsd) / model_gsd >= GSD_TOLERANCE
    ):
        chip = max(4, round(model_chip * model_gsd / scene_gsd))
        matched = chip != model_chip
        log.info(
            "%s: %.3g m pixels, model trained at %.3g m: encoding %d px chips resampled to %d px",
            name,
            scene_gsd,
            model_gsd,
            chip,
            input_size,
        )
    min_tile = -(-32 // chip) * chip  # TilingConfig: tile_size >= 32
    if tiling.tile_size is not None:
        tile = _round_to(tiling.tile_size, chip, min_tile)
        if tile != tiling.tile_size:
            log.info(
                "%s: tile size %d px rounded to %d px (whole %d px chips)", name, tiling.tile_size, tile, chip
            )
    else:
        tile = max(chip * max(TILE_CHIPS, model_tile // model_chip), min_tile)
        tile = max(min_tile, min(tile, max(chip, (MAX_MATCHED_TILE // chip) * chip)))  # bounded memory
        if scene_shape is not None:
            whole = -(-max(scene_shape) // chip) * chip  # the scene in whole chips
            if whole <= min(tile, MAX_TILE):  # one tile holds the scene: no seams, so no halo needed
                return ChipGrid(chip, max(whole, min_tile), 0, input_size, matched, scene_gsd)
    if tiling.halo is not None:
        halo = -(-tiling.halo // chip) * chip  # at least the context asked for, in whole chips
        if halo != tiling.halo:
            log.info(
                "%s: halo %d px rounded up to %d px (whole %d px chips on the scene grid)",
                name,
                tiling.halo,
                halo,
                chip,
            )
    else:
        halo = chip
    if halo * 4 >= tile:  # TilingConfig: halo < tile / 4, so the core stays at least half the tile
        grown = (4 * halo // chip + 1) * chip
        log.info("%s: tile size %d px grown to %d px to hold a %d px halo", name, tile, grown, halo)
        tile = grown
    if tile > MAX_TILE:  # TilingConfig: tile_size <= 8192
        tile = (MAX_TILE // chip) * chip
        if tile == 0:
            raise ConfigError(
                f"at {scene_gsd:g} m per pixel one {model_gsd:g} m model chip is {chip} scene pixels, more "
                f"than a tile can hold ({MAX_TILE}); resample the scene first (gdalwarp -tr) or run with "
                "--no-match-resolution",
                name,
            )
        while halo and halo * 4 >= tile:
            halo -= chip
        log.info("%s: tiles limited to %d px (halo %d px)", name, tile, halo)
    return ChipGrid(chip, tile, halo, input_size, matched, scene_gsd)


def chip_regions(valid: np.ndarray, chip: int, window_offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Label image ``(H, W)`` int32: each chip of a tile's read window is one region (0 = invalid pixel).

    Args:
        valid: ``(H, W)`` valid pixels of the tile's read window.
        chip: Chip edge in pixels (``H`` and ``W`` are multiples of it).
        window_offset: ``(row_off, col_off)`` of the window in the scene; only used to check that the
            window starts on the chip grid.

    Returns:
        Labels ``1..R`` numbered row-major over the chips holding valid pixels.

    Raises:
        ValueError: The window is not made of whole chips on the scene's chip grid.
    """
    h, w = valid.shape
    if h % chip or w % chip or window_offset[0] % chip or window_offset[1] % chip:
        raise ValueError(
            f"a {h} x {w} window at {window_offset} is not whole {chip} px chips on the scene chip grid"
        )
    rows, cols = h // chip, w // chip
    ids = np.arange(1, rows * cols + 1, dtype=np.int32).reshape(rows, cols)
    labels = np.repeat(np.repeat(ids, chip, axis=0), chip, axis=1)
    labels[~valid] = 0
    present = np.unique(labels[labels > 0])
    lookup = np.zeros(rows * cols + 1, np.int32)
    lookup[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    out: np.ndarray = lookup[labels]
    return out
