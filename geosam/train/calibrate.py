"""Fit a model's calibration and domain statistics on its data, at the end of training or later.

:func:`fit_posthoc` computes, in one forward pass per chip, the logits and pooled features of the
validation chips and of (a per-class capped sample of) the training chips, then fits

* the **temperature** on the validation logits, with the expected calibration error before and after
  measured by 2-fold cross-fitting (:func:`geosam.calibration.cross_fitted_calibration`);
* the **domain statistics** (class means and tied covariance) on the training features, with the
  threshold at the 95th percentile of the validation chips' scores (:mod:`geosam.domain`).

``geosam train`` calls it when a run finishes; :func:`calibrate_bundle` (``geosam calibrate``) adds
both to an existing bundle from its training chips, recomputing the training run's split from the
seed and validation fraction recorded in ``model.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from geosam.calibration import CalibrationMeta, CrossFit, cross_fitted_calibration, reliability_bins
from geosam.domain import DOMAIN_FILE, DomainMeta, DomainStats, capture_block, domain_block, fit_domain
from geosam.errors import DataError
from geosam.train.data import ChipData

__all__ = ["Posthoc", "calibrate_bundle", "fit_posthoc", "posthoc_files"]

log = logging.getLogger(__name__)

#: Training chips per class used for the domain statistics (enough for a 256-d tied covariance).
DEFAULT_FIT_PER_CLASS = 1000


@dataclass(frozen=True)
class Posthoc:
    """What :func:`fit_posthoc` fitted.

    Attributes:
        calibration: The bundle's ``calibration`` record.
        cross_fit: Its cross-fitted measurement (with the calibrated probabilities).
        domain: Domain statistics with their threshold.
        domain_meta: The bundle's ``domain`` record (sha256 of :meth:`DomainStats.to_bytes`).
        labels: ``(n_val,)`` validation labels the calibration was measured on.
        val_logits: ``(n_val, K)`` their uncalibrated logits.
        val_scores: ``(n_val,)`` domain scores of the validation chips.
    """

    calibration: CalibrationMeta
    cross_fit: CrossFit
    domain: DomainStats
    domain_meta: DomainMeta
    labels: np.ndarray
    val_logits: np.ndarray
    val_scores: np.ndarray


def _outputs(
    model: Any,
    data: ChipData,
    idx: np.ndarray,
    size: int,
    batch: int,
    features: Any = None,
    fill: np.ndarray | None = None,
    block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (n, K), domain features (n, D))`` of chips ``idx``, both uncalibrated float64.

    The chips reach the model as in training and in ``geosam run``: the bundle preprocessing's 0..1
    values, invalid pixels given ``fill`` (:func:`geosam.preprocess.fill_values`; ``None``: the model
    mean), resampled with the preprocessing's kernel. Domain features are encoder block ``block``'s
    output mean-pooled (:func:`geosam.domain.capture_block`), or with ``block=None`` the pooled encoder
    output the head reads (the only choice when ``features`` are given).
    """
    import torch

    from geosam.preprocess import resample_chips

    if features is not None and block is not None:
        raise ValueError("cached features are the encoder's output: block must be None")

    device = next(model.parameters()).device
    logits, feats = [], []
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            b = idx[s : s + batch]
            if features is not None:
                pooled = dom = features[b].to(device).float()
            else:
                f = fill if fill is not None else model.mean.detach().cpu().numpy().reshape(-1)
                x = torch.from_numpy(data.model_input(b, f)).to(device)
                x = resample_chips(x, size, data.record.resampling)
                with capture_block(model.encoder, block) as captured:
                    pooled = model.features(x).float().mean(dim=(2, 3))
                dom = captured[0].mean(dim=(2, 3)) if captured else pooled
            logits.append(model.head(pooled).double().cpu().numpy())
            feats.append(dom.double().cpu().numpy())
    return np.concatenate(logits), np.concatenate(feats)


def _capped(labels: np.ndarray, idx: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    if per_class is None:
        return idx
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels[idx]):
        members = idx[labels[idx] == c]
        out.append(members if len(members) <= per_class else rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(out))


