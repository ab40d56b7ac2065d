"""Accuracy estimators on an error matrix of sample counts (pure numpy; no I/O).

Convention (the remote-sensing one of Congalton and of Olofsson et al. 2014): ``n[i, j]`` counts the
sample units (pixels, polygons or points) that the **map** labels class ``i`` (row) and the
**reference** labels class ``j`` (column). Both axes list the same classes in the same order.

Two families of numbers come out of such a matrix:

* :func:`agreement`: the *sample* statistics, every unit weighted equally: overall accuracy, Cohen's
  kappa, user's accuracy (the precision of a map class, ``n_ii / n_i.``), producer's accuracy (the recall
  of a reference class, ``n_ii / n_.i``), F1 and intersection over union (IoU) per class. They describe
  the units that were compared, not the map: a class with many reference pixels weighs more than its
  share of the map.
* :func:`stratified_estimate`: the *area-weighted* estimators of Olofsson, Foody, Herold, Stehman,
  Woodcock & Wulder (2014), "Good practices for estimating area and assessing accuracy of land change",
  Remote Sensing of Environment 148: 42-57, doi:10.1016/j.rse.2014.02.015, with the map classes as
  strata: estimated error matrix of area proportions (eq. 4), overall, user's and producer's accuracy
  (eq. 1-3) with their standard errors (eq. 5-7), and the area of each reference class with its
  standard error (eq. 8-11). They estimate the accuracy and the class areas of the *whole map*, provided
  that the sample units are a probability sample of it (simple random, stratified random by map class,
  or systematic). See docs/evaluation.md for what that means for pixels inside hand-drawn polygons.

Undefined values are ``NaN``: user's accuracy of a class the map never gives in the sample, producer's
accuracy of a class absent from the reference, kappa when chance agreement is 1, and standard errors of
strata with a single sample unit (``n_i. - 1 = 0`` in eq. 5-7 and 10).

:func:`geosam.train.metrics.summarize` reports the sample statistics of a training run from these
functions (its matrix is transposed: rows are the truth there).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "Agreement",
    "StratifiedEstimate",
    "agreement",
    "cohen_kappa",
    "f1_scores",
    "iou_scores",
    "overall_accuracy",
    "producers_accuracy",
    "stratified_estimate",
    "users_accuracy",
    "z_score",
]


def _square(n: np.ndarray) -> np.ndarray:
    """``n`` as a float64 square matrix of non-negative finite counts, or ``ValueError``."""
    a = np.asarray(n, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"an error matrix must be square, not of shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError("an error matrix holds non-negative finite counts")
    return a


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with ``NaN`` where ``den`` is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def overall_accuracy(n: np.ndarray) -> float:
    """Share of sample units on the diagonal, ``sum_i n_ii / n`` (``NaN`` for an empty matrix)."""
    a = _square(n)
    total = a.sum()
    return float(np.trace(a) / total) if total > 0 else float("nan")


def cohen_kappa(n: np.ndarray) -> float:
    """Cohen's kappa, ``(p_o - p_e) / (1 - p_e)`` with chance agreement ``p_e = sum_i n_i. n_.i / n^2``.

    Cohen (1960), "A coefficient of agreement for nominal scales", Educational and Psychological
    Measurement 20: 37-46. ``NaN`` when ``p_e = 1`` (one class fills both map and reference) or the
    matrix is empty. Olofsson et al. (2014, section 4.1) advise against using kappa to judge maps; it is
    reported because users compare with tools that print it.
    """
    a = _square(n)
    total = a.sum()
    if total <= 0:
        return float("nan")
    po = np.trace(a) / total
    pe = float((a.sum(axis=1) * a.sum(axis=0)).sum() / (total * total))
    return float((po - pe) / (1.0 - pe)) if pe < 1.0 else float("nan")


def users_accuracy(n: np.ndarray) -> np.ndarray:
    """User's accuracy of each map class, ``n_ii / n_i.`` (precision; 1 - commission error), ``(K,)``."""
    a = _square(n)
    return _ratio(np.diag(a), a.sum(axis=1))


def producers_accuracy(n: np.ndarray) -> np.ndarray:
    """Producer's accuracy of each reference class, ``n_jj / n_.j`` (recall; 1 - omission error), ``(K,)``."""
    a = _square(n)
    return _ratio(np.diag(a), a.sum(axis=0))


def f1_scores(n: np.ndarray) -> np.ndarray:
    """F1 per class, the harmonic mean of user's and producer's accuracy, ``2 n_ii / (n_i. + n_.i)``.

    ``NaN`` for a class absent from both map and reference, 0 for a class in one of them only.
    """
    a = _square(n)
    return _ratio(2.0 * np.diag(a), a.sum(axis=1) + a.sum(axis=0))


def iou_scores(n: np.ndarray) -> np.ndarray:
    """Intersection over union (Jaccard index) per class, ``n_ii / (n_i. + n_.i - n_ii)``, ``(K,)``.

    ``NaN`` for a class absent from both map and reference. The mean over the other classes is the
    mIoU that semantic-segmentation papers report.
    """
    a = _square(n)
    d = np.diag(a)
    return _ratio(d, a.sum(axis=1) + a.sum(axis=0) - d)


