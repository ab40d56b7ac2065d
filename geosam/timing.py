"""Stage timing: wall-clock seconds per named stage, summed over repeats (one small context manager).

Example:
    >>> timer = StageTimer()
    >>> with timer.stage("read"):
    ...     pass
    >>> sorted(timer.seconds)
    ['read']
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["StageTimer"]


class StageTimer:
    """Seconds per stage (``time.perf_counter``), accumulated each time a stage runs.

    Attributes:
        seconds: Stage name -> summed seconds, in the order stages first finished.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block and add it to ``name`` (also when the block raises)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to stage ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def elapsed(self) -> float:
        """Seconds since the timer was made."""
        return time.perf_counter() - self._start