def fit_posthoc(
    model: Any,
    data: ChipData,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    size: int | None = None,
    batch: int = 128,
    fit_per_class: int | None = DEFAULT_FIT_PER_CLASS,
    seed: int = 0,
    features: Any = None,
    fill: np.ndarray | None = None,
) -> Posthoc:
    """Fit the temperature on ``val_idx`` and the domain statistics on ``train_idx`` (module docstring).

    Args:
        model: A ``LandCoverModel``; its head's temperature is set to 1 while fitting and restored.
        data: The chips.
        train_idx: Training chips (domain Gaussians).
        val_idx: Held-out chips (temperature, ECE, domain threshold); never trained on.
        size: Encoder input size (chips are resized to it); default the chip size.
        batch: Chips per forward pass.
        fit_per_class: Cap of training chips per class for the Gaussians (``None``: all).
        seed: Seed of the capped sample and of the cross-fitting folds.
        features: ``(N, D)`` pooled features of all chips if already computed (probe mode).
        fill: Per-band 0..1 value of invalid pixels, as in training (``None``: the model mean).

    Raises:
        DataError: Fewer than 2 validation chips.
    """
    if len(val_idx) < 2:
        raise DataError("calibration needs at least 2 validation chips")
    head = model.head
    saved = float(head.temperature)
    head.set_temperature(1.0)
    try:
        size = size or data.chip_size
        block = domain_block(model.encoder) if features is None else None
        val_logits, val_feats = _outputs(model, data, val_idx, size, batch, features, fill, block)
        fit_idx = _capped(data.labels, train_idx, fit_per_class, seed)
        _, fit_feats = _outputs(model, data, fit_idx, size, batch, features, fill, block)
    finally:
        head.set_temperature(saved)
    labels = data.labels[val_idx]
    cf = cross_fitted_calibration(val_logits, labels, folds=2, seed=seed)
    domain = replace(fit_domain(fit_feats, data.labels[fit_idx], len(data.classes)), block=block)
    domain = domain.with_threshold(val_feats, 0.95)
    where = f"validation split of {data.provenance.get('root', data.provenance.get('source', 'the data'))}"
    cal = cf.meta(f"{where}, {len(val_idx)} chips; ECE cross-fitted over 2 folds")
    if cf.nll_after > cf.nll_before:  # the temperature did not help on chips it was not fitted on
        log.warning(
            "calibration: the temperature fitted on %d validation chips (%.3f) made held-out predictions "
            "worse (negative log-likelihood %.4f -> %.4f, ECE %.4f -> %.4f, cross-fitted), so it is not "
            "applied (temperature 1); more validation chips (--val-fraction) give a usable fit",
            len(val_idx),
            cal.temperature,
            cf.nll_before,
            cf.nll_after,
            cf.ece_before,
            cf.ece_after,
        )
        cal = cal.model_copy(
            update={"temperature": 1.0, "fitted_on": cal.fitted_on + "; not applied: held-out NLL rose"}
        )
    dmeta = domain.meta(
        n_fit=len(fit_idx),
        n_threshold=len(val_idx),
        fitted_on=f"{len(fit_idx)} training chips (Gaussians), {len(val_idx)} validation chips (threshold)",
    )
    log.info(
        "calibration: temperature %.3f, ECE %.4f -> %.4f (cross-fitted, %d chips); domain threshold %.3f",
        cal.temperature,
        cf.ece_before,
        cf.ece_after,
        len(val_idx),
        domain.threshold,
    )
    return Posthoc(cal, cf, domain, dmeta, labels, val_logits, domain.score(val_feats))


def posthoc_files(post: Posthoc) -> dict[str, bytes]:
    """Files of a fit: ``domain.safetensors``, ``report/calibration.json``, ``report/reliability.png``."""
    from geosam.calibration import softmax

    n_bins = post.calibration.ece_bins
    before = reliability_bins(softmax(post.val_logits), post.labels, n_bins)
    after = reliability_bins(post.cross_fit.probs_after, post.labels, n_bins)

    def listed(b: dict[str, Any]) -> dict[str, list[float | None]]:
        return {k: [None if not np.isfinite(x) else float(x) for x in np.asarray(v)] for k, v in b.items()}

    summary = {
        "calibration": post.calibration.model_dump(),
        "fold_temperatures": list(post.cross_fit.fold_temperatures),
        "reliability_before": listed(before),
        "reliability_after": listed(after),
        "domain": post.domain_meta.model_dump(),
        "validation_domain_scores": {
            "median": float(np.median(post.val_scores)),
            "p95": float(np.quantile(post.val_scores, 0.95)),
            "p99": float(np.quantile(post.val_scores, 0.99)),
        },
    }
    return {
        DOMAIN_FILE: post.domain.to_bytes(),
        "report/calibration.json": (json.dumps(summary, indent=2) + "\n").encode(),
        "report/reliability.png": reliability_png(before, after, post.calibration),
    }


