"""Training option combinations are checked before any expensive work (one line, or they work), and
the training GSD is recorded: --gsd for chip folders, the scene's own pixel size for scene sources."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image
from shapely.geometry import box

import geosam.train.engine
from geosam.cli.main import main
from geosam.errors import ConfigError, WeightsNotFoundError
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_sam_checkpoint
from geosam.train.checks import check_options, default_tile_size
from geosam.train.config import TrainConfig


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def chips64(tmp_path: Path) -> Path:
    """24 PNG chips of 64 px in two classes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "chips"
    for ci, name in enumerate(["Forest", "Water"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 60, (64, 64, 3)).astype(np.uint8)
            a[..., 1 + ci] += 150
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("geosam: error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_probe_with_input_size_and_tile_size_works_and_records_scene_pixels(
    chips64: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's `--mode probe --input-size 224 --tile-size 1024` on 64 px chips: it crashed after the
    embedding pass (1024 * 64 // 224 = 292 is no multiple of 64). --tile-size is in scene pixels: 1024
    = 16 x 16 chips."""
    from geosam.models.bundle import read_bundle_meta

    ckpt = make_tiny_sam_checkpoint(tmp_path / "sam_tiny.pth")
    args = ["train", "folder", str(chips64), "--backbone", str(ckpt), "--mode", "probe", "--input-size",
            "224", "--tile-size", "1024", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
            "--gsd", "10", "--out", "m"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    meta = read_bundle_meta(tmp_path / "m")
    assert (meta.chip_size, meta.input_size, meta.recommended_tile_size, meta.gsd_m) == (64, 224, 1024, 10.0)
    assert meta.training["config"]["gsd_m"] == 10.0


def test_impossible_tile_size_is_refused_before_the_embedding_pass(
    chips64: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_embedding(*a, **k):
        raise AssertionError("the embedding pass ran")

    monkeypatch.setattr(geosam.train.engine, "probe_features", no_embedding)
    monkeypatch.setattr(geosam.train.engine, "build_model", no_embedding)
    ckpt = make_tiny_sam_checkpoint(tmp_path / "sam_tiny.pth")
    args = ["train", "folder", str(chips64), "--backbone", str(ckpt), "--mode", "probe", "--input-size",
            "224", "--tile-size", "1000", "--out", "m"]  # fmt: skip
    assert main(args) == 2
    assert error_line(capsys) == (
        "geosam: error: --tile-size 1000 (scene pixels) is not a multiple of the 64 px chips, so `geosam "
        "run` could not cut its tiles into chips; use 960 or 1024 (--input-size 224 is the encoder's "
        "size, not the tile's)"
    )
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("options", "chip", "message"),
    [
        ({"backbone": "small", "input_size": 100}, None,
         "--input-size 100 is not a multiple of the small encoder's 8 px patches; use 96 or 104"),
        ({"backbone": "tiny"}, 24, "24 px chips are not a multiple of the tiny encoder's 16 px patches; "
         "pass --input-size 16 or 32 (chips are resized to it)"),
        ({"tile_size": 100}, 16, "--tile-size 100 (scene pixels) is not a multiple of the 16 px chips, so "
         "`geosam run` could not cut its tiles into chips; use 96 or 112"),
        ({"tile_size": 16384}, 16, "--tile-size 16384 is outside geosam run's 32..8192 px tiles"),
    ],
)  # fmt: skip
def test_check_options_refuses_what_cannot_work(options, chip, message) -> None:
    with pytest.raises(ConfigError) as exc:
        check_options(TrainConfig(**options), chip_size=chip)
    assert str(exc.value) == message


def test_check_options_accepts_what_works_and_needs_the_checkpoint(tmp_path: Path) -> None:
    for chip, input_size in ((64, None), (64, 224), (16, 32), (22, 64)):
        cfg = TrainConfig(backbone="small", input_size=input_size)
        check_options(cfg, chip_size=chip)
        assert default_tile_size(chip, input_size or chip) % chip == 0
    assert default_tile_size(64, 64) == 256 and default_tile_size(22, 64) == 88  # the default model's
    with pytest.raises(WeightsNotFoundError, match="SAM checkpoint not found"):
        check_options(TrainConfig(backbone=str(tmp_path / "sam_vit_b_01ec64.pth")))


def test_gsd_recorded_for_folders_and_checked_against_scenes(
    chips64: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from geosam.models.bundle import read_bundle_meta

    base = ["--backbone", "tiny", "--epochs", "1", "--batch-size", "8", "--device", "cpu"]
    with caplog.at_level(logging.WARNING, logger="geosam.train.checks"):
        assert main(["train", "folder", str(chips64), *base, "--out", "nogsd"]) == 0
    assert read_bundle_meta(tmp_path / "nogsd").gsd_m is None
    assert any("pass --gsd METRES" in r.getMessage() for r in caplog.records)

    # a 10 m UTM scene records its own GSD; a contradicting --gsd is refused before sampling chips
    scene = make_raster(tmp_path / "scene.tif", 96, 96, count=3, dtype="uint8", fill="random")
    labels = tmp_path / "labels.gpkg"
    gpd.GeoDataFrame(
        {"label": ["a", "b", "b", "a"]},  # the scene's four 480 m quadrants
        geometry=[box(x, y, x + 480, y + 480) for x in (500000, 500480) for y in (4999040, 4999520)],
        crs="EPSG:32633",
    ).to_file(labels)
    poly = ["train", "polygons", str(scene), str(labels), "--class-column", "label", "--chip-size", "16",
            "--spacing", "8", *base]  # fmt: skip
    capsys.readouterr()
    assert main([*poly, "--gsd", "30", "--out", "bad"]) == 2
    assert error_line(capsys) == (
        f"geosam: error: {scene}: --gsd 30 contradicts the scene's own 10 m pixels; omit --gsd (it is for "
        "chips whose pixel size the data does not record)"
    )
    assert main([*poly, "--out", "poly"]) == 0
    assert read_bundle_meta(tmp_path / "poly").gsd_m == 10.0
