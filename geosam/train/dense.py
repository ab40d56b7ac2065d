"""Training the dense ("sam-seg") head: per-pixel classes from a scene and sparse labels, via TorchGeo.

Data (:mod:`geosam.train.geodata`): the scene is a TorchGeo ``RasterDataset`` (pixels read and
stretched by geosam, see there why), the labels a TorchGeo ``VectorDataset`` rasterising polygons on
the scene grid or a label ``RasterDataset``; training patches are drawn by TorchGeo's
``RandomGeoSampler`` inside regions of interest around the labelled polygons (or blocks), validation
patches by ``GridGeoSampler`` over the held-out polygons, all snapped to the encoder's chip grid.

Labels are sparse: pixels outside every polygon (or with no class in the label raster), nodata pixels
and pixels of classes the model does not know are *ignored by the loss* (target ``-1``), so a patch
with a few labelled pixels teaches exactly those pixels.

Loop: the patches (``dense.patches`` of ``dense.patch_size`` pixels) are read once; each step takes
``batch_size`` of them under a random symmetry of the square (the same flip/rotation of pixels, labels
and encoder features), encodes them chip by chip (the run-time layout, :mod:`geosam.encode`) and
trains the head with class-weighted, label-smoothed cross-entropy (AdamW, warm-up then cosine). In
``probe`` mode (the default for dense training) the encoder is frozen and each chip is encoded once;
``last_n``/``full`` train the encoder too. After each of ``epochs`` evaluation rounds the validation
polygons' pixels are predicted and the best round's weights (validation macro-F1, then accuracy)
are kept. Validation is grouped: whole polygons (or blocks) are held out
(:func:`geosam.train.data.stratified_split`).

On a SAM 2.x checkpoint (``--backbone sam2.1_hiera_*.pt``) each patch is encoded whole at the scene's
resolution and the head reads Hiera's four trunk levels (:func:`encode_levels`): what ``geosam run
--sam-checkpoint <the same checkpoint>`` computes per tile in the one pass that also feeds SAM 2's mask
decoder (:class:`geosam.infer_sam2.Sam2SharedInference`). The bundle records ``encoder.family: sam2``.

Why this module is long: data preparation (label polygons, label rasters), patch sampling and the
training loop of the dense head share private helpers (chip size, patch bookkeeping, sparse loss) and
the :class:`DenseData`/:class:`Patches` records; :mod:`geosam.train.geodata` already holds the TorchGeo
side and :mod:`geosam.train.backbones` the encoders.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from geosam.encode import autocast_context
from geosam.errors import ConfigError, DataError
from geosam.train.config import TrainConfig, replay_yaml
from geosam.train.metrics import confusion_matrix, summarize

if TYPE_CHECKING:
    from geosam.config import NormalizeConfig
    from geosam.models.bundle import EncoderMeta
    from geosam.models.classifier import LandCoverModel
    from geosam.models.dense_config import DenseHeadConfig
    from geosam.models.dense_head import DenseHead
    from geosam.preprocess import Preprocessing
    from geosam.train._scene_sampling import Scene
    from geosam.train.engine import TrainResult
    from geosam.train.reference import LabelPolygons

__all__ = [
    "DenseData",
    "DenseEncoder",
    "build_dense_model",
    "dense_defaults",
    "encode_levels",
    "patch_edge",
    "polygon_dense_data",
    "raster_dense_data",
    "train_dense",
]

log = logging.getLogger(__name__)

#: What ``geosam train ... --head dense`` uses for options the user did not set.
DENSE_DEFAULTS: dict[str, Any] = {
    "mode": "probe",
    "backbone": "default",
    "lr": 3e-3,
    "batch_size": 8,
    "epochs": 6,
    "warmup_steps": 30,
    "label_smoothing": 0.05,
    "patience": 0,
}


def dense_defaults(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with :data:`DENSE_DEFAULTS` for every field the user did not set."""
    unset = {k: v for k, v in DENSE_DEFAULTS.items() if k not in cfg.model_fields_set}
    return cfg.model_copy(update=unset)


