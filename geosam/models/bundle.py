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

The schema of ``model.json`` and its reading live in :mod:`geosam.models._bundle_meta`, writing bundle
folders in :mod:`geosam.models._bundle_write`; this module loads bundles and is the public face of all
three.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosam.domain import DomainStats, load_domain
from geosam.errors import BundleError, WeightsNotFoundError
from geosam.models._bundle_meta import (
    BUNDLE_FORMAT,
    FORMAT_VERSION,
    META_FILE,
    WEIGHTS_FILE,
    BundleMeta,
    EncoderMeta,
    HeadMeta,
    default_bundle_path,
    read_bundle_meta,
    upgrade_bundle_dict,
)
from geosam.models._bundle_write import (
    check_bundle_destination,
    publish_bundle_folder,
    save_bundle,
    write_bundle_files,
)
from geosam.types import ClassScheme

if TYPE_CHECKING:
    from torch import nn

    from geosam.models.classifier import LandCoverModel

__all__ = [
    "BUNDLE_FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "WEIGHTS_FILE",
    "BundleMeta",
    "EncoderMeta",
    "HeadMeta",
    "LoadedBundle",
    "check_bundle_destination",
    "default_bundle_path",
    "load_bundle",
    "publish_bundle_folder",
    "read_bundle_meta",
    "save_bundle",
    "upgrade_bundle_dict",
    "write_bundle_files",
]


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
