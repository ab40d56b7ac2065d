"""Tile inference with SAM 3 concept prompts: zero-shot land cover, or concept regions for a classifier.

``geosam run SCENE --sam3-checkpoint sam3.pt --concepts forest,water=water|lake|river,building``:

* **zero-shot** (no ``--model``): the classes are the concepts (plus ``unclassified``); per tile SAM 3's
  vision backbone runs once and every prompt's masks and scores are resolved into labelled regions
  (:func:`geosam.zeroshot.label_concepts`). The run's "model" is a descriptor of SAM 3 and the concepts
  (:func:`zero_shot_bundle`): the class scheme, RGB input, SAM 3's checkpoint sha256, the prompts.
* **hybrid** (``--regions sam3`` with a model bundle, or the packaged default model): SAM 3's accepted
  concept masks are the regions, and the classifier labels each one (and the tile) with its own
  classes; pixels no mask covers take the tile's class, as with SAM regions.

Both go through geosam's usual streaming path and write the same outputs (class-map and confidence
COGs, GeoPackage/GeoJSON regions, tiles layer, QGIS project, run record); ``region_source`` is ``sam3``.
:func:`load_sam3_models` is what :func:`geosam.runtime.load_models` calls for ``--sam3-checkpoint``;
:func:`plan_encoder_sam3` and :func:`sam3_tile_inference` are what the encoder planning and tile
inference call for region source ``sam3``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from geosam.config import RunConfig, SegmentConfig
from geosam.errors import ConfigError, InputMismatchError
from geosam.zeroshot import Concept, ConceptMasks, label_concepts, parse_concepts

if TYPE_CHECKING:
    import torch

    from geosam.encode import EncoderPlan
    from geosam.inference import TileInference, TileResult
    from geosam.models.bundle import LoadedBundle
    from geosam.models.sam3 import ConceptSegmenter
    from geosam.region_loading import LoadedRegionModel
    from geosam.runtime import Models
    from geosam.segment import Regions
    from geosam.types import SceneInfo, TileSpec

__all__ = [
    "Sam3Concepts",
    "Sam3Regions",
    "Sam3ZeroShotInference",
    "is_zero_shot",
    "load_sam3_models",
    "plan_encoder_sam3",
    "sam3_tile_inference",
    "to_rgb8",
    "zero_shot_bundle",
]

log = logging.getLogger(__name__)


def is_zero_shot(models: Models) -> bool:
    """Whether a run's classes are SAM 3's concepts (no classifier bundle)."""
    return models.bundle.meta.encoder.family == "sam3"


@dataclass(frozen=True)
class Sam3Concepts:
    """A run's SAM 3 region model: the concept segmenter, with its own encoder plan and tile inference.

    :func:`geosam.encode.plan_encoder` and :func:`geosam.inference.tile_inference` call
    :meth:`plan_encoder` and :meth:`tile_inference` without importing this module.

    Attributes:
        segmenter: SAM 3 with the concept prompts (:class:`~geosam.models.sam3.ConceptSegmenter`).
        zero_shot: The concepts are the classes (``True``), or a bundle classifies their masks.
    """

    segmenter: ConceptSegmenter
    zero_shot: bool

    def plan_encoder(
        self, models: Models, info: SceneInfo, *, match_resolution: bool, tile_size: int | None
    ) -> EncoderPlan:
        """See :func:`plan_encoder_sam3`."""
        return plan_encoder_sam3(models, info, match_resolution=match_resolution)

    def tile_inference(
        self, models: Models, encoder: EncoderPlan, segment: SegmentConfig, *, batch_size: int = 1
    ) -> TileInference | Sam3ZeroShotInference:
        """See :func:`sam3_tile_inference`."""
        return sam3_tile_inference(models, encoder, segment, batch_size=batch_size)


def to_rgb8(tile: np.ndarray, valid: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """``(3, H, W)`` uint8 RGB for SAM 3 from a ``(N, H, W)`` 0..1 stretched tile (invalid pixels 0)."""
    x = np.clip(np.asarray(tile, np.float32)[list(rgb)], 0.0, 1.0)
    out: np.ndarray = np.rint(x * 255.0).astype(np.uint8)
    out[:, ~valid] = 0
    return out


def zero_shot_bundle(
    checkpoint: str | os.PathLike[str],
    digest: str,
    concepts: tuple[Concept, ...],
    segment: SegmentConfig,
    proposal_floor: float,
) -> LoadedBundle:
    """The descriptor that stands for the classifier in a zero-shot run.

    Its metadata is what the outputs and the run record show about the "model": name ``sam3-concepts``,
    classes ``unclassified`` + the concepts, RGB input with SAM 3's normalisation, input size 1008,
    ``encoder.family = "sam3"`` with the prompts and thresholds, and the checkpoint's sha256 (as
    ``weights_sha256`` and ``encoder.checkpoint_sha256``). It holds no torch model (``model`` is
    ``None``): zero-shot tiles never reach the classifier's code.
    """
    from geosam.models.bundle import BundleMeta, EncoderMeta, HeadMeta, LoadedBundle
    from geosam.models.sam3 import SAM3_RESOLUTION, sam3_version
    from geosam.zeroshot import concept_scheme

    scheme = concept_scheme(concepts)
    meta = BundleMeta(
        name="sam3-concepts",
        version=f"sam3 {sam3_version()}",
        classes={"names": list(scheme.names), "colors": [list(c) for c in scheme.colors], "nodata": 255},
        bands=["red", "green", "blue"],
        mean=[0.5, 0.5, 0.5],
        std=[0.5, 0.5, 0.5],
        input_size=SAM3_RESOLUTION,
        recommended_tile_size=SAM3_RESOLUTION,
        encoder=EncoderMeta(
            family="sam3",
            source="sam_checkpoint",
            config={
                "concepts": {c.name: list(c.prompts) for c in concepts},
                "threshold": segment.concept_threshold,
                "proposal_floor": proposal_floor,
                "resolution": SAM3_RESOLUTION,
            },
            checkpoint_sha256=digest,
        ),
        head=HeadMeta(in_dim=256, num_classes=len(scheme)),
        data={"note": "zero-shot: SAM 3 concept prompts, no training data, no accuracy measured"},
        weights_sha256=digest,
    )
    return LoadedBundle(meta=meta, path=Path(checkpoint), model=cast(Any, None))


def load_sam3_models(
    model: str | os.PathLike[str] | None,
    sam3_checkpoint: str | os.PathLike[str],
    cfg: RunConfig,
    device: torch.device,
) -> LoadedRegionModel:
    """Load SAM 3 and the concept prompts (and, for the hybrid, the classifier bundle), once per run.

    Args:
        model: Bundle folder for the hybrid (``None``: the packaged default model, hybrid only).
        sam3_checkpoint: Meta's ``sam3.pt``.
        cfg: Run configuration: ``segment.concepts``, ``segment.concept_threshold``,
            ``segment.source`` (``sam3``: hybrid; ``auto``: zero-shot), tile size.
        device: Torch device.

    Returns:
        The parts of :class:`geosam.runtime.Models`, a :class:`Sam3Concepts` as region model.

    Raises:
        ConfigError: No concepts, or a bundle given without ``--regions sam3``.
        CheckpointError, WeightsNotFoundError: From :func:`geosam.models.sam3.load_sam3`.
        InputMismatchError: A hybrid bundle without red/green/blue bands or one that needs a SAM 1/2
            checkpoint's encoder.
    """
    from geosam.hashing import sha256_file
    from geosam.models.bundle import load_bundle
    from geosam.models.sam3 import (
        SAM3_RESOLUTION,
        ConceptSegmenter,
        checkpoint_label,
        load_sam3,
        processor_for,
        sam3_version,
    )
    from geosam.region_loading import LoadedRegionModel, rgb_indices

    seg = cfg.segment
    if not seg.concepts:
        raise ConfigError(
            "--sam3-checkpoint needs concept prompts: pass --concepts, e.g. "
            "'forest,water=water|lake|river,building,road,cropland'"
        )
    concepts = parse_concepts(seg.concepts)
    hybrid = seg.source == "sam3"
    if model is not None and not hybrid:
        raise ConfigError(
            "with --sam3-checkpoint the classes are the concepts (zero-shot); to classify SAM 3's concept "
            "regions with a model bundle instead, add --regions sam3"
        )
    digest = sha256_file(sam3_checkpoint)
    floor = min(0.1, seg.concept_threshold / 2)
    sam3_model = load_sam3(sam3_checkpoint, device=device)
    log.info(
        "%s: %d concept(s), %d prompt(s) per tile after one vision pass",
        checkpoint_label(sam3_checkpoint),
        len(concepts),
        sum(len(c.prompts) for c in concepts),
    )
    segmenter = ConceptSegmenter(
        processor_for(sam3_model, device=device, proposal_floor=floor), concepts, floor, device
    )
    tile = cfg.tiling.tile_size or SAM3_RESOLUTION
    info: dict[str, Any] = {
        "family": "sam3",
        "model": "sam3",
        "checkpoint": os.path.abspath(sam3_checkpoint),
        "checkpoint_sha256": digest,
        "package": f"sam3 {sam3_version()}",
        "input_size": SAM3_RESOLUTION,
        "mode": "hybrid: concept masks classified by the model bundle" if hybrid else "zero-shot concepts",
        "concepts": {c.name: list(c.prompts) for c in concepts},
        "threshold": seg.concept_threshold,
        "proposal_floor": floor,
        "licence": "SAM License (Meta); weights supplied by the user",
    }
    if not hybrid:
        bundle = zero_shot_bundle(sam3_checkpoint, digest, concepts, seg, floor)
        return LoadedRegionModel(
            bundle, Sam3Concepts(segmenter, True), "sam3", tile, tile, SAM3_RESOLUTION, info
        )
    bundle = load_bundle(model, device="cpu")
    if bundle.meta.encoder.source == "sam_checkpoint":
        raise InputMismatchError(
            "this model bundle needs its SAM checkpoint's encoder (--sam-checkpoint); with SAM 3 concept "
            "regions use a bundle with its own encoder (the default model, or one trained with "
            "--mode last_n/full)",
            model,
        )
    rgb_indices(list(bundle.meta.bands), model)
    bundle.model.to(device).eval()
    meta = bundle.meta
    chip = meta.chip_size or meta.input_size
    log.info("regions: SAM 3 concept masks; classes: %s", meta.name)
    return LoadedRegionModel(
        bundle, Sam3Concepts(segmenter, False), "sam3", tile, chip, meta.input_size, info
    )


def plan_encoder_sam3(models: Models, info: SceneInfo, *, match_resolution: bool) -> EncoderPlan:
    """Tile plan for SAM 3: whole tiles (zero-shot), or the classifier's matched chips (hybrid)."""
    from geosam.encode import EncoderPlan
    from geosam.infer_sam2 import plan_own_pass

    if is_zero_shot(models):
        t = int(models.tile_size)  # whole tiles: SAM 3's processor resizes them to 1008 px
        return EncoderPlan(t, t, models.input_size, 1)
    return plan_own_pass(models, info, match_resolution=match_resolution)


