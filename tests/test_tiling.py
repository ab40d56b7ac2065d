"""Tiling: grid math (property tests), tile-read-stitch round trips, empty-tile skipping, dask graphs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

import geosam.io.read as read_mod
import geosam.tiling as tiling
from geosam.config import TilingConfig
from geosam.errors import ConfigError
from geosam.io.read import open_scene, read_tile, read_window
from geosam.testing import coords_image, make_large_vrt, make_raster
from geosam.tiling import plan_tiles
from geosam.types import PixelWindow, SceneInfo

WKT = 'PROJCS["WGS 84 / UTM zone 33N"]'  # plan_tiles copies the CRS text; it never parses it


def scene(width: int, height: int, **kw: object) -> SceneInfo:
    fields: dict = {
        "path": "mem.tif",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint16",
        "crs": WKT,
        "transform": (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0),
        "nodata": (None,),
        "band_names": (None,),
    }
    fields.update(kw)
    return SceneInfo(**fields)


def cfg(tile_size: int, halo: int, skip_empty: bool = True) -> TilingConfig:
    return TilingConfig(tile_size=tile_size, halo=halo, skip_empty=skip_empty)


def stitch(path, plan, bands=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read every tile, keep its core, paste it back; also count how often each pixel was written."""
    info = plan.scene
    n = info.count if bands is None else len(bands)
    out = np.full((n, info.height, info.width), -1.0, dtype=np.float32)
    valid = np.zeros((info.height, info.width), dtype=bool)
    hits = np.zeros((info.height, info.width), dtype=np.int32)
    for spec in plan.tiles:
        tile = read_tile(path, spec, bands)
        assert tile.data.shape == (n, plan.tile_size, plan.tile_size)
        c = spec.core
        out[:, c.row_off : c.row_end, c.col_off : c.col_end] = tile.core_data
        valid[c.row_off : c.row_end, c.col_off : c.col_end] = tile.core_valid
        hits[c.row_off : c.row_end, c.col_off : c.col_end] += 1
    return out, valid, hits


# --- grid math ---------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(1, 400),
    height=st.integers(1, 400),
    tile_size=st.integers(32, 160),
    halo_frac=st.floats(0, 0.2499),
)
def test_cores_partition_scene_and_windows_are_constant(width, height, tile_size, halo_frac):
    halo = int(tile_size * halo_frac)
    plan = plan_tiles(scene(width, height), cfg(tile_size, halo))
    stride = tile_size - 2 * halo
    hits = np.zeros((height, width), dtype=np.int32)
    for s in plan.tiles:
        c, w = s.core, s.window
        assert c.col_off >= 0 and c.row_off >= 0 and c.col_end <= width and c.row_end <= height
        hits[c.row_off : c.row_end, c.col_off : c.col_end] += 1
        assert (w.width, w.height) == (tile_size, tile_size) == s.size
        assert (c.col_off, c.row_off) == (s.col * stride, s.row * stride)
        # the halo is window minus core: exactly `halo` before, and exactly `halo` after unless clipped
        assert (c.col_off - w.col_off, c.row_off - w.row_off) == (halo, halo)
        assert w.col_end - c.col_end == (halo if c.width == stride else tile_size - halo - c.width)
        assert w.row_end - c.row_end == (halo if c.height == stride else tile_size - halo - c.height)
        assert w.col_end - c.col_end >= halo and w.row_end - c.row_end >= halo
        inside = w.col_off >= 0 and w.row_off >= 0 and w.col_end <= width and w.row_end <= height
        assert s.padded == (not inside)
        assert c.relative_to(w) == s.core_slices
    assert (hits == 1).all(), "cores must cover every pixel exactly once"
    rows, cols = plan.grid
    assert [s.index for s in plan.tiles] == list(range(rows * cols))
    assert len({s.tile_id for s in plan.tiles}) == len(plan.tiles)