def _nanmean(v: np.ndarray) -> float:
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


@dataclass(frozen=True, eq=False)
class Agreement:
    """Sample statistics of an error matrix (every unit weighted equally); see :func:`agreement`.

    Attributes:
        counts: int64 ``(K, K)`` error matrix, rows = map, columns = reference.
        n: Sample units in the matrix.
        overall_accuracy: Share of units on the diagonal.
        kappa: Cohen's kappa.
        users_accuracy: float64 ``(K,)`` per map class (``NaN``: class never mapped in the sample).
        producers_accuracy: float64 ``(K,)`` per reference class (``NaN``: class not in the reference).
        f1: float64 ``(K,)``.
        iou: float64 ``(K,)`` intersection over union.
        mean_iou: Mean IoU over the classes present in the map or the reference sample.
        macro_f1: Mean F1 over the same classes.
    """

    counts: np.ndarray
    n: int
    overall_accuracy: float
    kappa: float
    users_accuracy: np.ndarray
    producers_accuracy: np.ndarray
    f1: np.ndarray
    iou: np.ndarray
    mean_iou: float
    macro_f1: float


def agreement(n: np.ndarray) -> Agreement:
    """Overall accuracy, kappa, and per-class user's and producer's accuracy, F1 and IoU of ``n``.

    Args:
        n: ``(K, K)`` counts, rows = map class, columns = reference class.

    Raises:
        ValueError: ``n`` is not square or holds negative or non-finite values.
    """
    a = _square(n)
    f1 = f1_scores(a)
    iou = iou_scores(a)
    return Agreement(
        counts=np.rint(a).astype(np.int64),
        n=round(float(a.sum())),
        overall_accuracy=overall_accuracy(a),
        kappa=cohen_kappa(a),
        users_accuracy=users_accuracy(a),
        producers_accuracy=producers_accuracy(a),
        f1=f1,
        iou=iou,
        mean_iou=_nanmean(iou),
        macro_f1=_nanmean(f1),
    )


