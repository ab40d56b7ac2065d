"""GDAL's block cache during a run: capped to what streaming a scene needs, not 5 % of RAM.

GDAL keeps the blocks of every open dataset, written or read, in one process-wide cache until the cache
is full or the dataset closes (default size: 5 % of RAM, 1.2 GB on a 24 GB machine). A run writes its
scratch rasters (provisional region ids, class map, confidence, a dense head's probabilities) window by
window and closes them only at the end, so with the default nearly every block of them stays cached and
memory grows with the scene's *area*: about 100 MB at 16x the area of ``RGB.byte.tif`` (3164 x 2872 px),
3 MB at 1x (``benchmarks/bench_memory.py``, ``docs/performance.md`` section 4).

Tiles go in row-major order, so the blocks still being filled lie in the last block row or two; older
blocks are complete. A cache of two block rows of every streamed raster (:func:`streaming_cache_bytes`,
at least :data:`CACHE_FLOOR`) lets GDAL's least-recently-used eviction write complete blocks out while
partial ones stay: memory grows with the scene's *width*, and the files are the same (only when GDAL
writes a block changes).

The cache size is process-wide (not thread-local like other GDAL options), so :func:`block_cache_limit`
is reference counted: concurrent or nested runs in one process share a cap of the sum of their needs,
and the size found at the first entry is restored when the last one leaves. A ``GDAL_CACHEMAX`` set by
the user (environment variable or an enclosing :class:`rasterio.Env`) wins: nothing is changed then.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CACHE_FLOOR", "block_cache_limit", "streaming_cache_bytes"]

#: Smallest cap (bytes): small scenes keep GDAL's usual behaviour (everything cached) at little cost.
CACHE_FLOOR = 16 * 2**20

#: Block rows of each streamed raster the cap holds: the one being filled and the one before.
BLOCK_ROWS = 2

_lock = threading.Lock()
_active: list[int] = []  # requested caps of the runs inside block_cache_limit
_saved: list[int] = []  # the cache size found when the first run entered (empty: not capped)


def streaming_cache_bytes(width: int, column_bytes: int) -> int:
    """Block cache (bytes) to stream a scene ``width`` pixels wide in row-major windows.

    Args:
        width: Scene width in pixels.
        column_bytes: Bytes per scene column of one block row of every raster streamed at once
            (block height x bytes per pixel x bands, summed over the rasters).

    Returns:
        ``max(CACHE_FLOOR, BLOCK_ROWS * width * column_bytes)``.
    """
    return max(CACHE_FLOOR, BLOCK_ROWS * int(width) * int(column_bytes))


def _user_chose() -> bool:
    from rasterio.env import getenv, hasenv

    return "GDAL_CACHEMAX" in os.environ or (hasenv() and "GDAL_CACHEMAX" in getenv())


def _apply() -> None:
    """Set the cache to ``min(saved, sum of active caps)``, or restore it when no run is active."""
    from rasterio.env import set_gdal_config

    if not _saved:
        return
    target = min(_saved[0], sum(_active)) if _active else _saved[0]
    set_gdal_config("GDAL_CACHEMAX", int(target))
    if not _active:
        _saved.clear()


@contextmanager
def block_cache_limit(nbytes: int) -> Iterator[None]:
    """Cap GDAL's block cache at ``nbytes`` while the block runs (never raised above its size before).

    Process-wide and reference counted (see the module docstring); skipped when the user set
    ``GDAL_CACHEMAX``.

    Args:
        nbytes: The cap in bytes (e.g. from :func:`streaming_cache_bytes`).
    """
    from rasterio.env import get_gdal_config

    with _lock:
        capped = bool(_saved) or not _user_chose()
        if capped and not _saved:
            size = get_gdal_config("GDAL_CACHEMAX")  # the effective size in bytes
            capped = isinstance(size, int) and size > 0
            if capped:
                _saved.append(int(size))
        if capped:
            _active.append(int(nbytes))
            _apply()
    try:
        yield
    finally:
        if capped:
            with _lock:
                _active.remove(int(nbytes))
                _apply()
