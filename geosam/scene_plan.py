"""How ``geosam run`` cuts and encodes a scene for a model: one code path for ``run`` and ``info``.

Two decisions, both pure (no torch, no pixels):

* :func:`model_geometry` — from the bundle's ``model.json``, the run configuration and whether a SAM
  checkpoint is given: the region source, the encoder chip and tile size in scene pixels, the encoder
  input size and the training ground sampling distance (``gsd_m``). :func:`geosam.runtime.load_models`
  uses it before loading any weights, and ``geosam info`` uses it without loading them.
* :func:`scene_encoding` — resolution matching: for models that encode chips and record ``gsd_m``,
  the chip covers the ground of a training chip, ``chip = round(model_chip * model_gsd / scene_gsd)``,
  and a tile holds as many chips per side as the model's default tile (a user-set tile size is rounded
  to a multiple of the chip). ``geosam run`` (through :func:`geosam.encode.plan_encoder`) and
  ``geosam info`` both call it.

:func:`scene_tiling` combines them into the :class:`~geosam.config.TilingConfig` that
:func:`geosam.tiling.plan_tiles` (``run``) and :func:`geosam.tiling.summarize_plan` (``info``) take.

Why this module is long: ``geosam run`` and ``geosam info`` must take the same decision, so the
decision and the words ``info`` prints about it live together; the geometry rules themselves are in
:mod:`geosam.chip_grid` and :mod:`geosam.resolution`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from geosam.config import RunConfig, TilingConfig
from geosam.errors import ConfigError
from geosam.resolution import TOLERANCE as GSD_TOLERANCE

if TYPE_CHECKING:
    from geosam.errors import InputMismatchError
    from geosam.models.bundle import BundleMeta
    from geosam.models.sam_config import SamConfig
    from geosam.runtime import Models
    from geosam.tiling import PlanSummary
    from geosam.types import SceneInfo

__all__ = [
    "ModelGeometry",
    "RunDescription",
    "SceneEncoding",
    "describe_run",
    "model_geometry",
    "own_pass_encoding",
    "sam1_encoder_mismatch",
    "scene_encoding",
    "scene_tiling",
]

log = logging.getLogger(__name__)

#: Tile edge of SAM regions when none is configured: SAM's native 1024 px input.
SAM_TILE = 1024

RegionSource = Literal["sam", "felzenszwalb", "tiles", "chips"]


@dataclass(frozen=True)
class ModelGeometry:
    """What of a model decides how scenes are tiled and encoded.

    Attributes:
        name: The model's name (``model.json``).
        region_source: ``sam``, ``felzenszwalb`` or ``tiles``.
        chip_size: Encoder chip edge in scene pixels at the model's own resolution (a SAM tile is one
            chip).
        tile_size: Tile edge in scene pixels before resolution matching (the configured one, or the
            model's default).
        input_size: Encoder input edge in pixels.
        gsd_m: Ground sampling distance of the training data in metres (``None``: unknown, so scenes
            are never resampled).
        tile_size_configured: Whether ``tile_size`` came from the run configuration.
    """

    name: str
    region_source: RegionSource
    chip_size: int
    tile_size: int
    input_size: int
    gsd_m: float | None
    tile_size_configured: bool = False

    @classmethod
    def of_models(cls, models: Models, *, tile_size: int | None) -> ModelGeometry:
        """The geometry of models already loaded by :func:`geosam.runtime.load_models`.

        ``tile_size`` is the run configuration's (``None``: the model chose ``models.tile_size``).
        """
        source: RegionSource = (
            "sam" if models.region_source == "sam" else
            "felzenszwalb" if models.region_source == "felzenszwalb" else
            "chips" if models.region_source == "chips" else "tiles"
        )  # fmt: skip
        return cls(
            name=models.bundle.meta.name,
            region_source=source,
            chip_size=models.chip_size,
            tile_size=models.tile_size,
            input_size=models.input_size,
            gsd_m=models.bundle.meta.gsd_m,
            tile_size_configured=tile_size is not None,
        )


def model_geometry(meta: BundleMeta, cfg: RunConfig, *, sam_checkpoint: bool) -> ModelGeometry:
    """The region source and encoder geometry a run of this model with ``cfg`` uses.

    ``segment.source: auto`` means ``sam`` when a SAM checkpoint is given, else ``felzenszwalb``. SAM
    regions encode whole tiles (``tile_size``, default 1024) in one pass; otherwise tiles are cut into
    the model's chips (``chip_size``, default ``input_size``) and the tile defaults to the bundle's
    ``recommended_tile_size``.

    Args:
        meta: The bundle's ``model.json`` (:func:`geosam.models.bundle.read_bundle_meta`).
        cfg: Run configuration (``segment.source`` and ``tiling.tile_size`` are read).
        sam_checkpoint: Whether a SAM checkpoint is given.

    Raises:
        ConfigError: ``source: sam`` without a checkpoint; a SAM tile size that is not a multiple of
            the encoder patch.
    """
    from geosam.models.sam_config import SamConfig

    source = cfg.segment.source
    if source == "auto":
        source = "sam" if sam_checkpoint else "felzenszwalb"
    if source == "sam" and not sam_checkpoint:
        raise ConfigError(
            "segment.source is 'sam' but no SAM checkpoint was given: pass --sam-checkpoint "
            "(Meta's sam_vit_b_01ec64.pth...), or use --regions felzenszwalb"
        )
    configured = cfg.tiling.tile_size is not None
    if source == "sam":
        tile = cfg.tiling.tile_size or SAM_TILE
        if meta.encoder.family != "sam":  # SAM 2.x / 3 region models plan their own tiles
            return ModelGeometry(meta.name, "sam", tile, tile, tile, meta.gsd_m, configured)
        patch = SamConfig.from_dict(dict(meta.encoder.config)).patch_size
        if tile % patch:
            raise ConfigError(f"tile size {tile} must be a multiple of the encoder patch size {patch}")
        return ModelGeometry(meta.name, "sam", tile, tile, tile, meta.gsd_m, configured)
    if source == "sam3":
        raise ConfigError("--regions sam3 needs SAM 3: pass --sam3-checkpoint sam3.pt and --concepts")
    chip = meta.chip_size or meta.input_size
    # a tile size that is not whole chips is rounded per scene by geosam.chip_grid (logged)
    tile = cfg.tiling.tile_size or meta.recommended_tile_size
    return ModelGeometry(meta.name, source, chip, tile, meta.input_size, meta.gsd_m, configured)


@dataclass(frozen=True)
class SceneEncoding:
    """Chip and tile size for one scene, after resolution matching.

    Attributes:
        chip_size: Encoder chip edge in scene pixels (each chip is resampled to the input size).
        tile_size: Tile edge in scene pixels (a multiple of ``chip_size``).
        scene_gsd_m: The scene's pixel size in metres (``None``: CRS not projected in a length unit).
        matched: Whether chips were resized for the model's training resolution.
        reason: Why (or why not) resolution matching applies, in words (for ``info`` and logs).
        halo: Context per tile side in scene pixels (whole chips; ``None``: ``tile_size // 8``).
    """

    chip_size: int
    tile_size: int
    scene_gsd_m: float | None
    matched: bool
    reason: str
    halo: int | None = None


def _unmatched_reason(model_gsd: float | None, scene_gsd: float | None, *, match_resolution: bool) -> str:
    """Why chips keep the model's size for this scene (in words), or ``""`` when they are matched.

    The rule of :func:`scene_encoding` and :func:`own_pass_encoding`: matching applies when it is on,
    both GSDs are known and they differ by :data:`geosam.resolution.TOLERANCE` (5 %) or more.
    """
    if not match_resolution:
        return "resolution matching is off (--no-match-resolution)"
    if not model_gsd:
        return "the model records no training GSD (train with --gsd to record it)"
    if not scene_gsd:
        return "the scene's CRS is not projected in metres: its GSD is unknown"
    if abs(scene_gsd - model_gsd) / model_gsd < GSD_TOLERANCE:
        return f"the scene's {scene_gsd:.3g} m pixels match the model's {model_gsd:.3g} m (within 5 %)"
    return ""


def scene_encoding(
    geom: ModelGeometry,
    info: SceneInfo,
    *,
    match_resolution: bool = True,
    halo: int | None = None,
    grid: int = 1,
    quiet: bool = False,
) -> SceneEncoding:
    """Resolution matching and the scene's chip grid (see the module docstring) for one scene.

    The sizes come from :func:`geosam.chip_grid.plan_chip_grid` (chips anchored to the scene grid,
    tiles and halos in whole chips, sizes clamped to what a tile can hold, every change logged), so
    ``geosam info`` shows exactly the grid ``geosam run`` encodes. Logs (INFO, unless ``quiet``) a line
    when the model records no training GSD while the scene is in metres (resolution matching then
    could not apply: retrain with ``geosam train ... --gsd``).

    Args:
        geom: From :func:`model_geometry` or :meth:`ModelGeometry.of_models`.
        info: The scene header.
        match_resolution: ``RunConfig.match_resolution``.
        halo: The user's halo (``TilingConfig.halo``), or ``None`` for the default.
        grid: Encoder feature cells per chip edge (a matched chip has at least this many pixels).
        quiet: Log nothing (``geosam info`` prints the reason instead).

    The chip edge of a chip model is :func:`geosam.resolution.encoding_sizes`'s: both GSDs measured on
    the ground, clamped to the tiling bounds, and pixels outside 1 cm..1 km refused.

    Raises:
        ConfigError: One model chip is more scene pixels than a tile can hold.
        InputMismatchError: Matching is on and the scene's pixels measure under 1 cm or over 1 km.
    """
    from geosam.chip_grid import plan_chip_grid
    from geosam.resolution import encoding_sizes

    chip, gsd = geom.chip_size, geom.gsd_m
    name = Path(info.path).name
    scene_gsd = info.gsd_m
    if geom.region_source == "sam":
        reason = "SAM tiles are encoded at their own resolution (never resampled)"
    else:
        reason = _unmatched_reason(gsd, scene_gsd, match_resolution=match_resolution)
        if match_resolution and not gsd and scene_gsd is not None and not quiet:
            log.info(
                "%s: model %r records no training GSD, so resolution matching is off: the scene's "
                "%.3g m pixels are encoded as %d px chips as they are; retrain with `geosam train ... "
                "--gsd METRES` to record it",
                name,
                geom.name,
                scene_gsd,
                chip,
            )
    chip_override: int | None = None
    sizes = None
    if geom.region_source != "sam":
        with _raised_level("geosam.resolution", logging.ERROR, quiet):
            sizes = encoding_sizes(
                path=info.path,
                model_chip=chip,
                model_tile=geom.tile_size,
                model_gsd_m=gsd,
                scene=info.ground_resolution,
                match=match_resolution,
                grid=grid,
                tile_size=geom.tile_size if geom.tile_size_configured else None,
                scene_shape=info.shape,
                log_choice=False,  # logged below, with the tile the chip grid settles on
            )
        chip_override = sizes.chip
        choice = re.sub(r", tiles of \d+ px", "", sizes.note)  # the tile size is the chip grid's, below
        if not reason or sizes.clamped:
            reason = choice
    with _raised_level("geosam.chip_grid", logging.WARNING, quiet):
        g = plan_chip_grid(
            model_chip=chip,
            model_tile=geom.tile_size,
            input_size=geom.input_size,
            model_gsd=gsd,
            scene_gsd=scene_gsd,
            tiling=TilingConfig.model_construct(
                tile_size=geom.tile_size if geom.tile_size_configured else None, halo=halo, skip_empty=True
            ),
            match_resolution=match_resolution,
            whole_tiles=geom.region_source == "sam",
            scene_shape=info.shape,
            name=name,
            chip=chip_override,
        )
    if sizes is not None and sizes.matched and not quiet:  # the choice, with the tile the run reads
        note = f"{choice}; tiles of {g.tile} px with a {g.halo} px halo"
        resolution_log = logging.getLogger("geosam.resolution")
        (resolution_log.warning if sizes.clamped else resolution_log.info)("%s: %s", name, note)
    return SceneEncoding(g.chip, g.tile, scene_gsd, g.matched, reason, g.halo)


def own_pass_encoding(
    chip: int, tile: int, model_gsd: float | None, scene_gsd: float | None, *, match_resolution: bool
) -> SceneEncoding:
    """Chip and tile of a classifier encoding tiles with its own encoder next to a SAM 2/3 region pass.

    The tile keeps the region model's size (``tile``, e.g. SAM 2's 1024 px); the classifier's chips
    are matched to its training resolution, ``chip = max(4, round(chip * model_gsd / scene_gsd))``
    when the GSDs differ by 5 % or more (the rule of :func:`scene_encoding`), and the tile becomes the
    nearest multiple of that chip. :func:`geosam.infer_sam2.plan_own_pass` (``run``) and
    :func:`describe_run` (``info``) both use it. Sizes in scene pixels; GSDs in metres.
    """
    reason = _unmatched_reason(model_gsd, scene_gsd, match_resolution=match_resolution)
    if not reason:
        assert model_gsd and scene_gsd  # _unmatched_reason gave none: both are known
        new_chip = max(4, round(chip * model_gsd / scene_gsd))
        reason = (
            f"the scene's {scene_gsd:.3g} m pixels, model trained at {model_gsd:.3g} m: the ground of "
            f"its {chip} px training chips is {new_chip} scene px"
        )
        return SceneEncoding(new_chip, new_chip * max(1, round(tile / new_chip)), scene_gsd, True, reason)
    return SceneEncoding(chip, chip * max(1, round(tile / chip)), scene_gsd, False, reason)


@contextlib.contextmanager
def _raised_level(logger: str, level: int, when: bool) -> Iterator[None]:
    """Set ``logger``'s level to ``level`` inside the block when ``when`` (a quiet plan), then restore it."""
    lg = logging.getLogger(logger)
    saved = lg.level
    if when:
        lg.setLevel(level)
    try:
        yield
    finally:
        if when:
            lg.setLevel(saved)


def scene_tiling(
    geom: ModelGeometry, info: SceneInfo, cfg: RunConfig, *, quiet: bool = False
) -> tuple[SceneEncoding, TilingConfig]:
    """The scene's :class:`SceneEncoding` and the resolved tiling (``halo`` defaults to tile / 8)."""
    from pydantic import ValidationError

    from geosam.config_io import format_validation_error

    enc = scene_encoding(geom, info, match_resolution=cfg.match_resolution, halo=cfg.tiling.halo, quiet=quiet)
    try:
        update = {"tile_size": enc.tile_size, "halo": enc.halo}
        tiling = cfg.tiling.model_copy(update=update).resolved(enc.tile_size)
    except ValidationError as err:
        why = f" ({enc.reason})" if enc.matched else ""
        raise ConfigError(f"tiling for this scene{why}: {format_validation_error(err)}", info.path) from None
    return enc, tiling


def sam1_encoder_mismatch(enc: SamConfig, checkpoint: str, bundle: str | None) -> InputMismatchError:
    """The error of a bundle whose encoder ``enc`` is not the SAM 1 checkpoint's.

    ``checkpoint`` names the checkpoint's architecture (``vit_b``, or its width and depth); ``run``
    (:func:`geosam.runtime.load_models`) and ``info`` raise it.
    """
    from geosam.errors import InputMismatchError

    return InputMismatchError(
        f"the model bundle's encoder ({enc.name}: width {enc.embed_dim}, depth {enc.depth}) is not the "
        f"SAM checkpoint's ({checkpoint}); SAM masks and classes share one encoder pass, so use a bundle "
        "trained on this checkpoint (geosam train ... --backbone <checkpoint>), or run without "
        "--sam-checkpoint for felzenszwalb regions",
        bundle,
    )


def _check_sam1_encoder(meta: BundleMeta, checkpoint_name: str, bundle: Path | None) -> None:
    """Refuse, as :func:`geosam.runtime.load_models` does, a bundle whose encoder is not a SAM 1 checkpoint's.

    SAM 1 masks and classes share one encoder pass. Compared by architecture name (``vit_b``/``vit_l``/
    ``vit_h``, or ``custom`` for other sizes), which needs no weights; ``run`` compares the sizes.

    Raises:
        InputMismatchError: The bundle's encoder is not the checkpoint's architecture.
    """
    from geosam.models.sam_config import SamConfig
    from geosam.models.sam_family import sam1_name

    enc = SamConfig.from_dict(dict(meta.encoder.config))
    if sam1_name(enc.embed_dim, enc.depth) != checkpoint_name:
        raise sam1_encoder_mismatch(enc, checkpoint_name, os.fspath(bundle) if bundle is not None else None)


@dataclass(frozen=True)
class RunDescription:
    """What ``geosam run`` would do with a scene, for ``geosam info`` (nothing loaded but headers).

    Attributes:
        model: The model's name and where it comes from, or why it cannot be used.
        bands: The scene bands the model would read, or why they cannot be chosen.
        geometry: Region source and encoder geometry (``None`` when the model or options are unusable).
        encoding: Resolution matching for this scene (``None`` as ``geometry``).
        plan: The tile plan summary (``None`` as ``geometry``).
        problem: The error ``geosam run`` would stop with before tiling, if any.
        sam_label: The SAM checkpoint's model (e.g. ``SAM 2.1 Hiera-T``) when SAM makes the regions.
        own_pass: SAM 2 makes the regions with its own encoder pass while the classifier encodes its
            own chips (a bundle not trained on that SAM 2 checkpoint).
    """

    model: str
    bands: str
    geometry: ModelGeometry | None = None
    encoding: SceneEncoding | None = None
    plan: PlanSummary | None = None
    problem: str | None = None
    sam_label: str | None = None
    own_pass: bool = False

    def lines(self) -> list[tuple[str, str]]:
        """``(key, text)`` lines, as ``geosam info`` prints them."""
        out = [("model", self.model), ("use", self.bands)]
        g, e, p = self.geometry, self.encoding, self.plan
        if g is None or e is None or p is None:
            out.append(("plan", f"none: `geosam run` would stop: {self.problem}"))
            return out
        regions = {
            "sam": "SAM masks (segment-anything mask decoder on each tile's embedding)",
            "felzenszwalb": "Felzenszwalb superpixels (no SAM checkpoint given)",
            "tiles": "none: tile labels only",
            "chips": "one region per encoder chip (each pixel gets the class of its chip)",
        }[g.region_source]
        if self.sam_label is not None and self.sam_label.startswith("SAM 2"):
            regions = f"{self.sam_label} masks (SAM 2's mask decoder, " + (
                "its own encoder pass per tile)" if self.own_pass else "on the tile's Hiera features)"
            )
        elif self.sam_label is not None:
            regions = f"{self.sam_label} masks (segment-anything mask decoder on each tile's embedding)"
        out.append(("regions", regions))
        if self.own_pass:
            out.append(
                ("encoder", f"{e.chip_size} px chips at {g.input_size} px input (the classifier's own pass; "
                 f"the region model resizes each {e.tile_size} px tile to its input); {e.reason}")
            )  # fmt: skip
        elif g.region_source == "sam":
            out.append(("encoder", f"whole {e.tile_size} px tiles, one pass each ({e.reason})"))
        else:
            out.append(("encoder", f"{e.chip_size} px chips at {g.input_size} px input; {e.reason}"))
        rows, cols = p.grid
        head = (
            f"{p.tile_size} px tiles (halo {p.halo}, stride {p.stride}), grid {rows} x {cols} = {p.n_grid:,}"
        )
        if p.screening in ("off", "not-needed"):
            why = "empty tiles are not skipped" if p.screening == "off" else "no nodata: no empty tile"
            out.append(("tiles", f"{p.n_grid:,} to process; {head}; {why}"))
        elif p.n_tiles is not None:
            out.append(("tiles", f"{p.n_tiles:,} to process; {head}; {p.n_skipped:,} empty tiles skipped"))
        elif p.screening == "decimated":
            out.append(
                ("tiles", f"{p.n_tiles_min:,} to {p.n_grid:,} to process (the rest hold no data in a "
                 f"decimated sample; `geosam run` confirms each); {head}")
            )  # fmt: skip
        else:
            out.append(
                ("tiles", f"up to {p.n_grid:,} to process; {head}; empty tiles not counted (a large scene "
                 "without overviews: `geosam run` screens them, reading the whole scene once)")
            )  # fmt: skip
        return out


def describe_run(
    info: SceneInfo,
    model: str | os.PathLike[str] | None,
    sam_checkpoint: str | os.PathLike[str] | None,
    cfg: RunConfig,
) -> RunDescription:
    """The plan ``geosam run`` would use for a scene, through the same functions ``run`` calls.

    Reads the bundle's ``model.json`` (no weights, no torch), resolves bands as ``run`` does, applies
    :func:`model_geometry` and :func:`scene_encoding`, and counts the tile plan with
    :func:`geosam.tiling.summarize_plan`. Problems that would stop ``run`` before tiling (no model, bands
    that cannot be matched, a tile size that does not fit) are described, not raised.

    Raises:
        RasterError: The scene's pixels cannot be read for the empty-tile screen.
    """
    from geosam.bands import resolve_bands
    from geosam.errors import GeosamError
    from geosam.models.bundle import default_bundle_path, read_bundle_meta
    from geosam.tiling import summarize_plan

    try:
        path = Path(model) if model is not None else default_bundle_path(required=True)
        meta = read_bundle_meta(path)
    except GeosamError as err:
        return RunDescription(f"none: {err}", "-", problem=str(err))
    where = "the packaged default model" if model is None else str(path)
    gsd = f"trained at {meta.gsd_m:g} m" if meta.gsd_m else "no training GSD recorded"
    chip = meta.chip_size or meta.input_size
    model_text = (
        f"{meta.name} ({where}): {len(meta.class_scheme)} classes, bands {', '.join(meta.bands)}; "
        f"{chip} px chips, {gsd}"
    )
    problem: str | None = None
    try:
        idx = resolve_bands(info, cfg.bands, meta.bands)
    except GeosamError as err:
        bands_text, problem = f"cannot choose the model's bands: {err}", str(err)
    else:
        pairs = [f"{name} <- band {i}" for name, i in zip(meta.bands, idx, strict=True)]
        bands_text = ", ".join(pairs)
    sam_label, own_pass = None, False
    try:
        geom = model_geometry(meta, cfg, sam_checkpoint=sam_checkpoint is not None)
        if geom.region_source == "sam" and sam_checkpoint is not None:
            from geosam.models.sam_family import identify_sam_checkpoint

            found = identify_sam_checkpoint(sam_checkpoint, named=cfg.segment.sam_model)
            sam_label = found.label
            own_pass = found.family != "sam" and meta.encoder.family != "sam2"
            if found.family == "sam" and meta.encoder.family == "sam":
                _check_sam1_encoder(meta, found.name, path if model is not None else None)
        if own_pass:  # SAM 2 regions next to the classifier's own chips (geosam.infer_sam2.plan_own_pass)
            enc = own_pass_encoding(
                meta.chip_size or meta.input_size,
                geom.tile_size,
                meta.gsd_m,
                info.gsd_m,
                match_resolution=cfg.match_resolution,
            )
            tiling = cfg.tiling.model_copy(update={"tile_size": enc.tile_size}).resolved(enc.tile_size)
            geom = ModelGeometry(
                geom.name, "sam", enc.chip_size, enc.tile_size, meta.input_size, meta.gsd_m, True
            )
        else:
            enc, tiling = scene_tiling(geom, info, cfg, quiet=True)
    except GeosamError as err:
        return RunDescription(model_text, bands_text, problem=str(err))
    if problem is not None:
        return RunDescription(model_text, bands_text, problem=problem)
    plan = summarize_plan(info, tiling)
    return RunDescription(model_text, bands_text, geom, enc, plan, sam_label=sam_label, own_pass=own_pass)
