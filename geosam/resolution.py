"""Resolution matching: the chip and tile sizes, in scene pixels, that show a model the ground it learnt.

A chip model (the default model: 64 px EuroSAT chips of 10 m pixels, 640 m of ground) classifies what a
chip shows. A scene of other pixels is encoded in chips that cover the same ground, resampled to the
model's input: ``chip = model_chip * model_gsd / scene_gsd`` scene pixels, where both GSDs are measured
on the ground (:mod:`geosam.geodesy`, so Web Mercator and longitude/latitude scenes are matched by
their true pixel size). A tile holds as many chips per side as the model's own tile.

Limits (all in scene pixels; every choice is logged, and a clamp is a warning):

* a chip has at least :data:`MIN_CHIP` pixels, at least one pixel per encoder feature cell
  (``grid``) and at least ``1 /`` :data:`MAX_UPSAMPLE` of the model's chip: coarser scenes (Landsat at
  30 m is fine for a 10 m model; 300 m MODIS-like pixels are not) are encoded in chips that cover more
  ground than the model saw, at a bounded cost;
* a chip is no larger than the scene's longest side (a tile keeps the model's chips per side, so
  scenes on different grids are tiled alike);
* a tile has at least 32 pixels (:class:`~geosam.config.TilingConfig`) and, when matching, at least
  :data:`MIN_MATCHED_TILE` (more chips per tile when chips are small) and at most
  :data:`MAX_MATCHED_TILE` pixels (fewer chips per tile when chips are large), so a tile's arrays stay
  bounded in memory (``3 x 4096^2`` float32 is 200 MB); a chip is at most one such tile, so finer
  scenes (drone pixels) are encoded in chips that cover less ground than the model saw;
* scenes whose pixels measure less than :data:`MIN_GSD_M` or more than :data:`MAX_GSD_M` on the ground
  (give or take 5 %, the scale factors of common projections) are refused with matching on: they are
  almost always mislabelled georeferencing (degrees written as metres), and no clamp would bridge a
  factor of 1,000 anyway. ``--no-match-resolution`` runs them at the model's own chip size.

The halo follows the tile: a configured halo that no longer fits (``4 * halo < tile``) is reduced.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from geosam.errors import InputMismatchError
from geosam.geodesy import GroundResolution

__all__ = [
    "MAX_GSD_M",
    "MAX_MATCHED_TILE",
    "MAX_TILE",
    "MAX_UPSAMPLE",
    "MIN_CHIP",
    "MIN_GSD_M",
    "MIN_MATCHED_TILE",
    "MIN_TILE",
    "EncodingSizes",
    "check_ground_resolution",
    "clamp_chip",
    "encoding_sizes",
    "fit_halo",
]

log = logging.getLogger(__name__)

#: Finest ground pixel, in metres, that resolution matching accepts (1 cm: drone imagery).
MIN_GSD_M = 0.01
#: Coarsest ground pixel, in metres, that resolution matching accepts (1 km: MODIS, AVHRR products).
MAX_GSD_M = 1000.0
#: Smallest chip edge in scene pixels.
MIN_CHIP = 4
#: Largest factor by which a chip is enlarged to the model's input. Every chip costs one encoder pass
#: whatever its size, so the encoder work per scene pixel grows with the square of this factor: 4 keeps
#: it within 16x the model's own (Landsat's 30 m pixels, 3x for a 10 m model, are still matched
#: exactly; coarser scenes are clamped).
MAX_UPSAMPLE = 4
#: Tile edge bounds of :class:`geosam.config.TilingConfig`.
MIN_TILE, MAX_TILE = 32, 8192
#: Largest tile edge that resolution matching derives by itself (a configured tile may be larger).
MAX_MATCHED_TILE = 4096
#: Smallest tile edge that resolution matching derives by itself: regions (superpixels, SAM masks) need
#: pixels of context whatever the chips, and tiles of 32 px spend half their reads on halos.
MIN_MATCHED_TILE = 64
#: Relative GSD difference under which a scene is encoded at the model's own sizes.
TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class EncodingSizes:
    """How a scene is encoded, in scene pixels, and why.

    Attributes:
        chip: Encoder chip edge (each chip is resampled to the model's input size).
        tile: Tile (read window) edge, a multiple of ``chip``.
        halo: Context on each side of a tile's core (``4 * halo < tile``), or ``None`` for the default
            (``tile // 8``).
        scene_gsd_m: The scene's ground pixel size (:attr:`GroundResolution.mean_m`), if known.
        ideal_chip: The chip edge that would cover the model's training ground exactly (``None`` when
            not matching).
        clamped: ``ideal_chip`` was outside the limits; the chip covers other ground than in training.
        note: One sentence on the choice (written to the log and the run record).
    """

    chip: int
    tile: int
    halo: int | None
    scene_gsd_m: float | None
    ideal_chip: float | None
    clamped: bool
    note: str

    @property
    def matched(self) -> bool:
        """Whether the sizes were derived from the scene's resolution."""
        return self.ideal_chip is not None


def _fit_halo(halo: int | None, tile: int) -> tuple[int | None, str]:
    if halo is None or 4 * halo < tile:
        return halo, ""
    fitted = max(0, (tile - 1) // 4)
    return fitted, f"; halo reduced from {halo} to {fitted} px to fit the {tile} px tile"


def fit_halo(halo: int | None, tile: int, path: str) -> int | None:
    """A configured ``halo`` that fits a ``tile`` (``4 * halo < tile``), reduced with a warning if needed.

    Resolution matching can shrink a tile under a halo the user set for the model's own tiles; the halo
    is then reduced instead of failing TilingConfig's validation.
    """
    fitted, note = _fit_halo(halo, tile)
    if note:
        log.warning("%s: %s", Path(path).name, note.lstrip("; "))
    return fitted


def _fit_tile(wanted: int, chip: int) -> int:
    """The multiple of ``chip`` nearest ``wanted`` within MIN_TILE..MAX_TILE (at least one chip)."""
    lo = max(1, math.ceil(MIN_TILE / chip))
    hi = max(lo, MAX_TILE // chip)
    return min(hi, max(lo, round(wanted / chip))) * chip


#: Ground pixel aspect ratio above which chips (square in pixels) show the ground visibly stretched.
MAX_ANISOTROPY = 1.2


def _warn_anisotropy(scene: GroundResolution, path: str) -> None:
    """Warn when pixels are far from square on the ground (longitude/latitude pixels away from the equator).

    Chips are square in scene pixels, so such a scene shows the model stretched ground: measured on the
    default model, NAIP at 47 N in EPSG:4326 (1.47:1) agreed 67 % with its UTM run where two UTM grids
    agree 76 %.
    """
    ratio = max(scene.x_m, scene.y_m) / min(scene.x_m, scene.y_m)
    if ratio > MAX_ANISOTROPY:
        log.warning(
            "%s: pixels are %.3g x %.3g m on the ground (%.2g:1) and chips are square in pixels, so the "
            "model sees the ground stretched; for classes like those of a projected scene, reproject it "
            "first: gdalwarp -t_srs EPSG:<UTM zone code> %s projected.tif",
            Path(path).name,
            scene.x_m,
            scene.y_m,
            ratio,
            path,
        )


def check_ground_resolution(gsd: float, model_chip: int, path: str) -> None:
    """Refuse, in one line with a remedy, ground pixels outside :data:`MIN_GSD_M`..:data:`MAX_GSD_M`.

    Raises:
        InputMismatchError: The pixels measure under 1 cm or over 1 km on the ground (5 % slack).
    """
    if not MIN_GSD_M * (1 - TOLERANCE) <= gsd <= MAX_GSD_M * (1 + TOLERANCE):
        raise InputMismatchError(
            f"its pixels measure {gsd:.4g} m on the ground, outside the {MIN_GSD_M * 100:g} cm to "
            f"{MAX_GSD_M / 1000:g} km that resolution matching supports; check the georeferencing "
            "(gdalinfo shows the pixel size and the CRS units), or pass --no-match-resolution to "
            f"classify it in the model's {model_chip} px chips as they are",
            path,
        )


def clamp_chip(ideal: float, model_chip: int, grid: int, largest: int) -> tuple[int, int, bool]:
    """The matched chip edge: ``round(ideal)`` within the limits of the module docstring.

    Args:
        ideal: The chip edge, in scene pixels, that covers a training chip's ground exactly.
        model_chip: The model's chip edge (a chip is enlarged at most :data:`MAX_UPSAMPLE` times).
        grid: Encoder feature cells per chip edge (at least one scene pixel each).
        largest: The largest chip allowed (tile limit, scene size).

    Returns:
        ``(chip, smallest chip allowed, clamped)``; ``clamped`` when a limit moved the chip more than
        5 % off ``ideal``.
    """
    min_chip = max(MIN_CHIP, grid, math.ceil(model_chip / MAX_UPSAMPLE))
    max_chip = max(min_chip, largest)
    chip = min(max_chip, max(min_chip, round(ideal)))
    return chip, min_chip, chip != round(ideal) and abs(chip - ideal) / ideal > TOLERANCE


def encoding_sizes(
    *,
    path: str,
    model_chip: int,
    model_tile: int,
    model_gsd_m: float | None,
    scene: GroundResolution | None,
    match: bool,
    grid: int = 1,
    tile_size: int | None = None,
    halo: int | None = None,
    scene_shape: tuple[int, int] | None = None,
    log_choice: bool = True,
) -> EncodingSizes:
    """Choose chip, tile and halo sizes for a scene (see the module docstring); logs the choice.

    Args:
        path: The scene's path, for messages (errors name it, logs show its file name).
        model_chip: The model's chip edge in pixels (its ``chip_size``).
        model_tile: The tile edge the run would use without matching (the configured or the model's).
        model_gsd_m: Ground pixel size of the model's training data in metres (``None``: unknown, no
            matching).
        scene: The scene's ground resolution (``None``: unknown, no matching).
        match: Resolution matching on (``RunConfig.match_resolution``; off for SAM tiles).
        grid: Encoder feature cells per chip edge; a matched chip has at least this many pixels.
        tile_size: A tile edge the user configured (rounded to a multiple of the matched chip).
        halo: A halo the user configured (reduced when it does not fit the tile).
        scene_shape: ``(height, width)`` of the scene: a matched chip is at most its longest side.
        log_choice: Log the note on a choice made from the scene's resolution (INFO, or WARNING when
            the chip is clamped); ``False`` when the caller logs it with the tile it finally uses
            (:func:`geosam.scene_plan.scene_encoding`). Other messages (matching off, stretched pixels,
            unknown ground size) are logged either way.

    Returns:
        The sizes and a note on the choice.

    Raises:
        InputMismatchError: Matching is on and the scene's pixels measure outside
            :data:`MIN_GSD_M`..:data:`MAX_GSD_M` on the ground.
    """
    gsd = None if scene is None else scene.mean_m
    model_tile = _fit_tile(model_tile, model_chip)  # a multiple of the chip within the tiling bounds
    if not match or not model_gsd_m or model_gsd_m <= 0:
        why = "resolution matching is off" if not match else "the model records no training GSD"
        fitted, halo_note = _fit_halo(halo, model_tile)
        note = f"{why}: chips of {model_chip} px, tiles of {model_tile} px{halo_note}"
        log.debug("%s: %s", Path(path).name, note)
        return EncodingSizes(model_chip, model_tile, fitted, gsd, None, False, note)
    if scene is None or gsd is None:
        fitted, halo_note = _fit_halo(halo, model_tile)
        note = (
            "the ground size of its pixels cannot be measured (the CRS has no ellipsoid, or the scene "
            f"lies outside the projection's domain): no resolution matching, chips of {model_chip} px"
            f"{halo_note}"
        )
        log.warning("%s: %s", Path(path).name, note)
        return EncodingSizes(model_chip, model_tile, fitted, None, None, False, note)
    check_ground_resolution(gsd, model_chip, path)
    _warn_anisotropy(scene, path)
    ideal = model_chip * model_gsd_m / gsd
    if abs(gsd - model_gsd_m) / model_gsd_m < TOLERANCE:
        fitted, halo_note = _fit_halo(halo, model_tile)
        note = (
            f"pixels of {scene.describe()} match the model's {model_gsd_m:g} m: chips of {model_chip} px"
            f"{halo_note}"
        )
        if log_choice:
            log.info("%s: %s", Path(path).name, note)
        return EncodingSizes(model_chip, model_tile, fitted, gsd, float(model_chip), False, note)
    per_side = max(1, round(model_tile / model_chip))
    longest = max(scene_shape) if scene_shape else None
    limit = MAX_MATCHED_TILE if longest is None else min(MAX_MATCHED_TILE, longest)
    chip, min_chip, clamped = clamp_chip(ideal, model_chip, grid, limit)
    if tile_size is None:
        per_side = min(per_side, max(1, MAX_MATCHED_TILE // chip))  # large chips: fewer per tile
        per_side = max(per_side, math.ceil(MIN_MATCHED_TILE / chip))
    tile = _fit_tile(tile_size if tile_size is not None else chip * per_side, chip)
    fitted, halo_note = _fit_halo(halo, tile)
    ground = chip * gsd
    note = (
        f"pixels of {scene.describe()}, model trained at {model_gsd_m:g} m: chips of {chip} px "
        f"({ground:.4g} m of ground) resampled to the model's input, tiles of {tile} px{halo_note}"
    )
    if clamped:
        which = "smallest" if chip == min_chip else "largest (tile limit or scene size)"
        note += (
            f"; matching needs {ideal:.3g} px chips, so the {which} chip ({chip} px) is used and each "
            f"chip covers {ground / (model_chip * model_gsd_m):.2g}x the ground of a training chip: "
            "classes are less reliable (use a model trained at this resolution)"
        )
        if log_choice:
            log.warning("%s: %s", Path(path).name, note)
    elif log_choice:
        log.info("%s: %s", Path(path).name, note)
    return EncodingSizes(chip, tile, fitted, gsd, ideal, clamped, note)