@dataclass(frozen=True)
class DenseData:
    """A scene with sparse labels, as TorchGeo datasets, ready for :func:`train_dense`.

    Attributes:
        scene: The prepared scene (bands, names, stretch).
        classes: Class names; label value ``v`` means class ``class_of[v]`` (``-1``: unlabelled).
        class_of: Lookup from stored label values to class indexes.
        train_labels: TorchGeo dataset of the training labels (``mask`` key).
        val_labels: TorchGeo dataset of the validation labels, or ``None`` (no validation).
        train_rois: Regions of interest (shapely boxes, scene CRS) around training labels.
        val_rois: Regions of interest around validation labels.
        provenance: Recorded in the bundle.
        workdir: Scratch folder holding label files the datasets read (kept alive with the data).
    """

    scene: Scene
    classes: tuple[str, ...]
    class_of: np.ndarray
    train_labels: Any
    val_labels: Any
    train_rois: list[Any]
    val_rois: list[Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    workdir: Any = None

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names of the scene bands used."""
        return self.scene.band_names

    @property
    def gsd_m(self) -> float | None:
        """Ground sampling distance of the scene in metres."""
        return self.scene.info.gsd_m


def _polygon_split(polys: LabelPolygons, info: Any, val_fraction: float, seed: int) -> tuple[Any, Any]:
    """Training and validation polygon ids, whole polygons per side, stratified by class (pixel-weighted)."""
    from geosam.train.data import stratified_split
    from geosam.train.reference import reference_pixels

    if val_fraction <= 0:
        return polys.ids, np.empty(0, np.int64)
    ref = reference_pixels(polys, info)
    try:
        t, v = stratified_split(ref.label, val_fraction, seed, ref.polygon)
    except DataError:
        return polys.ids, np.empty(0, np.int64)
    return np.unique(ref.polygon[t]), np.unique(ref.polygon[v])


def polygon_dense_data(
    scene: str | os.PathLike[str],
    polys: LabelPolygons | str | os.PathLike[str],
    *,
    class_column: str | None = None,
    layer: str | None = None,
    bands: Sequence[int | str] | None = None,
    band_names: Sequence[str] | None = None,
    normalize: NormalizeConfig | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DenseData:
    """Dense training data from a scene and label polygons (any OGR format and CRS).

    Polygons are reprojected to the scene CRS, split into training and validation polygons (whole
    polygons, stratified by class; no validation when ``val_fraction`` is 0 or no class has two
    polygons) and written to a scratch GeoPackage with an integer class column that TorchGeo's
    ``VectorDataset`` rasterises.

    Raises:
        DataError: Unreadable labels, a missing class column, no CRS, no usable polygon.
        RasterError: The scene cannot be read.
    """
    from geosam.train import _scene_sampling as ss
    from geosam.train.reference import LabelPolygons, read_label_polygons

    sc = ss.prepare_scene(scene, bands, band_names, normalize)
    if not isinstance(polys, LabelPolygons):
        if class_column is None:
            raise DataError("class_column is needed to read label polygons")
        polys = read_label_polygons(polys, class_column, sc.info, layer)
    train_ids, val_ids = _polygon_split(polys, sc.info, val_fraction, seed)
    work = tempfile.TemporaryDirectory(prefix="geosam-dense-")
    datasets: list[Any] = []
    boxes: list[list[Any]] = []
    margin = 0.0  # filled by the trainer from the patch size (rois are rebuilt there)
    for name, ids in (("train", train_ids), ("val", val_ids)):
        if len(ids) == 0:
            datasets.append(None)
            boxes.append([])
            continue
        sub = polys.subset(ids)
        frame = sub[[sub.geometry.name]].copy()
        frame["geosam_class"] = (polys.cls[np.isin(polys.ids, ids)] + 1).astype("int32")
        path = Path(work.name) / f"{name}_labels.gpkg"
        frame.to_file(path, driver="GPKG", layer="labels")
        from geosam.train.geodata import polygon_label_dataset

        datasets.append(polygon_label_dataset(path, "geosam_class", sc))
        boxes.append(list(sub.geometry.to_numpy()))
    del margin
    class_of = np.concatenate([[-1], np.arange(len(polys.classes))]).astype(np.int64)
    prov = {
        "source": "polygons",
        "labels": str(polys.path.resolve()),
        "class_column": polys.class_column,
        "layer": polys.layer,
        "polygons": len(polys.ids),
        "train_polygons": [int(i) for i in train_ids],
        "val_polygons": [int(i) for i in val_ids],
    }
    return DenseData(sc, polys.classes, class_of, datasets[0], datasets[1], boxes[0], boxes[1], prov, work)


def raster_dense_data(
    scene: str | os.PathLike[str],
    label_raster: str | os.PathLike[str],
    *,
    classes: dict[int, str] | None = None,
    label_nodata: float | None = None,
    block: int = 64,
    bands: Sequence[int | str] | None = None,
    band_names: Sequence[str] | None = None,
    normalize: NormalizeConfig | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DenseData:
    """Dense training data from a scene and a label raster of class ids (any grid; nearest-neighbour).

    The label raster is a TorchGeo ``RasterDataset``; ids not in ``classes`` (default: every id found,
    named from the raster's categories, see :func:`geosam.train.scene_chips.raster_chips`) and
    ``label_nodata`` are unlabelled. Validation holds out whole ``block`` x ``block`` pixel blocks.

    Raises:
        DataError: Unreadable label raster or no labelled pixel on the scene.
    """
    from geosam.train import _scene_sampling as ss
    from geosam.train.data import stratified_split
    from geosam.train.geodata import label_dataset
    from geosam.train.label_raster import label_grid, scan_lattice

    sc = ss.prepare_scene(scene, bands, band_names, normalize)
    lab_path = Path(label_raster)
    with label_grid(lab_path, sc.info) as (ds, _warped):
        rows, cols, ids = scan_lattice(
            ds, 1 if max(ds.width, ds.height) <= 4096 else 4, (0, 0), label_nodata, lab_path
        )
    found = sorted({int(v) for v in np.unique(ids)})
    if classes is None:
        from geosam.io.pam import class_names

        cats, _src = class_names(lab_path)
        classes = {i: cats.get(i, f"class_{i}") for i in found}
    names = list(dict.fromkeys(classes[i] for i in sorted(classes)))
    top = max([*classes, *found, 0]) + 1
    if min([*classes, *found, 0]) < 0:
        raise DataError("dense training needs non-negative class ids in the label raster", lab_path)
    class_of = np.full(top + 1, -1, np.int64)
    for i, n in classes.items():
        class_of[i] = names.index(n)
    if label_nodata is not None and 0 <= label_nodata <= top:
        class_of[int(label_nodata)] = -1
    cls = class_of[np.clip(ids, 0, top)]
    keep = cls >= 0
    if not keep.any():
        raise DataError("no labelled pixel of a listed class on the scene", lab_path)
    rows, cols, cls = rows[keep], cols[keep], cls[keep]
    group = (rows // block) * (-(-sc.info.width // block)) + cols // block
    try:
        if val_fraction <= 0:
            raise DataError("no validation")
        t, v = stratified_split(cls, val_fraction, seed, group)
    except DataError:
        t, v = np.arange(len(cls)), np.empty(0, np.int64)
    import shapely

    a, _, c, _, e, f = sc.info.transform

    def blocks(idx: np.ndarray) -> list[Any]:
        out = []
        for g in np.unique(group[idx]):
            r0 = int(g // (-(-sc.info.width // block))) * block
            c0 = int(g % (-(-sc.info.width // block))) * block
            out.append(shapely.box(c + c0 * a, f + (r0 + block) * e, c + (c0 + block) * a, f + r0 * e))
        return out

    labels = label_dataset(lab_path, sc)
    prov = {
        "source": "label_raster",
        "labels": str(lab_path.resolve()),
        "label_nodata": label_nodata,
        "class_ids": {n: [i for i in sorted(classes) if classes[i] == n] for n in names},
        "block": block,
    }
    # one label dataset; training and validation differ by their regions of interest (blocks)
    return DenseData(
        sc, tuple(names), class_of, labels, labels if len(v) else None, blocks(t), blocks(v), prov
    )


# ------------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class DenseEncoder:
    """The encoder of a dense model as the trainer and the bundle see it.

    Attributes:
        meta: What the bundle records about it (``family: sam2`` for Hiera).
        input_size: Encoder input edge in pixels (Hiera: the patch edge, encoded whole).
    """

    meta: EncoderMeta
    input_size: int


def build_dense_model(
    cfg: TrainConfig, bands: Sequence[str], num_classes: int, mean: np.ndarray, std: np.ndarray, chip: int
) -> tuple[LandCoverModel, DenseEncoder, DenseHeadConfig]:
    """Encoder (``cfg.backbone``, band-adapted) + :class:`~geosam.models.dense_head.DenseHead`.

    geosam's encoders and SAM 1 checkpoints give one feature map per ``chip`` (resampled to the input
    size), from which the head builds a simple feature pyramid; a SAM 2.x checkpoint gives Hiera's four
    trunk levels (strides 4, 8, 16 and 32 pixels) of a ``chip``-pixel patch encoded whole at the
    scene's resolution, as ``geosam run`` encodes a tile in SAM 2's shared pass.

    Returns:
        The model, its encoder's :class:`DenseEncoder` and the head configuration.

    Raises:
        ConfigError: ``input_size`` set for a Hiera backbone (patches are encoded at their own size).
    """
    from geosam.bands import canonical_band_name
    from geosam.models.classifier import LandCoverModel
    from geosam.models.dense_config import DenseHeadConfig
    from geosam.models.dense_head import DenseHead
    from geosam.train.backbones import build_backbone, rgb_normalisation, sam2_backbone

    bands = [canonical_band_name(b) for b in bands]
    hiera = sam2_backbone(cfg.backbone)
    encoder: Any
    if hiera is not None:
        from geosam.models.band_adapter import RGB
        from geosam.models.bundle import EncoderMeta
        from geosam.models.sam2_bundle import training_encoder
        from geosam.models.sam2_encoder import SAM2_PIXEL_MEAN, SAM2_PIXEL_STD

        if cfg.input_size and cfg.input_size != chip:
            raise ConfigError(
                f"--input-size {cfg.input_size} does not apply to a dense head on SAM 2 Hiera: patches are "
                "encoded whole at the scene's resolution, as geosam run encodes its tiles; drop it"
            )
        input_size = chip
        encoder, fields = training_encoder(
            cfg.backbone, hiera, bands, input_size, mode=cfg.mode, band_init=cfg.band_init
        )
        enc = DenseEncoder(EncoderMeta(**fields), input_size)
        stats = dict(zip(RGB, zip(SAM2_PIXEL_MEAN, SAM2_PIXEL_STD, strict=True), strict=True))
        in_channels: tuple[int, ...] = tuple(hiera.variant.stage_channels)
        strides: tuple[float, ...] = (4.0, 8.0, 16.0, 32.0)
    else:
        input_size = cfg.input_size or (64 if cfg.backbone in ("default", "small") else chip)
        bb = build_backbone(
            cfg.backbone,
            bands,
            input_size,
            frozen=cfg.mode == "probe",
            band_init=cfg.band_init,
            seed=cfg.seed,
        )
        encoder, enc, stats = bb.encoder, DenseEncoder(bb.meta, input_size), bb.rgb_stats
        in_channels, strides = (bb.config.out_chans,), (chip / (input_size // bb.config.patch_size),)
    mean, std = rgb_normalisation(bands, mean, std, {b: v for b, v in stats.items() if b in bands})
    o = cfg.dense
    head_cfg = DenseHeadConfig(
        in_channels=in_channels,
        strides=strides,
        num_classes=num_classes,
        num_bands=len(bands),
        decoder=o.decoder,
        decoder_channels=o.decoder_channels,
        pyramid_channels=o.decoder_channels,
        pixel_channels=o.pixel_channels,
        context=tuple(o.context),
        use_encoder=o.use_encoder,
        encoder_dropout=o.encoder_dropout,
        members=o.members,
    )
    torch.manual_seed(cfg.seed + 1)
    model = LandCoverModel(encoder, None, mean.tolist(), std.tolist(), dense=DenseHead(head_cfg))
    return model, enc, head_cfg


def encode_chips(model: Any, x: torch.Tensor, chip: int, input_size: int) -> torch.Tensor:
    """Encode ``(B, N, P, P)`` 0..1 patches chip by chip, as :func:`geosam.encode.encode_tiles` does.

    Differs from it only in keeping autograd on (``encode_tiles`` runs under inference mode), so the
    encoder can be fine-tuned; a test checks both give the same features. Returns ``(B, C, F, F)``.
    """
    b, n, p, _ = x.shape
    k = p // chip
    chips = x.reshape(b, n, k, chip, k, chip).permute(0, 2, 4, 1, 3, 5).reshape(b * k * k, n, chip, chip)
    if chip != input_size:
        chips = F.interpolate(chips, size=(input_size, input_size), mode="bilinear", align_corners=False)
    f = model.features(chips)
    g, ch = f.shape[-1], f.shape[1]
    out: torch.Tensor = f.reshape(b, k, k, ch, g, g).permute(0, 3, 1, 4, 2, 5).reshape(b, ch, k * g, k * g)
    return out


def encode_levels(model: Any, x: torch.Tensor, chip: int, input_size: int) -> list[torch.Tensor]:
    """The encoder levels a dense head reads for ``(B, N, P, P)`` 0..1 patches (autograd on).

    A single-level head (geosam's encoders, SAM 1): ``[encode_chips(...)]``. A head on SAM 2 Hiera's four
    trunk levels: :func:`~geosam.models.sam2_encoder.multiscale_features` of each whole patch (``chip`` =
    ``input_size`` = ``P``, a multiple of 32), what the shared SAM 2 pass of ``geosam run`` computes for
    a tile; four ``(B, C_i, P/s, P/s)`` maps for strides ``s`` = 4, 8, 16, 32.
    """
    if len(model.dense.cfg.in_channels) > 1:
        from geosam.models.sam2_encoder import multiscale_features

        if x.shape[-1] != input_size:
            raise ValueError(f"Hiera patches are encoded whole: {x.shape[-1]} px, not {input_size}")
        return multiscale_features(model.encoder, model.normalize(x))
    return [encode_chips(model, x, chip, input_size)]


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Patches:
    """Training or validation patches, read once.

    Attributes:
        x: ``(n, N, P, P)`` float16 0..1 pixels; invalid pixels hold the band mean once
            :meth:`fill` ran (0 before).
        valid: ``(n, P, P)`` bool validity.
        y: ``(n, P, P)`` int64 class targets, ``-1`` = ignored (unlabelled, nodata, unknown class).
        windows: Scene pixel window ``(col, row, width, height)`` of each patch (``None`` for
            patches that are not scene windows, e.g. dataset chips).
        feats: Features of a frozen encoder, one ``(n, C_i, F_i, F_i)`` tensor per level the head reads
            (filled by the trainer).
    """

    x: torch.Tensor
    valid: torch.Tensor
    y: torch.Tensor
    windows: list[tuple[int, int, int, int]] | None
    feats: list[torch.Tensor] | None = None

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mean and standard deviation over the valid pixels (float64)."""
        n = self.x.shape[1]
        x = self.x.float().permute(1, 0, 2, 3).reshape(n, -1)[:, self.valid.reshape(-1)]
        if x.shape[1] == 0:
            return np.full(n, 0.5), np.full(n, 0.25)
        return x.mean(1).double().numpy(), np.maximum(x.std(1).double().numpy(), 1e-3)

    def fill(self, mean: np.ndarray) -> None:
        """Set invalid pixels to ``mean`` (what ``geosam run`` feeds the model there)."""
        m = torch.from_numpy(np.asarray(mean, np.float32)).view(1, -1, 1, 1).to(self.x.dtype)
        self.x = torch.where(self.valid[:, None], self.x, m)


def _read_patches(
    scene_ds: Any, labels: Any, queries: Sequence[Any], class_of: np.ndarray, progress: bool
) -> Patches:
    """Read patches through TorchGeo (scene pixels, validity, labels mapped to class indexes)."""
    from geosam.progress import progress_iter

    xs, vs, ys, wins = [], [], [], []
    lut = torch.from_numpy(class_of)
    for q in progress_iter(list(queries), "reading patches (TorchGeo)", enabled=progress):
        s = scene_ds[q]
        m = labels[q]["mask"].long()
        valid = s["valid"]
        y = lut[m.clamp(0, len(class_of) - 1)]
        y[(m < 0) | (m >= len(class_of)) | ~valid] = -1
        xs.append(s["image"].half())
        vs.append(valid)
        ys.append(y)
        wins.append(s["window"])
    return Patches(torch.stack(xs), torch.stack(vs), torch.stack(ys), wins)


def _chip_features(
    model: Any, patches: Patches, chip: int, input_size: int, device: torch.device, progress: bool
) -> list[torch.Tensor]:
    """Frozen-encoder features of every patch, one tensor per level the head reads.

    A scene chip shared by patches is encoded once (on Hiera a chip is a whole patch).
    """
    from geosam.progress import progress_iter

    if patches.windows is None:  # not scene windows: encode each patch
        out = []
        with torch.inference_mode():
            for s in range(0, len(patches.x), 16):
                x = patches.x[s : s + 16].float().to(device)
                out.append([f.cpu() for f in encode_levels(model, x, chip, input_size)])
        return [torch.cat(level) for level in zip(*out, strict=True)]
    cache: dict[tuple[int, int], list[torch.Tensor]] = {}
    todo: dict[tuple[int, int], tuple[int, int, int]] = {}
    for i, (c0, r0, w, h) in enumerate(patches.windows):
        for r in range(0, h, chip):
            for c in range(0, w, chip):
                todo.setdefault((r0 + r, c0 + c), (i, r, c))
    keys = list(todo)
    model.eval()
    with torch.inference_mode():
        starts = range(0, len(keys), 64)
        for s in progress_iter(starts, "encoding chips (frozen encoder)", enabled=progress):
            ks = keys[s : s + 64]
            xs = torch.stack(
                [patches.x[i, :, r : r + chip, c : c + chip] for i, r, c in (todo[k] for k in ks)]
            ).float()
            levels = [f.cpu() for f in encode_levels(model, xs.to(device), chip, input_size)]
            for j, k in enumerate(ks):
                cache[k] = [f[j] for f in levels]
    n_levels = len(next(iter(cache.values())))
    out_levels = []
    for lv in range(n_levels):
        per_patch = []
        for c0, r0, w, h in patches.windows:
            rows = [
                torch.cat([cache[(r0 + r, c0 + c)][lv] for c in range(0, w, chip)], dim=-1)
                for r in range(0, h, chip)
            ]
            per_patch.append(torch.cat(rows, dim=-2))
        out_levels.append(torch.stack(per_patch))
    return out_levels


# ------------------------------------------------------------------------------------------------ train


def sparse_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, smoothing: float
) -> torch.Tensor:
    """Cross-entropy over the labelled pixels only: targets ``-1`` (unlabelled) add no loss and no gradient.

    ``logits`` ``(B, K, H, W)``, ``target`` ``(B, H, W)`` int64; ``weight`` per class or ``None``;
    label smoothing ``smoothing``. The mean is over labelled pixels (weighted when ``weight`` is given).
    """
    return F.cross_entropy(logits, target, weight=weight, ignore_index=-1, label_smoothing=smoothing)


def _class_weights(y: torch.Tensor, k: int, on: bool) -> torch.Tensor | None:
    """Inverse class frequency over the labelled pixels, normalised to mean 1 over present classes, <= 10."""
    if not on:
        return None
    counts = torch.bincount(y[y >= 0], minlength=k).float()
    w = counts.sum() / (counts.clamp_min(1) * k)
    return w.clamp(max=10.0)


def _features(
    model: Any, p: Patches, idx: Any, x: torch.Tensor, chip: int, input_size: int, device: torch.device
) -> list[torch.Tensor]:
    """Encoder levels of patches ``idx`` (cached for a frozen encoder, else computed with autograd)."""
    if p.feats is not None:
        return [f[idx].to(device) for f in p.feats]
    if model.dense.cfg.use_encoder:
        return encode_levels(model, x, chip, input_size)
    return [x.new_zeros((x.shape[0], 1, 1, 1))]


@torch.no_grad()
def _predict(
    model: Any, p: Patches, chip: int, input_size: int, device: torch.device, batch: int = 16
) -> tuple[torch.Tensor, float]:
    """Predicted classes ``(n, P, P)`` of the patches and the mean cross-entropy at their labelled pixels."""
    model.eval()
    out, loss_sum, n = [], 0.0, 0
    for s in range(0, len(p.x), batch):
        idx = slice(s, s + batch)
        x = p.x[idx].float().to(device)
        logits = model.dense_logits(_features(model, p, idx, x, chip, input_size, device), x)
        y = p.y[idx].to(device)
        loss_sum += float(F.cross_entropy(logits, y, ignore_index=-1, reduction="sum"))
        n += int((y >= 0).sum())
        out.append(logits.argmax(1).cpu())
    return torch.cat(out), loss_sum / max(1, n)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def scene_patches(
    cfg: TrainConfig, data: DenseData, progress: bool = False
) -> tuple[Patches, Patches | None]:
    """Training and validation patches of a scene, drawn and read with TorchGeo (module docstring).

    Raises:
        DataError: No labelled pixel in the training patches; a rotated scene grid.
    """
    from geosam.train.geodata import SceneDataset, chip_aligned, grid_patches, random_patches, rois

    o = cfg.dense
    chip = _chip_size(cfg)
    patch = patch_edge(cfg)
    scene_ds = SceneDataset(data.scene, chip)
    grid = scene_ds.grid
    size_m = patch * grid.res
    boxes = rois(data.train_rois, o.margin * grid.res, size_m, grid.bounds)
    queries = list(chip_aligned(iter(random_patches(scene_ds, boxes, patch, o.patches, cfg.seed)), grid))
    pool = _read_patches(scene_ds, data.train_labels, queries, data.class_of, progress)
    if not (pool.y >= 0).any():
        raise DataError("no labelled pixel in the training patches", data.scene.info.path)
    val = None
    if data.val_labels is not None and data.val_rois:
        val_boxes = rois(data.val_rois, 0.0, size_m, grid.bounds)
        vq = list(chip_aligned(iter(grid_patches(scene_ds, val_boxes, patch)), grid))
        val = _read_patches(scene_ds, data.val_labels, vq, data.class_of, progress)
        if not (val.y >= 0).any():
            val = None
    return pool, val


def train_dense(
    cfg: TrainConfig,
    data: DenseData,
    *,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a dense model on a scene with sparse labels; save the bundle at ``cfg.out`` (module docstring).

    Raises:
        DataError: No labelled pixel in the training patches.
    """
    pool, val = scene_patches(cfg, data, progress)
    provenance = {
        **data.provenance,
        "scene": os.path.abspath(data.scene.info.path),
        "bands": list(data.scene.bands),
        "band_names": list(data.scene.band_names),
    }
    return fit_dense(
        cfg,
        pool,
        val,
        classes=data.classes,
        bands=data.bands,
        gsd_m=data.gsd_m if data.gsd_m is not None else cfg.gsd_m,  # --gsd for scenes in degrees
        preprocessing=data.scene.record,
        provenance=provenance,
        progress=progress,
        on_epoch=on_epoch,
    )


def fit_dense(
    cfg: TrainConfig,
    pool: Patches,
    val: Patches | None,
    *,
    classes: Sequence[str],
    bands: Sequence[str],
    gsd_m: float | None,
    preprocessing: Preprocessing,
    provenance: dict[str, Any],
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train the dense head on read patches and save the bundle (the loop of the module docstring).

    Args:
        cfg: Training configuration (``cfg.dense`` for the head).
        pool: Training patches (0..1 pixels, validity, targets).
        val: Validation patches, or ``None`` (then the last round's weights are kept).
        classes: Class names of the targets.
        bands: Band names of the pixels.
        gsd_m: Ground sampling distance of the pixels in metres, if known.
        preprocessing: How pixels were brought to 0..1 (recorded in the bundle; every run applies it).
        provenance: Data provenance (recorded in the bundle).
        progress: Progress bars.
        on_epoch: Called with each round's record.
    """
    from geosam.bands import canonical_band_name
    from geosam.models.bundle import BundleMeta, save_bundle
    from geosam.progress import progress_iter
    from geosam.train.backbones import sam2_backbone, trainable_parameters
    from geosam.train.chip_batches import dihedral
    from geosam.train.chip_model import lr_lambda, param_groups, patch_embed_prefix
    from geosam.train.colors import class_colors
    from geosam.train.engine import TrainResult
    from geosam.train.report import report_files

    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    o = cfg.dense
    patch = int(pool.x.shape[-1])
    grid = _chip_size(cfg)  # the bundle's chip size: tiles are whole multiples of it
    # Hiera encodes each patch whole (as geosam run encodes a tile in SAM 2's shared pass)
    chip = patch if sam2_backbone(cfg.backbone) is not None else grid
    mean, std = pool.stats()
    pool.fill(mean)
    if val is not None:
        val.fill(mean)
    band_names = [canonical_band_name(b) for b in bands]
    model, bb, head_cfg = build_dense_model(cfg, band_names, len(classes), mean, std, chip)
    model.to(device)
    input_size = bb.input_size
    trainable_parameters(model.encoder, cfg.mode, cfg.last_n)
    head: DenseHead = model.dense  # type: ignore[assignment]
    head.requires_grad_(True)
    if cfg.mode == "probe" and o.use_encoder:
        pool.feats = _chip_features(model, pool, chip, input_size, device, progress)
        if val is not None:
            val.feats = _chip_features(model, val, chip, input_size, device, progress)
    k = len(classes)
    weights = _class_weights(pool.y, k, o.class_weights)
    weights = None if weights is None else weights.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(o.steps, min(cfg.warmup_steps, o.steps // 4)))
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    rounds = max(1, min(cfg.epochs, o.steps))
    history: list[dict[str, Any]] = []
    best_score, best_state, step = -1.0, None, 0
    for rnd in range(rounds):
        t0 = time.time()
        model.train()
        if cfg.mode == "probe":
            model.encoder.eval()
        loss_sum, n_loss = 0.0, 0
        n_steps = o.steps * (rnd + 1) // rounds - step
        for _ in progress_iter(range(n_steps), f"round {rnd + 1}/{rounds}", enabled=progress):
            step += 1
            idx = torch.from_numpy(np.sort(rng.choice(len(pool.x), min(cfg.batch_size, len(pool.x)), False)))
            sym = int(rng.integers(0, 8)) if cfg.augment else 0
            x = dihedral(pool.x[idx].float(), sym).to(device)
            y = dihedral(pool.y[idx], sym).to(device)
            if not (y >= 0).any():
                continue
            with autocast_context(device, cfg.precision):
                f = _features(model, pool, idx, pool.x[idx].float().to(device), chip, input_size, device)
                if o.noise:  # in normalised units: std * noise in 0..1 units per band
                    x = x + torch.randn_like(x) * o.noise * model.get_buffer("std")
                members = head.member_logits([dihedral(level, sym) for level in f], model.normalize(x))
            members = [lg.float() for lg in members]
            loss = torch.stack([sparse_loss(lg, y, weights, cfg.label_smoothing) for lg in members]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            loss_sum += float(loss.item())
            n_loss += 1
        rec: dict[str, Any] = {
            "epoch": rnd + 1,
            "train_loss": loss_sum / max(1, n_loss),
            "steps": step,
            "lr": opt.param_groups[0]["lr"],
        }
        score = float(rnd)  # keep the last round (without validation, or with keep="last")
        if val is not None:
            pred, val_loss = _predict(model, val, chip, input_size, device)
            m = val.y >= 0
            vm = summarize(confusion_matrix(val.y[m].numpy(), pred[m].numpy(), k), classes)
            rec.update(
                val_loss=val_loss,
                val_accuracy=vm["overall_accuracy"],
                val_macro_f1=vm["macro_f1"],
                val_kappa=vm["kappa"],
            )
            if o.keep == "best":
                score = vm["macro_f1"] + 1e-3 * vm["overall_accuracy"]
        rec["seconds"] = time.time() - t0
        history.append(rec)
        if score > best_score:
            best_score = score
            best_state = {kk: v.detach().cpu().clone() for kk, v in model.state_dict().items()}
        log.info("round %d: %s", rnd + 1, {kk: _r(v) for kk, v in rec.items()})
        if on_epoch:
            on_epoch(rec)
    assert best_state is not None  # at least one round ran
    model.load_state_dict(best_state)
    metrics: dict[str, Any] = {
        "overall_accuracy": float("nan"),
        "macro_f1": float("nan"),
        "kappa": float("nan"),
    }
    metrics["n"] = 0
    if val is not None:
        pred, _ = _predict(model, val, chip, input_size, device)
        m = val.y >= 0
        metrics = summarize(confusion_matrix(val.y[m].numpy(), pred[m].numpy(), k), classes)
    best = max(history, key=lambda h: h.get("val_macro_f1", 0.0) + 1e-3 * h.get("val_accuracy", 0.0))
    elapsed = time.time() - t_start
    tile = cfg.tile_size or max(grid, (256 // grid) * grid)
    mean_std = (model.get_buffer("mean").reshape(-1).tolist(), model.get_buffer("std").reshape(-1).tolist())
    meta = BundleMeta(
        name=cfg.name,
        classes={
            "names": list(classes),
            "colors": [list(c) for c in class_colors(tuple(classes))],
            "nodata": 255,
        },
        bands=band_names,
        mean=[float(v) for v in mean_std[0]],
        std=[float(v) for v in mean_std[1]],
        input_size=input_size,
        chip_size=grid,
        gsd_m=gsd_m,
        recommended_tile_size=tile,
        encoder=bb.meta,
        head=None,
        dense=head_cfg.to_dict(),
        preprocessing=preprocessing,
        training={
            "head": "dense",
            "mode": cfg.mode,
            "config": json.loads(cfg.model_dump_json()),
            "epochs_run": len(history),
            "best_epoch": best["epoch"] if val is not None and o.keep == "best" else len(history),
            "steps": step,
            "patch_size": patch,
            "patches": len(pool.x),
            "labelled_pixels": int((pool.y >= 0).sum()),
            "total_seconds": round(elapsed, 1),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "n_val": int(metrics.get("n", 0)),
            "val_overall_accuracy": metrics["overall_accuracy"],
            "val_macro_f1": metrics["macro_f1"],
            "val_kappa": metrics["kappa"],
            "history": [{kk: _r(v, 5) for kk, v in h.items()} for h in history],
        },
        data=provenance,
    )
    frozen_ckpt = bb.meta.source == "sam_checkpoint"
    adapted = frozen_ckpt and bb.meta.band_adapter != "none"  # only the band-adapted patch embedding
    meta = save_bundle(
        cfg.out,
        model,
        meta,
        dtype=cfg.save_dtype,
        include_encoder=not frozen_ckpt,
        include_prefixes=(patch_embed_prefix(model),) if adapted else (),
        extra_files={
            **(report_files(metrics, history) if val is not None else {}),
            "report/train_config.yaml": replay_yaml(cfg).encode(),
        },
    )
    return TrainResult(
        bundle=cfg.out, metrics=metrics, history=copy.deepcopy(history), seconds=elapsed, meta=meta
    )


def _r(v: Any, nd: int = 4) -> Any:
    return round(v, nd) if isinstance(v, float) else v


def patch_edge(cfg: TrainConfig) -> int:
    """Training patch edge in pixels: ``dense.patch_size`` rounded to whole chips of :func:`_chip_size`.

    At least one chip; on a SAM 2 Hiera backbone at least 64 pixels (a multiple of 32), so that Hiera's
    stride-32 level is at least 2 x 2.
    """
    chip = _chip_size(cfg)
    smallest = 2 * chip if chip == 32 else chip
    return max(smallest, round(cfg.dense.patch_size / chip) * chip)


def _chip_size(cfg: TrainConfig) -> int:
    """Encoder chip edge in scene pixels for dense training: ``cfg.tile_size``-independent, 16 by default.

    16 scene pixels resampled to the encoder's 64 px input: for the default encoder (patch 8) a
    feature cell covers 2 x 2 scene pixels. On a SAM 2 Hiera backbone patches are encoded whole and
    this is their grid: 32 pixels, Hiera's coarsest stride (patch edges are multiples of it, at least 64).
    """
    from geosam.train.backbones import sam2_backbone

    return 32 if sam2_backbone(cfg.backbone) is not None else 16
