"""Loading a run's SAM 2.x region model (and the shared parts SAM 3's loader uses).

:func:`load_sam2_models` is what :func:`geosam.runtime.load_models` calls for a SAM 2.x checkpoint: it
checks the checkpoint against the bundle (family, size, decoder present), loads SAM 2 at the tile size,
loads the classifier bundle (sharing its Hiera with SAM 2 when it was trained on this checkpoint) and
returns a :class:`LoadedRegionModel`, from which ``load_models`` builds its ``Models``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from geosam.config import RunConfig
from geosam.errors import CheckpointError, InputMismatchError
from geosam.models.sam_family import SamModelId

if TYPE_CHECKING:
    import torch

    from geosam.models.bundle import BundleMeta, LoadedBundle

__all__ = ["LoadedRegionModel", "load_sam2_models", "rgb_indices"]

log = logging.getLogger(__name__)


class LoadedRegionModel(NamedTuple):
    """What a SAM 2 or SAM 3 loader hands :func:`geosam.runtime.load_models` to build its ``Models``."""

    bundle: LoadedBundle
    region_model: Any
    region_source: str
    tile_size: int
    chip_size: int
    input_size: int
    info: dict[str, Any]


def rgb_indices(bands: list[str], where: str | os.PathLike[str] | None) -> tuple[int, int, int]:
    """Positions of the red, green and blue bands among a model's bands (for a SAM region pass).

    Raises:
        InputMismatchError: One of them is missing.
    """
    from geosam.bands import canonical_band_name

    names = [canonical_band_name(b) for b in bands]
    try:
        return (names.index("red"), names.index("green"), names.index("blue"))
    except ValueError:
        raise InputMismatchError(
            f"SAM masks need red, green and blue bands, but the model's bands are {', '.join(names)}; "
            "use a bundle trained with --backbone <sam2 checkpoint>, or --regions felzenszwalb",
            where,
        ) from None


def load_sam2_models(
    model: str | os.PathLike[str] | None,
    sam_checkpoint: str | os.PathLike[str],
    found: SamModelId,
    meta: BundleMeta,
    cfg: RunConfig,
    device: torch.device,
) -> LoadedRegionModel:
    """Load the classifier bundle and SAM 2's mask decoder for a run (once per process).

    Args:
        model: Bundle folder (``None``: the packaged default model).
        sam_checkpoint: The SAM checkpoint given with ``--sam-checkpoint``.
        found: What the checkpoint is (:func:`geosam.models.sam_family.identify_sam_checkpoint`).
        meta: The bundle's metadata.
        cfg: Run configuration (tile size, segment settings).
        device: Torch device.

    Returns:
        The parts of :class:`geosam.runtime.Models`: a :class:`Sam2MaskDecoder` as region model,
        ``region_source`` ``sam2.1``/``sam2``, sizes and the record's ``sam`` section.

    Raises:
        InputMismatchError: A bundle trained on another SAM family or size than the checkpoint, or one
            without red/green/blue bands for SAM 2's own pass.
        CheckpointError: An encoder-only checkpoint (no mask decoder), or weights that do not load.
        ConfigError: A tile size SAM 2 cannot run at (shared mode: multiples of 32).
    """
    from geosam.hashing import sha256_file
    from geosam.infer_sam2 import Sam2MaskDecoder
    from geosam.models.bundle import load_bundle
    from geosam.models.sam2 import check_input_size, load_sam2, sam2_version
    from geosam.models.sam2_bundle import check_checkpoint_for_bundle

    bundle_path = model if model is not None else None
    shared = meta.encoder.family == "sam2"
    if shared or found.family == "sam":
        # a Hiera bundle takes only its own family and size; a SAM 1 checkpoint never reaches here otherwise
        check_checkpoint_for_bundle(meta, found, bundle_path)
    if not found.has_decoder or found.variant is None:
        raise CheckpointError(
            f"the checkpoint holds only {found.label}'s image encoder, no mask decoder: it cannot make SAM "
            "masks; pass Meta's full checkpoint",
            sam_checkpoint,
        )
    tile = cfg.tiling.tile_size or 1024
    if shared:
        check_input_size(tile)
        image_size = tile
    else:
        image_size = max(64, round(tile / 32) * 32)
    digest = sha256_file(sam_checkpoint)
    sam2_model = load_sam2(sam_checkpoint, found.variant, image_size)
    if shared:
        bundle = load_bundle(model, sam_checkpoint=sam_checkpoint, device="cpu", sam2_model=sam2_model)
        if bundle.meta.encoder.source == "bundle":
            log.warning(
                "the bundle's Hiera encoder was fine-tuned: SAM 2's mask decoder runs on its features "
                "(one encoder pass); masks may differ from stock SAM 2"
            )
        sam2_model.image_encoder = bundle.model.encoder.image_encoder  # one encoder: masks and classes
        chip = input_size = tile
        rgb = (0, 1, 2)
    else:
        if meta.encoder.source == "sam_checkpoint":
            raise InputMismatchError(
                f"the model bundle was trained on the frozen encoder of a SAM 1 checkpoint, but the SAM "
                f"checkpoint given is {found.label}: run that bundle with its SAM 1 checkpoint, or train one "
                f"on this checkpoint (geosam train ... --backbone {Path(sam_checkpoint).name})",
                bundle_path,
            )
        bundle = load_bundle(model, device="cpu")
        rgb = rgb_indices(list(bundle.meta.bands), bundle_path)
        chip = meta.chip_size or meta.input_size
        input_size = meta.input_size
        log.info(
            "regions: %s (its own encoder pass per tile); classes: %s (its own encoder)",
            found.label,
            bundle.meta.name,
        )
    bundle.model.to(device).eval()
    sam2_model.to(device).eval()
    decoder = Sam2MaskDecoder(sam2_model, found, shared, rgb)
    own = "own pass per tile (the classifier encodes the tile with its own encoder)"
    dense_cfg = getattr(bundle.model.dense, "cfg", None)
    if not shared and dense_cfg is not None and not dense_cfg.use_encoder:  # see inference.needs_features
        own = "own pass per tile (the dense head reads the pixels alone: its encoder does not run)"
    info = {
        "family": found.family,
        "model": found.name,
        "label": found.label,
        "checkpoint": os.path.abspath(sam_checkpoint),
        "checkpoint_sha256": digest,
        "package": f"sam2 {sam2_version()}",
        "input_size": image_size,
        "encoder_pass": "shared with the classifier (one pass per tile)" if shared else own,
    }
    return LoadedRegionModel(bundle, decoder, found.region_source, tile, chip, input_size, info)