def _segmenter(models: Models) -> ConceptSegmenter:
    if not isinstance(models.sam, Sam3Concepts):
        raise TypeError("SAM 3 regions need a Sam3Concepts region model (load the models with load_models)")
    return models.sam.segmenter


@dataclass(frozen=True)
class Sam3ZeroShotInference:
    """Per-tile compute of a zero-shot run: SAM 3 masks of every prompt, resolved into class regions.

    Attributes:
        segmenter: SAM 3 with the prompts (one vision pass per tile).
        n_concepts: Number of concepts.
        threshold: Score at which a mask is accepted.
        min_area: Accepted masks with fewer visible pixels are dropped.
        rgb: Positions of red, green, blue in the tile's bands.
    """

    segmenter: ConceptSegmenter
    n_concepts: int
    threshold: float
    min_area: int
    rgb: tuple[int, int, int] = (0, 1, 2)

    def __call__(self, tile_data: np.ndarray, valid: np.ndarray, spec: TileSpec) -> TileResult:
        """Labelled regions of one ``(N, T, T)`` 0..1 tile."""
        from geosam.classify import TileClasses
        from geosam.inference import TileResult

        t0 = time.perf_counter()
        if valid.any():
            proposals = self.segmenter(to_rgb8(tile_data, valid, self.rgb))
        else:
            proposals = ConceptMasks.empty(valid.shape)
        t1 = time.perf_counter()
        out = label_concepts(
            proposals, valid, self.n_concepts, threshold=self.threshold, min_area=self.min_area
        )
        t2 = time.perf_counter()
        classes = TileClasses(out.tile_probs, out.region_probs)
        return TileResult.from_regions(
            spec, valid, out.regions, classes, {"segment": t1 - t0, "classify": t2 - t1}
        )