@settings(max_examples=100, deadline=None)
@given(
    width=st.integers(1, 60_000),
    height=st.integers(1, 60_000),
    tile_size=st.sampled_from([512, 1024, 2048]),
    halo=st.integers(0, 63),
)
def test_large_grids_tile_without_gaps(width, height, tile_size, halo):
    plan = plan_tiles(scene(width, height), cfg(tile_size, halo, skip_empty=False))
    stride = tile_size - 2 * halo
    rows, cols = plan.grid
    assert len(plan.tiles) == rows * cols
    last = plan.tiles[-1].core
    assert (last.col_end, last.row_end) == (width, height)
    # per grid row/column, core extents tile [0, size) with no gap or overlap
    first_row = [s.core for s in plan.tiles[:cols]]
    assert [c.col_off for c in first_row] == [i * stride for i in range(cols)]
    assert sum(c.width for c in first_row) == width
    assert sum(plan.tiles[r * cols].core.height for r in range(rows)) == height


def test_scene_smaller_than_a_tile_is_one_padded_tile():
    plan = plan_tiles(scene(20, 13), cfg(64, 8))
    (spec,) = plan.tiles
    assert spec.window == PixelWindow(-8, -8, 64, 64)
    assert spec.core == PixelWindow(0, 0, 20, 13)
    assert spec.padded


def test_halo_zero_tiles_abut():
    plan = plan_tiles(scene(128, 64), cfg(64, 0))
    assert [s.window for s in plan.tiles] == [PixelWindow(0, 0, 64, 64), PixelWindow(64, 0, 64, 64)]
    assert [s.window for s in plan.tiles] == [s.core for s in plan.tiles]
    assert not any(s.padded for s in plan.tiles)


def test_plan_needs_a_core():
    bad = TilingConfig.model_construct(tile_size=64, halo=32, skip_empty=False)
    with pytest.raises(ConfigError, match="2 \\* halo"):
        plan_tiles(scene(100, 100), bad)
    with pytest.raises(ConfigError, match="resolved"):
        plan_tiles(scene(100, 100), TilingConfig())
    resolved = plan_tiles(scene(100, 100), TilingConfig().resolved(64))
    assert (resolved.tile_size, resolved.halo) == (64, 8)


def test_plan_from_info_does_no_io(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("plan_tiles read pixels")

    monkeypatch.setattr(read_mod, "read_validity", boom)
    # integer bands, no nodata, no mask: nothing can be invalid, so skip_empty needs no read either
    plan = plan_tiles(scene(100_000, 80_000), cfg(1024, 64, skip_empty=True))
    assert len(plan) == 112 * 90 and plan.n_skipped == 0
    assert plan.scene_id == "mem"
    assert plan_tiles(scene(10, 10), cfg(64, 8), scene_id="S2A_T33UUP").tiles[0].scene_id == "S2A_T33UUP"


# --- round trips on coordinate-encoding rasters ----------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "tile_size", "halo", "dtype"),
    [
        (300, 200, 64, 8, "uint16"),  # several rows and columns, clipped last row/col
        (101, 77, 32, 4, "float32"),  # odd sizes
        (20, 13, 64, 8, "int32"),  # smaller than one tile
        (48, 96, 64, 8, "uint16"),  # exactly one stride wide
        (1, 50, 32, 0, "float32"),  # one column, halo 0
        (130, 70, 32, 0, "uint16"),  # halo 0
    ],
)
def test_tile_read_stitch_round_trip(tmp_path, width, height, tile_size, halo, dtype):
    path = make_raster(tmp_path / "c.tif", width, height, count=3, dtype=dtype, blocksize=16)
    plan = plan_tiles(path, cfg(tile_size, halo))
    expected = coords_image(PixelWindow(0, 0, width, height), 3, dtype)
    out, valid, hits = stitch(path, plan)
    assert (hits == 1).all()
    assert valid.all()
    np.testing.assert_array_equal(out, expected)
    # and each full window (halo included) holds the right pixels, with padding zero and invalid
    scene_win = PixelWindow(0, 0, width, height)
    for spec in plan.tiles:
        tile = read_tile(path, spec)
        inside = spec.window.intersection(scene_win)
        assert inside is not None
        rows, cols = inside.relative_to(spec.window)
        np.testing.assert_array_equal(tile.data[:, rows, cols], coords_image(inside, 3, dtype))
        outside = np.ones(spec.size, dtype=bool)
        outside[rows, cols] = False
        assert not tile.valid[outside].any()
        assert (tile.data[:, outside] == 0).all()
        assert tile.valid[rows, cols].all()


