"""`geosam run` on the sample scene with a random SAM 2.1 Hiera-T checkpoint (Meta's format), and
`geosam train folder --backbone <sam2.1 tiny>` then `geosam run` with that bundle and checkpoint."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from geosam.cli.main import main
from geosam.hashing import sha256_file
from geosam.predict import output_paths
from geosam.testing_chips import write_chip_folder

if importlib.util.find_spec("sam2") is None:  # find_spec: importing sam2 would initialise Hydra globally
    pytest.skip("SAM 2 tests need the sam2 package (pip install -e '.[sam2]')", allow_module_level=True)

# lowered thresholds (random weights) and no halo (4 tiles of the sample scene; seams: test_predict_sam2)
LOWERED = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--halo", "0"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _check_run(scene: Path, out: Path, ckpt: Path) -> dict:
    paths = output_paths(scene, out)
    for kind, p in paths.items():
        if kind != "probabilities":  # written by dense models only
            assert p.is_file(), kind
    for kind in ("classes", "confidence"):
        valid, errors, _ = cog_validate(str(paths[kind]))
        assert valid and not errors
        with rasterio.open(paths[kind]) as ds, rasterio.open(scene) as src:
            assert ds.tags()["GEOSAM_REGION_SOURCE"] == "sam2.1"
            assert ds.crs == src.crs and ds.transform == src.transform
    rec = json.loads(paths["record"].read_text())
    assert rec["region_source"] == "sam2.1"
    assert rec["sam"]["checkpoint_sha256"] == sha256_file(ckpt) and rec["sam"]["model"] == "sam2.1_hiera_tiny"
    gdf = gpd.read_file(paths["regions_gpkg"])
    assert len(gdf) == rec["results"]["regions"] > 0 and gdf["region_source"].eq("sam2.1").all()
    geo = json.loads(paths["regions_geojson"].read_text())
    assert {f["properties"]["region_source"] for f in geo["features"]} == {"sam2.1"}
    qgs = paths["qgis_project"].read_text()
    assert paths["classes"].name in qgs and paths["regions_gpkg"].name in qgs
    return rec


def test_run_sample_scene_with_sam2_checkpoint(sample_data, sam2_tiny_checkpoint, tmp_path, caplog):
    """The packaged default model classifies; SAM 2.1 makes the regions (each encoder once per tile)."""
    scene = sample_data / "raleigh_landsat7_2000.vrt"
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="geosam"):
        rc = main(["run", str(scene), "--sam-checkpoint", str(sam2_tiny_checkpoint), "--tile-size", "256",
                   *LOWERED, "--out", str(out)])  # fmt: skip
    assert rc == 0
    assert any("SAM 2.1 Hiera-T" in r.getMessage() for r in caplog.records)  # says which SAM it found
    rec = _check_run(scene, out, sam2_tiny_checkpoint)
    assert rec["sam"]["encoder_pass"].startswith("own pass")
    # classifier chips matched to the model's 10 m training resolution; SAM 2 tiles stay ~256 px
    assert rec["tiling"]["chip_size"] < 64 and rec["tiling"]["tile_size"] % rec["tiling"]["chip_size"] == 0


def test_bad_sam_checkpoint_is_one_line(tmp_path, capsys):
    import torch

    bad = tmp_path / "not_sam.pt"
    torch.save({"model": {"conv.weight": torch.zeros(2)}}, bad)
    scene = tmp_path / "s.tif"
    from geosam.testing import make_raster

    make_raster(scene, 64, 64, count=3, dtype="uint8", fill="random")
    rc = main(["run", str(scene), "--sam-checkpoint", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1
    assert "not a SAM 1 or SAM 2.x checkpoint" in err and str(bad) in err


@pytest.fixture
def chip_folder(tmp_path: Path) -> Path:
    return write_chip_folder(tmp_path / "chips", 8, 64)


def test_train_on_sam2_then_run(chip_folder, sample_data, sam2_tiny_checkpoint, tmp_path):
    from geosam.models.bundle import read_bundle_meta

    bundle = tmp_path / "m_sam2"
    rc = main(["train", "folder", str(chip_folder), "--backbone", str(sam2_tiny_checkpoint),
               "--mode", "probe", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.25",
               "--device", "cpu", "--out", str(bundle)])  # fmt: skip
    assert rc == 0
    meta = read_bundle_meta(bundle)
    assert meta.encoder.family == "sam2" and meta.encoder.source == "sam_checkpoint"
    assert meta.encoder.config["variant"] == "sam2.1_hiera_tiny"
    assert meta.encoder.checkpoint_sha256 == sha256_file(sam2_tiny_checkpoint)
    assert meta.head.in_dim == 256 and meta.input_size == 64
    assert not (bundle / "weights.safetensors").stat().st_size > 1_000_000  # the frozen Hiera is not copied
    scene = sample_data / "raleigh_landsat7_2000.vrt"
    out = tmp_path / "out"
    rc = main(["run", str(scene), "--model", str(bundle), "--sam-checkpoint", str(sam2_tiny_checkpoint),
               "--tile-size", "256", *LOWERED, "--out", str(out)])  # fmt: skip
    assert rc == 0
    rec = _check_run(scene, out, sam2_tiny_checkpoint)
    assert rec["sam"]["encoder_pass"].startswith("shared") and rec["model"]["classes"] == ["Forest", "Water"]
