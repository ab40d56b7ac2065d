"""GDAL's block cache during a run: capped to two block rows of the streamed rasters, outputs unchanged."""

from __future__ import annotations

import pytest
import rasterio
from helpers_runs import assert_same_outputs
from rasterio.env import get_gdal_config, set_gdal_config

import geosam.io.block_cache as block_cache
from geosam.config import RunConfig
from geosam.io.block_cache import CACHE_FLOOR, block_cache_limit, streaming_cache_bytes
from geosam.io.scene_writer import streamed_column_bytes
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing_models import make_tiny_bundle
from tests.test_predict import CLASSES, blocky_scene


@pytest.fixture
def cache_size():
    """The cache size before the test, restored after it (it is process-wide)."""
    before = int(get_gdal_config("GDAL_CACHEMAX"))
    yield before
    set_gdal_config("GDAL_CACHEMAX", before)


def test_streaming_cache_grows_with_the_width_from_a_floor():
    column = streamed_column_bytes(10, "float32", dense=False, probabilities=False)
    assert column == 256 * 4 + 512 * (1 + 4)  # provisional ids, class map, confidence
    assert streaming_cache_bytes(100, column) == CACHE_FLOOR
    assert streaming_cache_bytes(3164, column) == 2 * 3164 * column  # 21 MB at 16x the benchmark area
    dense = streamed_column_bytes(10, "uint8", dense=True, probabilities=True)
    assert dense == 256 * 4 + 512 * 2 + 256 * 10 + 512 * 10


def test_limit_caps_nests_and_restores(cache_size, monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    with block_cache_limit(20 * 2**20):
        assert get_gdal_config("GDAL_CACHEMAX") == 20 * 2**20
        with block_cache_limit(30 * 2**20):  # a second run in the process: they share the sum
            assert get_gdal_config("GDAL_CACHEMAX") == 50 * 2**20
        assert get_gdal_config("GDAL_CACHEMAX") == 20 * 2**20
    assert get_gdal_config("GDAL_CACHEMAX") == cache_size
    with block_cache_limit(cache_size * 2):  # never raised above what it was
        assert get_gdal_config("GDAL_CACHEMAX") == cache_size
    assert get_gdal_config("GDAL_CACHEMAX") == cache_size and not block_cache._saved


def test_user_choice_wins(cache_size, monkeypatch):
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    with block_cache_limit(20 * 2**20):
        assert get_gdal_config("GDAL_CACHEMAX") == cache_size
    monkeypatch.delenv("GDAL_CACHEMAX")
    with rasterio.Env(GDAL_CACHEMAX=cache_size - 2**20), block_cache_limit(20 * 2**20):
        assert get_gdal_config("GDAL_CACHEMAX") == cache_size - 2**20
    assert get_gdal_config("GDAL_CACHEMAX") == cache_size


def test_a_tiny_cache_writes_the_same_outputs(tmp_path, cache_size, monkeypatch):
    """A cache far below one block row (partial blocks evicted and read back all the time) changes no
    pixel of the class map or confidence and no region; the cap is in force during the run only."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    bundle = make_tiny_bundle(tmp_path / "bundle", classes=CLASSES, input_size=32, tile_size=128)
    scene = blocky_scene(tmp_path / "scene.tif")
    cfg = RunConfig.model_validate(
        {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}}
    )
    models = load_models(bundle, None, cfg)
    seen: list[int] = []

    def on_tile(done: int, total: int) -> None:
        seen.append(int(get_gdal_config("GDAL_CACHEMAX")))

    default = predict_scene(scene, tmp_path / "default", models, cfg, on_tile=on_tile)
    assert set(seen) == {CACHE_FLOOR} and get_gdal_config("GDAL_CACHEMAX") == cache_size
    seen.clear()
    monkeypatch.setattr(block_cache, "streaming_cache_bytes", lambda width, column: 64 * 2**10)
    tiny = predict_scene(scene, tmp_path / "tiny", models, cfg, on_tile=on_tile)
    assert set(seen) == {64 * 2**10} and get_gdal_config("GDAL_CACHEMAX") == cache_size
    assert_same_outputs(default, tiny)
