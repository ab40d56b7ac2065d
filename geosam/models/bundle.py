"""Model bundles: the classifier's weights plus everything needed to use them, in one folder.

Layout of a bundle folder (``<name>/``)::

    model.json            metadata (schema below), versioned by ``format_version``
    weights.safetensors   tensors ``encoder.*`` (unless the encoder comes from a SAM checkpoint),
                          ``head.*`` (region/tile classifier) and/or ``dense.*`` (per-pixel head,
                          :mod:`geosam.models.dense_head`), ``mean``, ``std``

``model.json`` records the class scheme (names, colours), band names in input order, the per-band
normalisation, the SAM configuration of the encoder, the input size, training metrics and data
provenance, and the sha256 of ``weights.safetensors``; loading verifies that hash, so a tampered or
truncated weights file is refused. Weights are loaded with safetensors (no pickle).

``preprocessing`` (:class:`geosam.preprocess.Preprocessing`) says how a pixel reaches the model; with
``bands``, ``mean``/``std``, ``chip_size``, ``input_size`` and ``gsd_m`` it is the single source of truth
that training writes and every run applies. Format 1 bundles are upgraded when read
(:func:`upgrade_bundle_dict`): their ``preprocessing`` record becomes the format-2 record that means what
the format-1 record meant (:func:`geosam.preprocess.upgrade_v1`).

``encoder.source`` is ``bundle`` when the encoder weights travel in the bundle (fine-tuned or trained
from scratch) or ``sam_checkpoint`` when the encoder is a frozen official SAM encoder: then the bundle
holds the head only and the run needs the SAM checkpoint, whose sha256 must match
``encoder.checkpoint_sha256``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geosam.calibration import CalibrationMeta
from geosam.domain import DomainMeta, DomainStats, load_domain
from geosam.errors import BundleError, WeightsNotFoundError
from geosam.preprocess import PercentileScaling, Preprocessing, upgrade_v1
from geosam.types import ClassScheme

if TYPE_CHECKING:
    from torch import nn

    from geosam.models.classifier import LandCoverModel

__all__ = [
    "BUNDLE_FORMAT",
    "BundleMeta",
    "EncoderMeta",
    "HeadMeta",
    "LoadedBundle",
    "default_bundle_path",
    "load_bundle",
    "read_bundle_meta",
    "save_bundle",
    "upgrade_bundle_dict",
]

BUNDLE_FORMAT: Literal["geosam-model-bundle"] = "geosam-model-bundle"
FORMAT_VERSION: Literal[2] = 2
META_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncoderMeta(_Strict):
    """Where the encoder comes from and its architecture.

    ``family`` is the backbone family: ``sam`` (SAM 1 ViT; ``config`` is a :class:`SamConfig` dict) or
    ``sam2`` (SAM 2.x Hiera; ``config`` is a :class:`geosam.models.sam2_bundle.Sam2EncoderConfig` dict
    naming the SAM 2 configuration, e.g. ``sam2.1_hiera_tiny``). A run refuses a SAM checkpoint of
    another family or size than the bundle's encoder. ``sam3`` marks the descriptor of a zero-shot
    SAM 3 concept run (:func:`geosam.infer_sam3.zero_shot_bundle`), never a saved bundle.
    """

    family: Literal["sam", "sam2", "sam3"] = "sam"
    source: Literal["bundle", "sam_checkpoint"] = "bundle"
    config: dict[str, Any]
    checkpoint_sha256: str | None = None
    band_adapter: Literal["none", "zero", "mean", "trained"] = "none"


class HeadMeta(_Strict):
    """Classifier head shape."""

    in_dim: int = Field(ge=1)
    num_classes: int = Field(ge=1, le=255)
    hidden: int = Field(0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class BundleMeta(_Strict):
    """Contents of ``model.json``.

    Attributes:
        format: Always ``geosam-model-bundle``.
        format_version: Bumped on incompatible change.
        name: Model name.
        version: The model's own version string.
        created: ISO 8601 UTC creation time.
        geosam_version: geosam version that wrote the bundle.
        classes: :class:`ClassScheme` as a dict (names, colors, nodata).
        bands: Canonical band names in model input order (e.g. ``red, green, blue``).
        mean: Per-band mean of the 0..1-stretched input.
        std: Per-band standard deviation of the 0..1-stretched input.
        input_size: Chip size in pixels the encoder runs at (the encoder's ``img_size``).
        chip_size: Size in source pixels of the training chips (``None``: ``input_size``). Scenes are
            resampled by ``input_size / chip_size`` before encoding so that a model pixel covers the same
            ground as in training.
        gsd_m: Ground sampling distance of the training data in metres (informational).
        recommended_tile_size: Tile size for scenes (a multiple of ``input_size``).
        encoder: Encoder metadata.
        head: Region/tile classifier head metadata (``None`` for a dense-only model).
        dense: Dense (per-pixel) head architecture, a
            :class:`~geosam.models.dense_head.DenseHeadConfig` dict (``None``: no dense head). A model
            with a dense head classifies every pixel; its regions and tiles take the mean of the
            pixel probabilities inside them.
        preprocessing: How a pixel reaches the model (:class:`geosam.preprocess.Preprocessing`): what
            training applied and every run applies. Format-1 records (plain dicts) are upgraded.
        training: Mode, epochs, timings, metrics, learning curve summary.
        data: Data provenance (source paths, licence, counts, split).
        weights_sha256: sha256 of ``weights.safetensors``.
        weights_dtype: Storage dtype of the weights (``float32`` or ``float16``); loaded as float32.
        calibration: Temperature scaling of the logits (:mod:`geosam.calibration`); ``None``: uncalibrated.
        domain: Domain statistics for the out-of-domain warning (:mod:`geosam.domain`), stored in
            ``domain.safetensors``; ``None``: runs cannot tell whether a scene is like the training data.
    """

    format: Literal["geosam-model-bundle"] = BUNDLE_FORMAT
    format_version: Literal[2] = FORMAT_VERSION
    name: str
    version: str = "1"
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    geosam_version: str = ""
    classes: dict[str, Any]
    bands: list[str] = Field(min_length=1)
    mean: list[float]
    std: list[float]
    input_size: int = Field(ge=16, le=4096)
    chip_size: int | None = Field(None, ge=1)
    gsd_m: float | None = None
    recommended_tile_size: int = Field(1024, ge=16)
    encoder: EncoderMeta
    head: HeadMeta | None = None
    dense: dict[str, Any] | None = None
    preprocessing: Preprocessing = Field(
        default_factory=lambda: Preprocessing(
            space="raw", scaling=PercentileScaling(), note="no preprocessing recorded: per-scene stretch"
        )
    )
    training: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str = ""
    weights_dtype: Literal["float32", "float16"] = "float32"
    calibration: CalibrationMeta | None = None
    domain: DomainMeta | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return upgrade_bundle_dict(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _consistent(self) -> BundleMeta:
        n = len(self.bands)
        pn = self.preprocessing.n_bands
        if pn is not None and pn != n:
            raise ValueError(f"{n} bands but the preprocessing has bounds for {pn}")
        if len(self.mean) != n or len(self.std) != n:
            raise ValueError(f"{n} bands but {len(self.mean)} means and {len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        scheme = ClassScheme.from_dict(self.classes)  # raises ConfigError on bad names/colours
        if self.head is None and self.dense is None:
            raise ValueError("a model needs a classifier head, a dense head, or both")
        if self.head is not None and len(scheme) != self.head.num_classes:
            raise ValueError(f"{len(scheme)} class names but the head has {self.head.num_classes} outputs")
        if self.dense is not None:
            from geosam.models.dense_config import check_dense_meta

            check_dense_meta(self.dense, len(scheme), n)
        chip = self.chip_size or self.input_size
        if self.recommended_tile_size % chip:
            raise ValueError(
                f"recommended_tile_size {self.recommended_tile_size} is not a multiple of chip size {chip}"
            )
        return self

    @property
    def class_scheme(self) -> ClassScheme:
        """The class names and colours."""
        return ClassScheme.from_dict(self.classes)


@dataclass(frozen=True)
class LoadedBundle:
    """A bundle's metadata, folder, model (a ``LandCoverModel``) and domain statistics.

    The model's head applies the bundle's temperature; ``domain`` is ``None`` when the bundle has none.
    """

    meta: BundleMeta
    path: Path
    model: LandCoverModel
    domain: DomainStats | None = None

    @property
    def classes(self) -> ClassScheme:
        """The class scheme."""
        return self.meta.class_scheme


def upgrade_bundle_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A ``model.json`` mapping of an older format as the current format (a new dict; the input is kept).

    Format 1 -> 2: ``preprocessing`` becomes a :class:`~geosam.preprocess.Preprocessing` record meaning
    what the format-1 record meant (:func:`geosam.preprocess.upgrade_v1`); so does a format-2 mapping
    whose ``preprocessing`` is still in the format-1 shape (no ``space`` key), as code written for
    format 1 builds it. Other versions are returned unchanged (validation refuses them).
    """
    out = dict(data)
    version = out.get("format_version", FORMAT_VERSION)
    pre = out.get("preprocessing")
    old_shape = isinstance(pre, dict) and "space" not in pre
    if version == 1 or (version == FORMAT_VERSION and old_shape):
        bands = out.get("bands")
        n = len(bands) if isinstance(bands, list) and bands else 1
        out["preprocessing"] = upgrade_v1(dict(pre) if isinstance(pre, dict) else {}, n)
        out["format_version"] = FORMAT_VERSION
    return out


def default_bundle_path(*, required: bool = False) -> Path:
    """Path of the default model shipped inside the package (trained on EuroSAT RGB).

    Args:
        required: Raise when it is not installed (a development checkout before it was trained),
            with a message saying so rather than "bundle not found".

    Raises:
        WeightsNotFoundError: ``required`` and the folder has no ``model.json``.
    """
    path = Path(__file__).resolve().parent.parent / "data" / "default_model"
    if required and not (path / META_FILE).is_file():
        raise WeightsNotFoundError(
            "the packaged default model is not installed here; pass a model bundle with --model "
            "(train one with `geosam train`, see docs/training.md)",
            path,
        )
    return path


def read_bundle_meta(path: str | os.PathLike[str]) -> BundleMeta:
    """Read and validate ``model.json`` of a bundle folder (no weights, no torch).

    Raises:
        WeightsNotFoundError: The folder or its ``model.json`` does not exist.
        BundleError: ``model.json`` is not JSON, misses keys, has unknown keys or inconsistent values.
    """
    p = Path(path)
    meta_path = p / META_FILE if p.is_dir() else p
    if not meta_path.is_file():
        raise WeightsNotFoundError(
            f"model bundle not found (expected a folder with {META_FILE} and {WEIGHTS_FILE}); "
            "train one with `geosam train` or omit --model to use the default model",
            p,
        )
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"metadata is not valid JSON ({err})", meta_path) from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a geosam model bundle (format must be {BUNDLE_FORMAT!r})", meta_path)
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise BundleError(
            f"bundle format_version {version} is newer than this geosam reads (1..{FORMAT_VERSION}): "
            "upgrade geosam",
            meta_path,
        )
    try:
        return BundleMeta.model_validate(data)
    except ValidationError as err:
        from geosam.config_io import format_validation_error

        raise BundleError(format_validation_error(err, what="bundle metadata"), meta_path) from None
    except Exception as err:  # ConfigError from ClassScheme
        raise BundleError(f"invalid bundle metadata ({err})", meta_path) from None


