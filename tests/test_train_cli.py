"""`geosam train` smoke tests, run in-process through geosam.cli.main.main (tiny backbone, 1 epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosam.cli.main import main


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path: a command that should fail but trains would write `model/` there, not in the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def chip_folder(tmp_path: Path) -> Path:
    """40 PNG chips of 32 px in two visibly different classes (green-ish and blue-ish noise)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "chips"
    for ci, name in enumerate(["Forest", "Water"]):
        (root / name).mkdir(parents=True)
        for i in range(20):
            a = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            a[..., 1 + ci] += 150
            Image.fromarray(a).save(root / name / f"{name}_{i}.png")
    return root


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("geosam: error: ")
    return err


def test_train_folder_writes_a_loadable_bundle(
    chip_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from geosam.models.bundle import load_bundle

    out = tmp_path / "model"
    cfg = tmp_path / "train.yaml"
    cfg.write_text("epochs: 1\nbatch_size: 8\nwarmup_steps: 0\nname: from-yaml\n")
    rc = main(
        ["train", "folder", str(chip_folder), "--config", str(cfg), "--backbone", "tiny", "--threads", "1",
         "--val-fraction", "0.2", "--name", "smoke", "--device", "cpu", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "overall accuracy" in stdout and "macro-F1" in stdout and "kappa" in stdout and str(out) in stdout
    bundle = load_bundle(out)
    assert bundle.meta.name == "smoke"  # the option wins over the YAML file
    assert bundle.meta.training["config"]["epochs"] == 1  # the YAML file was read
    assert bundle.meta.training["config"]["warmup_steps"] == 0
    assert list(bundle.classes.names) == ["Forest", "Water"]
    assert bundle.meta.bands == ["red", "green", "blue"]
    with torch.no_grad():
        logits = bundle.model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 2)
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n"] == 8 and metrics["classes"] == ["Forest", "Water"]
    for name in ("confusion_matrix.png", "confusion_matrix.json", "learning_curve.png", "history.json"):
        assert (out / "report" / name).stat().st_size > 0


def test_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["train", "folder", str(missing), "--out", str(tmp_path / "m")]) == 5
    assert str(missing) in _error_line(capsys)


def test_config_errors_are_one_line(
    chip_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert main(["train", "folder", str(chip_folder), "--config", str(cfg)]) == 2
    line = _error_line(capsys)
    assert "unknown key 'learning_rate'" in line and "lr" in line
    assert main(["train", "folder", str(chip_folder), "--epochs", "0"]) == 2
    assert "--epochs" in _error_line(capsys)
    assert main(["train", "folder", str(chip_folder), "--backbone", "vit_q"]) == 2
    assert "backbone must be" in _error_line(capsys)


def test_train_polygons_end_to_end(
    scene_and_polygons: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from geosam.models.bundle import read_bundle_meta

    scene, labels = scene_and_polygons
    out = tmp_path / "poly_model"
    rc = main(
        ["train", "polygons", str(scene), str(labels), "--class-column", "lc", "--chip-size", "16",
         "--spacing", "4", "--backbone", "tiny", "--epochs", "1", "--batch-size", "8", "--threads", "1",
         "--val-fraction", "0.3", "--device", "cpu", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    meta = read_bundle_meta(out)
    assert meta.class_scheme.names == ("bright", "dark")
    assert meta.chip_size == 16 and meta.gsd_m == 10.0
    # the bundle records what the chips went through: the scene's own 2-98 percentile stretch
    assert meta.preprocessing.scaling.method == "percentile" and meta.preprocessing.note == "scene chips"
    assert meta.data["source"] == "polygons" and meta.data["class_column"] == "lc"


def test_polygons_bad_column_and_classes_option(
    scene_and_polygons: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    scene, labels = scene_and_polygons
    assert main(["train", "polygons", str(scene), str(labels), "--class-column", "label"]) == 5
    line = _error_line(capsys)
    assert "'label'" in line and "available columns: lc" in line
    assert main(["train", "raster", str(scene), str(scene), "--classes", "water,forest"]) == 2
    assert "ID=NAME" in _error_line(capsys)


@pytest.mark.parametrize("source", ["folder", "polygons", "raster"])
def test_help_teaches_by_example(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", source, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples:" in text and f"geosam train {source} " in text
    assert "--epochs" in text and "--config" in text