def test_band_subset_and_order_follow_request(tmp_path):
    path = make_raster(tmp_path / "c.tif", 90, 70, count=3, dtype="uint16")
    plan = plan_tiles(path, cfg(32, 4))
    out, _, _ = stitch(path, plan, bands=[2, 1])
    np.testing.assert_array_equal(out, coords_image(PixelWindow(0, 0, 90, 70), 3, "uint16")[[1, 0]])


@pytest.mark.parametrize(
    "transform",
    [
        Affine.translation(500000, 5000000) @ Affine.rotation(30) @ Affine.scale(10, -10),  # rotated
        Affine(10, 0, 500000, 0, 10, 4000000),  # south-up (rows grow northwards)
        Affine(0.5, 0.1, 300000, -0.2, -0.5, 6000000),  # sheared
    ],
)
def test_tile_transform_locates_tile_pixels(tmp_path, transform):
    path = make_raster(tmp_path / "r.tif", 150, 110, count=2, dtype="float32", transform=transform)
    info = open_scene(path)
    assert Affine(*info.transform).almost_equals(transform)
    plan = plan_tiles(info, cfg(64, 8))
    inv = ~Affine(*info.transform)
    for spec in plan.tiles:
        tile = read_tile(path, spec)
        assert spec.affine.almost_equals(
            Affine(*info.transform) @ Affine.translation(spec.window.col_off, spec.window.row_off)
        )
        # the map position of tile pixel (i, j), projected back on the scene, is the pixel it holds
        for i, j in [(0, 0), (5, 40), (8, 8), (40, 5), (63, 63)]:
            x, y = spec.affine @ (j + 0.5, i + 0.5)
            col, row = inv @ (x, y)
            col, row = int(np.floor(col)), int(np.floor(row))
            if 0 <= col < info.width and 0 <= row < info.height:
                assert tile.valid[i, j]
                assert tile.data[0, i, j] == col + 1 and tile.data[1, i, j] == row + 1
            else:
                assert not tile.valid[i, j]


# --- skipping empty tiles ------------------------------------------------------------------------------


def brute_force_nonempty(plan, valid: np.ndarray) -> set[int]:
    out = set()
    for s in plan.tiles + plan.skipped:
        c = s.core
        if valid[c.row_off : c.row_end, c.col_off : c.col_end].any():
            out.add(s.index)
    return out


def test_skip_tiles_whose_core_is_all_nodata(tmp_path):
    w, h = 300, 200
    invalid = np.zeros((h, w), dtype=bool)
    invalid[:, :130] = True  # left part nodata; the tile starting at col 96 still has valid core pixels
    invalid[150:, 200:] = True
    path = make_raster(
        tmp_path / "n.tif", w, h, count=2, dtype="float32", nodata=-99999, nodata_where=invalid
    )
    plan = plan_tiles(path, cfg(64, 8))
    kept = {s.index for s in plan.tiles}
    assert kept == brute_force_nonempty(plan, ~invalid)
    assert plan.n_skipped == len(plan.skipped) > 0
    assert len(plan.tiles) + plan.n_skipped == plan.grid[0] * plan.grid[1]
    # the rule is about the core: the tile at col 2 (core 96..143) is kept, col 1 (48..95) skipped
    by_rc = {(s.row, s.col): s for s in plan.tiles}
    assert (0, 2) in by_rc and (0, 1) not in by_rc
    # stitching the kept tiles gives back every valid pixel
    out, valid, _ = stitch(path, plan)
    assert (valid == ~invalid).all()
    np.testing.assert_array_equal(out[:, valid], coords_image(PixelWindow(0, 0, w, h), 2)[:, valid])


