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

:func:`train` runs four phases: :func:`_split` (the stratified grouped split), :func:`_build` (input
statistics, the model of :mod:`geosam.train.chip_model`, a warm start, the probe's embeddings),
:func:`_fit` (the epochs, with the resumable checkpoint) and :func:`_bundle` (final validation,
calibration, the bundle with its report and replayable configuration).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geosam.encode import autocast_context
from geosam.errors import DataError
from geosam.models.bundle import BundleMeta, EncoderMeta, HeadMeta, save_bundle
from geosam.models.classifier import LandCoverModel
from geosam.train.augment import SensorAugment
from geosam.train.averaging import weight_average
from geosam.train.checkpoint import resume_checkpoint, save_checkpoint
from geosam.train.chip_batches import augment, dihedral, evaluate, model_input, predict_chips, probe_features
from geosam.train.chip_model import (
    build_model,
    input_stats,
    lr_lambda,
    param_groups,
    patch_embed_prefix,
    sam_normalisation,
    trainable_parameters,
)
from geosam.train.colors import KNOWN_COLORS, class_colors
from geosam.train.config import TrainConfig, replay_yaml
from geosam.train.data import ChipData, stratified_split
from geosam.train.init import init_bundle
from geosam.train.metrics import confusion_matrix, summarize
from geosam.train.report import report_files

__all__ = ["KNOWN_COLORS", "TrainResult", "build_model", "dihedral", "predict_chips", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`."""

    bundle: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    meta: BundleMeta


@dataclass(frozen=True)
class _Split:
    """Chip indexes of the training and validation sides."""

    train: np.ndarray
    val: np.ndarray


@dataclass(frozen=True)
class _Model:
    """What :func:`_build` made: the model and everything its batches need."""

    model: LandCoverModel
    encoder: EncoderMeta
    mean: np.ndarray
    std: np.ndarray
    fill: np.ndarray  # invalid pixels: as geosam run fills them
    size: int  # encoder input edge
    device: torch.device
    params: list[nn.Parameter]
    features: torch.Tensor | None  # probe mode: the frozen encoder's pooled embeddings of every chip


@dataclass(frozen=True)
class _Fit:
    """What :func:`_fit` leaves: the per-epoch history and the seconds spent in epochs."""

    history: list[dict[str, Any]]
    seconds: float


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    from geosam.train.checks import check_options, training_gsd
    from geosam.train.init import with_init_input_size

    cfg = with_init_input_size(cfg)  # a warm start continues at its bundle's input size unless told
    check_options(cfg, chip_size=data.chip_size)  # before any expensive work
    gsd_m = training_gsd(cfg, data)
    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    split = _split(cfg, data)
    built = _build(cfg, data, split, progress=progress)
    fit = _fit(cfg, data, split, built, progress=progress, on_epoch=on_epoch)
    return _bundle(cfg, data, split, built, fit, gsd_m=gsd_m, t_start=t_start)


def _split(cfg: TrainConfig, data: ChipData) -> _Split:
    """The stratified split, grouped by polygon or block (``cfg.val_fraction``, ``cfg.seed``)."""
    train_idx, val_idx = stratified_split(data.labels, cfg.val_fraction, cfg.seed, data.groups)
    return _Split(train_idx, val_idx)


def _build(cfg: TrainConfig, data: ChipData, split: _Split, *, progress: bool) -> _Model:
    """Input normalisation, the model (warm-started from ``cfg.init_from``), what trains, probe features."""
    from geosam.preprocess import fill_values

    device = _resolve_device(cfg.device)
    size = cfg.input_size or data.chip_size
    mean, std = input_stats(data, split.train, cfg.seed)
    if cfg.backbone not in ("small", "tiny"):
        mean, std = sam_normalisation(data.bands, mean, std)
    init = init_bundle(cfg, data)
    if init is not None:
        mean, std = np.asarray(init.meta.mean), np.asarray(init.meta.std)
    model, enc_meta = build_model(cfg, data, mean, std)
    fill = fill_values(data.record, mean)
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
    params = trainable_parameters(model, cfg)
    features = None
    if cfg.mode == "probe":
        if cfg.backbone in ("small", "tiny"):
            log.warning("probing a randomly initialised encoder: use mode 'full' unless this is a test")
        features = probe_features(model, data, size, device, cfg.batch_size, cfg.cache_dir, progress, fill)
    return _Model(model, enc_meta, mean, std, fill, size, device, params, features)


def _fit(
    cfg: TrainConfig,
    data: ChipData,
    split: _Split,
    m: _Model,
    *,
    progress: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> _Fit:
    """The epochs (resumed from ``<out>.work/last.pt``); leaves the kept epoch's weights in ``m.model``."""
    from geosam.progress import progress_iter

    model, device, size, fill, features = m.model, m.device, m.size, m.fill, m.features
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    sensor = SensorAugment(cfg.augment_scale, cfg.augment_radiometry, cfg.augment_blur)
    ema = weight_average(model, cfg.ema_decay, cfg.ema_warmup)
    steps_per_epoch = max(1, len(split.train) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, min(cfg.warmup_steps, total // 4)))
    work = cfg.out.with_name(cfg.out.name + ".work")
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_score": -1.0, "best_state": None, "stale": 0}
    last = work / "last.pt"
    if cfg.resume and last.is_file():
        state = resume_checkpoint(last, model, opt, sched, ema, rng)
    history: list[dict[str, Any]] = state["history"]
    best_score, best_state, stale = state["best_score"], state["best_state"], state["stale"]
    train_seconds = sum(h.get("seconds", 0.0) for h in history)
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.time()
        model.train()
        order = rng.permutation(split.train)
        loss_sum, correct, seen = 0.0, 0, 0
        batches = [order[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(steps_per_epoch)]
        for b in progress_iter(batches, f"epoch {epoch + 1}/{cfg.epochs}", enabled=progress, unit="batches"):
            y = torch.from_numpy(data.labels[b]).to(device)
            if features is not None:
                logits = model.classifier(features[b].to(device))
            else:
                x = model_input(data, b, size, device, fill)
                if sensor.active:
                    x = sensor(x, rng)
                if cfg.augment:
                    x = augment(x, rng)
                with autocast_context(device, cfg.precision):
                    logits = model(x).float()
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.params, 1.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.item() * len(b)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(b)
        evaluated: LandCoverModel = ema.module if ema is not None else model  # type: ignore[assignment]
        pred, val_loss = evaluate(evaluated, data, split.val, size, device, 256, features, fill)
        met = summarize(confusion_matrix(data.labels[split.val], pred, len(data.classes)), data.classes)
        rec = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": met["overall_accuracy"],
            "val_macro_f1": met["macro_f1"],
            "val_kappa": met["kappa"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.time() - t0,
        }
        history.append(rec)
        train_seconds += rec["seconds"]
        score = met["macro_f1"] + 1e-3 * met["overall_accuracy"]
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
        checkpoint = {
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
        }
        save_checkpoint(checkpoint, last)
        if cfg.patience and stale >= cfg.patience:
            log.info("early stop: no macro-F1 improvement for %d epochs", cfg.patience)
            break
    if best_state is None:  # pragma: no cover - cfg.epochs >= 1, so at least one epoch ran
        raise RuntimeError("no epoch ran")
    model.load_state_dict(best_state)
    return _Fit(history, train_seconds)


def _bundle(
    cfg: TrainConfig,
    data: ChipData,
    split: _Split,
    m: _Model,
    fit: _Fit,
    *,
    gsd_m: float | None,
    t_start: float,
) -> TrainResult:
    """Validate the kept weights, calibrate them, and save the bundle with its report and configuration."""
    from geosam.bands import canonical_band_name
    from geosam.train.checks import recommended_tile_size

    model, history = m.model, fit.history
    pred, _ = evaluate(model, data, split.val, m.size, m.device, 256, m.features, m.fill)
    metrics = summarize(confusion_matrix(data.labels[split.val], pred, len(data.classes)), data.classes)
    best_epoch = (
        history[-1]["epoch"]
        if cfg.keep == "last"
        else max(history, key=lambda h: h["val_macro_f1"] + 1e-3 * h["val_accuracy"])["epoch"]
    )
    post = None
    if cfg.calibrate:
        from geosam.train.calibrate import fit_posthoc

        post = fit_posthoc(
            model, data, split.train, split.val, size=m.size, seed=cfg.seed, features=m.features, fill=m.fill
        )
    elapsed = time.time() - t_start
    meta = BundleMeta(
        name=cfg.name,
        classes={
            "names": list(data.classes),
            "colors": [list(c) for c in class_colors(data.classes)],
            "nodata": 255,
        },
        bands=[canonical_band_name(b) for b in data.bands],
        mean=[float(v) for v in m.mean],
        std=[float(v) for v in m.std],
        input_size=m.size,
        chip_size=data.chip_size,
        gsd_m=gsd_m,
        recommended_tile_size=recommended_tile_size(cfg, data.chip_size),
        encoder=m.encoder,
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
            "train_seconds": round(fit.seconds, 1),
            "total_seconds": round(elapsed, 1),
            "device": str(m.device),
            "threads": torch.get_num_threads(),
            "n_train": len(split.train),
            "n_val": len(split.val),
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
        include_encoder=m.encoder.source == "bundle",
        # a frozen checkpoint encoder is not stored, but a band-adapted patch embedding is
        include_prefixes=(patch_embed_prefix(model),) if m.encoder.band_adapter != "none" else (),
        extra_files=_bundle_files(cfg, metrics, history, post),
    )
    return TrainResult(
        bundle=cfg.out, metrics=metrics, history=copy.deepcopy(history), seconds=elapsed, meta=meta
    )


def _bundle_files(
    cfg: TrainConfig, metrics: dict[str, Any], history: list[dict[str, Any]], post: Any
) -> dict[str, bytes]:
    """The report and the replayable configuration, with the calibration and domain files if fitted."""
    files = report_files(metrics, history)
    files["report/train_config.yaml"] = replay_yaml(cfg).encode()
    if post is not None:
        from geosam.train.calibrate import posthoc_files

        files.update(posthoc_files(post))
    return files
