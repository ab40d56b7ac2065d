"""Domain (out-of-distribution) statistics and scores (geosam.domain)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from geosam.domain import DomainStats, chip_features, fit_domain, ledoit_wolf, load_domain
from geosam.domain_check import scene_report
from geosam.errors import BundleError


def gaussian_classes(n_per_class: int, d: int = 8, k: int = 3, seed: int = 0, noise_seed: int = 100):
    """Samples of ``k`` Gaussian classes (parameters from ``seed``, draws from ``noise_seed``)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + np.eye(d) * 0.1
    means = rng.normal(0, 5, (k, d))
    chol = np.linalg.cholesky(cov)
    y = np.repeat(np.arange(k), n_per_class)
    x = means[y] + np.random.default_rng(noise_seed).normal(size=(len(y), d)) @ chol.T
    return x, y, means, cov


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 60), d=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_ledoit_wolf_equals_scikit_learn(n, d, seed):
    from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

    x = np.random.default_rng(seed).normal(size=(n, d)) * np.linspace(0.5, 3, d)
    np.testing.assert_allclose(ledoit_wolf(x), sk_ledoit_wolf(x, assume_centered=True)[0], atol=1e-10)


def test_score_is_the_mahalanobis_distance_to_the_closest_class():
    x, y, _, _ = gaussian_classes(4000)
    stats = fit_domain(x, y)
    means = np.stack([x[y == c].mean(0) for c in range(3)])
    centred = x - means[y]
    cov = ledoit_wolf(centred)
    cov[np.diag_indices_from(cov)] += 1e-6 * np.trace(cov) / cov.shape[0] + 1e-12
    inv = np.linalg.inv(cov)
    q = np.random.default_rng(5).normal(0, 6, (50, 8))
    want = np.min([np.einsum("nd,de,ne->n", q - m, inv, q - m) for m in means], axis=0) / 8
    np.testing.assert_allclose(stats.score(q), want, rtol=1e-8)
    # in-distribution samples score about 1 (chi-square with D degrees of freedom, divided by D)
    assert np.mean(stats.score(x)) == pytest.approx(1.0, abs=0.05)


def test_threshold_separates_shifted_data_and_a_scene_verdict():
    x, y, _, _ = gaussian_classes(3000)
    held, _, _, _ = gaussian_classes(500, noise_seed=7)  # the same distribution, other draws
    stats = fit_domain(x, y).with_threshold(held)
    assert stats.quantile == 0.95
    assert np.mean(stats.score(held) > stats.threshold) == pytest.approx(0.05, abs=0.01)
    inside = scene_report(stats.score(held[:300]), stats)
    assert not inside.out_of_domain and inside.share_out < 0.15
    shifted = held + 4.0  # another sensor: every feature offset
    outside = scene_report(stats.score(shifted), stats)
    assert outside.out_of_domain and outside.share_out > 0.9 and outside.ratio > 1
    msg = outside.warning("scene.tif", "geosam-default")
    assert "scene.tif" in msg and f"{outside.median_score:.2f}" in msg and "geosam train" in msg
    assert outside.to_dict()["out_of_domain"] is True and "WARNING" in outside.note()
    assert scene_report(np.array([]), stats).out_of_domain is False
    assert inside.verdict == "in_domain" and outside.verdict == "out_of_domain"


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 2000),
    frac=st.floats(0, 1),
    scene_share=st.floats(0.3, 0.9),
    partly_share=st.floats(0.05, 0.29),
)
def test_scene_verdict_follows_the_shares_and_the_minimum_count(n, frac, scene_share, partly_share):
    """out: more than scene_share of the chips above; partly: at least partly_share and MIN_CHIPS_OUT."""
    from geosam.domain import MIN_CHIPS_OUT

    stats = DomainStats(np.zeros((1, 2)), np.eye(2), 1.0, 0.95, scene_share, partly_share)
    k = round(frac * n)
    scores = np.r_[np.full(k, 2.0), np.full(n - k, 0.5)]  # k chips above the threshold 1.0
    rep = scene_report(scores, stats)
    assert rep.n_chips == n and rep.n_out == k
    out = n > 0 and k / n > scene_share and k >= MIN_CHIPS_OUT
    partly = not out and n > 0 and k / n >= partly_share and k >= MIN_CHIPS_OUT
    assert rep.out_of_domain is out and rep.partly_out_of_domain is partly
    assert rep.verdict == ("out_of_domain" if out else "partly_out_of_domain" if partly else "in_domain")
    entry = rep.to_dict()
    assert entry["verdict"] == rep.verdict and entry["partly_out_of_domain"] is partly
    if rep.verdict != "in_domain":
        assert "WARNING" in rep.note() and ("partly" in rep.warning("s.tif", "m")) is partly
    elif 0 < n < MIN_CHIPS_OUT:
        assert "too few to judge" in rep.note()
    assert rep.too_few_chips is (n < MIN_CHIPS_OUT)


