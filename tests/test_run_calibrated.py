"""Calibrated probabilities and the domain check in a run, and `geosam calibrate` on an existing bundle."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import torch

from geosam.calibration import CalibrationMeta
from geosam.cli.main import main
from geosam.config import RunConfig
from geosam.domain import DOMAIN_FILE, fit_domain
from geosam.models.bundle import META_FILE, load_bundle, read_bundle_meta
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing import make_raster
from geosam.testing_chips import write_chip_folder
from geosam.testing_models import make_tiny_bundle

CLASSES = ("water", "forest", "field")


def striped_scene(path: Path, seed: int, size: int = 256) -> Path:
    """A uint8 scene of horizontal stripes of three colours with mild noise (the 'training' imagery)."""
    rng = np.random.default_rng(seed)
    colours = np.array([[40, 60, 150], [30, 110, 40], [170, 150, 70]], np.float64)
    rows = (np.arange(size) // 32) % 3
    img = colours[rows].T[:, :, None].repeat(size, axis=2) + rng.normal(0, 6, (3, size, size))
    return make_raster(path, size, size, count=3, dtype="uint8", fill=np.clip(img, 0, 255).astype(np.uint8))


def noise_scene(path: Path, size: int = 256) -> Path:
    """Saturated per-pixel colour noise: nothing like the stripes."""
    img = np.random.default_rng(3).integers(0, 256, (3, size, size)).astype(np.uint8)
    return make_raster(path, size, size, count=3, dtype="uint8", fill=img)


def partly_noise_scene(path: Path, size: int = 256, noise_px: int = 96) -> Path:
    """The striped imagery with its right ``noise_px`` columns replaced by the noise scene's pixels."""
    rng = np.random.default_rng(5)
    colours = np.array([[40, 60, 150], [30, 110, 40], [170, 150, 70]], np.float64)
    rows = (np.arange(size) // 32) % 3
    img = colours[rows].T[:, :, None].repeat(size, axis=2) + rng.normal(0, 6, (3, size, size))
    img[:, :, size - noise_px :] = np.random.default_rng(3).integers(0, 256, (3, size, noise_px))
    return make_raster(path, size, size, count=3, dtype="uint8", fill=np.clip(img, 0, 255).astype(np.uint8))


def scene_chip_features(model, path: Path, stride: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of the scene's 32 px chips at every ``stride`` px (value / 255, as the run reads
    uint8), labelled by the stripe under their centre: training chips that cover every chip position."""
    import rasterio

    with rasterio.open(path) as ds:
        img = ds.read().astype(np.float32) / 255.0
    starts = range(0, img.shape[-1] - 32 + 1, stride)
    chips = np.stack([img[:, r : r + 32, c : c + 32] for r in starts for c in starts])
    labels = np.array([((r + 16) // 32) % 3 for r in starts for c in starts])
    with torch.no_grad():
        f = model.features(torch.from_numpy(chips)).mean(dim=(2, 3)).double().numpy()
    return f, labels


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny bundle given a temperature of 2 and domain statistics of the striped imagery."""
    d = tmp_path_factory.mktemp("cal")
    bundle = make_tiny_bundle(d / "bundle", classes=CLASSES, input_size=32, tile_size=128)
    model = load_bundle(bundle).model
    fit_f, fit_y = scene_chip_features(model, striped_scene(d / "fit.tif", seed=1))
    held_f, _ = scene_chip_features(model, striped_scene(d / "held.tif", seed=2))
    stats = fit_domain(fit_f, fit_y, 3).with_threshold(held_f)
    meta = read_bundle_meta(bundle)
    meta = meta.model_copy(
        update={
            "calibration": CalibrationMeta(temperature=2.0, fitted_on="test"),
            "domain": stats.meta(len(fit_f), len(held_f), "striped test scenes"),
        }
    )
    (bundle / META_FILE).write_text(json.dumps(meta.model_dump(), indent=2))
    (bundle / DOMAIN_FILE).write_bytes(stats.to_bytes())
    return d, bundle


def test_loaded_head_divides_logits_by_the_bundle_temperature(calibrated):
    _, bundle = calibrated
    head = load_bundle(bundle).model.head
    assert float(head.temperature) == 2.0 and "temperature" not in head.state_dict()
    x = torch.randn(5, head.in_dim)
    with torch.no_grad():
        assert torch.allclose(head(x), head.net(x) / 2.0)


def run(bundle: Path, scene: Path, out: Path) -> dict:
    cfg = RunConfig.model_validate(
        {
            "tiling": {"tile_size": 128, "halo": 16},
            "segment": {"source": "tiles"},
            "normalize": {"method": "dtype"},
        }
    )
    res = predict_scene(scene, out, load_models(bundle, None, cfg), cfg)
    return {"res": res, "record": json.loads(res.outputs["record"].read_text())}


def test_in_domain_scene_no_warning(calibrated, caplog):
    d, bundle = calibrated
    with caplog.at_level(logging.WARNING, logger="geosam"):
        r = run(bundle, striped_scene(d / "inside.tif", seed=5), d / "out_in")
    dom = r["record"]["domain"]
    assert dom["out_of_domain"] is False and dom["chips"] > 0 and dom["share_out"] < 0.25
    assert dom["partly_out_of_domain"] is False and dom["verdict"] == "in_domain"
    assert not [m for m in caplog.messages if "unlike the training data" in m]
    tiles = gpd.read_file(r["res"].outputs["tiles_gpkg"])
    assert tiles["domain_ratio"].notna().all()
    qgs = r["res"].outputs["qgis_project"].read_text()
    assert "resembles the model's training data" in qgs and "WARNING" not in qgs


def test_out_of_domain_scene_warns_once_and_says_so_everywhere(calibrated, caplog):
    d, bundle = calibrated
    with caplog.at_level(logging.WARNING, logger="geosam"):
        r = run(bundle, noise_scene(d / "noise.tif"), d / "out_noise")
    warnings = [m for m in caplog.messages if "unlike the training data" in m]
    assert len(warnings) == 1
    dom = r["record"]["domain"]
    assert dom["out_of_domain"] is True and dom["share_out"] > 0.5 and dom["ratio"] > 1
    assert f"{dom['median_score']:.2f}" in warnings[0] and "geosam train" in warnings[0]
    tiles = gpd.read_file(r["res"].outputs["tiles_gpkg"])
    assert (tiles["domain_ratio"] > 1).mean() > 0.5
    qgs = r["res"].outputs["qgis_project"].read_text()
    assert "WARNING: unlike the model's training data" in qgs and "<abstract>WARNING" in qgs
    from geosam.stac import scene_item

    item = scene_item(r["res"].outputs["record"])
    assert item.properties["geosam:out_of_domain"] is True
    assert item.properties["geosam:domain"]["share_out"] == dom["share_out"]


def test_partly_out_of_domain_scene_warns_and_says_where(calibrated, caplog):
    """A third of the scene unlike the training data: not out of domain, but one WARNING all the same."""
    d, bundle = calibrated
    with caplog.at_level(logging.WARNING, logger="geosam"):
        r = run(bundle, partly_noise_scene(d / "partly.tif"), d / "out_partly")
    warnings = [m for m in caplog.messages if "unlike the training data" in m]
    assert len(warnings) == 1 and "partly unlike" in warnings[0] and "domain_share_out" in warnings[0]
    dom = r["record"]["domain"]
    assert 0.25 <= dom["share_out"] <= 0.5, dom
    assert dom["out_of_domain"] is False and dom["partly_out_of_domain"] is True
    assert dom["verdict"] == "partly_out_of_domain" and f"{100 * dom['share_out']:.0f} %" in warnings[0]
    tiles = gpd.read_file(r["res"].outputs["tiles_gpkg"])
    ratios = tiles["domain_ratio"].to_numpy()
    assert ratios.max() > 1 > ratios.min()  # the tiles layer shows where
    # the share per tile follows the noise: none on the left, all on the right, and the middle tiles,
    # partly noisy, show it although their median chip (domain_ratio) looks in domain
    share, col = tiles["domain_share_out"].to_numpy(), tiles["col"].to_numpy()
    assert (share[col == col.min()] == 0).all() and (share[col == col.max()] == 1).all()
    middle = (col != col.min()) & (col != col.max())
    assert middle.any() and (share[middle] > 0).any() and (ratios[middle][share[middle] > 0] < 1).all()
    qgs = r["res"].outputs["qgis_project"].read_text()
    assert "WARNING: partly unlike the model's training data" in qgs
    from geosam.stac import scene_item

    item = scene_item(r["res"].outputs["record"])
    assert item.properties["geosam:out_of_domain"] is False
    assert item.properties["geosam:partly_out_of_domain"] is True


def test_calibrated_probabilities_in_the_outputs(calibrated, tmp_path):
    _, bundle = calibrated
    scene = striped_scene(tmp_path / "s.tif", seed=7)
    plain = make_tiny_bundle(tmp_path / "plain", classes=CLASSES, input_size=32, tile_size=128)
    hot = run(bundle, scene, tmp_path / "hot")["res"]
    cold = run(plain, scene, tmp_path / "cold")["res"]
    p_hot = gpd.read_file(hot.outputs["tiles_gpkg"])[["p_water", "p_forest", "p_field"]].to_numpy()
    p_cold = gpd.read_file(cold.outputs["tiles_gpkg"])[["p_water", "p_forest", "p_field"]].to_numpy()
    # same weights, T = 2: p_hot = softmax(log(p_cold) / 2) (up to the 4-decimal rounding of the layer)
    z = np.log(np.clip(p_cold, 1e-6, 1)) / 2
    want = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p_hot, want, atol=2e-3)
    assert np.array_equal(p_hot.argmax(1), p_cold.argmax(1))
    rec = json.loads(cold.outputs["record"].read_text())
    assert rec["domain"]["out_of_domain"] is None and "geosam calibrate" in rec["domain"]["note"]


