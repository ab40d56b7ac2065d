"""Peak memory of planning and reading every tile must not grow with the scene size.

Each measurement runs in a fresh subprocess and reports how much its peak resident set size
(``ru_maxrss``) grew between a warmed-up start (imports done, one tile read) and the end of a full pass:
plan with ``skip_empty`` (decimated screen), read every tile in a loop, then again through the dask graph.
A raster four times larger must not raise that growth proportionally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geosam.testing import make_raster

SCRIPT = r"""
import json, resource, sys
from geosam.config import TilingConfig
from geosam.io.read import read_tile
from geosam.tiling import plan_tiles

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

def core_sum(tile):
    return float(tile.core_data[0][tile.core_valid].sum())

path = sys.argv[1]
cfg = TilingConfig(tile_size=1024, halo=64, skip_empty=True)
warm = plan_tiles(path, TilingConfig(tile_size=1024, halo=64, skip_empty=False))
core_sum(read_tile(path, warm.tiles[0], [1]))
base = peak_mb()
plan = plan_tiles(path, cfg)
total = sum(core_sum(read_tile(path, spec, [1])) for spec in plan.tiles)
result = {"growth_mb": peak_mb() - base, "tiles": len(plan.tiles), "total": total}
print(json.dumps(result))
"""


def measure(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("memory")
    # uint16, one band, nodata 0 (so the empty-tile screen runs), written 512 rows at a time
    return {
        n: make_raster(
            root / f"{n}.tif", n, n, count=1, dtype="uint16", nodata=0, blocksize=512, compress=None
        )
        for n in (4096, 8192)
    }


def test_peak_memory_does_not_scale_with_scene(rasters):
    small, big = measure(rasters[4096]), measure(rasters[8192])
    for n, m in ((4096, small), (8192, big)):
        # every pixel read exactly once: band 1 holds col + 1
        assert m["total"] == n * n * (n + 1) / 2
    assert (small["tiles"], big["tiles"]) == (25, 100)
    whole_big_mb = 8192 * 8192 * 4 / 2**20  # the big scene as float32: 256 MB
    assert big["growth_mb"] < whole_big_mb / 4, big
    # 4x the pixels; memory held per tile, not per scene, so growth stays about the same
    assert big["growth_mb"] < 1.5 * small["growth_mb"] + 24, (small, big)