@pytest.mark.parametrize("pixel", [(0, 0), (47, 47), (48, 48), (199, 299), (101, 177), (13, 250)])
def test_single_valid_pixel_is_never_skipped_by_decimated_screen(tmp_path, monkeypatch, pixel):
    # a 300x200 raster screened at 16 px longest side: each sample spans ~19 pixels, so the only valid
    # pixel is almost never sampled; the exact confirmation of candidate cores must still find it
    monkeypatch.setattr(tiling, "_SCREEN_SIDE", 16)
    w, h = 300, 200
    invalid = np.ones((h, w), dtype=bool)
    invalid[pixel] = False
    path = make_raster(tmp_path / "one.tif", w, h, count=1, dtype="uint16", nodata=0, nodata_where=invalid)
    plan = plan_tiles(path, cfg(64, 8))
    (spec,) = plan.tiles
    c = spec.core
    assert c.row_off <= pixel[0] < c.row_end and c.col_off <= pixel[1] < c.col_end
    tile = read_tile(path, spec)
    assert tile.core_valid.sum() == 1


def test_single_valid_pixel_in_scene_larger_than_screen(tmp_path):
    # wider than the 2048-px screen, so the real decimated path runs (no monkeypatching)
    w, h = 4200, 40
    invalid = np.ones((h, w), dtype=bool)
    invalid[21, 3001] = False
    path = make_raster(tmp_path / "wide.tif", w, h, count=1, dtype="float32", nodata_where=invalid)  # NaN
    plan = plan_tiles(path, cfg(512, 32))
    assert [s.core.col_off <= 3001 < s.core.col_end for s in plan.tiles] == [True]
    assert plan.n_skipped == plan.grid[1] - 1


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(1, 90),
    height=st.integers(1, 90),
    halo=st.integers(0, 7),
    screen=st.sampled_from([4, 16, 2048]),
    seed=st.integers(0, 2**16),
    density=st.sampled_from([0.0, 0.001, 0.01, 0.2]),
)
def test_skip_rule_property(width, height, halo, screen, seed, density):
    # whatever the screen resolution: a skipped tile's core has no valid pixel, a tile with one is kept
    valid = np.random.default_rng(seed).random((height, width)) < density
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiling, "_SCREEN_SIDE", screen)
        path = make_raster(
            Path(tmp) / "p.tif", width, height, count=1, dtype="uint8", nodata=0, nodata_where=~valid
        )
        plan = plan_tiles(path, cfg(32, halo))
    kept, truth = {s.index for s in plan.tiles}, brute_force_nonempty(plan, valid)
    assert truth <= kept  # never skip a core holding a valid pixel
    if screen == 2048:  # the screen saw every pixel: exact
        assert kept == truth
    assert len(plan.tiles) + plan.n_skipped == plan.grid[0] * plan.grid[1]


def test_pixel_valid_in_one_band_keeps_its_tile(tmp_path):
    data = np.full((2, 100, 100), -1.0, dtype=np.float32)
    data[1, 70, 70] = 5.0  # only band 2 has data, at one pixel
    path = make_raster(tmp_path / "b.tif", 100, 100, count=2, dtype="float32", nodata=-1, fill=data)
    plan = plan_tiles(path, cfg(32, 4))
    assert [(s.row, s.col) for s in plan.tiles] == [(2, 2)]
    tile = read_tile(path, plan.tiles[0], [2])
    assert tile.core_valid.sum() == 1