@pytest.fixture
def chip_folder(tmp_path: Path) -> Path:
    return write_chip_folder(tmp_path / "chips", 24, 32)


def test_train_calibrates_and_calibrate_adds_it_to_an_old_bundle(tmp_path, chip_folder, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "folder", str(chip_folder), "--backbone", "tiny", "--input-size", "32", "--epochs", "1"]
    assert main([*argv, "--batch-size", "8", "--out", str(tmp_path / "m"), "--threads", "1"]) == 0
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert meta["calibration"]["temperature"] > 0 and meta["domain"]["threshold"] > 0
    assert (tmp_path / "m" / DOMAIN_FILE).is_file() and (
        tmp_path / "m" / "report" / "reliability.png"
    ).is_file()
    # an "old" bundle: no calibration, no domain statistics
    old = {k: v for k, v in meta.items() if k not in ("calibration", "domain")}
    (tmp_path / "m" / META_FILE).write_text(json.dumps(old))
    (tmp_path / "m" / DOMAIN_FILE).unlink()
    weights = (tmp_path / "m" / "weights.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["calibrate", str(tmp_path / "m"), "--data", str(chip_folder), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "temperature" in out and "ECE (15 bins)" in out and "threshold" in out
    again = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert again["calibration"]["temperature"] == pytest.approx(meta["calibration"]["temperature"], rel=1e-6)
    assert again["domain"]["sha256"] == meta["domain"]["sha256"]
    assert (tmp_path / "m" / "weights.safetensors").read_bytes() == weights
    loaded = load_bundle(tmp_path / "m")
    assert loaded.domain is not None and float(loaded.model.head.temperature) == pytest.approx(
        meta["calibration"]["temperature"]
    )


def test_calibrate_refuses_other_classes(tmp_path, chip_folder, capsys):
    bundle = make_tiny_bundle(tmp_path / "b", classes=CLASSES, input_size=32, tile_size=128)
    assert main(["calibrate", str(bundle), "--data", str(chip_folder)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "classes" in err
