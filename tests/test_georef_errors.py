"""Errors for rasters without a location say what to do, and the commands they suggest work: run with
real values filled in, they turn the raster into one geosam opens."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geosam.cli.main import main
from geosam.errors import MissingCRSError
from geosam.io.read import open_scene

pytestmark = pytest.mark.skipif(
    shutil.which("gdal_translate") is None, reason="GDAL command-line tools absent"
)

FILL = {"<code>": "32633", "<ulx>": "500000", "<uly>": "5000000", "<lrx>": "500640", "<lry>": "4999360"}


def write(path: Path, *, crs: str | None, transform: bool, gcps: bool = False) -> Path:
    from rasterio.control import GroundControlPoint
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 3, "dtype": "uint8"}
    if transform:
        profile["transform"] = from_origin(500000, 5000000, 10, 10)
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8))
        if gcps:
            pts = [GroundControlPoint(r, c, 500000 + 10 * c, 5000000 - 10 * r) for r, c in
                   ((0, 0), (0, 64), (64, 0), (64, 64))]  # fmt: skip
            ds.gcps = (pts, rasterio.crs.CRS.from_epsg(32633))
    return path


def suggested(message: str, tool: str) -> list[str]:
    """The ``tool ...`` command of an error message, placeholders filled with real values."""
    m = re.search(rf"{tool} [^,()]*?\.tif(?: \S+\.tif)?", message)
    assert m, message
    cmd = m.group(0)
    for k, v in FILL.items():
        cmd = cmd.replace(k, v)
    return cmd.split()


def error_of(path: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["info", str(path)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"geosam: error: {path}: ")
    return err


def test_no_geotransform_error_gives_a_working_gdal_translate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "chip.tif", crs=None, transform=False)
    err = error_of(path, capsys)
    assert "no geotransform" in err and "chip-folder commands" in err
    cmd = suggested(err, "gdal_translate")
    assert cmd[-2:] == ["chip.tif", "fixed.tif"]
    subprocess.run(cmd, check=True, capture_output=True)
    info = open_scene(tmp_path / "fixed.tif")
    assert info.transform == (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0) and info.gsd_m == 10.0


def test_no_crs_error_gives_working_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "scene.tif", crs=None, transform=True)
    err = error_of(path, capsys)
    assert "no coordinate reference system" in err
    subprocess.run(suggested(err, "gdal_translate"), check=True, capture_output=True)
    assert "32633" in open_scene(tmp_path / "fixed.tif").crs
    if shutil.which("gdal_edit.py"):
        subprocess.run(suggested(err, "gdal_edit.py"), check=True, capture_output=True)
        assert "32633" in open_scene(path).crs  # edited in place


def test_gcp_only_raster_error_gives_a_working_gdalwarp(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "raw.tif", crs=None, transform=False, gcps=True)
    with pytest.raises(MissingCRSError, match="only ground control points"):
        open_scene(path)
    err = error_of(path, capsys)
    subprocess.run(suggested(err, "gdalwarp"), check=True, capture_output=True)
    info = open_scene(tmp_path / "warped.tif")
    assert "32633" in info.crs and abs(info.res[0] - 10) < 0.5