def reliability_png(before: dict[str, Any], after: dict[str, Any], cal: CalibrationMeta) -> bytes:
    """A reliability diagram (accuracy against confidence per bin, before and after) as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    edges = np.asarray(before["edges"])
    width = edges[1] - edges[0]
    for ax, b, title, ece in (
        (axes[0], before, "before", cal.ece_before),
        (axes[1], after, f"after (T = {cal.temperature:.3f}, cross-fitted)", cal.ece_after),
    ):
        acc = np.nan_to_num(np.asarray(b["accuracy"], dtype=float))
        ax.bar(edges[:-1], acc, width=width, align="edge", edgecolor="k", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "r--", lw=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-class probability")
        ax.set_title(f"{title}: ECE {ece:.4f}" if ece is not None else title)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def calibrate_bundle(
    bundle: str | os.PathLike[str],
    data: ChipData,
    *,
    out: str | os.PathLike[str] | None = None,
    fit_per_class: int | None = DEFAULT_FIT_PER_CLASS,
    batch: int = 128,
    threads: int | None = None,
) -> Posthoc:
    """Add calibration and domain statistics to an existing bundle, fitted on its training data.

    The training run's split is recomputed from ``model.json`` (``training.config.seed`` and
    ``val_fraction``) so that the temperature and threshold come from chips the model was not trained on.
    The weights are not touched; ``model.json``, ``domain.safetensors`` and ``report/calibration.json``
    are written, the folder replaced atomically (or written to ``out``).

    Args:
        bundle: Bundle folder.
        data: The chips it was trained on (same classes and bands, same order as in training).
        out: Write the calibrated bundle here instead of replacing ``bundle``.
        fit_per_class: Cap of training chips per class for the domain Gaussians.
        batch: Chips per forward pass.
        threads: Torch CPU threads.

    Raises:
        DataError: The data's classes or bands are not the bundle's, or the bundle has no recorded split.
    """
    import torch

    from geosam.bands import canonical_band_name
    from geosam.models.bundle import META_FILE, load_bundle
    from geosam.train.data import stratified_split

    if threads:
        torch.set_num_threads(threads)
    src = Path(bundle)
    loaded = load_bundle(src)
    meta = loaded.meta
    if list(meta.class_scheme.names) != list(data.classes):
        raise DataError(
            f"the data's classes {list(data.classes)} are not the bundle's {list(meta.class_scheme.names)}: "
            "pass the chips the model was trained on",
            src,
        )
    if [canonical_band_name(b) for b in data.bands] != list(meta.bands):
        raise DataError(f"the data's bands {list(data.bands)} are not the bundle's {meta.bands}", src)
    tcfg = meta.training.get("config", {})
    if "seed" not in tcfg or "val_fraction" not in tcfg:
        raise DataError(
            "model.json records no training split (training.config seed and val_fraction): "
            "cannot tell which chips were held out",
            src,
        )
    groups = data.groups
    train_idx, val_idx = stratified_split(data.labels, float(tcfg["val_fraction"]), int(tcfg["seed"]), groups)
    post = fit_posthoc(
        loaded.model,
        data,
        train_idx,
        val_idx,
        size=meta.input_size,
        batch=batch,
        fit_per_class=fit_per_class,
        seed=int(tcfg["seed"]),
    )
    new_meta = meta.model_copy(update={"calibration": post.calibration, "domain": post.domain_meta})
    dest = Path(out) if out is not None else src
    files = posthoc_files(post)
    files[META_FILE] = (json.dumps(new_meta.model_dump(), indent=2) + "\n").encode()
    _replace_folder(src, dest, files)
    return post


def _replace_folder(src: Path, dest: Path, files: dict[str, bytes]) -> None:
    """Copy ``src`` with ``files`` (relative path -> bytes) written over it to ``dest``, atomically."""
    from geosam.models.bundle import publish_bundle_folder, write_bundle_files

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        write_bundle_files(tmp, files, dest)
        publish_bundle_folder(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
