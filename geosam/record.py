"""The run record: what made a scene's outputs (``<stem>_run.json``), as a typed value.

A :class:`RunRecord` is written as the last file of a scene's outputs, so its presence means the
scene's set is complete. It names the input (path, sha256, size, bands, CRS, stretch), the model
(path, name, weights hash, classes), how the scene was tiled and encoded, the full run configuration,
results, timings and software versions. STAC items, ``batch --skip-existing`` and scheduled ingestion
read it with :func:`read_run_record` instead of digging through JSON.

The JSON layout is the one geosam has written since ``record_version`` 1, in that order; version 2
adds ``files``, the sha256 of every file of the scene's set (outputs, sidecars, STAC item), which
:func:`verify_outputs` checks. Unknown keys written by other geosam versions are kept when a record is
read and written back.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

import geosam
from geosam.errors import OutputError
from geosam.hashing import sha256_file

if TYPE_CHECKING:
    from geosam.config import RunConfig
    from geosam.encode import EncoderPlan
    from geosam.outputs import SceneOutputs
    from geosam.runtime import Models
    from geosam.stretch import Stretch
    from geosam.tiling import TilePlan
    from geosam.types import SceneInfo

__all__ = [
    "RECORD_VERSION",
    "REGION_SOURCE_NOTES",
    "ModelInfo",
    "Results",
    "RunRecord",
    "SceneInput",
    "TilingInfo",
    "build_run_record",
    "hash_outputs",
    "read_run_record",
    "software_versions",
    "verify_outputs",
]

RECORD_VERSION: Literal[2] = 2
"""Version of the record layout written by this geosam."""

REGION_SOURCE_NOTES: dict[str, str] = {
    "sam": "regions are SAM automatic masks (segment-anything mask decoder on the tile embedding)",
    "sam2.1": "regions are SAM 2.1 automatic masks (sam2 mask decoder on the tile's Hiera features)",
    "sam2": "regions are SAM 2.0 automatic masks (sam2 mask decoder on the tile's Hiera features)",
    "sam3": "regions are SAM 3 concept masks (text prompts, overlaps resolved by score); classes are the "
    "concepts (zero-shot, uncovered pixels 'unclassified') or, with a model bundle, the bundle's classes",
    "felzenszwalb": "no SAM mask decoder was used: regions are Felzenszwalb graph-based superpixels "
    "(scikit-image) of the stretched tile; SAM scores are empty",
    "tiles": "no regions: classes are tile labels",
    "chips": "regions are the encoder chips on the scene's chip grid: each pixel gets its chip's class",
}
"""What each region source means, written into every record."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class SceneInput(_Section):
    """The input scene.

    Attributes:
        path: Absolute path of the scene as read.
        sha256: sha256 of the scene file's content.
        width: Columns.
        height: Rows.
        bands_used: 1-based scene bands fed to the model, in model order.
        crs: Scene CRS as WKT.
        stretch: The per-scene stretch (:meth:`geosam.stretch.Stretch.to_dict`).
    """

    path: str
    sha256: str
    width: int
    height: int
    bands_used: list[int]
    crs: str
    stretch: dict[str, Any]


class ModelInfo(_Section):
    """The classifier bundle used.

    Attributes:
        path: Bundle path as given (or the packaged model's folder).
        name: Model name.
        version: Model version string.
        weights_sha256: sha256 of the bundle's weights.
        model_json_sha256: sha256 of the bundle's ``model.json`` (``None`` when absent).
        classes: Class names, in class-id order.
        bands: Canonical band names in model input order.
    """

    path: str
    name: str
    version: str
    weights_sha256: str
    model_json_sha256: str | None
    classes: list[str]
    bands: list[str]


class TilingInfo(_Section):
    """How the scene was tiled and encoded.

    Attributes:
        tile_size: Tile edge in scene pixels.
        halo: Context pixels on each side of a tile's core.
        tiles: Tiles processed.
        skipped_empty: Tiles skipped because every pixel was nodata.
        chip_size: Scene pixels per encoder chip (after resolution matching).
        encoder_input_size: Encoder input edge in pixels.
        scene_gsd_m: The scene's ground sampling distance in metres (``None`` when unknown).
    """

    tile_size: int
    halo: int
    tiles: int
    skipped_empty: int
    chip_size: int
    encoder_input_size: int
    scene_gsd_m: float | None = None


