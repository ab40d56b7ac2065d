"""Scene headers, tile reads with validity, errors that name the file, GDAL env, and band selection."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import tblib.pickling_support
from PIL import Image
from rasterio.env import getenv, hasenv

from geosam.bands import CANONICAL_BANDS, canonical_band_name, resolve_bands
from geosam.config import TilingConfig
from geosam.errors import (
    BandError,
    EmptyRasterError,
    GeosamError,
    MissingCRSError,
    NotARasterError,
    RasterNotFoundError,
    TileReadError,
    UnsupportedDtypeError,
)
from geosam.io.env import geosam_env
from geosam.io.read import open_scene, read_decimated, read_tile, read_validity, read_window
from geosam.testing import coords_image, make_raster
from geosam.tiling import plan_tiles
from geosam.types import PixelWindow, SceneInfo

# --- open_scene ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
)
def test_open_scene_reads_header_for_every_supported_dtype(tmp_path, dtype):
    path = make_raster(tmp_path / f"{dtype}.tif", 33, 21, count=2, dtype=dtype, nodata=7)
    info = open_scene(path)
    assert (info.width, info.height, info.count, info.dtype) == (33, 21, 2, dtype)
    assert info.nodata == (7.0, 7.0)
    assert info.transform == (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
    assert rasterio.crs.CRS.from_wkt(info.crs).to_epsg() == 32633
    assert info.path == str(path)


def test_band_names_from_descriptions_then_colour_interpretation(tmp_path):
    p = make_raster(tmp_path / "d.tif", 8, 8, count=3, band_names=["B04", None, "Near Infrared"])
    assert open_scene(p).band_names == ("B04", None, "Near Infrared")
    p = make_raster(
        tmp_path / "c.tif", 8, 8, count=4, dtype="uint8", colorinterp=["red", "green", "blue", "alpha"]
    )
    info = open_scene(p)
    assert info.band_names == ("red", "green", "blue", "alpha")
    assert info.has_mask  # an alpha band is a mask
    # GDAL marks band 1 "gray" by default: that is not a name
    assert open_scene(make_raster(tmp_path / "g.tif", 8, 8, count=2)).band_names == (None, None)


def test_internal_mask_is_reported(tmp_path):
    mask = np.ones((16, 16), dtype=bool)
    mask[0, 0] = False
    assert open_scene(make_raster(tmp_path / "m.tif", 16, 16, mask=mask)).has_mask
    assert not open_scene(make_raster(tmp_path / "n.tif", 16, 16, nodata=0)).has_mask


def test_open_scene_reads_vrt_and_cog(tmp_path):
    src = make_raster(tmp_path / "s.tif", 64, 48, count=2, dtype="uint16")
    vrt = tmp_path / "s.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="64" rasterYSize="48"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>500000, 10, 0, 5000000, 0, -10</GeoTransform>"
        f'<VRTRasterBand dataType="UInt16" band="1"><Description>nir</Description><SimpleSource>'
        f"<SourceFilename>{src}</SourceFilename><SourceBand>2</SourceBand></SimpleSource></VRTRasterBand>"
        f"</VRTDataset>"
    )
    info = open_scene(vrt)
    assert (info.count, info.band_names) == (1, ("nir",))
    data, valid = read_window(vrt, PixelWindow(0, 0, 64, 48))
    assert valid.all()
    np.testing.assert_array_equal(data[0], coords_image(PixelWindow(0, 0, 64, 48), 2)[1])
    cog = tmp_path / "cog.tif"
    with rasterio.open(src) as ds:
        profile = dict(ds.profile, driver="COG")
        for key in ("tiled", "blockxsize", "blockysize", "interleave"):
            profile.pop(key, None)
        with rasterio.open(cog, "w", **profile) as out:
            out.write(ds.read())
    assert open_scene(cog).shape == (48, 64)


def check_error(excinfo, path, *words):
    err = excinfo.value
    assert isinstance(err, GeosamError)
    assert str(err).startswith(f"{path}: "), str(err)
    for w in words:
        assert w.lower() in str(err).lower(), str(err)
    # errors travel back from dask workers intact, also with the exception-chain pickling that
    # dask.distributed installs (tblib), which fails on chained rasterio exceptions
    tblib.pickling_support.install(err)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err) and str(clone) == str(err)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tif"
    with pytest.raises(RasterNotFoundError) as e:
        open_scene(path)
    check_error(e, path, "not found")
    assert isinstance(e.value, FileNotFoundError)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("notes.tif", b"hello, this is text\n" * 10, ["not a raster"]),
        ("page.tif", b"<html><body>404 Not Found</body></html>", ["not a raster"]),
        ("empty.tif", b"", ["not a raster"]),
        ("head.tif", None, ["corrupt or truncated"]),  # first 100 bytes of a real GeoTIFF
    ],
)
def test_not_a_raster(tmp_path, name, content, words):
    path = tmp_path / name
    if content is None:
        src = make_raster(tmp_path / "real.tif", 64, 64)
        content = src.read_bytes()[:100]
    path.write_bytes(content)
    with pytest.raises(NotARasterError) as e:
        open_scene(path)
    check_error(e, path, *words)
    assert isinstance(e.value, ValueError)


def test_jpeg_renamed_tif_is_not_a_geotiff(tmp_path):
    path = tmp_path / "photo.tif"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(path, format="JPEG")
    with pytest.raises(NotARasterError) as e:
        open_scene(path)
    check_error(e, path, "JPEG", "not a GeoTIFF")


def test_directory_is_not_a_raster(tmp_path):
    with pytest.raises(NotARasterError) as e:
        open_scene(tmp_path)
    check_error(e, tmp_path, "directory")


def test_missing_crs_and_missing_geotransform(tmp_path):
    no_crs = make_raster(tmp_path / "nocrs.tif", 10, 10, crs=None)
    with pytest.raises(MissingCRSError) as e:
        open_scene(no_crs)
    check_error(e, no_crs, "coordinate reference system")
    no_gt = make_raster(tmp_path / "nogt.tif", 10, 10, transform=None)
    with pytest.raises(MissingCRSError) as e:
        open_scene(no_gt)
    check_error(e, no_gt, "geotransform")


def test_zero_size_raster(tmp_path):
    path = tmp_path / "zero.vrt"
    path.write_text(
        '<VRTDataset rasterXSize="0" rasterYSize="10"><VRTRasterBand dataType="Byte" band="1"/></VRTDataset>'
    )
    with pytest.raises(EmptyRasterError) as e:
        open_scene(path)
    check_error(e, path, "no pixels")


@pytest.mark.parametrize("dtype", ["complex64", "int64"])
def test_unsupported_dtype(tmp_path, dtype):
    path = make_raster(tmp_path / "c.tif", 10, 10, count=1, dtype=dtype, fill=1, compress=None)
    with pytest.raises(UnsupportedDtypeError) as e:
        open_scene(path)
    check_error(e, path, dtype.rstrip("64") if dtype.startswith("complex") else dtype, "not supported")


# --- read_tile -----------------------------------------------------------------------------------------


def one_tile(path, tile_size=32, halo=4):
    return plan_tiles(path, TilingConfig(tile_size=tile_size, halo=halo, skip_empty=False)).tiles


def test_nodata_mask_nan_and_inf_are_invalid_and_zero(tmp_path):
    data = coords_image(PixelWindow(0, 0, 20, 10), 2).astype(np.float32)
    data[0, 1, 1] = -5  # nodata in band 1 only: the pixel is invalid (all bands must be valid)
    data[1, 2, 2] = np.nan
    data[0, 3, 3] = np.inf
    mask = np.ones((10, 20), dtype=bool)
    mask[4, 4] = False
    path = make_raster(tmp_path / "v.tif", 20, 10, count=2, dtype="float32", nodata=-5, fill=data, mask=mask)
    (spec,) = one_tile(path)
    tile = read_tile(path, spec)
    core_valid, core = tile.core_valid, tile.core_data
    bad = [(1, 1), (2, 2), (3, 3), (4, 4)]
    for r, c in bad:
        assert not core_valid[r, c]
        assert (core[:, r, c] == 0).all()
    assert core_valid.sum() == 200 - len(bad)
    assert np.isfinite(tile.data).all()
    ok = core_valid
    np.testing.assert_array_equal(core[:, ok], coords_image(PixelWindow(0, 0, 20, 10), 2)[:, ok])
    # band 2 alone: the band-1 nodata and inf pixels are valid there
    t2 = read_tile(path, spec, [2])
    assert t2.core_valid[1, 1] and t2.core_valid[3, 3] and not t2.core_valid[2, 2] and not t2.core_valid[4, 4]


def test_integer_nodata_compared_exactly(tmp_path):
    big = np.uint32(4_294_967_295)  # not representable in float32: must be compared before conversion
    data = np.full((1, 4, 4), 4_294_967_294, dtype=np.uint32)
    data[0, 0, 0] = big
    path = make_raster(tmp_path / "u.tif", 4, 4, count=1, dtype="uint32", nodata=float(big), fill=data)
    _, valid = read_window(path, PixelWindow(0, 0, 4, 4))
    assert valid.sum() == 15 and not valid[0, 0]


def test_alpha_band_masks_pixels(tmp_path):
    data = np.full((4, 8, 8), 100, dtype=np.uint8)
    data[3] = 255
    data[3, :, :2] = 0
    path = make_raster(
        tmp_path / "a.tif",
        8,
        8,
        count=4,
        dtype="uint8",
        fill=data,
        colorinterp=["red", "green", "blue", "alpha"],
    )
    _, valid = read_window(path, PixelWindow(0, 0, 8, 8), [1, 2, 3])
    assert not valid[:, :2].any() and valid[:, 2:].all()


def test_read_outside_scene_is_all_invalid(tmp_path):
    path = make_raster(tmp_path / "o.tif", 10, 10)
    data, valid = read_window(path, PixelWindow(50, 50, 8, 8))
    assert not valid.any() and not data.any()


def test_bad_band_index(tmp_path):
    path = make_raster(tmp_path / "b.tif", 10, 10, count=2)
    with pytest.raises(BandError) as e:
        read_tile(path, one_tile(path)[0], [3])
    check_error(e, path, "1..2")


def test_corrupt_pixels_raise_tile_read_error(tmp_path):
    src = make_raster(tmp_path / "full.tif", 256, 256, count=1, fill="random", blocksize=64)
    path = tmp_path / "cut.tif"
    blob = src.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # header intact, half the blocks gone
    info = open_scene(path)  # header-only: still fine
    assert info.shape == (256, 256)
    with pytest.raises(TileReadError) as e:
        for spec in one_tile(path, 64, 0):
            read_tile(path, spec)
    check_error(e, path, "corrupt or truncated")
    assert isinstance(e.value, OSError)


def test_read_decimated_samples_real_pixels(tmp_path):
    path = make_raster(tmp_path / "d.tif", 400, 200, count=2, dtype="uint16", nodata=0)
    data, valid = read_decimated(path, [1, 2], max_side=100)
    assert data.shape == (2, 50, 100) and valid.all()
    cols, rows = data[0, 0], data[1, :, 0]
    assert np.all(np.diff(cols) == 4) and np.all(np.diff(rows) == 4)  # every 4th column / row
    assert read_decimated(path, [1], max_side=5000)[0].shape == (1, 200, 400)  # never enlarged
    assert read_validity(path, max_side=100).shape == (50, 100)


# --- GDAL environment ----------------------------------------------------------------------------------


def test_geosam_env_scopes_options_and_respects_user(monkeypatch):
    with geosam_env("scene.tif"):
        assert getenv()["GDAL_DISABLE_READDIR_ON_OPEN"] == "TRUE"
        assert getenv()["GDAL_VRT_ENABLE_PYTHON"] == "NO"
    with geosam_env("/vsicurl/https://example.invalid/cog.tif"):
        assert getenv()["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
        assert getenv()["GDAL_HTTP_MAX_RETRY"] == "3"
    assert not hasenv() or "GDAL_VRT_ENABLE_PYTHON" not in getenv()
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="FALSE"), geosam_env("scene.tif"):
        assert getenv()["GDAL_DISABLE_READDIR_ON_OPEN"] in (False, "FALSE")
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    with geosam_env("scene.tif"):
        assert "GDAL_DISABLE_READDIR_ON_OPEN" not in getenv()  # left to GDAL, which reads the variable
    with geosam_env("scene.tif", GDAL_NUM_THREADS="2"):
        assert getenv()["GDAL_NUM_THREADS"] == "2"


def test_import_geosam_stays_light():
    code = (
        "import sys, geosam, geosam.bands, geosam.types, geosam.config\n"
        "heavy = [m for m in ('rasterio', 'dask', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- band names and selection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("B04", "red"),
        ("b03", "green"),
        ("B02", "blue"),
        ("B08", "nir"),
        ("B8A", "nir08"),
        ("B11", "swir1"),
        ("B12", "swir2"),
        ("Red", "red"),
        (" NIR ", "nir"),
        ("Near-Infrared", "nir"),
        ("SWIR 1", "swir1"),
        ("swir_2", "swir2"),
        ("swir16", "swir1"),
        ("S2_B4", "red"),
        ("LC08_L2SP_042034_SR_B5", "nir"),
        ("LC09_SR_B4", "red"),
        ("LE07_SR_B4", "nir"),  # Landsat 7 band 4 is near infrared, unlike Landsat 8
        ("LT05_B3", "red"),
        ("lsat7_2000_40", "nir"),
        ("lsat7_2000_70", "swir2"),
        ("lsat5_1987_10", "blue"),
        ("B4", "b4"),  # ambiguous without a sensor: not guessed
        ("Elevation", "elevation"),
    ],
)
def test_canonical_band_name(spelling, canonical):
    assert canonical_band_name(spelling) == canonical


def test_canonical_names_are_fixed_points():
    assert all(canonical_band_name(c) == c for c in CANONICAL_BANDS)


def info_with(names, path="scene.tif") -> SceneInfo:
    n = len(names)
    return SceneInfo(
        path, 10, 10, n, "uint16", "WKT", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), (None,) * n, tuple(names)
    )


def test_resolve_by_index_name_and_alias():
    info = info_with(["B02", "B03", "B04", "B08"])
    assert resolve_bands(info, [3, 2, 1]) == (3, 2, 1)
    assert resolve_bands(info, ["4", "1"]) == (4, 1)
    assert resolve_bands(info, ["red", "Green", "BLUE"]) == (3, 2, 1)
    assert resolve_bands(info, ["nir", 1]) == (4, 1)
    assert resolve_bands(info, wanted=("red", "green", "blue")) == (3, 2, 1)
    assert resolve_bands(info, wanted=("nir", "red")) == (4, 3)
    assert resolve_bands(info) == (1, 2, 3, 4)


def test_resolve_unnamed_bands_in_order_only_when_counts_match():
    assert resolve_bands(info_with([None, None, None]), wanted=("red", "green", "blue")) == (1, 2, 3)
    with pytest.raises(BandError) as e:
        resolve_bands(info_with([None] * 6), wanted=("red", "green", "blue"))
    msg = str(e.value)
    assert msg.startswith("scene.tif: ") and "--bands" in msg and "6 band(s)" in msg and "red" in msg
    # names that say something else are not overridden by position
    with pytest.raises(BandError, match="nir"):
        resolve_bands(info_with(["red", "green", "blue"]), wanted=("red", "green", "nir"))


def test_resolve_errors_list_the_bands():
    info = info_with(["red", "green", None])
    with pytest.raises(BandError) as e:
        resolve_bands(info, [4])
    assert "band 4 does not exist" in str(e.value) and "1 'red', 2 'green', 3 (unnamed)" in str(e.value)
    with pytest.raises(BandError, match="no band named 'swir1'"):
        resolve_bands(info, ["swir1"])
    with pytest.raises(BandError, match="0"):
        resolve_bands(info, [0])
    with pytest.raises(BandError, match="expects 3 bands"):
        resolve_bands(info, [1, 2], wanted=("red", "green", "blue"))
    with pytest.raises(BandError, match="matches bands"):
        resolve_bands(info_with(["red", "Red"]), ["red"])
    with pytest.raises(BandError, match="empty"):
        resolve_bands(info, [])
    assert isinstance(e.value, IndexError)


def test_alpha_band_not_selected_by_default():
    assert resolve_bands(info_with(["red", "green", "blue", "alpha"])) == (1, 2, 3)


# --- real scenes ---------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    ("rel", "count", "dtype", "epsg", "names"),
    [
        ("rasterio/RGB.byte.tif", 3, "uint8", 32618, ("red", "green", "blue")),
        ("naip/m_4709963_se_14_1_20190904.tif", 4, "uint8", 26914, (None,) * 4),
        ("netherlands/cog.tif", 4, "float64", 4326, (None,) * 4),
        ("olinda/L7_ETMs.tif", 6, "uint8", 31985, (None,) * 6),
        ("raleigh/landsat_multiband.tif", 5, "float32", 32119, (None,) * 5),
    ],
)
def test_real_scene_headers(shared_data, rel, count, dtype, epsg, names):
    path = shared_data / "scenes" / rel
    info = open_scene(path)
    assert (info.count, info.dtype, info.band_names) == (count, dtype, names)
    assert rasterio.crs.CRS.from_wkt(info.crs).to_epsg() == epsg
    spec = one_tile(path, 64, 8)[5]
    tile = read_tile(path, spec)
    with rasterio.open(path) as ds:
        truth = ds.read(window=spec.core.to_rasterio(), masked=True)
    core_valid = tile.core_valid
    expect_valid = ~np.ma.getmaskarray(truth).any(axis=0) & np.isfinite(truth.filled(0)).all(axis=0)
    np.testing.assert_array_equal(core_valid, expect_valid)
    np.testing.assert_allclose(tile.core_data[:, core_valid], truth.data[:, core_valid].astype(np.float32))


@pytest.mark.shared
def test_real_scene_band_resolution(shared_data):
    rgb = open_scene(shared_data / "scenes" / "rasterio" / "RGB.byte.tif")
    assert resolve_bands(rgb, wanted=("blue", "green", "red")) == (3, 2, 1)
    naip = open_scene(shared_data / "scenes" / "naip" / "m_4709963_se_14_1_20190904.tif")
    assert resolve_bands(naip, wanted=("red", "green", "blue", "nir")) == (1, 2, 3, 4)
    olinda = open_scene(shared_data / "scenes" / "olinda" / "L7_ETMs.tif")
    with pytest.raises(BandError, match="--bands"):
        resolve_bands(olinda, wanted=("red", "green", "blue"))
    assert resolve_bands(olinda, [3, 2, 1], wanted=("red", "green", "blue")) == (3, 2, 1)