class Sam3Regions:
    """A :class:`~geosam.segment.RegionMaker` whose regions are SAM 3's accepted concept masks (hybrid).

    Masks are painted lowest score first (the highest-scoring mask wins a pixel); pixels no accepted mask
    covers get no region (the classifier's tile class). The classifier's embedding is not used.

    Args:
        segmenter: SAM 3 with the prompts.
        cfg: ``concept_threshold`` and ``min_region_area``.
        rgb: Positions of red, green, blue in the tile's bands.
    """

    source = "sam3"
    reads_embedding = False  # SAM 3 encodes the tile itself

    def __init__(self, segmenter: ConceptSegmenter, cfg: SegmentConfig, rgb: tuple[int, int, int]) -> None:
        self.segmenter = segmenter
        self.threshold = cfg.concept_threshold
        self.min_area = cfg.min_region_area
        self.rgb = rgb

    def __call__(self, tile: np.ndarray, embedding: Any, valid: np.ndarray) -> Regions:
        """Concept regions of a ``(N, H, W)`` 0..1 tile."""
        proposals = self.segmenter(to_rgb8(tile, valid, self.rgb))
        out = label_concepts(
            proposals,
            valid,
            len(self.segmenter.concepts),
            threshold=self.threshold,
            min_area=self.min_area,
            unclassified_regions=False,
        )
        return out.regions


def sam3_tile_inference(
    models: Models, encoder: EncoderPlan, segment: SegmentConfig, *, batch_size: int = 1
) -> TileInference | Sam3ZeroShotInference:
    """The per-tile compute of a scene with SAM 3 (zero-shot or hybrid), built once per scene."""
    from geosam.inference import bundle_tile_inference
    from geosam.region_loading import rgb_indices

    seg = _segmenter(models)
    if is_zero_shot(models):
        return Sam3ZeroShotInference(
            seg, len(seg.concepts), segment.concept_threshold, segment.min_region_area
        )
    rgb = rgb_indices(list(models.bundle.meta.bands), models.bundle.path)
    regions = Sam3Regions(seg, segment, rgb)
    # hybrid: the classifier's chips are matched to its training resolution (plan_own_pass): scored
    return bundle_tile_inference(models, encoder, regions, batch_size=batch_size, domain=models.bundle.domain)
