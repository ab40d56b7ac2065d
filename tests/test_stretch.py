"""Per-scene stretch: computed once from a decimated read, shared by every tile, safe on odd data."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import rasterio

from geosam.config import NormalizeConfig, TilingConfig
from geosam.errors import BandError, ConfigError, EmptyRasterError
from geosam.io.read import read_tile, read_window
from geosam.stretch import Stretch, apply_stretch, compute_stretch
from geosam.testing import make_large_vrt, make_raster
from geosam.tiling import plan_tiles
from geosam.types import PixelWindow


def pct(**kw) -> NormalizeConfig:
    return NormalizeConfig(**{"method": "percentile", **kw})


def gradient(width: int, height: int, count: int = 2) -> np.ndarray:
    """Band 1 rises left to right (0..999), band 2 top to bottom (1000..1999)."""
    cols = np.linspace(0, 999, width)[None, :].repeat(height, 0)
    rows = np.linspace(1000, 1999, height)[:, None].repeat(width, 1)
    return np.stack([cols, rows][:count]).astype(np.float32)


def test_percentiles_exclude_nodata_and_nan(tmp_path):
    data = gradient(200, 100)
    clean = make_raster(tmp_path / "clean.tif", 200, 100, count=2, dtype="float32", fill=data)
    dirty_data = np.concatenate([data, np.full((2, 100, 60), -99999, np.float32)], axis=2)
    dirty_data[:, :, 200:230] = np.nan  # and some NaN, which has no nodata declaration
    dirty = make_raster(
        tmp_path / "dirty.tif", 260, 100, count=2, dtype="float32", nodata=-99999, fill=dirty_data
    )
    cfg = pct(low=2, high=98, sample_size=4096)  # full resolution: exact percentiles
    s_clean, s_dirty = compute_stretch(clean, None, cfg), compute_stretch(dirty, None, cfg)
    assert s_dirty.low == pytest.approx(s_clean.low) and s_dirty.high == pytest.approx(s_clean.high)
    assert s_clean.low == pytest.approx(np.percentile(data, 2, axis=(1, 2)))
    assert s_clean.high == pytest.approx(np.percentile(data, 98, axis=(1, 2)))
    assert s_clean.method == "percentile" and s_clean.bands == (1, 2)


def test_band_selection_orders_bounds(tmp_path):
    path = make_raster(tmp_path / "g.tif", 100, 50, count=2, dtype="float32", fill=gradient(100, 50))
    s = compute_stretch(path, [2, 1], pct(low=0, high=100))
    assert s.bands == (2, 1)
    assert s.low == pytest.approx((1000, 0)) and s.high == pytest.approx((1999, 999))
    with pytest.raises(BandError):
        compute_stretch(path, [3], pct())


def test_stretch_is_shared_by_all_tiles_no_seams(tmp_path):
    w, h = 300, 200
    path = make_raster(tmp_path / "g.tif", w, h, count=2, dtype="float32", fill=gradient(w, h))
    stretch = compute_stretch(path, None, pct())
    whole, valid = read_window(path, PixelWindow(0, 0, w, h))
    expected = apply_stretch(whole, valid, stretch)
    mosaic = np.full_like(expected, -1)
    per_tile_seams = []
    for spec in plan_tiles(path, TilingConfig(tile_size=64, halo=8)).tiles:
        tile = read_tile(path, spec)
        out = apply_stretch(tile.data, tile.valid, stretch)
        r, c = spec.core_slices
        mosaic[:, spec.core.row_off : spec.core.row_end, spec.core.col_off : spec.core.col_end] = out[:, r, c]
        # what a per-tile stretch would have done: each tile spans 0..1 on its own
        own = Stretch("percentile", *np.percentile(tile.data[:, tile.valid], [2, 98], axis=1))
        per_tile_seams.append(np.abs(apply_stretch(tile.data, tile.valid, own) - out).max())
    np.testing.assert_array_equal(mosaic, expected)
    assert max(per_tile_seams) > 0.5  # so sharing the stretch is what makes the mosaic seamless


def test_computed_from_decimated_read(tmp_path):
    small = make_raster(tmp_path / "s.tif", 256, 256, count=2, dtype="float32", fill=gradient(256, 256))
    # 60000 x 60000 float32 x 2 bands = 29 GB if read in full; the stretch must sample it instead
    big = make_large_vrt(tmp_path / "big.vrt", small, 60_000, 60_000)
    reads = []
    real_read = rasterio.io.DatasetReader.read

    def spy(self, *args, **kw):
        reads.append(kw.get("out_shape"))
        return real_read(self, *args, **kw)

    t0 = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rasterio.io.DatasetReader, "read", spy)
        s_big = compute_stretch(big, None, pct(sample_size=256))
    assert time.perf_counter() - t0 < 10
    assert reads == [(2, 256, 256)]
    s_small = compute_stretch(small, None, pct(sample_size=256))
    assert s_big.low == pytest.approx(s_small.low, abs=5) and s_big.high == pytest.approx(s_small.high, abs=5)


def test_dtype_and_none_methods_read_only_a_bounded_sample(tmp_path, monkeypatch):
    u8 = make_raster(tmp_path / "u8.tif", 10, 10, count=3, dtype="uint8")
    u16 = make_raster(tmp_path / "u16.tif", 10, 10, count=1, dtype="uint16", fill=40000)
    f32 = make_raster(tmp_path / "f.tif", 10, 10, count=1, dtype="float32", fill=0.3)
    reads = []
    original = rasterio.io.DatasetReader.read

    def counting(self, *a, **k):  # dtype/none read a decimated sample (the 12-bit and 0..1 checks)
        reads.append(k.get("out_shape"))
        return original(self, *a, **k)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", counting)
    s = compute_stretch(u8, [3, 1], pct(method="dtype", sample_size=16))
    assert (s.low, s.high, s.bands) == ((0.0, 0.0), (255.0, 255.0), (3, 1))
    assert compute_stretch(u16, None, pct(method="dtype")).high == (65535.0,)
    assert compute_stretch(f32, None, pct(method="none")) == Stretch("none", (0.0,), (1.0,), (1,))
    assert len(reads) == 3  # one sample read each, never tile by tile
    with pytest.raises(ConfigError, match="integer raster") as e:
        compute_stretch(f32, None, pct(method="dtype"))
    assert str(e.value).startswith(str(f32))


def test_all_nodata_scene_has_no_stretch(tmp_path):
    path = make_raster(tmp_path / "e.tif", 40, 30, count=1, dtype="int16", nodata=-1, fill=-1)
    with pytest.raises(EmptyRasterError, match="no valid pixel") as e:
        compute_stretch(path, None, pct())
    assert str(e.value).startswith(str(path))


def test_apply_clips_to_unit_range_and_zeroes_invalid():
    s = Stretch("percentile", (10.0, 0.0), (20.0, 100.0))
    x = np.array([[[0, 10, 15, 20, 99]], [[-5, 0, 50, 100, 1e9]]], dtype=np.float32)
    valid = np.array([[True, True, True, True, False]])
    out = apply_stretch(x, valid, s)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[0, 0, 0.5, 1, 0]], [[0, 0, 0.5, 1, 0]]])
    np.testing.assert_allclose(apply_stretch(x, None, s)[:, 0, 4], [1, 1])


def test_constant_band_and_nan_do_not_warn_or_divide_by_zero():
    s = Stretch("percentile", (7.0, 0.0), (7.0, 1.0))
    x = np.array([[[6, 7, 8]], [[np.nan, 0.5, np.inf]]], dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = apply_stretch(x, None, s)
    np.testing.assert_array_equal(out, [[[0, 0, 1]], [[0, 0.5, 1]]])
    assert np.isfinite(out).all()


def test_constant_scene_band(tmp_path):
    data = np.stack([np.full((20, 20), 42, np.float32), gradient(20, 20, 1)[0]])
    path = make_raster(tmp_path / "k.tif", 20, 20, count=2, dtype="float32", fill=data)
    s = compute_stretch(path, None, pct())
    assert s.low[0] == s.high[0] == 42
    out = apply_stretch(data, None, s)
    assert (out[0] == 0).all() and np.isfinite(out).all()


def test_stretch_value_object():
    s = Stretch("percentile", (1, 2), (3, 4), (4, 3))
    assert s.low == (1.0, 2.0) and len(s) == 2
    assert Stretch.from_dict(s.to_dict()) == s
    assert hash(s) == hash(Stretch.from_dict(s.to_dict()))
    with pytest.raises(ConfigError):
        Stretch("percentile", (1.0,), (0.0,))
    with pytest.raises(ConfigError):
        Stretch("percentile", (1.0, 2.0), (3.0,))
    with pytest.raises(ConfigError):
        Stretch("percentile", (np.nan,), (1.0,))
    with pytest.raises(BandError, match="2 band"):
        apply_stretch(np.zeros((3, 4, 4), np.float32), None, s)


@pytest.mark.shared
def test_float64_cog_stretch(shared_data):
    path = shared_data / "scenes" / "netherlands" / "cog.tif"
    s = compute_stretch(path, None, pct())
    assert len(s) == 4 and all(hi > lo for lo, hi in zip(s.low, s.high, strict=True))
    spec = plan_tiles(path, TilingConfig(tile_size=128, halo=16)).tiles[0]
    tile = read_tile(path, spec)
    out = apply_stretch(tile.data, tile.valid, s)
    assert out.min() >= 0 and out.max() <= 1
    assert 0.3 < out[:, tile.valid].mean() < 0.7  # a 2..98 % stretch centres the data


@pytest.mark.shared
def test_rgb_byte_nodata_does_not_skew_stretch(shared_data):
    path = shared_data / "scenes" / "rasterio" / "RGB.byte.tif"
    s = compute_stretch(path, None, pct(sample_size=4096))
    with rasterio.open(path) as ds:
        data = ds.read()
        valid = ds.dataset_mask() > 0
    assert s.low == pytest.approx(tuple(np.percentile(data[:, valid & (data != 0).all(0)], 2, axis=1)))
    assert min(s.low) > 0  # the zero-filled corners (nodata 0) are not counted
