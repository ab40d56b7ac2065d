"""Training option combinations checked before any expensive work, and the training GSD to record.

``geosam train`` spends minutes (an embedding pass over every chip with a frozen ViT-B, epochs of
fine-tuning) before it writes the bundle, and the bundle's metadata is validated only then. Every
combination that cannot give a valid bundle is refused here, in one line, before that work:

* ``--tile-size`` (scene pixels, the bundle's ``recommended_tile_size``) must be a multiple of the chip
  size (scene pixels per chip), within ``geosam run``'s 32..8192 px tiles;
* ``--input-size`` must be a multiple of the encoder's patch size (8 for ``small``, 16 for ``tiny``);
* a SAM checkpoint given as ``--backbone`` must exist;
* ``--gsd`` must agree with the ground sampling distance the data itself records (a scene in a
  projected CRS); chip folders record none, so ``--gsd`` is how their bundles get one, and without it
  resolution matching is off for the model (a warning says so).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from geosam.errors import ConfigError, WeightsNotFoundError
from geosam.resolution import MAX_TILE, MIN_TILE
from geosam.resolution import TOLERANCE as GSD_TOLERANCE
from geosam.train.config import TrainConfig

if TYPE_CHECKING:
    from geosam.train.data import ChipData

__all__ = ["check_gsd", "check_options", "recommended_tile_size", "training_gsd"]

log = logging.getLogger(__name__)

#: Patch size of geosam's CPU-sized encoders (``geosam.models.sam_config.SamConfig.preset``).
PRESET_PATCH = {"small": 8, "tiny": 16}
#: Tile sizes ``geosam run`` accepts (``geosam.config.TilingConfig.tile_size``).
RUN_TILE_RANGE = (MIN_TILE, MAX_TILE)


def _multiples(value: int, step: int) -> str:
    lo = max(step, value // step * step)
    hi = lo + step if lo < value else lo
    return f"{lo}" if lo == hi else f"{lo} or {hi}"


def default_tile_size(chip_size: int, input_size: int) -> int:
    """Scene tile size recorded when ``--tile-size`` is not given: about 256 encoder pixels of chips."""
    tile = max(input_size, (256 // input_size) * input_size if input_size <= 256 else input_size)
    return tile * chip_size // input_size


def recommended_tile_size(cfg: TrainConfig, chip_size: int) -> int:
    """The bundle's ``recommended_tile_size`` in scene pixels: ``--tile-size``, else about 256 encoder px."""
    return cfg.tile_size or default_tile_size(chip_size, cfg.input_size or chip_size)


def check_options(cfg: TrainConfig, *, chip_size: int | None = None) -> None:
    """Refuse option combinations that cannot give a usable bundle (see the module docstring).

    Args:
        cfg: The training configuration.
        chip_size: Chip edge in scene pixels when known (scene sources: ``--chip-size``; chip folders:
            after loading). ``None`` skips the checks that need it.

    Raises:
        ConfigError: A combination that cannot work; the message says which values would.
        WeightsNotFoundError: The SAM checkpoint given as ``--backbone`` does not exist.
    """
    from geosam.models.bundle import check_bundle_destination

    check_bundle_destination(cfg.out)  # before hours of training, never over the user's own folder
    if cfg.backbone == "default":
        if cfg.head == "dense":
            return  # the packaged encoder, band-adapted by the dense trainer (geosam.train.dense)
        raise ConfigError(
            "--backbone default (the packaged model's encoder) trains the dense head only: add --head dense, "
            "or train a chip classifier with --backbone small|tiny|<SAM checkpoint>, or continue a bundle of "
            "the same bands and classes with --init-from BUNDLE"
        )
    if cfg.backbone in PRESET_PATCH:
        patch = PRESET_PATCH[cfg.backbone]
        if cfg.input_size is not None and cfg.input_size % patch:
            raise ConfigError(
                f"--input-size {cfg.input_size} is not a multiple of the {cfg.backbone} encoder's {patch} px "
                f"patches; use {_multiples(cfg.input_size, patch)}"
            )
    elif not Path(cfg.backbone).is_file():
        raise WeightsNotFoundError(
            "SAM checkpoint not found (geosam never downloads weights: fetch Meta's "
            "sam_vit_b_01ec64.pth from https://dl.fbaipublicfiles.com/segment_anything/)",
            cfg.backbone,
        )
    if chip_size is None:
        return
    input_size = cfg.input_size or chip_size
    if cfg.backbone in PRESET_PATCH and cfg.input_size is None and chip_size % PRESET_PATCH[cfg.backbone]:
        patch = PRESET_PATCH[cfg.backbone]
        raise ConfigError(
            f"{chip_size} px chips are not a multiple of the {cfg.backbone} encoder's {patch} px patches; "
            f"pass --input-size {_multiples(chip_size, patch)} (chips are resized to it)"
        )
    tile = recommended_tile_size(cfg, chip_size)
    lo, hi = RUN_TILE_RANGE
    if tile % chip_size:
        raise ConfigError(
            f"--tile-size {tile} (scene pixels) is not a multiple of the {chip_size} px chips, so "
            f"`geosam run` could not cut its tiles into chips; use {_multiples(tile, chip_size)}"
            + (
                f" (--input-size {input_size} is the encoder's size, not the tile's)"
                if input_size != chip_size
                else ""
            )
        )
    if cfg.tile_size is not None and not lo <= tile <= hi:
        raise ConfigError(f"--tile-size {tile} is outside geosam run's {lo}..{hi} px tiles")


def check_gsd(given: float | None, recorded: float | None, source: str | Path | None = None) -> None:
    """Refuse ``--gsd`` when the data records another ground sampling distance.

    Raises:
        ConfigError: ``given`` and ``recorded`` differ by 5 % or more.
    """
    if given is None or recorded is None:
        return
    if abs(given - recorded) / recorded >= GSD_TOLERANCE:
        raise ConfigError(
            f"--gsd {given:g} contradicts the scene's own {recorded:g} m pixels; omit --gsd "
            "(it is for chips whose pixel size the data does not record)",
            source,
        )


def training_gsd(cfg: TrainConfig, data: ChipData) -> float | None:
    """The GSD to record in the bundle: the data's own, else ``--gsd`` (``cfg.gsd_m``).

    Logs a warning when neither is known: the bundle will record no GSD, and ``geosam run`` cannot
    match scene resolutions to it.

    Raises:
        ConfigError: ``--gsd`` contradicts the data's GSD.
    """
    check_gsd(cfg.gsd_m, data.gsd_m)
    gsd = data.gsd_m if data.gsd_m is not None else cfg.gsd_m
    if gsd is None:
        log.warning(
            "the training chips' ground sampling distance is unknown, so the bundle records none and "
            "`geosam run` will encode scenes at their own resolution (no resolution matching); pass "
            "--gsd METRES (e.g. --gsd 10 for Sentinel-2 10 m chips)"
        )
    return gsd
