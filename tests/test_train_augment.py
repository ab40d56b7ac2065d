"""Sensor augmentations (geosam.train.augment) and the training options that go with them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from geosam.errors import DataError
from geosam.models.bundle import load_bundle
from geosam.train.augment import SensorAugment, radiometric_jitter, resolution_loss
from geosam.train.config import TrainConfig
from geosam.train.data import ChipData, stratified_split
from geosam.train.engine import train


def chips(n=16, bands=3, size=32, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, bands, size, size)).astype(np.float32))


def test_off_is_identity_and_every_option_keeps_shape_dtype_and_range():
    x = chips(bands=13)
    assert SensorAugment()(x, np.random.default_rng(0)) is x
    for aug in (SensorAugment(scale=1), SensorAugment(radiometry=1), SensorAugment(blur=1)):
        y = aug(x, np.random.default_rng(0))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0 and float(y.max()) <= 1
        assert not torch.equal(y, x)


def test_same_generator_state_same_augmentation_and_global_torch_rng_untouched():
    x = chips()
    aug = SensorAugment(0.5, 0.5, 0.5)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = aug(x, np.random.default_rng(7))
    assert torch.equal(torch.random.get_rng_state(), before)
    b = aug(x, np.random.default_rng(7))
    c = aug(x, np.random.default_rng(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_probabilities_are_per_chip():
    x = chips(n=400, size=16)
    y = SensorAugment(radiometry=0.3)(x, np.random.default_rng(1))
    changed = (y - x).abs().flatten(1).amax(1) > 1e-6
    assert 0.2 < float(changed.float().mean()) < 0.4


def test_resolution_loss_keeps_constants_and_removes_detail():
    const = torch.full((2, 3, 32, 32), 0.4)
    assert torch.allclose(resolution_loss(const, torch.tensor([2.0, 1.5])), const, atol=1e-6)
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float().expand(1, 1, 32, 32)
    out = resolution_loss(checker, torch.tensor([2.0]))
    assert float(out.std()) < 0.05 * float(checker.std())  # a 1 px checkerboard is gone at half resolution
    assert torch.equal(resolution_loss(checker, torch.tensor([1.0])), checker)


def test_radiometric_jitter_is_gain_gamma_offset_per_band():
    x = torch.full((1, 2, 4, 4), 0.5)
    gen = torch.Generator().manual_seed(0)
    y = radiometric_jitter(x, gen, gain=(2.0, 2.0), offset=0.0, gamma=(1.0, 1.0))
    assert torch.allclose(y, torch.ones_like(y))  # 2 * 0.5, clipped at 1
    y = radiometric_jitter(x, gen, gain=(1.0, 1.0), offset=0.0, gamma=(2.0, 2.0))
    assert torch.allclose(y, torch.full_like(y, 0.25))
    y = radiometric_jitter(torch.full((64, 3, 2, 2), 0.5), gen)
    per_band = y[:, :, 0, 0]
    assert float((per_band[:, 0] - per_band[:, 1]).abs().max()) > 0.01  # bands differ
    lo = 0.8 * 0.5 ** (1 / 0.7) - 0.05 - 1e-6
    hi = 1.25 * 0.5**0.7 + 0.05 + 1e-6
    assert float(y.min()) >= lo and float(y.max()) <= hi


def test_invalid_probability():
    with pytest.raises(ValueError):
        SensorAugment(scale=1.5)


def two_class_chips(n=16, size=32, seed=0) -> ChipData:
    rng = np.random.default_rng(seed)
    images = np.concatenate(
        [rng.integers(150, 255, (n, 3, size, size)), rng.integers(0, 100, (n, 3, size, size))]
    ).astype(np.uint8)
    return ChipData(
        images,
        np.array([0] * n + [1] * n),
        ("bright", "dark"),
        ("red", "green", "blue"),
        np.zeros(3),
        np.full(3, 255.0),
        provenance={"source": "synthetic"},
    )


def tiny_cfg(tmp_path, name, **kw):
    base = {
        "backbone": "tiny",
        "input_size": 32,
        "epochs": 2,
        "batch_size": 8,
        "warmup_steps": 1,
        "patience": 0,
        "threads": 1,
        "out": tmp_path / name,
    }
    return TrainConfig(**{**base, **kw})


def test_sensor_augment_ema_keep_last_and_init_from(tmp_path):
    data = two_class_chips()
    cfg = tiny_cfg(
        tmp_path,
        "a",
        augment_scale=0.5,
        augment_radiometry=0.5,
        augment_blur=0.5,
        ema_decay=0.9,
        keep="last",
        epochs=3,
    )
    res = train(cfg, data)
    assert res.meta.training["best_epoch"] == 3  # keep="last": no choice on the validation split
    assert res.metrics["overall_accuracy"] >= 0.75
    # init_from: the new run starts from the bundle's weights (lr ~ 0: they barely move)
    res2 = train(
        cfg.model_copy(update={"out": tmp_path / "b", "init_from": tmp_path / "a", "lr": 1e-9}), data
    )
    a, b = load_bundle(tmp_path / "a").model, load_bundle(tmp_path / "b").model
    wa, wb = a.head.net[-1].weight, b.head.net[-1].weight
    assert torch.allclose(wa, wb, atol=1e-3)
    assert res2.metrics["overall_accuracy"] == pytest.approx(res.metrics["overall_accuracy"], abs=0.1)
    # a bundle with other classes cannot be the start
    other = ChipData(**{**data.__dict__, "classes": ("x", "y")})
    with pytest.raises(DataError, match="init_from bundle has classes"):
        train(cfg.model_copy(update={"out": tmp_path / "c", "init_from": tmp_path / "a"}), other)


def test_ema_state_survives_resume(tmp_path):
    data = two_class_chips(n=8)
    cfg = tiny_cfg(tmp_path, "r", ema_decay=0.5, epochs=1)
    train(cfg, data)
    ck = torch.load(tmp_path / "r.work" / "last.pt", weights_only=True)
    n_train = len(stratified_split(data.labels, cfg.val_fraction, cfg.seed)[0])
    assert int(ck["ema"]["n_averaged"]) == n_train // cfg.batch_size  # one update per step
    res = train(cfg.model_copy(update={"epochs": 2, "resume": True}), data)
    assert [h["epoch"] for h in res.history] == [1, 2]
    meta = json.loads((tmp_path / "r" / "model.json").read_text())
    assert meta["training"]["config"]["ema_decay"] == 0.5
    assert math.isclose(meta["calibration"]["temperature"], res.meta.calibration.temperature)


def test_ema_warmup_follows_the_weights_in_a_short_run():
    from geosam.train.averaging import weight_average as _ema

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    plain, warm = _ema(model, 0.999, warmup=False), _ema(model, 0.999, warmup=True)
    assert plain is not None and warm is not None
    plain.update_parameters(model)
    warm.update_parameters(model)  # first update copies the weights (0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(20):
        plain.update_parameters(model)
        warm.update_parameters(model)
    # constant decay: 1 - 0.999 ** 20 = 0.0198 of the way; warm-up: decays (1+n)/(10+n) for n = 1..20
    assert float(plain.module.weight[0, 0]) == pytest.approx(1 - 0.999**20, rel=1e-4)
    want = 1 - np.prod([(1 + n) / (10 + n) for n in range(1, 21)])
    assert float(warm.module.weight[0, 0]) == pytest.approx(want, rel=1e-4)
    assert want > 0.9


def test_init_from_at_another_input_size_interpolates_the_position_tables(tmp_path):
    """A bundle trained at 32 px starts a 64 px run: same head, position tables resized (FixRes-style)."""
    from geosam.models.sam import resize_encoder_state
    from geosam.models.sam_config import SamConfig

    data = two_class_chips()
    cfg = tiny_cfg(tmp_path, "a", epochs=1)
    train(cfg, data)
    res = train(
        cfg.model_copy(
            update={"out": tmp_path / "b", "init_from": tmp_path / "a", "input_size": 64, "lr": 1e-9}
        ),
        data,
    )
    a, b = load_bundle(tmp_path / "a").model, load_bundle(tmp_path / "b").model
    ga, gb = a.encoder.pos_embed.shape[1], b.encoder.pos_embed.shape[1]
    assert res.meta.input_size == 64 and gb == 2 * ga
    assert torch.allclose(a.head.net[-1].weight, b.head.net[-1].weight, atol=1e-3)
    resized = resize_encoder_state(
        a.encoder.state_dict(), SamConfig.from_dict(dict(res.meta.encoder.config)), prefix=""
    )
    assert torch.allclose(resized["pos_embed"], b.encoder.pos_embed, atol=1e-3)


def test_bf16_training_is_recorded_learns_and_differs_from_fp32(tmp_path):
    data = two_class_chips()
    fp32 = train(tiny_cfg(tmp_path, "fp32", epochs=3), data)
    bf16 = train(tiny_cfg(tmp_path, "bf16", epochs=3, precision="bf16"), data)
    assert bf16.meta.training["config"]["precision"] == "bf16"
    assert bf16.metrics["overall_accuracy"] >= 0.75
    wa = load_bundle(tmp_path / "fp32").model.head.net[-1].weight
    wb = load_bundle(tmp_path / "bf16").model.head.net[-1].weight
    assert wb.dtype == torch.float32 and not torch.equal(wa, wb)  # bf16 arithmetic, float32 weights
    assert fp32.metrics["overall_accuracy"] >= 0.75


def test_init_from_continues_at_the_bundle_input_size_and_refuses_other_folders(tmp_path):
    """`--init-from geosam/data/default_model` (96 px input, 64 px chips) works without --input-size."""
    data = two_class_chips()  # 32 px chips
    train(tiny_cfg(tmp_path, "a", epochs=1, input_size=64), data)
    cfg = tiny_cfg(tmp_path, "b", epochs=1, input_size=None, init_from=tmp_path / "a")
    res = train(cfg, data)
    assert res.meta.input_size == 64 and res.meta.chip_size == 32
    (tmp_path / "not_a_bundle").mkdir()
    for bad in (tmp_path / "not_a_bundle", tmp_path / "missing"):
        with pytest.raises(DataError, match="init_from is not a geosam model bundle") as err:
            train(cfg.model_copy(update={"out": tmp_path / "c", "init_from": bad}), data)
        assert "--model" not in str(err.value) and "\n" not in str(err.value)


def test_a_temperature_that_worsens_held_out_predictions_is_not_applied(tmp_path, monkeypatch, caplog):
    """Cross-fitted NLL rose (few validation chips): the bundle keeps temperature 1 and says why."""
    import dataclasses

    from geosam.train import calibrate

    real = calibrate.cross_fitted_calibration

    def worse(*args, **kwargs):
        cf = real(*args, **kwargs)
        return dataclasses.replace(cf, nll_after=cf.nll_before + 0.5)

    monkeypatch.setattr(calibrate, "cross_fitted_calibration", worse)
    res = train(tiny_cfg(tmp_path, "t", epochs=1), two_class_chips())
    assert res.meta.calibration.temperature == 1.0
    assert "not applied" in res.meta.calibration.fitted_on
    assert any("so it is not applied (temperature 1)" in r.message for r in caplog.records)
    assert load_bundle(tmp_path / "t").model.head.temperature == pytest.approx(1.0)