def test_fit_is_well_conditioned_with_fewer_samples_than_dimensions():
    x, y, _, _ = gaussian_classes(5, d=64)  # 15 samples, 64 dimensions
    stats = fit_domain(x, y)
    s = stats.score(x)
    assert np.all(np.isfinite(s)) and s.max() < 50


def test_chip_features_pool_each_chip_over_its_valid_cells():
    grid, k, c = 2, 3, 4  # 3 x 3 chips of 2 x 2 cells, 4 channels; 4 pixels per cell
    f = np.zeros((c, k * grid, k * grid))
    for i in range(k):
        for j in range(k):
            f[:, i * grid : (i + 1) * grid, j * grid : (j + 1) * grid] = 10 * i + j
    f[0, 0, 0] = 100.0  # one cell of chip (0, 0), channel 0
    valid = np.ones((k * grid * 4, k * grid * 4), bool)
    valid[:8, 8:16] = False  # chip (0, 1) entirely invalid
    valid[:4, :4] = False  # the cell holding 100 is invalid: chip (0, 0) is 3/4 valid
    out = chip_features(f, valid, grid)
    assert out.shape == (8, c)  # chip (0, 1) dropped
    assert out[0, 0] == pytest.approx(0.0)  # the invalid cell's 100 is not pooled
    expected = [10 * i + j for i in range(k) for j in range(k) if (i, j) != (0, 1)]
    np.testing.assert_allclose(out[:, 1], expected)


@settings(max_examples=60, deadline=None)
@given(
    chip=st.integers(5, 30),
    grid=st.sampled_from([4, 8, 12]),
    k=st.integers(1, 6),
    rows=st.integers(0, 6),
    cols=st.integers(0, 6),
)
def test_chip_features_keep_the_valid_chips_for_any_cell_size(chip, grid, k, rows, cols):
    """Chips of any pixel size, cells of a non-integer number of pixels (22 px chips at 12 cells:
    1.83 px): exactly the chips inside the valid block are kept, and each pools its own features.
    A chip has at least ``grid`` pixels per side (geosam.chip_grid's rule), so every cell has a pixel."""
    assume(chip >= grid)
    rows, cols = min(rows, k), min(cols, k)
    f = np.zeros((2, k * grid, k * grid))
    for i in range(k):
        for j in range(k):
            f[:, i * grid : (i + 1) * grid, j * grid : (j + 1) * grid] = 100 * i + j
    valid = np.zeros((k * chip, k * chip), bool)
    valid[: rows * chip, : cols * chip] = True  # the top-left rows x cols chips; padding elsewhere
    out = chip_features(f, valid, grid)
    expected = [100 * i + j for i in range(rows) for j in range(cols)]
    assert out.shape == (len(expected), 2)
    np.testing.assert_allclose(out[:, 0], expected)


def test_chip_features_accept_torch():
    torch = pytest.importorskip("torch")
    f = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    out = chip_features(f, np.ones((16, 16), bool), grid=2)
    np.testing.assert_allclose(out[0], f[:, :2, :2].mean(dim=(1, 2)).numpy())


def test_domain_file_round_trip_and_tamper_check(tmp_path):
    x, y, _, _ = gaussian_classes(200)
    stats = fit_domain(x, y).with_threshold(x[:100])
    meta = stats.meta(n_fit=600, n_threshold=100, fitted_on="synthetic")
    (tmp_path / meta.file).write_bytes(stats.to_bytes())
    assert meta.sha256 == hashlib.sha256(stats.to_bytes()).hexdigest()
    back = load_domain(tmp_path, meta)
    np.testing.assert_allclose(back.score(x[:20]), stats.score(x[:20]), rtol=1e-5)
    assert back.threshold == stats.threshold
    (tmp_path / meta.file).write_bytes(stats.to_bytes()[:-1] + b" ")
    with pytest.raises(BundleError, match="sha256"):
        load_domain(tmp_path, meta)
    (tmp_path / meta.file).unlink()
    with pytest.raises(BundleError, match="geosam calibrate"):
        load_domain(tmp_path, meta)


def test_score_rejects_wrong_width():
    stats = DomainStats(np.zeros((2, 3)), np.eye(3))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        stats.score(np.zeros((4, 5)))
