"""``geosam train polygons|raster --cv K``: per-fold and pooled figures from real `geosam run` maps."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from geosam.cli.main import main
from geosam.testing import DEFAULT_TRANSFORM, make_raster

A, _, C, _, E, F = DEFAULT_TRANSFORM


def _px(c0, r0, c1, r1):
    return box(C + c0 * A, F + r1 * E, C + c1 * A, F + r0 * E)


@pytest.fixture
def two_class_scene(tmp_path: Path) -> tuple[Path, Path, Path]:
    """64 x 64 px: bright left half ('bare'), dark green right half ('veg'); 6 polygons, a label raster."""
    rng = np.random.default_rng(0)
    img = np.empty((3, 64, 64), np.float32)
    img[:, :, :32] = np.array([0.7, 0.65, 0.6])[:, None, None]
    img[:, :, 32:] = np.array([0.15, 0.45, 0.1])[:, None, None]
    img += rng.normal(0, 0.02, img.shape)
    scene = make_raster(
        tmp_path / "scene.tif", 64, 64, 3, "uint16", fill=(img.clip(0, 1) * 1000).astype(np.uint16),
        band_names=["red", "green", "blue"],
    )  # fmt: skip
    polys = gpd.GeoDataFrame(
        {"lc": ["bare", "bare", "bare", "veg", "veg", "veg"]},
        geometry=[_px(2, 2, 12, 12), _px(4, 26, 14, 36), _px(18, 50, 28, 60),
                  _px(40, 2, 50, 12), _px(36, 28, 46, 38), _px(50, 50, 60, 60)],
        crs="EPSG:32633",
    )  # fmt: skip
    labels = tmp_path / "labels.gpkg"
    polys.to_file(labels, driver="GPKG")
    lab = np.zeros((64, 64), np.uint8)
    lab[::3, :30] = 1
    lab[::3, 34:] = 2
    label_raster = make_raster(tmp_path / "labels.tif", 64, 64, 1, "uint8", fill=lab[None], nodata=0)
    return scene, labels, label_raster


def _fast_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "fast.yaml"
    p.write_text(
        "backbone: tiny\nepochs: 1\ndense:\n  steps: 4\n  patches: 6\n  patch_size: 32\n"
        "  decoder_channels: 16\n  keep: last\n"
    )
    return p


def test_polygons_cv_scores_held_out_polygons(two_class_scene, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scene, labels, _ = two_class_scene
    out = tmp_path / "model"
    rc = main(
        ["-q", "train", "polygons", str(scene), str(labels), "--field", "lc", "--cv", "3",
         "--config", str(_fast_yaml(tmp_path)), "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    assert captured.err.count("  fold ") == 3
    assert "cross-validation (" in captured.out and "per-class F1:" in captured.out
    cv = json.loads((out / "report" / "cv.json").read_text())
    folds = cv["folds"]["folds"]
    assert sorted(g for f in folds for g in f) == list(range(6))  # every polygon held out once
    assert all(len(f) == 2 for f in folds)  # stratified: one polygon of each class per fold
    assert cv["n_pixels"] == 6 * 100 and sum(f["n"] + f["unclassified"] for f in cv["per_fold"]) == 600
    assert 0.0 <= cv["pooled"]["overall_accuracy"] <= 1.0
    assert json.loads((out / "model.json").read_text())["dense"] is not None  # dense is the default


def test_raster_cv_holds_out_blocks(two_class_scene, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scene, _, label_raster = two_class_scene
    out = tmp_path / "model"
    rc = main(
        ["-q", "train", "raster", str(scene), str(label_raster), "--classes", "1=bare,2=veg",
         "--head", "dense", "--chip-size", "16", "--block-chips", "2", "--cv", "2",
         "--config", str(_fast_yaml(tmp_path)), "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    cv = json.loads((out / "report" / "cv.json").read_text())
    with rasterio.open(label_raster) as ds:
        labelled = int((ds.read(1) > 0).sum())
    assert cv["n_pixels"] == labelled and cv["block"] == 32
    blocks = [g for f in cv["folds"]["folds"] for g in f]
    assert len(blocks) == len(set(blocks)) == 4  # 2 x 2 blocks of 32 px, each in one fold
    assert capsys.readouterr().err.count("  fold ") == 2


def test_raster_reference_names_classes_without_a_class_list(two_class_scene):
    """Without --classes the label raster's ids are named from its sidecar, else ``class_<id>``."""
    from geosam.io.read import open_scene
    from geosam.train.cv import raster_reference

    scene, _, label_raster = two_class_scene
    ref, names = raster_reference(open_scene(scene), label_raster, label_nodata=0, block=32)
    with rasterio.open(label_raster) as ds:
        ids = sorted({int(v) for v in np.unique(ds.read(1)) if v > 0})
    assert names == {i: f"class_{i}" for i in ids}
    assert len(ref.rows) > 0
