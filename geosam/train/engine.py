"""The training loop behind ``geosam train``.

Modes: ``probe`` trains a linear head on embeddings of a frozen encoder, computed once and cached on
disk; ``last_n`` trains the last N encoder blocks, the neck and the head; ``full`` trains everything.
AdamW with linear warm-up and cosine decay, label smoothing, random dihedral augmentation (flips and
90-degree rotations, the symmetries of overhead imagery), optional sensor augmentations
(:mod:`geosam.train.augment`) and weight averaging (:mod:`geosam.train.averaging`), an optional warm
start from a bundle (:mod:`geosam.train.init`), a stratified grouped split, early stopping on
validation macro-F1, and a resumable checkpoint after every epoch (``<out>.work/last.pt``, loaded with
``weights_only=True``). The best (or, with ``keep: last``, the last) epoch's weights are saved as a
model bundle with a report, the temperature that calibrates its probabilities and its domain
statistics (:mod:`geosam.train.calibrate`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geosam.errors import DataError
from geosam.models.bundle import BundleMeta, EncoderMeta, HeadMeta, save_bundle
from geosam.models.classifier import ClassifierHead, LandCoverModel
from geosam.models.sam_config import SamConfig
from geosam.train.augment import SensorAugment
from geosam.train.averaging import weight_average
from geosam.train.config import TrainConfig
from geosam.train.data import ChipData, stratified_split
from geosam.train.init import init_bundle
from geosam.train.metrics import confusion_matrix, summarize
from geosam.train.report import report_files

__all__ = ["TrainResult", "build_model", "dihedral", "predict_chips", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`."""

    bundle: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    meta: BundleMeta


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Apply symmetry ``k`` (0..7) of the square to ``(..., H, W)``.

    ``k % 4`` quarter turns, then a horizontal flip when ``k >= 4``.
    """
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    ks = rng.integers(0, 8, size=len(x))
    out = torch.empty_like(x)
    for k in np.unique(ks):
        sel = torch.from_numpy(np.flatnonzero(ks == k))
        out[sel] = dihedral(x[sel], int(k))
    return out


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(
    cfg: TrainConfig, data: ChipData, mean: np.ndarray, std: np.ndarray
) -> tuple[LandCoverModel, EncoderMeta]:
    """Build the encoder (random small/tiny SAM config, or an official checkpoint) and a fresh head."""
    from geosam.bands import canonical_band_name
    from geosam.hashing import sha256_file
    from geosam.models.band_adapter import RGB, adapt_patch_embed
    from geosam.models.sam import build_encoder, load_sam

    input_size = cfg.input_size or data.chip_size
    bands = [canonical_band_name(b) for b in data.bands]
    if cfg.backbone in ("small", "tiny"):
        sam_cfg = SamConfig.preset(cfg.backbone, img_size=input_size, in_chans=len(bands))
        if input_size % sam_cfg.patch_size:
            raise DataError(
                f"input size {input_size} is not a multiple of the patch size {sam_cfg.patch_size}"
            )
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(sam_cfg)
        enc_meta = EncoderMeta(source="bundle", config=sam_cfg.to_dict(), band_adapter="none")
    elif (sam2 := _sam2_backbone(cfg.backbone)) is not None:
        from geosam.models.sam2_bundle import training_encoder

        encoder, fields = training_encoder(
            cfg.backbone,
            sam2,
            bands,
            input_size,
            mode=cfg.mode,
            band_init=cfg.band_init,
            level=cfg.feature_level,
        )
        enc_meta = EncoderMeta(**fields)
        torch.manual_seed(cfg.seed + 1)
        head = ClassifierHead(encoder.out_chans, len(data.classes), cfg.head_hidden, cfg.dropout)
        return LandCoverModel(encoder, head, mean.tolist(), std.tolist()), enc_meta
    else:
        encoder, sam_cfg = load_sam(cfg.backbone, img_size=input_size, encoder_only=True)
        adapter = "none"
        if tuple(bands) != RGB:
            adapt_patch_embed(encoder, bands, init=cfg.band_init)
            sam_cfg = SamConfig.from_dict({**sam_cfg.to_dict(), "in_chans": len(bands)})
            adapter = cfg.band_init if cfg.mode == "probe" else "trained"
        frozen = cfg.mode == "probe"
        enc_meta = EncoderMeta(
            source="sam_checkpoint" if frozen else "bundle",
            config={**sam_cfg.to_dict(), "name": sam_cfg.name},
            checkpoint_sha256=sha256_file(cfg.backbone) if frozen else None,
            band_adapter=adapter,  # type: ignore[arg-type]
        )
    torch.manual_seed(cfg.seed + 1)
    head = ClassifierHead(sam_cfg.out_chans, len(data.classes), cfg.head_hidden, cfg.dropout)
    return LandCoverModel(encoder, head, mean.tolist(), std.tolist()), enc_meta


def _sam2_backbone(path: str) -> Any:
    """The :class:`~geosam.models.sam_family.SamModelId` of a SAM 2.x checkpoint, ``None`` for SAM 1."""
    from geosam.models.sam_family import identify_sam_checkpoint

    found = identify_sam_checkpoint(path)
    return found if found.family != "sam" else None


def _patch_embed_prefix(model: LandCoverModel) -> str:
    """State-dict prefix of the encoder's patch embedding (SAM 1 ViT or SAM 2 Hiera)."""
    proj = model.encoder.patch_embed.proj  # type: ignore[union-attr]
    for name, module in model.named_modules():
        if module is proj:
            return str(name[: -len("proj")])
    return "encoder.patch_embed."  # pragma: no cover


