"""Is a scene like the model's training data? A Mahalanobis domain score per chip, tile and scene.

A classifier answers with a class even for imagery it has never seen the like of (another sensor,
another resolution, another stretch), often confidently. geosam stores in the model bundle what its
in-domain inputs look like and scores every encoder chip of a run against it:

* **Feature**: the output of the encoder's **middle block** (:func:`domain_block`: block
  ``depth // 2 - 1`` of a SAM ``ImageEncoderViT``, e.g. block 2 of the default model's 6) mean-pooled
  over the chip's valid cells (``(D,)``, ``D`` = the encoder width). Lee et al. (2018, section 2.2,
  "feature ensemble") found earlier layers to separate out-of-distribution inputs better than the
  last; on the default model the middle block separates Landsat-7 chips from EuroSAT's far better
  than the encoder output the classifier reads (docs/calibration.md). Encoders without such blocks, and
  statistics fitted on cached encoder outputs (probe training), use the encoder output
  (``feature: chip_mean_pooled_encoder``).
* **Statistics**: class-conditional Gaussians with one shared ("tied") covariance, fitted on the
  training chips' features: class means ``mu_k`` and the covariance ``Sigma`` (Lee, Lee, Lee and Shin
  2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial
  Attacks", NeurIPS, eq. 1-2).
* **Score** of a chip: the Mahalanobis distance to the closest class, per feature dimension,
  ``min_k (f - mu_k)^T Sigma^-1 (f - mu_k) / D`` (Lee et al. eq. 2, divided by ``D`` so that in-domain
  chips score about 1 whatever the width). Larger is less like the training data.
* **Threshold**: the ``quantile`` (default 0.95) of the scores of held-out in-domain chips (the
  validation split, not used to fit the Gaussians): by construction about 5 % of in-domain chips
  score above it.
* **Scene**: its chips' scores; the scene is **out of domain** when more than ``scene_share``
  (default half) of its chips score above the threshold, i.e. when its median chip does, and
  **partly out of domain** when at least ``partly_share`` (default 0.25, five times the 5 % of
  in-domain chips above the threshold) and at least :data:`MIN_CHIPS_OUT` of its chips do. A scene
  made of in-domain chips is almost never either (each of its chips exceeds the threshold with
  probability 0.05: 16 or more of 64 such chips has probability below 1e-7), while a scene from another
  sensor or resolution, whose chips nearly all score high, is out of domain, and one whose chips only
  partly resemble the training data (another sensor's true colour, another continent) is partly out.

Statistics are stored in the bundle as ``domain.safetensors`` (``means`` ``(K, D)``, ``whitening``
``(D, D)`` with ``whitening @ whitening.T = Sigma^-1``), described and checksummed by ``model.json``
``domain`` (:class:`DomainMeta`). Scoring is numpy only (no torch). The scene verdict, the run's
WARNING and the record entry are in :mod:`geosam.domain_check`. The measured separation of EuroSAT
from other imagery (AUROC) is in docs/calibration.md and benchmarks/bench_calibration.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from geosam.errors import BundleError

__all__ = [
    "DOMAIN_FILE",
    "MIN_CHIPS_OUT",
    "DomainMeta",
    "DomainStats",
    "capture_block",
    "chip_features",
    "domain_block",
    "fit_domain",
    "ledoit_wolf",
    "load_domain",
    "tile_scores",
]

log = logging.getLogger(__name__)

DOMAIN_FILE = "domain.safetensors"
#: Relative ridge added to the shrunk covariance's diagonal (times its mean variance): numerical safety.
RIDGE = 1e-6
#: Fewest chips above the threshold that make a scene partly out of domain: a scene of a few chips is
#: not judged on one or two of them (each in-domain chip exceeds the threshold with probability 0.05).
MIN_CHIPS_OUT = 5


class DomainMeta(BaseModel):
    """``domain`` in a bundle's ``model.json``.

    Attributes:
        method: ``mahalanobis_tied`` (Lee et al. 2018, class means and a shared covariance).
        feature: What is scored: ``chip_mean_pooled_block`` (encoder block ``block``'s output) or
            ``chip_mean_pooled_encoder`` (the encoder's output).
        block: The encoder block of ``chip_mean_pooled_block`` (0-based), else ``None``.
        file: The statistics file in the bundle folder.
        sha256: sha256 of that file (verified on load).
        dim: Feature dimension ``D``.
        n_fit: Chips the Gaussians were fitted on.
        threshold: Chip score above which a chip is unlike the training data.
        quantile: Share of held-out in-domain chips at or below ``threshold``.
        n_threshold: Held-out chips the threshold was taken from.
        scene_share: A scene is out of domain when more than this share of its chips exceed the
            threshold.
        partly_share: A scene is partly out of domain when at least this share (and at least
            :data:`MIN_CHIPS_OUT`) of its chips exceed the threshold.
        fitted_on: Where the chips came from (free text).
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["mahalanobis_tied"] = "mahalanobis_tied"
    feature: Literal["chip_mean_pooled_encoder", "chip_mean_pooled_block"] = "chip_mean_pooled_encoder"
    block: int | None = Field(None, ge=0)
    file: str = DOMAIN_FILE
    sha256: str
    dim: int = Field(ge=1)
    n_fit: int = Field(ge=1)
    threshold: float = Field(gt=0)
    quantile: float = Field(0.95, gt=0, lt=1)
    n_threshold: int = Field(0, ge=0)
    scene_share: float = Field(0.5, gt=0, lt=1)
    partly_share: float = Field(0.25, gt=0, lt=1)
    fitted_on: str = ""

    @model_validator(mode="after")
    def _block_iff_block_feature(self) -> DomainMeta:
        if (self.block is not None) != (self.feature == "chip_mean_pooled_block"):
            raise ValueError("domain.block is given exactly when domain.feature is chip_mean_pooled_block")
        return self


@dataclass(frozen=True)
class DomainStats:
    """Class-conditional Gaussian statistics of in-domain features and the decision threshold.

    Attributes:
        means: ``(K, D)`` float class means.
        whitening: ``(D, D)`` float matrix ``W`` with ``W @ W.T`` the inverse tied covariance.
        threshold: Chip score above which a chip is out of domain (``inf`` before it is set).
        quantile: The held-out in-domain quantile ``threshold`` was taken at.
        scene_share: Share of a scene's chips above the threshold that makes it out of domain.
        partly_share: Share (with at least :data:`MIN_CHIPS_OUT` chips) that makes it partly out.
        block: The encoder block whose output is scored (:func:`domain_block`); ``None``: the
            encoder's output.
    """

    means: np.ndarray
    whitening: np.ndarray
    threshold: float = float("inf")
    quantile: float = 0.95
    scene_share: float = 0.5
    partly_share: float = 0.25
    block: int | None = None

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.means.shape[1])

    def score(self, features: np.ndarray) -> np.ndarray:
        """Domain score of each row of ``(n, D)`` features: ``(n,)`` float64 (see the module docstring).

        Raises:
            ValueError: The features do not have ``D`` columns.
        """
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features must be (n, {self.dim}), got {f.shape}")
        w = self.whitening.astype(np.float64)
        z = f @ w  # (n, D) whitened
        zm = self.means.astype(np.float64) @ w  # (K, D)
        d2 = (z * z).sum(1)[:, None] - 2.0 * z @ zm.T + (zm * zm).sum(1)[None, :]
        out: np.ndarray = np.maximum(d2.min(axis=1), 0.0) / self.dim
        return out

    def with_threshold(self, held_out: np.ndarray, quantile: float = 0.95) -> DomainStats:
        """A copy with the threshold at the ``quantile`` of the scores of ``(n, D)`` held-out features."""
        t = float(np.quantile(self.score(held_out), quantile))
        return replace(self, threshold=t, quantile=quantile)

    def to_tensors(self) -> dict[str, np.ndarray]:
        """The arrays stored in ``domain.safetensors`` (float32)."""
        return {
            "means": np.ascontiguousarray(self.means, dtype=np.float32),
            "whitening": np.ascontiguousarray(self.whitening, dtype=np.float32),
        }

    def to_bytes(self) -> bytes:
        """``domain.safetensors`` content."""
        from safetensors.numpy import save

        return save(self.to_tensors(), metadata={"format": "geosam-domain"})

    def meta(self, n_fit: int, n_threshold: int, fitted_on: str) -> DomainMeta:
        """The ``model.json`` record describing :meth:`to_bytes`."""
        return DomainMeta(
            sha256=hashlib.sha256(self.to_bytes()).hexdigest(),
            dim=self.dim,
            n_fit=n_fit,
            threshold=self.threshold,
            quantile=self.quantile,
            n_threshold=n_threshold,
            scene_share=self.scene_share,
            partly_share=self.partly_share,
            feature="chip_mean_pooled_encoder" if self.block is None else "chip_mean_pooled_block",
            block=self.block,
            fitted_on=fitted_on,
        )


def fit_domain(features: np.ndarray, labels: np.ndarray, n_classes: int | None = None) -> DomainStats:
    """Class means and the tied covariance of ``(n, D)`` in-domain features (Lee et al. 2018, eq. 1).

    The empirical tied covariance ``S = 1/n sum_i (f_i - mu_{y_i})(f_i - mu_{y_i})^T`` is shrunk
    towards a scaled identity by the Ledoit-Wolf estimate (:func:`ledoit_wolf`), which keeps it
    invertible and well-conditioned when there are few chips per feature dimension (small user data
    sets). Classes without samples get no mean (they cannot be closest).

    Args:
        features: ``(n, D)`` pooled features of in-domain chips.
        labels: ``(n,)`` their class ids.
        n_classes: Number of classes (default: ``labels.max() + 1``).

    Returns:
        Statistics with no threshold yet (see :meth:`DomainStats.with_threshold`).

    Raises:
        ValueError: Fewer than 2 samples, or mismatched inputs.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if f.ndim != 2 or len(f) < 2 or len(f) != len(y):
        raise ValueError(f"need (n >= 2, D) features and (n,) labels, got {f.shape} and {y.shape}")
    k = int(n_classes if n_classes is not None else y.max() + 1)
    present = [c for c in range(k) if np.any(y == c)]
    means = np.stack([f[y == c].mean(axis=0) for c in present])
    centred = f - means[np.searchsorted(present, y)]
    cov = ledoit_wolf(centred)
    cov[np.diag_indices_from(cov)] += RIDGE * float(np.trace(cov)) / cov.shape[0] + 1e-12
    # W with W W^T = cov^-1: the inverse transpose of cov's Cholesky factor L (cov = L L^T)
    chol = np.linalg.cholesky(cov)
    whitening = np.linalg.inv(chol).T
    return DomainStats(means=means, whitening=whitening)


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of centred samples ``(n, D)``; ``(D, D)`` float64.

    ``(1 - a) S + a mu I`` with ``S = x^T x / n``, ``mu = trace(S) / D`` and the shrinkage ``a`` of
    Ledoit and Wolf (2004, "A well-conditioned estimator for large-dimensional covariance matrices",
    J. Multivariate Analysis 88(2)), in the form scikit-learn's ``ledoit_wolf(x, assume_centered=True)``
    computes (geosam's tests check the two agree). Written here because scikit-learn is not a
    run-time dependency of geosam, and the estimate is a few lines of numpy.
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    emp = x.T @ x / n
    mu = float(np.trace(emp)) / d
    x2 = x**2
    var = x2.sum(axis=0) / n
    delta_ = float(np.sum(emp**2))
    beta_ = float(np.sum(x2.T @ x2))
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * float(var.sum()) + d * mu**2) / d
    beta = min(beta, delta)
    a = 0.0 if beta == 0 else beta / delta
    out: np.ndarray = (1.0 - a) * emp
    out[np.diag_indices_from(out)] += a * mu
    return out


def load_domain(folder: str | os.PathLike[str], meta: DomainMeta) -> DomainStats:
    """Read a bundle's ``domain.safetensors``, verifying its sha256 and shapes.

    Raises:
        BundleError: The file is missing, modified (sha256) or does not match ``meta``.
    """
    from safetensors.numpy import load

    path = Path(folder) / meta.file
    if Path(meta.file).name != meta.file:
        raise BundleError(f"domain file name {meta.file!r} must be a plain file name", folder)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise BundleError(
            f"bundle is missing its domain statistics {meta.file} ({err.strerror}); "
            "add them with `geosam calibrate`",
            folder,
        ) from None
    if hashlib.sha256(raw).hexdigest() != meta.sha256:
        raise BundleError(f"{meta.file} does not match the sha256 recorded in model.json", folder)
    t = load(raw)
    means, w = t.get("means"), t.get("whitening")
    if means is None or w is None or means.ndim != 2 or w.shape != (meta.dim, meta.dim):
        raise BundleError(f"{meta.file} does not hold means (K, {meta.dim}) and whitening", folder)
    if means.shape[1] != meta.dim:
        raise BundleError(f"{meta.file} means are {means.shape[1]}-dimensional, not {meta.dim}", folder)
    return DomainStats(
        means, w, meta.threshold, meta.quantile, meta.scene_share, meta.partly_share, meta.block
    )


def domain_block(encoder: Any) -> int | None:
    """The block whose output domain statistics score: the middle block of a SAM ``ImageEncoderViT``.

    Block ``depth // 2 - 1`` (0-based: 2 of the default model's 6 blocks, 5 of ViT-B's 12); ``None``
    for other encoders (SAM 2's Hiera...), which are scored on their output.
    """
    from segment_anything.modeling.image_encoder import ImageEncoderViT

    if not isinstance(encoder, ImageEncoderViT) or len(encoder.blocks) < 2:
        return None
    return len(encoder.blocks) // 2 - 1


@contextmanager
def capture_block(encoder: Any, block: int | None) -> Iterator[list[Any]]:
    """Collect the outputs of ``encoder.blocks[block]`` during the ``with`` body, as ``(B, C, h, w)``.

    One float32 tensor per forward call is appended to the yielded list (nothing when ``block`` is
    ``None``). SAM's ViT blocks return ``(B, h, w, C)``; they are permuted to channels first.

    Raises:
        BundleError: ``block`` is not a block of ``encoder`` (statistics of another encoder).
    """
    out: list[Any] = []
    if block is None:
        yield out
        return
    blocks = getattr(encoder, "blocks", None)
    if blocks is None or not 0 <= block < len(blocks):
        n = "no" if blocks is None else len(blocks)
        raise BundleError(
            f"the domain statistics score encoder block {block} but the encoder has {n} blocks: "
            "refit them with `geosam calibrate`",
            "model bundle",
        )
    handle = blocks[block].register_forward_hook(
        lambda _m, _i, o: out.append(o.detach().permute(0, 3, 1, 2).float())
    )
    try:
        yield out
    finally:
        handle.remove()


def chip_features(features: Any, valid: np.ndarray, grid: int, min_valid: float = 0.5) -> np.ndarray:
    """Mean-pooled features of each encoder chip of a tile whose valid share is at least ``min_valid``.

    Args:
        features: ``(C, F, F)`` tile features (numpy or torch), ``F`` a multiple of ``grid``.
        valid: ``(T, T)`` valid pixels of the tile (``T`` need not be a multiple of ``F``: a 22 px
            chip read at 96 px has 12 feature cells of 1.83 px).
        grid: Feature cells per chip edge.
        min_valid: Chips with a smaller share of valid pixels are left out.

    Returns:
        ``(n, C)`` float64 features of the kept chips (pooled over their valid cells).

    Pixel ``(r, c)`` belongs to feature cell ``(r * F // T, c * F // T)``, the rule
    :func:`geosam.classify.label_weights` uses to pool regions (before 2026-11-30 the cells were taken
    as ``T // F`` whole pixels, which for non-integer cells read the valid mask of the tile's top-left
    corner only and scored padding chips of tiles that reach past the scene).
    """
    from geosam.classify import label_weights

    f = np.asarray(features.detach().cpu().float() if hasattr(features, "detach") else features)
    c, fs, _ = f.shape
    k = fs // grid
    if k == 0 or fs % grid:
        raise ValueError(f"feature map {fs} is not a multiple of the chip grid {grid}")
    # valid share per feature cell, then per chip
    vc = label_weights(valid.astype(np.int64), 1, (fs, fs))[0].astype(np.float64)
    fcells = f.reshape(c, k, grid, k, grid).transpose(1, 3, 0, 2, 4).reshape(k * k, c, grid * grid)
    wcells = vc.reshape(k, grid, k, grid).transpose(0, 2, 1, 3).reshape(k * k, grid * grid)
    share = wcells.mean(axis=1)
    keep = share >= min_valid
    w = wcells[keep]
    pooled = (fcells[keep] * w[:, None, :]).sum(axis=2) / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    out: np.ndarray = pooled.astype(np.float64)
    return out


def tile_scores(stats: DomainStats, features: Any, valid: np.ndarray, grid: int) -> np.ndarray:
    """Domain scores ``(n,)`` of the encoder chips of a tile that are at least half valid.

    Args:
        stats: The bundle's domain statistics.
        features: ``(C, F, F)`` tile features.
        valid: ``(T, T)`` valid pixels of the tile.
        grid: Feature cells per encoder chip edge.
    """
    f = chip_features(features, valid, grid)
    return stats.score(f) if len(f) else np.zeros(0)