def z_score(confidence: float) -> float:
    """Two-sided standard-normal quantile for a confidence level (0.95 -> 1.959964)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass(frozen=True, eq=False)
class StratifiedEstimate:
    """Area-weighted accuracy and area estimates of Olofsson et al. (2014); see :func:`stratified_estimate`.

    Index ``i`` is a map class (stratum), ``j``/``k`` a reference class; all arrays are float64.
    Standard errors are ``NaN`` where a stratum that contributes has a single sample unit.

    Attributes:
        mapped_area: ``(K,)`` mapped area of each stratum, ``A_m,i`` (the unit of the input: pixels, m²).
        weights: ``(K,)`` stratum weights ``W_i = A_m,i / A_tot``.
        sampled: bool ``(K,)``: the stratum holds at least one sample unit.
        proportions: ``(K, K)`` estimated area proportions ``p_ij = W_i n_ij / n_i.`` (eq. 4); rows of
            unsampled strata are 0.
        overall_accuracy: ``sum_j p_jj`` (eq. 1).
        overall_accuracy_se: Its standard error (square root of eq. 5).
        users_accuracy: ``(K,)`` ``p_ii / p_i.`` (eq. 2).
        users_accuracy_se: ``(K,)`` (eq. 6).
        producers_accuracy: ``(K,)`` ``p_jj / p_.j`` (eq. 3).
        producers_accuracy_se: ``(K,)`` (eq. 7).
        area_proportion: ``(K,)`` ``p_.k = sum_i p_ik``: estimated share of the map's area that is
            reference class ``k`` (eq. 9).
        area_proportion_se: ``(K,)`` (eq. 10).
        area: ``(K,)`` ``A_tot * p_.k``, in the unit of ``mapped_area`` (eq. 8/11).
        area_se: ``(K,)`` ``A_tot * SE(p_.k)`` (eq. 11).
        confidence: Confidence level of the intervals.
        z: Its standard-normal quantile; an interval is ``estimate ± z * se``.
    """

    mapped_area: np.ndarray
    weights: np.ndarray
    sampled: np.ndarray
    proportions: np.ndarray
    overall_accuracy: float
    overall_accuracy_se: float
    users_accuracy: np.ndarray
    users_accuracy_se: np.ndarray
    producers_accuracy: np.ndarray
    producers_accuracy_se: np.ndarray
    area_proportion: np.ndarray
    area_proportion_se: np.ndarray
    area: np.ndarray
    area_se: np.ndarray
    confidence: float
    z: float

    @property
    def total_area(self) -> float:
        """``A_tot``, the mapped area of all strata."""
        return float(self.mapped_area.sum())

    @property
    def unsampled_weight(self) -> float:
        """Share of the map in strata without a sample unit (their area is in no estimate)."""
        return float(self.weights[~self.sampled].sum())


def stratified_estimate(
    n: np.ndarray, mapped_area: np.ndarray, *, confidence: float = 0.95
) -> StratifiedEstimate:
    """Olofsson et al. (2014) stratified estimators, map classes as strata.

    With ``W_i`` the share of the map in class ``i``, ``n_i.`` the sample units mapped as ``i``,
    ``r_ij = n_ij / n_i.`` and ``A`` the total mapped area:

    * ``p_ij = W_i r_ij`` (eq. 4); ``O = sum_j p_jj``, ``U_i = p_ii / p_i.``, ``P_j = p_jj / p_.j``
      (eq. 1-3);
    * ``V(O) = sum_i W_i² U_i (1 - U_i) / (n_i. - 1)`` (eq. 5);
      ``V(U_i) = U_i (1 - U_i) / (n_i. - 1)`` (eq. 6);
    * ``V(P_j) = [N_j.² (1 - P_j)² U_j (1 - U_j) / (n_j. - 1)
      + P_j² sum_{i != j} N_i.² r_ij (1 - r_ij) / (n_i. - 1)] / N_.j²`` with ``N_i.`` the mapped area of
      stratum ``i`` and ``N_.j = sum_i N_i. r_ij`` (eq. 7);
    * ``p_.k = sum_i W_i r_ik``, ``SE(p_.k) = sqrt(sum_i W_i² r_ik (1 - r_ik) / (n_i. - 1))``, area
      ``A p_.k`` with standard error ``A SE(p_.k)`` (eq. 9-11).

    Strata without sample units cannot be estimated: their rows of ``p`` are 0, so the area estimates
    cover only the sampled strata and sum to ``A (1 - unsampled_weight)``.

    Args:
        n: ``(K, K)`` sample counts, rows = map class (stratum), columns = reference class.
        mapped_area: ``(K,)`` area of each map class over the *whole* map (pixel counts or m²), not only
            over the sampled units.
        confidence: Level of the confidence intervals (``z`` = 1.96 for 0.95).

    Returns:
        The estimates; multiply a standard error by ``z`` for the half-width of its interval.

    Raises:
        ValueError: Shapes disagree, counts or areas are negative or non-finite, or the map has no area.
    """
    a = _square(n)
    area = np.asarray(mapped_area, dtype=np.float64)
    k = a.shape[0]
    if area.shape != (k,):
        raise ValueError(f"mapped_area must have shape ({k},), not {area.shape}")
    if not np.isfinite(area).all() or (area < 0).any():
        raise ValueError("mapped areas must be non-negative and finite")
    total = float(area.sum())
    if total <= 0:
        raise ValueError("the map has no area (all mapped areas are 0)")
    z = z_score(confidence)
    w = area / total
    ni = a.sum(axis=1)
    sampled = ni > 0
    r = np.where(sampled[:, None], a / np.where(sampled, ni, 1.0)[:, None], 0.0)
    p = w[:, None] * r
    with np.errstate(divide="ignore", invalid="ignore"):
        # Per-stratum variance factor 1 / (n_i. - 1): NaN for a single unit; 0 for a stratum that is
        # not sampled or has no mapped area (it adds nothing to any estimate).
        inv = np.where(ni > 1, 1.0 / (ni - 1.0), np.nan)
    inv = np.where(sampled & (area > 0), inv, 0.0)
    rvar = r * (1.0 - r) * inv[:, None]  # r_ij (1 - r_ij) / (n_i. - 1)

    oa = float(np.trace(p))
    ua = _ratio(np.diag(p), p.sum(axis=1))
    pa = _ratio(np.diag(p), p.sum(axis=0))
    u_term = np.where(sampled, np.nan_to_num(ua) * (1.0 - np.nan_to_num(ua)), 0.0) * inv
    oa_var = float(np.sum(w**2 * u_term))
    ua_var = np.where(sampled, u_term, np.nan)

    t = (area**2)[:, None] * rvar  # N_i.² r_ij (1 - r_ij) / (n_i. - 1)
    n_hat = (area[:, None] * r).sum(axis=0)  # N_.j, estimated area of reference class j
    t_diag = np.diag(t)
    pa0 = np.nan_to_num(pa)
    pa_num = (1.0 - pa0) ** 2 * t_diag + pa0**2 * (t.sum(axis=0) - t_diag)
    pa_var = _ratio(pa_num, n_hat**2)

    prop = p.sum(axis=0)
    prop_var = (w[:, None] ** 2 * rvar).sum(axis=0)
    return StratifiedEstimate(
        mapped_area=area,
        weights=w,
        sampled=sampled,
        proportions=p,
        overall_accuracy=oa,
        overall_accuracy_se=float(np.sqrt(oa_var)),
        users_accuracy=ua,
        users_accuracy_se=np.sqrt(ua_var),
        producers_accuracy=pa,
        producers_accuracy_se=np.sqrt(pa_var),
        area_proportion=prop,
        area_proportion_se=np.sqrt(prop_var),
        area=total * prop,
        area_se=total * np.sqrt(prop_var),
        confidence=confidence,
        z=z,
    )