def _trainable(model: LandCoverModel, cfg: TrainConfig) -> list[nn.Parameter]:
    for p in model.parameters():
        p.requires_grad_(cfg.mode == "full")
    enc: Any = model.encoder
    if cfg.mode == "last_n":
        n = min(cfg.last_n, len(enc.blocks))
        for blk in list(enc.blocks)[-n:]:
            blk.requires_grad_(True)
        enc.neck.requires_grad_(True)
    model.classifier.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or "pos_embed" in name or "rel_pos" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        w = min(1.0, (step + 1) / max(1, warmup))
        return w * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))

    return f


def _batch(
    data: ChipData, idx: np.ndarray, size: int, device: torch.device, fill: np.ndarray | None = None
) -> torch.Tensor:
    """Model input of chips ``idx``: the bundle preprocessing's 0..1 values, nodata fill and resampling.

    The same functions ``geosam run`` uses (:meth:`ChipData.model_input`,
    :func:`geosam.preprocess.resample_chips`), so training and prediction inputs agree.
    """
    from geosam.preprocess import resample_chips

    f = np.zeros(len(data.bands), np.float32) if fill is None else fill
    x = torch.from_numpy(data.model_input(idx, f)).to(device)
    out: torch.Tensor = resample_chips(x, size, data.record.resampling)
    return out


def _input_stats(data: ChipData, idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(idx, size=min(2000, len(idx)), replace=False))
    x = data.to_unit(sample).transpose(1, 0, 2, 3).reshape(len(data.bands), -1)
    x = x[:, ~np.isnan(x).any(axis=0)]  # invalid pixels do not count
    return x.mean(axis=1), np.maximum(x.std(axis=1), 1e-3)


