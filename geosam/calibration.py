"""Confidence that means probability: temperature scaling and the expected calibration error.

A classifier's softmax output is *calibrated* when, among the inputs it gives a top-class probability
of about 0.8, about 80 % are classified correctly. Networks trained with cross-entropy are usually
over- or under-confident; **temperature scaling** (Guo, Pleiss, Sun and Weinberger 2017, "On
Calibration of Modern Neural Networks", ICML, section 4.2) divides all logits by one scalar ``T > 0``
fitted by minimising the negative log-likelihood on held-out data. It changes no prediction (the
arg-max is the same) and only the spread of the probabilities.

The **expected calibration error** (ECE; Naeini, Cooper and Hauskrecht 2015, AAAI; in the form of Guo
et al. 2017, eq. 3) bins the samples by top-class probability into ``M`` equal-width bins over
``[0, 1]`` (``M = 15`` as in Guo et al.) and averages ``|accuracy - mean confidence|`` over the bins,
weighted by the share of samples in each:

    ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|

A bin is ``(m - 1) / M < p <= m / M`` (the first bin includes 0). This is torchmetrics'
``multiclass_calibration_error(..., n_bins=15, norm="l1")``; geosam computes it in numpy (no torch
import for a report) and its tests check the two agree.

The temperature is stored in the model bundle (``model.json`` ``calibration``) and the model's head
divides its logits by it (:class:`geosam.models.classifier.ClassifierHead`), so every probability a
run writes (tile, region, confidence raster) is calibrated. ECE must be measured on data that did not
fit the temperature: :func:`cross_fitted_calibration` fits on all but one fold of the held-out split
and measures on that fold, for each fold in turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CalibrationMeta",
    "CrossFit",
    "cross_fitted_calibration",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "reliability_bins",
    "softmax",
]

#: Number of equal-width confidence bins of the ECE (Guo et al. 2017).
ECE_BINS = 15
#: Search range of the temperature (log-uniform bounds); fits at a bound are reported as such.
T_RANGE = (0.05, 20.0)


class CalibrationMeta(BaseModel):
    """``calibration`` in a bundle's ``model.json``.

    Attributes:
        method: ``temperature`` (Guo et al. 2017).
        temperature: Logits are divided by this (> 0; 1 = unchanged).
        fitted_on: What the temperature was fitted on (e.g. "validation split, 2500 chips").
        n: Number of samples it was fitted on.
        ece_bins: Bins of the ECE figures.
        ece_before: ECE of the uncalibrated model, on the held-out folds.
        ece_after: ECE after temperature scaling, cross-fitted (each fold scaled by a temperature fitted
            on the other folds).
        nll_before: Mean negative log-likelihood before (nats per sample).
        nll_after: Mean negative log-likelihood after, cross-fitted.
        accuracy: Accuracy on the same samples (unchanged by the temperature).
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0)
    fitted_on: str = ""
    n: int = Field(0, ge=0)
    ece_bins: int = ECE_BINS
    ece_before: float | None = None
    ece_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    accuracy: float | None = None


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``(n, K)`` logits divided by ``temperature``; float64 ``(n, K)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy (nats) of ``(n, K)`` logits at ``temperature`` against ``(n,)`` labels."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    lab = np.asarray(labels, dtype=np.int64)
    return float(np.mean(lse - z[np.arange(len(lab)), lab]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` (Guo et al. 2017, 4.2).

    A one-dimensional bounded search over ``log T`` (scipy's ``minimize_scalar``, Brent's method) in
    ``T_RANGE``; the NLL is convex in ``1 / T``, so the minimum is unique.

    Args:
        logits: ``(n, K)`` uncalibrated logits (float).
        labels: ``(n,)`` true class ids.

    Raises:
        ValueError: Empty or mismatched inputs.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) == 0 or len(logits) != len(labels):
        raise ValueError(f"need (n, K) logits and (n,) labels, got {logits.shape} and {labels.shape}")
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    res = minimize_scalar(
        lambda t: negative_log_likelihood(logits, labels, math.exp(t)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(math.exp(res.x))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """Per-bin counts, accuracy and mean confidence of the top class (a reliability diagram's data).

    Args:
        probs: ``(n, K)`` class probabilities.
        labels: ``(n,)`` true class ids.
        n_bins: Equal-width bins over ``[0, 1]``; bin ``m`` holds ``m / M < p <= (m + 1) / M``.

    Returns:
        ``edges`` (``n_bins + 1``), ``count``, ``accuracy`` and ``confidence`` (``n_bins`` each; NaN in
        empty bins).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin m: edges[m] < p <= edges[m + 1]; p == 0 goes to the first bin
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
    return {"edges": edges, "count": count, "accuracy": acc, "confidence": mean_conf}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE with ``n_bins`` equal-width bins (Guo et al. 2017, eq. 3; see the module docstring).

    Args:
        probs: ``(n, K)`` class probabilities.
        labels: ``(n,)`` true class ids.
        n_bins: Number of bins (15 in Guo et al.).

    Raises:
        ValueError: Empty or mismatched inputs.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) == 0 or len(probs) != len(labels):
        raise ValueError(f"need (n, K) probabilities and (n,) labels, got {probs.shape} and {len(labels)}")
    b = reliability_bins(probs, labels, n_bins)
    used = b["count"] > 0
    gap = np.abs(b["accuracy"][used] - b["confidence"][used])
    return float(np.sum(b["count"][used] * gap) / len(probs))


@dataclass(frozen=True)
class CrossFit:
    """Calibration measured on data the temperature was not fitted on.

    Attributes:
        temperature: Fitted on all samples (the one to store).
        fold_temperatures: One per fold, each fitted on the other folds.
        ece_before: ECE of the raw probabilities, all samples.
        ece_after: ECE of the cross-fitted probabilities (each sample scaled by its fold's temperature).
        nll_before: Mean NLL of the raw logits.
        nll_after: Mean NLL cross-fitted.
        accuracy: Top-1 accuracy (the same before and after).
        n: Number of samples.
        n_bins: ECE bins.
        probs_after: ``(n, K)`` the cross-fitted probabilities (for reliability diagrams).
    """

    temperature: float
    fold_temperatures: tuple[float, ...]
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    accuracy: float
    n: int
    n_bins: int
    probs_after: np.ndarray

    def meta(self, fitted_on: str) -> CalibrationMeta:
        """The bundle's ``calibration`` record."""
        return CalibrationMeta(
            temperature=self.temperature,
            fitted_on=fitted_on,
            n=self.n,
            ece_bins=self.n_bins,
            ece_before=round(self.ece_before, 5),
            ece_after=round(self.ece_after, 5),
            nll_before=round(self.nll_before, 5),
            nll_after=round(self.nll_after, 5),
            accuracy=round(self.accuracy, 5),
        )


def cross_fitted_calibration(
    logits: np.ndarray, labels: np.ndarray, *, folds: int = 2, seed: int = 0, n_bins: int = ECE_BINS
) -> CrossFit:
    """Fit the temperature on all samples and measure calibration by ``folds``-fold cross-fitting.

    Samples are assigned to folds at random, stratified by class (sizes differ by at most one). For each
    fold, a temperature is fitted on the other folds and applied to this fold; the ECE and NLL "after"
    are computed on these out-of-fold probabilities, so no sample is scored by a temperature it helped
    to fit.

    Args:
        logits: ``(n, K)`` uncalibrated held-out logits.
        labels: ``(n,)`` true class ids.
        folds: Number of folds (>= 2).
        seed: Seed of the fold assignment.
        n_bins: ECE bins.

    Raises:
        ValueError: Fewer than 2 folds or fewer samples than folds.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if folds < 2 or len(labels) < folds:
        raise ValueError(f"need at least 2 folds and as many samples ({folds} folds, {len(labels)} samples)")
    rng = np.random.default_rng(seed)
    # stratified: each class's samples in random order, then dealt to the folds in turn (sizes differ
    # by at most one, so no fold is empty)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)])
    fold = np.empty(len(labels), np.int64)
    fold[order] = np.arange(len(order)) % folds
    probs_after = np.empty_like(logits)
    temps = []
    for f in range(folds):
        test = fold == f
        t = fit_temperature(logits[~test], labels[~test])
        temps.append(t)
        probs_after[test] = softmax(logits[test], t)
    eps = 1e-12
    nll_after = float(-np.mean(np.log(probs_after[np.arange(len(labels)), labels] + eps)))
    return CrossFit(
        temperature=fit_temperature(logits, labels),
        fold_temperatures=tuple(temps),
        ece_before=expected_calibration_error(softmax(logits), labels, n_bins),
        ece_after=expected_calibration_error(probs_after, labels, n_bins),
        nll_before=negative_log_likelihood(logits, labels),
        nll_after=nll_after,
        accuracy=float(np.mean(logits.argmax(axis=1) == labels)),
        n=len(labels),
        n_bins=n_bins,
        probs_after=probs_after,
    )
