"""Temperature scaling and the expected calibration error (geosam.calibration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geosam.calibration import (
    cross_fitted_calibration,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    softmax,
)


def sampled(n: int, k: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / temperature): calibrated at exactly that T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, k))
    p = softmax(logits, temperature)
    labels = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, np.minimum(labels, k - 1)


def test_ece_by_hand():
    # 4 samples, 15 bins. Confidences 0.95 (correct), 0.95 (wrong), 0.55 (correct), 0.30 (wrong).
    probs = np.array(
        [[0.95, 0.05, 0.0], [0.95, 0.05, 0.0], [0.45, 0.55, 0.0], [0.3, 0.3, 0.4]], dtype=np.float64
    )
    labels = np.array([0, 1, 1, 0])
    # bins: 0.95 -> (14/15, 1]: acc 0.5, conf 0.95 -> |0.45| * 2/4
    #       0.55 -> (8/15, 9/15]: acc 1, conf 0.55 -> 0.45 * 1/4
    #       0.40 -> (5/15, 6/15]: acc 0, conf 0.40 -> 0.40 * 1/4 (argmax is class 2; 0.4 = 6/15)
    want = 0.45 * 0.5 + 0.45 * 0.25 + 0.40 * 0.25
    assert expected_calibration_error(probs, labels) == pytest.approx(want)
    b = reliability_bins(probs, labels)
    assert b["count"].sum() == 4 and b["count"][14] == 2 and b["count"][8] == 1 and b["count"][5] == 1


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(2, 12),
    seed=st.integers(0, 2**31 - 1),
    bins=st.sampled_from([5, 10, 15, 20]),
)
def test_ece_equals_torchmetrics(n, k, seed, bins):
    from torchmetrics.functional.classification import multiclass_calibration_error

    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(0, 2.5, (n, k)))
    labels = rng.integers(0, k, n)
    want = multiclass_calibration_error(
        torch.from_numpy(probs).float(), torch.from_numpy(labels), num_classes=k, n_bins=bins, norm="l1"
    )
    assert expected_calibration_error(probs, labels, bins) == pytest.approx(float(want), abs=2e-6)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_generating_temperature(true_t):
    logits, labels = sampled(20000, 6, true_t, seed=1)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.06)
    # the fit is the NLL minimum: nudging T either way is worse
    nll = negative_log_likelihood(logits, labels, t)
    assert nll <= negative_log_likelihood(logits, labels, t * 1.05)
    assert nll <= negative_log_likelihood(logits, labels, t / 1.05)


def test_nll_matches_torch_cross_entropy():
    logits, labels = sampled(500, 5, 1.0, seed=2)
    want = torch.nn.functional.cross_entropy(torch.from_numpy(logits / 1.7), torch.from_numpy(labels))
    assert negative_log_likelihood(logits, labels, 1.7) == pytest.approx(float(want), rel=1e-9)


def test_cross_fitted_calibration_fixes_overconfidence_without_seeing_the_fold():
    # logits 3x too large: an over-confident model (true T = 3)
    logits, labels = sampled(6000, 10, 3.0, seed=3)
    cf = cross_fitted_calibration(logits, labels, folds=2, seed=0)
    assert cf.temperature == pytest.approx(3.0, rel=0.1)
    assert cf.ece_before > 0.1 and cf.ece_after < 0.03
    assert cf.nll_after < cf.nll_before
    assert cf.accuracy == pytest.approx(np.mean(logits.argmax(1) == labels))
    # each fold's probabilities come from the temperature fitted on the other fold
    assert len(cf.fold_temperatures) == 2
    for t in cf.fold_temperatures:
        rows = np.flatnonzero(np.isclose(cf.probs_after, softmax(logits, t)).all(axis=1))
        assert 2000 < len(rows) < 4000  # about half of the samples each
        assert t != pytest.approx(fit_temperature(logits[rows], labels[rows]), rel=1e-6)
    # temperature scaling never changes a prediction
    assert np.array_equal(cf.probs_after.argmax(1), logits.argmax(1))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError):
        expected_calibration_error(np.zeros((2, 3)), np.zeros(3, int))
    with pytest.raises(ValueError):
        cross_fitted_calibration(np.zeros((1, 3)), np.zeros(1, int), folds=2)