class Results(_Section):
    """What the run found.

    Attributes:
        regions: Regions written (after stitching and the minimum-area filter).
        seam_matches: Region pairs merged across tile seams.
    """

    regions: int
    seam_matches: int


class RunRecord(BaseModel):
    """A scene's run record (``<stem>_run.json``); see the module docstring.

    Attributes:
        record_version: Layout version.
        created: UTC time the record was made, ``YYYY-MM-DDTHH:MM:SSZ``.
        scene: The input.
        model: The classifier.
        sam_checkpoint: SAM checkpoint used for masks (``None`` without SAM).
        sam: The SAM model used for masks, when it is SAM 2.x or SAM 3: ``family``, ``model``
            (configuration), ``checkpoint`` and ``checkpoint_sha256``, ``package``, ``input_size``, and
            ``encoder_pass`` (SAM 2: shared with the classifier, or its own pass) or ``mode``,
            ``concepts`` and thresholds (SAM 3); ``None`` otherwise.
        region_source: ``sam``, ``sam2.1``, ``sam2``, ``sam3``, ``felzenszwalb`` or ``tiles``.
        region_source_note: What ``region_source`` means.
        device: Torch device the run used.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        tiling: Tiling and encoding.
        config: The full :class:`~geosam.config.RunConfig` as JSON.
        results: Counts.
        outputs: Output kind -> file name (in the record's folder) for every output written.
        timings_s: Seconds per stage (``plan``, ``read``, ``encode``, ``segment``, ``classify``,
            ``stitch``, ``finish``, ``total``).
        versions: Software versions.
        files: File name -> sha256 of every file of the scene's set except the record itself
            (``None`` in version 1 records, which cannot be verified).
        preprocessing: How the scene's pixels reached the model: the bundle's preprocessing, how it was
            applied to this scene, the radiometry, stretch and nodata fill, and any user overrides
            (:meth:`geosam.scene_preprocessing.ScenePreprocessing.to_record`); ``None`` in older records.
        domain: Whether the scene is like the model's training data (:mod:`geosam.domain`): the
            chips' domain scores summarised (``out_of_domain``, ``share_out``, ``median_score``,
            ``threshold``, ``note``), or ``out_of_domain: null`` and why it was not scored.
        classes_from: Which head made which output: ``head`` (``chip`` or ``dense``), ``class_map``,
            ``regions`` and, for dense models, ``probabilities``; ``None`` in older records.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    record_version: Literal[1, 2] = RECORD_VERSION
    created: str
    scene: SceneInput
    model: ModelInfo
    sam_checkpoint: str | None
    sam: dict[str, Any] | None = None
    region_source: str
    region_source_note: str
    device: str
    precision: str
    tiling: TilingInfo
    config: dict[str, Any]
    results: Results
    outputs: dict[str, str]
    timings_s: dict[str, float]
    versions: dict[str, str]
    files: dict[str, str] | None = None
    preprocessing: dict[str, Any] | None = None
    domain: dict[str, Any] | None = None
    classes_from: dict[str, str] | None = None

    def to_json(self) -> str:
        """The record as indented JSON text (the file's content)."""
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def read_run_record(path: str | os.PathLike[str]) -> RunRecord:
    """Read and validate a run record.

    Raises:
        OutputError: The file is missing, unreadable, not JSON, or not a geosam run record.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError("run record not found (the scene's outputs are incomplete)", p) from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise OutputError(f"cannot read the run record ({type(err).__name__}: {err})", p) from None
    try:
        return RunRecord.model_validate(data)
    except ValidationError as err:
        from geosam.config_io import format_validation_error

        why = format_validation_error(err, what="run record").removeprefix("invalid run record: ")
        raise OutputError(f"not a geosam run record ({why})", p) from None


def hash_outputs(outputs: SceneOutputs) -> dict[str, str]:
    """sha256 of every file of the scene present in ``outputs.directory``, its run record excepted."""
    return {p.name: sha256_file(p) for p in outputs.all_files() if p != outputs.record and p.is_file()}


def verify_outputs(outputs: SceneOutputs) -> RunRecord:
    """The scene's run record, once its set is proven complete: every file it lists has its hash.

    Raises:
        OutputError: The record is missing or unreadable, predates per-file hashes (version 1), or a
            file it lists is missing or differs (the message says which); the scene must be rerun.
    """
    record = read_run_record(outputs.record)
    if record.files is None:
        msg = "the run record lists no file hashes (written by an older geosam): rerun the scene"
        raise OutputError(msg, outputs.record)
    for name, sha in record.files.items():
        p = outputs.directory / name
        if Path(name).name != name or not p.is_file():
            raise OutputError(f"{name}, listed in the run record, is missing", outputs.directory)
        if sha256_file(p) != sha:
            raise OutputError(f"{name} differs from the file the run record lists", outputs.directory)
    return record


def software_versions() -> dict[str, str]:
    """Versions of geosam, Python, torch, rasterio, GDAL and the main libraries."""
    from importlib.metadata import PackageNotFoundError, version

    import rasterio
    import torch

    out = {
        "geosam": geosam.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
    }
    for mod in ("segment_anything", "shapely", "geopandas", "numpy"):
        try:
            out[mod] = version(mod.replace("_", "-"))
        except PackageNotFoundError:  # pragma: no cover - metadata missing
            out[mod] = "unknown"
    return out


def build_run_record(
    *,
    scene: str,
    info: SceneInfo,
    stretch: Stretch,
    models: Models,
    tiles: TilePlan,
    preprocessing: dict[str, Any] | None = None,
    encoder: EncoderPlan,
    cfg: RunConfig,
    outputs: SceneOutputs,
    seconds: dict[str, float],
    n_regions: int,
    seam_matches: int,
    model_path: str | os.PathLike[str] | None,
    domain: dict[str, Any] | None = None,
    classes_from: dict[str, str] | None = None,
) -> RunRecord:
    """The record of a finished scene, listing (and hashing) the outputs present in ``outputs.directory``.

    Args:
        scene: Scene path as given.
        info: The scene's header.
        stretch: The stretch applied.
        models: The models used.
        preprocessing: The scene's resolved preprocessing record (``ScenePreprocessing.to_record``).
        tiles: The tile plan.
        encoder: The encoder plan (chip size after resolution matching).
        cfg: The run configuration.
        outputs: Where the outputs are.
        seconds: Seconds per stage.
        n_regions: Regions written.
        seam_matches: Regions merged across seams.
        model_path: Bundle path as given (``None``: the bundle's own folder).
        domain: The domain check's entry (:func:`geosam.domain.record_entry`).
        classes_from: Which head made which output (dense or chip models).
    """
    meta = models.bundle.meta
    bundle_dir = models.bundle.path
    model_json = bundle_dir / "model.json"
    return RunRecord(
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        scene=SceneInput(
            path=os.path.abspath(scene),
            sha256=sha256_file(scene),
            width=info.width,
            height=info.height,
            bands_used=list(stretch.bands),
            crs=info.crs,
            stretch=stretch.to_dict(),
        ),
        model=ModelInfo(
            path=str(model_path) if model_path else str(bundle_dir),
            name=meta.name,
            version=meta.version,
            weights_sha256=meta.weights_sha256,
            model_json_sha256=sha256_file(model_json) if model_json.exists() else None,
            classes=list(meta.class_scheme.names),
            bands=meta.bands,
        ),
        sam_checkpoint=models.sam_checkpoint,
        sam=models.sam_info,
        region_source=models.region_source,
        region_source_note=REGION_SOURCE_NOTES[models.region_source],
        device=str(models.device),
        precision=models.precision,
        tiling=TilingInfo(
            tile_size=tiles.tile_size,
            halo=tiles.halo,
            tiles=len(tiles.tiles),
            skipped_empty=len(tiles.skipped),
            chip_size=encoder.chip_size,
            encoder_input_size=models.input_size,
            scene_gsd_m=info.gsd_m,
        ),
        config=cfg.to_json_dict(),
        results=Results(regions=n_regions, seam_matches=seam_matches),
        outputs={k: p.name for k, p in outputs.paths.items() if k != "record" and p.exists()}
        | {k: p.name for k, p in outputs.pam_sidecars().items() if p.exists()},
        timings_s={k: round(v, 3) for k, v in seconds.items()},
        versions=software_versions(),
        files=hash_outputs(outputs),
        preprocessing=preprocessing,
        domain=domain,
        classes_from=classes_from,
    )