def test_skip_uses_internal_mask_and_nan(tmp_path):
    mask = np.zeros((128, 128), dtype=bool)
    mask[100:, 100:] = True
    p1 = make_raster(tmp_path / "m.tif", 128, 128, count=3, dtype="uint8", fill="random", mask=mask)
    plan = plan_tiles(p1, cfg(32, 0))
    assert {(s.row, s.col) for s in plan.tiles} == {(3, 3)}
    nan = np.ones((128, 128), dtype=bool)
    nan[5, 5] = False
    p2 = make_raster(tmp_path / "nan.tif", 128, 128, count=1, dtype="float64", nodata_where=nan)
    assert {(s.row, s.col) for s in plan_tiles(p2, cfg(32, 0)).tiles} == {(0, 0)}


def test_all_nodata_scene_skips_everything_and_skip_empty_false_keeps_all(tmp_path):
    path = make_raster(tmp_path / "e.tif", 100, 90, count=1, dtype="int16", nodata=-1, fill=-1)
    plan = plan_tiles(path, cfg(32, 4))
    assert plan.grid == (4, 5)  # stride 24
    assert plan.tiles == () and plan.n_skipped == 20
    keep_all = plan_tiles(path, cfg(32, 4, skip_empty=False))
    assert len(keep_all) == 20 and keep_all.n_skipped == 0


def test_screen_reads_only_candidate_cores(tmp_path, monkeypatch):
    # 4000 x 4000 virtual scene (no pixels written) whose left half is nodata
    invalid = np.zeros((100, 100), dtype=bool)
    invalid[:, :50] = True
    small = make_raster(
        tmp_path / "s.tif", 100, 100, count=1, dtype="float32", nodata=-9, nodata_where=invalid
    )
    vrt = make_large_vrt(tmp_path / "big.vrt", small, 4000, 4000)
    calls: list = []
    real = read_mod.read_validity

    def spy(path, window=None, **kw):
        calls.append(window)
        return real(path, window, **kw)

    monkeypatch.setattr(read_mod, "read_validity", spy)
    plan = plan_tiles(vrt, cfg(512, 32))
    # stride 448: cores of columns 0..3 end at 1792 <= 2000 (all nodata), column 4 straddles the edge
    assert {s.col for s in plan.skipped} == {0, 1, 2, 3}
    assert {s.col for s in plan.tiles} == {4, 5, 6, 7, 8}
    assert calls[0] is None  # one decimated whole-scene read ...
    assert set(calls[1:]) == {s.core for s in plan.skipped}  # ... then only the candidates
    assert len(calls) == 1 + plan.n_skipped


def test_read_window_boundless_matches_tile(tmp_path):
    path = make_raster(tmp_path / "w.tif", 50, 40, count=1)
    data, valid = read_window(path, PixelWindow(-5, 30, 20, 20))
    assert valid.sum() == 15 * 10
    assert data[0, 0, 5] == 1 and data[0, 0, 0] == 0


# --- real scenes ---------------------------------------------------------------------------------------


@pytest.mark.shared
def test_rgb_byte_rotated_footprint_skips_only_empty_corners(shared_data):
    path = shared_data / "scenes" / "rasterio" / "RGB.byte.tif"
    plan = plan_tiles(path, cfg(128, 16))
    with rasterio.open(path) as ds:
        truth = ds.read_masks().astype(bool).any(axis=0)  # GDAL: valid where any band is
        raw = ds.read()
    assert {s.index for s in plan.tiles} == brute_force_nonempty(plan, truth)
    assert plan.n_skipped >= 4  # the four nodata corners of the rotated footprint
    out, valid, hits = stitch(path, plan)
    assert (hits[truth] == 1).all()
    np.testing.assert_array_equal(out[:, valid], raw[:, valid].astype(np.float32))
    assert (valid == (raw != 0).all(axis=0)).all()
