"""Accuracy estimators: hand-computed cases, the worked example of Olofsson et al. (2014), properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geosam.accuracy.estimators import (
    agreement,
    cohen_kappa,
    f1_scores,
    iou_scores,
    overall_accuracy,
    producers_accuracy,
    stratified_estimate,
    users_accuracy,
    z_score,
)
from geosam.train.metrics import summarize

# ---------------------------------------------------------------------------------- a 2 x 2 by hand
# rows = map, columns = reference
SMALL = np.array([[8, 2], [1, 9]])
SMALL_AREA = np.array([30.0, 70.0])  # W = 0.3, 0.7; A = 100


def test_sample_statistics_by_hand():
    # n = 20, diagonal 17; row sums 10, 10; column sums 9, 11
    assert overall_accuracy(SMALL) == pytest.approx(17 / 20)
    # p_e = (10 * 9 + 10 * 11) / 20^2 = 0.5; kappa = (0.85 - 0.5) / 0.5
    assert cohen_kappa(SMALL) == pytest.approx(0.7)
    np.testing.assert_allclose(users_accuracy(SMALL), [8 / 10, 9 / 10])
    np.testing.assert_allclose(producers_accuracy(SMALL), [8 / 9, 9 / 11])
    np.testing.assert_allclose(f1_scores(SMALL), [16 / 19, 18 / 21])
    np.testing.assert_allclose(iou_scores(SMALL), [8 / 11, 9 / 12])
    g = agreement(SMALL)
    assert g.n == 20
    assert g.mean_iou == pytest.approx((8 / 11 + 9 / 12) / 2)
    assert g.macro_f1 == pytest.approx((16 / 19 + 18 / 21) / 2)


def test_stratified_estimate_by_hand():
    s = stratified_estimate(SMALL, SMALL_AREA)
    # p_ij = W_i n_ij / n_i.
    np.testing.assert_allclose(s.proportions, [[0.24, 0.06], [0.07, 0.63]])
    assert s.overall_accuracy == pytest.approx(0.87)
    np.testing.assert_allclose(s.users_accuracy, [0.8, 0.9])
    np.testing.assert_allclose(s.producers_accuracy, [0.24 / 0.31, 0.63 / 0.69])
    # eq. 5: V(O) = 0.3^2 * 0.8 * 0.2 / 9 + 0.7^2 * 0.9 * 0.1 / 9 = 0.0065
    assert s.overall_accuracy_se == pytest.approx(math.sqrt(0.0065))
    # eq. 6
    np.testing.assert_allclose(s.users_accuracy_se, np.sqrt([0.16 / 9, 0.09 / 9]))
    # eq. 7 for class 1: N_1. = 30, N_2. = 70, P_1 = 24/31, N_.1 = 30 * 0.8 + 70 * 0.1 = 31
    # V = [30^2 (7/31)^2 0.8*0.2/9 + (24/31)^2 70^2 0.1*0.9/9] / 31^2 = (784 + 28224) / 961 / 961
    assert s.producers_accuracy_se[0] == pytest.approx(math.sqrt(29008 / 961**2))
    # eq. 9-11: p_.1 = 0.31; V(p_.1) = 0.3^2 0.8*0.2/9 + 0.7^2 0.1*0.9/9 = 0.0065
    np.testing.assert_allclose(s.area_proportion, [0.31, 0.69])
    np.testing.assert_allclose(s.area, [31.0, 69.0])
    np.testing.assert_allclose(s.area_se, [100 * math.sqrt(0.0065)] * 2)
    assert s.z == pytest.approx(1.959964, abs=1e-6)
    assert z_score(0.9) == pytest.approx(1.644854, abs=1e-6)


# ------------------------------------------------------------- Olofsson et al. (2014), section 5
# Error matrix of sample counts (their Table 8): rows = map, columns = reference, classes
# deforestation, forest gain, stable forest, stable non-forest; mapped areas in 30 m pixels
# (18,000 / 13,500 / 288,000 / 580,500 ha).
PAPER_N = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
PAPER_PIXELS = np.array([200_000, 150_000, 3_200_000, 6_450_000])
HA_PER_PIXEL = 0.09


def test_olofsson_2014_worked_example():
    s = stratified_estimate(PAPER_N, PAPER_PIXELS)
    # Table 9: estimated area proportions
    np.testing.assert_allclose(
        s.proportions,
        [
            [0.0176, 0.0000, 0.0013, 0.0011],
            [0.0000, 0.0110, 0.0016, 0.0024],
            [0.0019, 0.0000, 0.2967, 0.0213],
            [0.0040, 0.0020, 0.0179, 0.6212],
        ],
        atol=5e-5,
    )
    ci = lambda se: s.z * se  # noqa: E731
    # Overall accuracy 0.95 ± 0.02
    assert s.overall_accuracy == pytest.approx(0.95, abs=0.005)
    assert ci(s.overall_accuracy_se) == pytest.approx(0.02, abs=0.005)
    # User's accuracy 0.88 ± 0.07, 0.73 ± 0.10, 0.93 ± 0.04, 0.96 ± 0.02
    np.testing.assert_allclose(s.users_accuracy, [0.88, 0.73, 0.93, 0.96], atol=0.005)
    np.testing.assert_allclose(ci(s.users_accuracy_se), [0.07, 0.10, 0.04, 0.02], atol=0.005)
    # Producer's accuracy 0.75 ± 0.21, 0.85, 0.93 ± 0.03, 0.96
    np.testing.assert_allclose(s.producers_accuracy, [0.75, 0.85, 0.93, 0.96], atol=0.005)
    assert ci(s.producers_accuracy_se[0]) == pytest.approx(0.21, abs=0.005)
    assert ci(s.producers_accuracy_se[2]) == pytest.approx(0.03, abs=0.005)
    # The paper prints ± 0.23 and ± 0.01 for forest gain and stable non-forest, which eq. 7 does not give
    # (independent implementations report the same discrepancy); assert eq. 7 as computed by hand here:
    n, big_n = PAPER_N.astype(float), PAPER_PIXELS.astype(float)
    ni = n.sum(axis=1)
    r = n / ni[:, None]
    u, p = np.diag(r), s.producers_accuracy
    n_hat = (big_n[:, None] * r).sum(axis=0)
    for j in (1, 3):
        others = sum(big_n[i] ** 2 * r[i, j] * (1 - r[i, j]) / (ni[i] - 1) for i in range(4) if i != j)
        own = big_n[j] ** 2 * (1 - p[j]) ** 2 * u[j] * (1 - u[j]) / (ni[j] - 1)
        assert s.producers_accuracy_se[j] == pytest.approx(
            math.sqrt((own + p[j] ** 2 * others) / n_hat[j] ** 2)
        )
    assert ci(s.producers_accuracy_se[1]) == pytest.approx(0.254, abs=0.001)
    assert ci(s.producers_accuracy_se[3]) == pytest.approx(0.018, abs=0.001)
    # Areas: 21,158 ± 6,158 ha; 11,686 ± 3,756; 285,770 ± 15,510; 581,386 ± 16,282 (section 5)
    np.testing.assert_allclose(s.area * HA_PER_PIXEL, [21_158, 11_686, 285_770, 581_386], atol=1)
    np.testing.assert_allclose(ci(s.area_se) * HA_PER_PIXEL, [6_158, 3_756, 15_510, 16_282], atol=1)
    assert s.area.sum() == pytest.approx(PAPER_PIXELS.sum())


# --------------------------------------------------------------------------------------- edge cases


def test_unsampled_stratum_is_left_out_of_the_area():
    n = np.array([[5, 1, 0], [0, 4, 0], [0, 0, 0]])
    s = stratified_estimate(n, np.array([50.0, 30.0, 20.0]))
    assert s.sampled.tolist() == [True, True, False]
    assert s.unsampled_weight == pytest.approx(0.2)
    assert s.area.sum() == pytest.approx(80.0)
    assert math.isnan(s.users_accuracy[2])
    assert np.isfinite(s.area_se).all() and np.isfinite(s.overall_accuracy_se)


def test_single_unit_stratum_has_no_standard_error():
    n = np.array([[5, 1], [0, 1]])
    s = stratified_estimate(n, np.array([50.0, 50.0]))
    assert math.isnan(s.users_accuracy_se[1]) and math.isnan(s.overall_accuracy_se)
    assert np.isfinite(s.users_accuracy_se[0])
    assert s.overall_accuracy == pytest.approx(0.5 * 5 / 6 + 0.5)
    # a single-unit stratum with no mapped area contributes nothing, so nothing becomes undefined
    s0 = stratified_estimate(n, np.array([50.0, 0.0]))
    assert np.isfinite(s0.overall_accuracy_se) and np.isfinite(s0.area_se).all()


def test_undefined_sample_statistics_are_nan():
    n = np.array([[3, 0, 0], [2, 0, 0], [0, 0, 0]])
    assert math.isnan(users_accuracy(n)[2]) and math.isnan(producers_accuracy(n)[1])
    assert math.isnan(iou_scores(n)[2]) and iou_scores(n)[1] == 0.0
    assert math.isnan(cohen_kappa(np.array([[4, 0], [0, 0]])))
    assert math.isnan(overall_accuracy(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="square"):
        agreement(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        agreement(np.array([[1, -1], [0, 1]]))
    with pytest.raises(ValueError, match="no area"):
        stratified_estimate(np.eye(2), np.zeros(2))


def test_training_summary_uses_the_same_numbers():
    # train/metrics.py keeps its layout (rows = truth) and its zeros for undefined values
    cm = np.array([[8, 1], [2, 9]])  # truth rows: the transpose of SMALL
    out = summarize(cm, ["a", "b"])
    assert out["overall_accuracy"] == pytest.approx(0.85) and out["kappa"] == pytest.approx(0.7)
    assert out["per_class"]["a"] == pytest.approx(
        {"precision": 0.8, "recall": 8 / 9, "f1": 16 / 19, "support": 9}
    )
    empty = summarize(np.array([[3, 0], [0, 0]]), ["a", "b"])
    assert empty["kappa"] == 0.0 and empty["per_class"]["b"]["precision"] == 0.0
    assert empty["macro_f1"] == pytest.approx(1.0)  # class b absent from both: not averaged


def test_sample_statistics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 5, 400)
    pred = np.where(rng.random(400) < 0.6, ref, rng.integers(0, 5, 400))
    n = np.zeros((5, 5), int)
    np.add.at(n, (pred, ref), 1)
    g = agreement(n)
    assert g.kappa == pytest.approx(metrics.cohen_kappa_score(ref, pred))
    prec, rec, f1, _ = metrics.precision_recall_fscore_support(ref, pred, labels=range(5), zero_division=0)
    np.testing.assert_allclose(g.users_accuracy, prec)
    np.testing.assert_allclose(g.producers_accuracy, rec)
    np.testing.assert_allclose(g.f1, f1)
    np.testing.assert_allclose(g.iou, metrics.jaccard_score(ref, pred, labels=range(5), average=None))


# --------------------------------------------------------------------------------------- properties

counts = st.integers(2, 5).flatmap(lambda k: arrays(np.int64, (k, k), elements=st.integers(0, 40)))


def _areas(k: int) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float64, (k,), elements=st.floats(1.0, 1e6))


@settings(max_examples=60, deadline=None)
@given(diag=arrays(np.int64, st.integers(2, 6), elements=st.integers(2, 50)), data=st.data())
def test_a_perfect_map_is_perfect(diag, data):
    n = np.diag(diag)
    g = agreement(n)
    assert g.overall_accuracy == 1.0 and g.kappa == pytest.approx(1.0)
    assert (g.users_accuracy == 1).all() and (g.producers_accuracy == 1).all() and g.mean_iou == 1.0
    area = data.draw(_areas(len(diag)))
    s = stratified_estimate(n, area)
    assert s.overall_accuracy == pytest.approx(1.0) and s.overall_accuracy_se == 0.0
    np.testing.assert_allclose(s.area, area)  # the map's areas are the estimates
    assert (s.area_se == 0).all()


@settings(max_examples=60, deadline=None)
@given(n=counts, data=st.data())
def test_permuting_classes_permutes_every_output(n, data):
    k = n.shape[0]
    n = n + np.eye(k, dtype=np.int64) * 2  # every stratum sampled at least twice
    area = data.draw(_areas(k))
    perm = np.array(data.draw(st.permutations(range(k))))
    g, gp = agreement(n), agreement(n[np.ix_(perm, perm)])
    s, sp = stratified_estimate(n, area), stratified_estimate(n[np.ix_(perm, perm)], area[perm])
    assert gp.overall_accuracy == pytest.approx(g.overall_accuracy)
    assert gp.kappa == pytest.approx(g.kappa, nan_ok=True)
    for name in ("users_accuracy", "producers_accuracy", "f1", "iou"):
        np.testing.assert_allclose(getattr(gp, name), getattr(g, name)[perm])
    assert sp.overall_accuracy == pytest.approx(s.overall_accuracy)
    for name in ("users_accuracy", "producers_accuracy", "area", "area_se", "producers_accuracy_se"):
        np.testing.assert_allclose(getattr(sp, name), getattr(s, name)[perm], rtol=1e-9, atol=1e-12)


@settings(max_examples=80, deadline=None)
@given(n=counts, data=st.data())
def test_area_estimates_sum_to_the_mapped_area(n, data):
    k = n.shape[0]
    n = n + np.eye(k, dtype=np.int64)  # every stratum sampled
    area = data.draw(_areas(k))
    s = stratified_estimate(n, area)
    assert s.area.sum() == pytest.approx(area.sum(), rel=1e-9)
    assert s.proportions.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(s.proportions.sum(axis=1), area / area.sum())


@settings(max_examples=60, deadline=None)
@given(n=counts, factor=st.integers(2, 10), data=st.data())
def test_intervals_shrink_with_more_samples(n, factor, data):
    k = n.shape[0]
    n = n + np.eye(k, dtype=np.int64) * 2
    area = data.draw(_areas(k))
    s, big = stratified_estimate(n, area), stratified_estimate(n * factor, area)
    # same proportions in every stratum: same estimates, smaller standard errors
    np.testing.assert_allclose(big.area, s.area)
    assert big.overall_accuracy == pytest.approx(s.overall_accuracy)
    assert (big.area_se <= s.area_se + 1e-9).all()
    assert big.overall_accuracy_se <= s.overall_accuracy_se + 1e-12
    if s.overall_accuracy_se > 0:
        assert big.overall_accuracy_se < s.overall_accuracy_se


@settings(max_examples=60, deadline=None)
@given(n=counts)
def test_proportional_allocation_gives_the_sample_statistics(n):
    # With W_i = n_i. / n the area-weighted estimator reduces to the sample statistics.
    rows = n.sum(axis=1)
    assume((rows > 0).all())
    s, g = stratified_estimate(n, rows.astype(float)), agreement(n)
    assert s.overall_accuracy == pytest.approx(g.overall_accuracy)
    np.testing.assert_allclose(s.users_accuracy, g.users_accuracy)
    np.testing.assert_allclose(s.producers_accuracy, g.producers_accuracy)
    np.testing.assert_allclose(s.area, n.sum(axis=0))