def save_bundle(
    path: str | os.PathLike[str],
    model: Any,
    meta: BundleMeta,
    *,
    dtype: Literal["float32", "float16"] = "float32",
    include_encoder: bool = True,
    include_prefixes: tuple[str, ...] = (),
    extra_files: dict[str, bytes] | None = None,
) -> BundleMeta:
    """Write ``model`` (a ``LandCoverModel``) and ``meta`` as a bundle folder, atomically.

    The folder is assembled under a temporary name and renamed into place; an existing bundle at
    ``path`` is replaced only after the new one is complete. Returns the metadata as written (with
    ``weights_sha256``, ``weights_dtype`` and ``geosam_version`` filled in). Without ``include_encoder``
    only encoder tensors whose names start with one of ``include_prefixes`` are kept (a band-adapted
    patch embedding on a frozen SAM encoder, for example). ``extra_files`` (relative
    path -> bytes, e.g. the training report) are written into the folder before it is renamed.
    """
    import torch
    from safetensors.torch import save_file

    import geosam
    from geosam.hashing import sha256_file

    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if not include_encoder:
        state = {
            k: v
            for k, v in state.items()
            if not k.startswith("encoder.") or (include_prefixes and k.startswith(include_prefixes))
        }
    if dtype == "float16":
        state = {
            k: v.half() if v.is_floating_point() and k not in ("mean", "std") else v for k, v in state.items()
        }
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": BUNDLE_FORMAT})
        meta = meta.model_copy(
            update={
                "weights_sha256": sha256_file(tmp / WEIGHTS_FILE),
                "weights_dtype": dtype,
                "geosam_version": geosam.__version__,
            }
        )
        BundleMeta.model_validate(meta.model_dump(mode="json"))  # re-validate the final form
        (tmp / META_FILE).write_text(
            json.dumps(meta.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )
        write_bundle_files(tmp, extra_files or {}, dest)
        publish_bundle_folder(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    del torch
    return meta


def write_bundle_files(folder: Path, files: dict[str, bytes], dest: Path) -> None:
    """Write ``files`` (relative path -> bytes) into a bundle being assembled in ``folder``.

    Raises:
        BundleError: A path would land outside ``folder`` (``dest`` is named in the message).
    """
    for rel, content in files.items():
        target = (folder / rel).resolve()
        if folder.resolve() not in target.parents:
            raise BundleError(f"extra file {rel!r} would escape the bundle folder", dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def publish_bundle_folder(tmp: Path, dest: Path) -> None:
    """Put the bundle assembled in ``tmp`` (a folder beside ``dest``) in place of ``dest``.

    Gives it the usual modes (:func:`_publishable_permissions`), then renames: an existing ``dest`` is
    moved aside first and removed after, so readers see the old or the new bundle, never a mix.
    """
    _publishable_permissions(tmp)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def _publishable_permissions(folder: Path) -> None:
    """Give a bundle assembled in a private temp folder the usual modes (0755 dirs, 0644 files, less umask).

    ``mkdtemp`` makes 0700 folders; left as is, a bundle installed system-wide would be unreadable to
    other users and dask workers running under another account.
    """
    umask = os.umask(0)
    os.umask(umask)
    for p in [folder, *folder.rglob("*")]:
        p.chmod((0o755 if p.is_dir() else 0o644) & ~umask)


def load_bundle(
    path: str | os.PathLike[str] | None = None,
    *,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    img_size: int | None = None,
    sam2_model: Any = None,
    sam_encoder: nn.Module | None = None,
) -> LoadedBundle:
    """Load a bundle (default: the packaged default model), verifying its weights hash.

    Args:
        path: Bundle folder; ``None`` for the packaged default model.
        sam_checkpoint: Meta SAM checkpoint, required when the bundle's encoder is ``sam_checkpoint``.
        device: Torch device for the model.
        img_size: Build the encoder for this input size instead of ``meta.input_size`` (position
            embeddings interpolated), e.g. to run SAM's decoder on whole tiles.
        sam2_model: For bundles on a frozen SAM 2 encoder: the already loaded ``SAM2Base`` of
            ``sam_checkpoint``, whose image encoder is used (the checkpoint is not read twice).
        sam_encoder: For bundles on a frozen SAM checkpoint: that checkpoint's image encoder, already
            loaded at ``img_size`` (:func:`geosam.runtime.load_models` passes the one of the SAM it loads
            for masks), used instead of reading the checkpoint a second time.

    Raises:
        WeightsNotFoundError: Missing folder/files, or a needed SAM checkpoint not given.
        BundleError: Invalid metadata, sha256 mismatch, or weights that do not fit the metadata.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from geosam.hashing import sha256_file
    from geosam.models.sam import build_encoder, load_sam, resize_encoder_state
    from geosam.models.sam_config import SamConfig

    folder = Path(path) if path is not None else default_bundle_path()
    meta = read_bundle_meta(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsNotFoundError(f"bundle is missing {WEIGHTS_FILE}", folder)
    digest = sha256_file(weights)
    if digest != meta.weights_sha256:
        raise BundleError(
            f"{WEIGHTS_FILE} does not match the sha256 recorded in {META_FILE} "
            f"({digest[:12]}... != {meta.weights_sha256[:12]}...): the bundle was modified or is incomplete",
            folder,
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as err:
        raise BundleError(f"cannot read weights ({err})", folder) from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    _check_head(meta, state, folder)
    if meta.encoder.family == "sam2":
        from geosam.models.sam2_bundle import bundle_encoder

        sam2_encoder = bundle_encoder(
            meta, state, folder, sam_checkpoint=sam_checkpoint, sam2_model=sam2_model
        )
        return _assemble(meta, folder, sam2_encoder, state, device)
    try:
        cfg = SamConfig.from_dict(dict(meta.encoder.config))
    except (TypeError, ValueError) as err:
        raise BundleError(f"invalid encoder configuration ({err})", folder) from None
    if cfg.in_chans != len(meta.bands):
        raise BundleError(f"encoder takes {cfg.in_chans} bands but metadata lists {len(meta.bands)}", folder)
    if img_size is not None:
        cfg = cfg.with_img_size(img_size)
    if meta.encoder.source == "bundle":
        if img_size is None and cfg.img_size != meta.input_size:
            msg = f"encoder img_size {cfg.img_size} is not the bundle's input_size {meta.input_size}"
            raise BundleError(msg, folder)
        _check_encoder(cfg, state, folder)
        if meta.head is not None and meta.head.in_dim != cfg.out_chans:
            msg = f"the head takes {meta.head.in_dim} features but the encoder gives {cfg.out_chans}"
            raise BundleError(msg, folder)
    if meta.encoder.source == "sam_checkpoint":
        if sam_checkpoint is None:
            raise WeightsNotFoundError(
                "this bundle uses a frozen official SAM encoder; pass its checkpoint with --sam-checkpoint",
                folder,
            )
        if meta.encoder.checkpoint_sha256 and sha256_file(sam_checkpoint) != meta.encoder.checkpoint_sha256:
            raise BundleError(
                "the SAM checkpoint is not the one this bundle was trained on (sha256 differs)",
                sam_checkpoint,
            )
        if sam_encoder is not None:
            encoder = sam_encoder
            neck0 = encoder.get_submodule("neck.0")
            out_chans = int(getattr(neck0, "out_channels", 0))
        else:
            encoder, sam_cfg = load_sam(sam_checkpoint, img_size=cfg.img_size, encoder_only=True)
            out_chans = sam_cfg.out_chans
        if meta.head is not None and meta.head.in_dim != out_chans:
            raise BundleError(
                f"the head takes {meta.head.in_dim} features but the SAM checkpoint's encoder gives "
                f"{out_chans}",
                folder,
            )
        if cfg.in_chans != 3:
            from geosam.models.band_adapter import adapt_patch_embed

            adapt_patch_embed(encoder, meta.bands, init="zero")
        enc_state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        if enc_state:  # adapted patch embedding stored in the bundle
            try:
                encoder.load_state_dict(enc_state, strict=False)
            except RuntimeError as err:
                msg = f"encoder weights do not fit the SAM checkpoint ({str(err)[:300]})"
                raise BundleError(msg, folder) from None
    else:
        encoder = build_encoder(cfg)
        enc_state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        enc_state = resize_encoder_state(enc_state, cfg, prefix="")
        try:
            encoder.load_state_dict(enc_state, strict=True)
        except RuntimeError as err:
            raise BundleError(f"encoder weights do not fit the metadata ({str(err)[:300]})", folder) from None
    return _assemble(meta, folder, encoder, state, device)


def _assemble(
    meta: BundleMeta, folder: Path, encoder: Any, state: dict[str, Any], device: str
) -> LoadedBundle:
    """The bundle's model: ``encoder`` plus the stored head and normalisation (strictly loaded)."""
    import torch

    from geosam.models.classifier import ClassifierHead, LandCoverModel

    h = meta.head
    head = None if h is None else ClassifierHead(h.in_dim, h.num_classes, h.hidden, h.dropout)
    dense = _dense_head(meta, state, folder)
    model = LandCoverModel(encoder, head, meta.mean, meta.std, dense=dense)
    rest = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    try:
        missing, unexpected = model.load_state_dict(rest, strict=False)
    except RuntimeError as err:
        raise BundleError(f"head weights do not fit the metadata ({str(err)[:300]})", folder) from None
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise BundleError(f"weights missing {missing[:5]} / unexpected {unexpected[:5]}", folder)
    if meta.calibration is not None and head is not None:
        head.set_temperature(meta.calibration.temperature)
    domain = load_domain(folder, meta.domain) if meta.domain is not None else None
    model.eval().to(torch.device(device))
    return LoadedBundle(meta=meta, path=folder, model=model, domain=domain)


def _check_head(meta: BundleMeta, state: dict[str, Any], folder: Path) -> None:
    """Refuse head sizes in ``model.json`` that do not describe the stored head weights.

    ``model.json`` is not covered by the weights' sha256, so its sizes are checked against the tensors
    *before* anything is built from them: an edited size must not make geosam allocate what it says.
    """
    import torch

    from geosam.models.classifier import ClassifierHead

    h = meta.head
    if h is None:
        return
    with torch.device("meta"):  # shapes only, no memory
        probe = ClassifierHead(h.in_dim, h.num_classes, h.hidden, h.dropout)
    want = {f"head.{k}": tuple(v.shape) for k, v in probe.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items() if k.startswith("head.")}
    if want != have:
        raise BundleError(
            f"the head in {META_FILE} (in_dim {h.in_dim}, hidden {h.hidden}, {h.num_classes} classes) "
            f"does not match the head weights in {WEIGHTS_FILE}",
            folder,
        )


def _dense_head(meta: BundleMeta, state: dict[str, Any], folder: Path) -> Any:
    """Build the dense head ``model.json`` describes, after checking its shapes against the weights."""
    if meta.dense is None:
        return None
    import torch

    from geosam.models.dense_config import DenseHeadConfig
    from geosam.models.dense_head import DenseHead

    cfg = DenseHeadConfig.from_dict(dict(meta.dense))
    with torch.device("meta"):  # shapes only, no memory
        probe = DenseHead(cfg)
    want = {f"dense.{k}": tuple(v.shape) for k, v in probe.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items() if k.startswith("dense.")}
    if want != have:
        raise BundleError(
            f"the dense head in {META_FILE} does not match the dense head weights in {WEIGHTS_FILE}", folder
        )
    return DenseHead(cfg)


def _check_encoder(cfg: Any, state: dict[str, Any], folder: Path) -> None:
    """Refuse an encoder configuration in ``model.json`` that does not describe the stored encoder."""
    from geosam.errors import CheckpointError
    from geosam.models.sam import infer_config

    enc = {"image_encoder." + k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    try:
        actual = infer_config(enc, source=str(folder))
    except (CheckpointError, KeyError, IndexError, ValueError) as err:
        raise BundleError(f"the encoder weights are not a SAM image encoder ({err})", folder) from None
    fields = ["embed_dim", "depth", "num_heads", "patch_size", "in_chans", "out_chans", "mlp_ratio"]
    if len(actual.global_attn_indexes) < actual.depth:  # some blocks use windowed attention
        fields.append("window_size")
    diff = [
        f"{f} {getattr(cfg, f)} != {getattr(actual, f)}"
        for f in fields
        if getattr(cfg, f) != getattr(actual, f)
    ]
    if diff:
        raise BundleError(
            f"the encoder configuration in {META_FILE} does not match the weights ({', '.join(diff)})", folder
        )
