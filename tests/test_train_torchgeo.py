"""``geosam train torchgeo``: TorchGeo datasets on disk in TorchGeo's layout, never downloaded.

The data are generated here, small, in the layouts torchgeo 0.8's ``EuroSAT`` and ``LandCoverAI``
classes read (the same layouts as TorchGeo's own ``tests/data`` generators).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image

from geosam.cli.main import cli

EUROSAT_CLASSES = ("AnnualCrop", "Forest", "SeaLake")


def make_eurosat(root: Path, per_class: int = 6) -> Path:
    """EuroSAT layout: ``eurosat-{train,val,test}.txt`` + ``ds/images/.../tif/<Class>/<Class>_<i>.tif``."""
    base = root / "ds" / "images" / "remote_sensing" / "otherDatasets" / "sentinel_2" / "tif"
    rng = np.random.default_rng(0)
    names = []
    for k, cls in enumerate(EUROSAT_CLASSES):
        d = base / cls
        d.mkdir(parents=True)
        for i in range(per_class):
            # classes differ in brightness so a model can learn them
            data = (rng.normal(800 + 900 * k, 60, (13, 64, 64))).clip(0, 10000).astype(np.uint16)
            with rasterio.open(
                d / f"{cls}_{i + 1}.tif", "w", driver="GTiff", width=64, height=64, count=13, dtype="uint16"
            ) as ds:
                ds.write(data)
            names.append(f"{cls}_{i + 1}.jpg")
    for split in ("train", "val", "test"):
        (root / f"eurosat-{split}.txt").write_text("\n".join(names) + "\n")
    return root


LCAI_CLASSES = 5


def make_landcoverai(root: Path, n: int = 6, size: int = 64) -> Path:
    """``root/{train,val,test}.txt`` + ``root/output/<id>.jpg`` and ``<id>_m.png`` (LandCover.ai chips)."""
    out = root / "output"
    out.mkdir(parents=True)
    rng = np.random.default_rng(1)
    colours = np.array([[90, 90, 90], [200, 60, 50], [30, 120, 40], [20, 60, 190], [210, 210, 210]])
    ids = []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[:, size // 2 :] = 2
        mask[size // 3 : size // 2, :] = 3
        mask[:, 10:13] = 4  # a 3 px road
        img = colours[mask] + rng.normal(0, 6, (size, size, 3))
        iid = f"M-{i}_{i}"
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(out / f"{iid}.jpg", quality=95)
        Image.fromarray(mask).save(out / f"{iid}_m.png")
        ids.append(iid)
    for split in ("train", "val", "test"):
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """Any download attempt fails the test."""
    import torchgeo.datasets.utils as tgu

    def refuse(*args, **kwargs):
        raise AssertionError("geosam must never download a TorchGeo dataset")

    monkeypatch.setattr(tgu, "download_url", refuse)
    monkeypatch.setattr(tgu, "download_and_extract_archive", refuse)


def test_eurosat_trains_the_chip_classifier(tmp_path):
    root = make_eurosat(tmp_path / "eurosat")
    out = tmp_path / "model"
    r = CliRunner().invoke(
        cli,
        [
            "-q",
            "train",
            "torchgeo",
            "eurosat",
            "--root",
            str(root),
            "--backbone",
            "tiny",
            "--epochs",
            "2",
            "--batch-size",
            "6",
            "--input-size",
            "32",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["classes"]["names"] == list(EUROSAT_CLASSES)
    assert meta["bands"][:4] == ["B01", "blue", "green", "red"] or len(meta["bands"]) == 13
    assert meta["data"]["dataset"] == "EuroSAT" and meta["data"]["chips"] == 18
    assert meta["head"] is not None and meta["dense"] is None


def test_landcoverai_trains_the_dense_head(tmp_path):
    root = make_landcoverai(tmp_path / "lcai")
    out = tmp_path / "model"
    r = CliRunner().invoke(
        cli,
        [
            "-q",
            "train",
            "torchgeo",
            "landcoverai",
            "--root",
            str(root),
            "--backbone",
            "tiny",
            "--config",
            str(_dense_yaml(tmp_path)),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["classes"]["names"] == ["Background", "Building", "Woodland", "Water", "Road"]
    assert meta["head"] is None and meta["dense"]["num_classes"] == LCAI_CLASSES
    prep = meta["preprocessing"]  # bundle format 2: a Preprocessing record (uint8 images / 255)
    assert prep["space"] == "display" and prep["scaling"]["method"] == "fixed"
    assert prep["input"]["dtype"] == "uint8" and prep["input"]["rule"] == "stored / 255"
    assert meta["training"]["n_val"] > 0  # validated on the val split's patches


def _dense_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "dense.yaml"
    p.write_text("dense:\n  steps: 6\n  patches: 8\n  patch_size: 32\n  decoder_channels: 16\nepochs: 2\n")
    return p


def test_missing_dataset_is_one_line_and_no_download(tmp_path, capsys, monkeypatch):
    from geosam.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(["-q", "train", "torchgeo", "eurosat", "--root", str(tmp_path / "empty")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("geosam: error: ") and "never downloads" in err[-1]
    assert main(["-q", "train", "torchgeo", "imagenet", "--root", str(tmp_path)]) != 0
    assert "supported: eurosat" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