def _sam_normalisation(
    bands: tuple[str, ...], mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """SAM's own pixel statistics for red/green/blue (so a pretrained encoder sees what it was trained on).

    Other bands keep the data set's statistics.
    """
    from geosam.bands import canonical_band_name
    from geosam.models.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD

    sam_mean = dict(zip(("red", "green", "blue"), SAM_PIXEL_MEAN, strict=True))
    sam_std = dict(zip(("red", "green", "blue"), SAM_PIXEL_STD, strict=True))
    m, s = mean.copy(), std.copy()
    for i, b in enumerate(bands):
        name = canonical_band_name(b)
        if name in sam_mean:
            m[i], s[i] = sam_mean[name] / 255.0, sam_std[name] / 255.0
    return m, s


@torch.no_grad()
def _evaluate(
    model: LandCoverModel,
    data: ChipData,
    idx: np.ndarray,
    size: int,
    device: torch.device,
    batch: int,
    features: torch.Tensor | None = None,
    fill: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    model.eval()
    preds, losses = [], []
    for s in range(0, len(idx), batch):
        b = idx[s : s + batch]
        y = torch.from_numpy(data.labels[b]).to(device)
        logits = (
            model.classifier(features[b].to(device))
            if features is not None
            else model(_batch(data, b, size, device, fill))
        )
        losses.append(F.cross_entropy(logits.float(), y, reduction="sum").item())
        preds.append(logits.argmax(1).cpu().numpy())
    return np.concatenate(preds), float(sum(losses) / max(1, len(idx)))


@torch.no_grad()
def _probe_features(
    model: LandCoverModel,
    data: ChipData,
    size: int,
    device: torch.device,
    batch: int,
    cache: Path | None,
    progress: bool,
    fill: np.ndarray | None = None,
) -> torch.Tensor:
    from geosam.progress import progress_iter

    key = None
    if cache is not None:
        h = hashlib.sha256()
        for v in model.encoder.state_dict().values():
            h.update(v.detach().cpu().numpy().tobytes()[:4096])
        h.update(json.dumps([data.provenance, size, list(data.images.shape)], default=str).encode())
        key = cache / f"probe-{h.hexdigest()[:20]}.npy"
        if key.is_file():
            return torch.from_numpy(np.load(key))
    model.eval()
    out = []
    starts = list(range(0, len(data.labels), batch))
    use_bf16 = device.type == "cpu"
    for s in progress_iter(starts, "embedding chips (frozen encoder)", enabled=progress, unit="batches"):
        b = np.arange(s, min(s + batch, len(data.labels)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            f = model.features(_batch(data, b, size, device, fill))
        out.append(f.float().mean(dim=(2, 3)).cpu())
    feats = torch.cat(out)
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        np.save(key, feats.numpy())
    return feats


def train(
    cfg: TrainConfig,
    data: ChipData,
    *,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a classifier on ``data`` and save it as a bundle at ``cfg.out``.

    Returns the bundle path, the best epoch's validation metrics and the per-epoch history.
    """
    from geosam.bands import canonical_band_name
    from geosam.progress import progress_iter
    from geosam.train.checks import check_options, recommended_tile_size, training_gsd

    check_options(cfg, chip_size=data.chip_size)  # before any expensive work
    gsd_m = training_gsd(cfg, data)
    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    train_idx, val_idx = stratified_split(data.labels, cfg.val_fraction, cfg.seed, data.groups)
    size = cfg.input_size or data.chip_size
    mean, std = _input_stats(data, train_idx, cfg.seed)
    if cfg.backbone not in ("small", "tiny"):
        mean, std = _sam_normalisation(data.bands, mean, std)
    init = init_bundle(cfg, data)
    if init is not None:
        mean, std = np.asarray(init.meta.mean), np.asarray(init.meta.std)
    model, enc_meta = build_model(cfg, data, mean, std)
    from geosam.preprocess import fill_values

    fill = fill_values(data.record, mean)  # invalid pixels: as geosam run fills them

    if init is not None:
        try:
            model.load_state_dict(init.model.state_dict())
        except RuntimeError as err:
            raise DataError(
                f"init_from weights do not fit this model ({str(err)[:200]}); use the bundle's input size",
                cfg.init_from,
            ) from None
        del init
    model.to(device)
    params = _trainable(model, cfg)
    features = None
    if cfg.mode == "probe":
        if cfg.backbone in ("small", "tiny"):
            log.warning("probing a randomly initialised encoder: use mode 'full' unless this is a test")
        features = _probe_features(model, data, size, device, cfg.batch_size, cfg.cache_dir, progress, fill)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    sensor = SensorAugment(cfg.augment_scale, cfg.augment_radiometry, cfg.augment_blur)
    ema = weight_average(model, cfg.ema_decay, cfg.ema_warmup)
    steps_per_epoch = max(1, len(train_idx) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, min(cfg.warmup_steps, total // 4)))
    work = cfg.out.with_name(cfg.out.name + ".work")
    start_epoch, history, best_score, best_state, stale = 0, [], -1.0, None, 0
    last = work / "last.pt"
    if cfg.resume and last.is_file():
        try:
            ck = torch.load(last, map_location="cpu", weights_only=True)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start_epoch, history = ck["epoch"], ck["history"]
            best_score, stale = ck["best_score"], ck["stale"]
            best_state = ck["best_state"]
            rng.bit_generator.state = json.loads(ck["rng"])
            if ema is not None:
                ema.load_state_dict(ck["ema"])
        except Exception as err:  # corrupt, another configuration's, or pickled code (never run)
            from geosam.errors import CheckpointError

            raise CheckpointError(
                f"cannot resume from this checkpoint ({type(err).__name__}): it is corrupt, from another "
                "model configuration, or not one geosam wrote; delete it to start over",
                last,
            ) from None
        log.info("resumed from %s at epoch %d", last, start_epoch)
    train_seconds = sum(h.get("seconds", 0.0) for h in history)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        model.train()
        order = rng.permutation(train_idx)
        loss_sum, correct, seen = 0.0, 0, 0
        batches = [order[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(steps_per_epoch)]
        for b in progress_iter(batches, f"epoch {epoch + 1}/{cfg.epochs}", enabled=progress, unit="batches"):
            y = torch.from_numpy(data.labels[b]).to(device)
            if features is not None:
                logits = model.classifier(features[b].to(device))
            else:
                x = _batch(data, b, size, device, fill)
                if sensor.active:
                    x = sensor(x, rng)
                if cfg.augment:
                    x = _augment(x, rng)
                logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.item() * len(b)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(b)
        evaluated: LandCoverModel = ema.module if ema is not None else model  # type: ignore[assignment]
        pred, val_loss = _evaluate(evaluated, data, val_idx, size, device, 256, features, fill)
        m = summarize(confusion_matrix(data.labels[val_idx], pred, len(data.classes)), data.classes)
        rec = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": m["overall_accuracy"],
            "val_macro_f1": m["macro_f1"],
            "val_kappa": m["kappa"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.time() - t0,
        }
        history.append(rec)
        train_seconds += rec["seconds"]
        score = m["macro_f1"] + 1e-3 * m["overall_accuracy"]
        if score > best_score:
            best_score, stale = score, 0
        else:
            stale += 1
        if stale == 0 or cfg.keep == "last":
            best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
        log.info(
            "epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}
        )
        if on_epoch:
            on_epoch(rec)
        work.mkdir(parents=True, exist_ok=True)
        tmp = work / "last.pt.tmp"
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "best_score": best_score,
                "stale": stale,
                "best_state": best_state,
                "rng": json.dumps(rng.bit_generator.state),
                "ema": ema.state_dict() if ema is not None else {},
            },
            tmp,
        )
        os.replace(tmp, last)
        if cfg.patience and stale >= cfg.patience:
            log.info("early stop: no macro-F1 improvement for %d epochs", cfg.patience)
            break
    assert best_state is not None  # at least one epoch ran
    model.load_state_dict(best_state)
    pred, _ = _evaluate(model, data, val_idx, size, device, 256, features, fill)
    metrics = summarize(confusion_matrix(data.labels[val_idx], pred, len(data.classes)), data.classes)
    best_epoch = (
        history[-1]["epoch"]
        if cfg.keep == "last"
        else max(history, key=lambda h: h["val_macro_f1"] + 1e-3 * h["val_accuracy"])["epoch"]
    )
    post = None
    if cfg.calibrate:
        from geosam.train.calibrate import fit_posthoc

        post = fit_posthoc(
            model, data, train_idx, val_idx, size=size, seed=cfg.seed, features=features, fill=fill
        )
    elapsed = time.time() - t_start
    chip = data.chip_size
    meta = BundleMeta(
        name=cfg.name,
        classes={
            "names": list(data.classes),
            "colors": [list(c) for c in _colors(data.classes)],
            "nodata": 255,
        },
        bands=[canonical_band_name(b) for b in data.bands],
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        input_size=size,
        chip_size=chip,
        gsd_m=gsd_m,
        recommended_tile_size=recommended_tile_size(cfg, chip),
        encoder=enc_meta,
        head=HeadMeta(
            in_dim=model.classifier.in_dim,
            num_classes=len(data.classes),
            hidden=cfg.head_hidden,
            dropout=cfg.dropout,
        ),
        preprocessing=data.record,
        training={
            "mode": cfg.mode,
            "config": json.loads(cfg.model_dump_json()),
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "train_seconds": round(train_seconds, 1),
            "total_seconds": round(elapsed, 1),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "val_overall_accuracy": metrics["overall_accuracy"],
            "val_macro_f1": metrics["macro_f1"],
            "val_kappa": metrics["kappa"],
            "history": [
                {k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in history
            ],
        },
        data={**{k: v for k, v in data.provenance.items() if k != "scaling"}, "classes": data.class_counts()},
        calibration=post.calibration if post is not None else None,
        domain=post.domain_meta if post is not None else None,
    )
    meta = save_bundle(
        cfg.out,
        model,
        meta,
        dtype=cfg.save_dtype,
        include_encoder=enc_meta.source == "bundle",
        # a frozen checkpoint encoder is not stored, but a band-adapted patch embedding is
        include_prefixes=(_patch_embed_prefix(model),) if enc_meta.band_adapter != "none" else (),
        extra_files=_bundle_files(metrics, history, post),
    )
    return TrainResult(
        bundle=cfg.out, metrics=metrics, history=copy.deepcopy(history), seconds=elapsed, meta=meta
    )


def _bundle_files(metrics: dict[str, Any], history: list[dict[str, Any]], post: Any) -> dict[str, bytes]:
    """The training report, plus the calibration report and domain statistics when they were fitted."""
    files = report_files(metrics, history)
    if post is not None:
        from geosam.train.calibrate import posthoc_files

        files.update(posthoc_files(post))
    return files


#: Colours for well-known land-cover class names (EuroSAT and common legends); others get a palette.
KNOWN_COLORS: dict[str, tuple[int, int, int]] = {
    "annualcrop": (230, 200, 80),
    "agriculture": (230, 200, 80),
    "cropland": (230, 200, 80),
    "forest": (34, 120, 50),
    "trees": (34, 120, 50),
    "herbaceousvegetation": (150, 200, 90),
    "herbaceous": (150, 200, 90),
    "grassland": (150, 200, 90),
    "highway": (120, 120, 120),
    "road": (120, 120, 120),
    "industrial": (160, 60, 160),
    "pasture": (80, 200, 170),  # sea green: CIEDE2000 20.6 from herbaceous (was 7.9 with (190, 230, 120))
    "permanentcrop": (200, 140, 60),
    "residential": (220, 60, 50),
    "developed": (220, 60, 50),
    "built": (220, 60, 50),
    "urban": (220, 60, 50),
    "river": (60, 120, 230),
    "sealake": (20, 60, 170),
    "water": (30, 90, 200),
    "shrubland": (140, 150, 70),
    "sediment": (210, 190, 150),
    "bare": (210, 190, 150),
    "barren": (210, 190, 150),
}


def _colors(classes: tuple[str, ...]) -> list[tuple[int, int, int]]:
    from geosam.types import ClassScheme

    fallback = ClassScheme(classes).colors
    out = []
    for i, c in enumerate(classes):
        key = "".join(ch for ch in c.lower() if ch.isalnum())
        out.append(KNOWN_COLORS.get(key, fallback[i]))
    return out


@torch.no_grad()
def predict_chips(
    model: LandCoverModel, data: ChipData, idx: np.ndarray | None = None, *, size: int, batch: int = 256
) -> np.ndarray:
    """Class probabilities ``(n, K)`` float32 of chips through the training/validation path.

    Exactly what :func:`train` evaluates: the chips' preprocessing (:meth:`ChipData.model_input` with
    the preprocessing's nodata fill), the chip resampling to the encoder input, the model's forward
    pass (encoder, mean pooling, head), softmax. The reference ``geosam run`` and ``geosam classify``
    are checked against (tests/test_parity.py). ``size`` is the encoder input edge (the bundle's
    ``input_size``).
    """
    from geosam.preprocess import fill_values

    model.eval()
    device = next(model.parameters()).device
    mean: torch.Tensor = model.mean  # type: ignore[assignment]
    fill = fill_values(data.record, mean.detach().cpu().numpy().reshape(-1))
    ids = np.arange(len(data.labels)) if idx is None else np.asarray(idx)
    out = []
    for s in range(0, len(ids), batch):
        logits = model(_batch(data, ids[s : s + batch], size, device, fill))
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out).astype(np.float32)
