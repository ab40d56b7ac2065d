"""Keeping the model busy: tiles read ahead on a thread, results stitched behind on another, tiles batched.

A scene's tiles go through three stages. Reading and stretching (GDAL, numpy) and stitching plus the
scratch-raster write (numpy, GDAL) are CPU and I/O work; the encoder and the mask decoder are the
accelerator's. Run one after the other, a GPU waits for every read and every write. Here:

* :func:`prefetch` reads the next tiles on a background thread while the current ones are encoded
  (``depth`` tiles ahead; GDAL and numpy release the GIL, and each read opens its own dataset, as
  rasterio's concurrency guide asks);
* :class:`SerialWorker` runs the stitching of finished tiles, in order, on one background thread;
* :func:`tiles_per_call` decides how many tiles go through the encoder together: one on a CPU (batching
  makes a 2-core CPU slower per tile, ``docs/performance.md``), several on a GPU.

On a CPU this costs nothing: the reader overlaps file I/O with compute and the stitcher is cheap. The
thread pools are :mod:`concurrent.futures`' own; the order of results is the order of the input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_TILES_PER_CALL", "SerialWorker", "batched", "prefetch", "tiles_per_call"]

_I = TypeVar("_I")
_R = TypeVar("_R")

MAX_TILES_PER_CALL = 16
"""Upper bound of tiles per encoder call on a GPU (SAM ViT-B at 1024 px: about 1 GB each in bf16)."""


def prefetch(items: Iterable[_I], load: Callable[[_I], _R], depth: int = 2) -> Iterator[tuple[_I, _R]]:
    """``(item, load(item))`` in order, with up to ``depth`` loads running ahead on a background thread.

    An exception raised by ``load`` is raised here, at that item. Closing the generator early cancels
    the loads not yet started and waits for the running one.

    Args:
        items: What to load, in order.
        load: Called once per item on the background thread.
        depth: Loads in flight ahead of the consumer (at least 1).
    """
    pending: deque[tuple[_I, Future[_R]]] = deque()
    it = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geosam-read") as pool:
        try:
            for item in it:
                pending.append((item, pool.submit(load, item)))
                if len(pending) > max(1, depth):
                    head, fut = pending.popleft()
                    yield head, fut.result()
            while pending:
                head, fut = pending.popleft()
                yield head, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def batched(items: Iterable[_I], n: int) -> Iterator[list[_I]]:
    """Consecutive lists of up to ``n`` items (the last may be shorter)."""
    batch: list[_I] = []
    for item in items:
        batch.append(item)
        if len(batch) >= max(1, n):
            yield batch
            batch = []
    if batch:
        yield batch


class SerialWorker(Generic[_R]):
    """Runs submitted calls one at a time, in submission order, on one background thread.

    Use as a context manager: leaving it waits for every call and raises the first exception any of
    them raised (later calls are still run: they are independent of the failed one's result only if
    the caller made them so; stitching stops at the first error because :meth:`submit` raises it).
    """

    def __init__(self, name: str = "geosam-post") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._futures: list[Future[_R]] = []

    def submit(self, fn: Callable[..., _R], *args: Any) -> None:
        """Queue ``fn(*args)``; raises the exception of an earlier call that has failed."""
        self._raise_done()
        self._futures.append(self._pool.submit(fn, *args))

    def _raise_done(self) -> None:
        keep = []
        for fut in self._futures:
            if fut.done():
                fut.result()  # raises the call's exception
            else:
                keep.append(fut)
        self._futures = keep

    def drain(self) -> None:
        """Wait for every queued call; raise the first exception."""
        futures, self._futures = self._futures, []
        for fut in futures:
            fut.result()

    def __enter__(self) -> SerialWorker[_R]:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.drain()
            else:
                for fut in self._futures:
                    fut.cancel()
        finally:
            self._pool.shutdown(wait=True)


def tiles_per_call(device: torch.device, batch_size: int, chips_per_tile: int) -> int:
    """Tiles encoded together: 1 on a CPU; ``16 x batch_size`` encoder inputs' worth on a GPU.

    ``RunConfig.batch_size`` counts encoder inputs per call in units of 16 chips; a SAM tile is one
    input, a default-model tile 16. Capped at :data:`MAX_TILES_PER_CALL`.
    """
    if device.type == "cpu":
        return 1
    per_call = 16 * max(1, batch_size)
    return max(1, min(MAX_TILES_PER_CALL, per_call // max(1, chips_per_tile)))
