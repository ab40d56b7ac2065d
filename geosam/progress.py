"""Progress of long work: a rich bar on a terminal, INFO log lines everywhere else.

One public API for every long loop (``geosam run`` tiles, training epochs and embedding passes, chip
reading, batch and ingest scenes):

* :class:`Progress` tracks one task (``done / total``) and shows it;
* :func:`progress_iter` wraps an iterable in a :class:`Progress`;
* :class:`BatchProgress` tracks a batch's scenes and the tiles of the scenes in flight (fed by the
  events of :func:`geosam.batch.execute`).

Library functions take ``progress: bool`` and pass it as ``enabled``; nothing else in the library
prints. How progress shows is chosen by :func:`progress_settings` (the CLI sets it once per command):

* ``bar``: rich progress bars with rate and ETA, for a terminal;
* ``log``: one INFO line on the ``geosam.progress`` logger every ``interval_s`` seconds
  (``done/total``, percent, rate, elapsed, ETA) and a closing line, for cron, nohup, CI, systemd and
  ``!geosam`` in Jupyter, where stderr is not a terminal and a bar would print nothing useful;
* ``auto`` (default): ``bar`` when stderr is a terminal or a Jupyter kernel, else ``log``;
* ``off``: nothing.

Why not tqdm or rich alone: both draw bars; neither writes periodic lines through :mod:`logging`,
which is what a log file of a scheduled run needs (timestamps, levels, one handler configuration).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = [
    "BatchProgress",
    "Progress",
    "ProgressSettings",
    "current_settings",
    "format_duration",
    "progress_iter",
    "progress_settings",
]

T = TypeVar("T")

log = logging.getLogger("geosam.progress")

Mode = Literal["auto", "bar", "log", "off"]


@dataclass(frozen=True)
class ProgressSettings:
    """How progress is shown.

    Attributes:
        mode: ``auto``, ``bar``, ``log`` or ``off`` (see the module docstring).
        interval_s: Seconds between two log lines of one task in ``log`` mode (0: after every step).
    """

    mode: Mode = "auto"
    interval_s: float = 30.0

    def resolved_mode(self) -> Literal["bar", "log", "off"]:
        """``auto`` made concrete for the current process: ``bar`` on a terminal or Jupyter, else ``log``."""
        if self.mode != "auto":
            return self.mode
        return "bar" if _interactive() else "log"


_SETTINGS: ContextVar[ProgressSettings] = ContextVar("geosam_progress", default=ProgressSettings())  # noqa: B039


def current_settings() -> ProgressSettings:
    """The settings in effect (see :func:`progress_settings`)."""
    return _SETTINGS.get()


@contextlib.contextmanager
def progress_settings(
    mode: Mode | None = None, interval_s: float | None = None
) -> Iterator[ProgressSettings]:
    """Show progress as ``mode`` with log lines every ``interval_s`` within the ``with`` block.

    Scoped (a :class:`contextvars.ContextVar`, restored on exit), so it never leaks into other threads
    or later callers. ``None`` keeps the current value.
    """
    cur = _SETTINGS.get()
    new = ProgressSettings(
        mode=cur.mode if mode is None else mode,
        interval_s=cur.interval_s if interval_s is None else max(0.0, float(interval_s)),
    )
    token = _SETTINGS.set(new)
    try:
        yield new
    finally:
        _SETTINGS.reset(token)


def _interactive() -> bool:
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # closed or replaced stream
        return False
    return "ipykernel" in sys.modules and _in_jupyter()


def _in_jupyter() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - ipykernel without IPython
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour); ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _rate_text(rate: float, unit: str) -> str:
    if rate <= 0:
        return "-/s"
    return f"{rate:.2f} {unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{unit.rstrip('s') or unit}"


def _line(description: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    """One progress line: ``desc: 12/40 (30%), 0.42 tiles/s, elapsed 0:28, ETA 1:06``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        eta = format_duration((total - done) / rate) if rate > 0 else "?"
        return (
            f"{description}: {done}/{total} ({100 * done / total:.0f}%), {_rate_text(rate, unit)}, "
            f"elapsed {format_duration(elapsed)}, ETA {eta}"
        )
    return f"{description}: {done} {unit}, {_rate_text(rate, unit)}, elapsed {format_duration(elapsed)}"


def _rate_column_class() -> type:
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second (or seconds per item when slower than one per second)."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            if not speed:
                return Text("-/s", style="progress.data.speed")
            text = f"{speed:.1f}/s" if speed >= 1 else f"{1 / speed:.1f}s/it"
            return Text(text, style="progress.data.speed")

    return RateColumn


def _rich_progress() -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _rate_column_class()(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


class _Shown:
    """The mode, clock and log lines of :class:`Progress` and :class:`BatchProgress` (they set ``_bar``)."""

    def __init__(self, enabled: bool, settings: ProgressSettings | None, clock: Any) -> None:
        s = settings or current_settings()
        self.mode = s.resolved_mode() if enabled else "off"
        self.interval_s = s.interval_s
        self._clock = clock
        self._t0 = clock()
        self._last = self._t0
        self._lines = 0
        self._bar: Any = None

    @property
    def elapsed(self) -> float:
        """Seconds since the task started."""
        return float(self._clock() - self._t0)

    def line(self) -> str:
        """The current progress line (what ``log`` mode writes)."""
        raise NotImplementedError

    def _maybe_log(self) -> None:
        """In ``log`` mode, log :meth:`line` when ``interval_s`` has passed since the last one."""
        if self.mode != "log":
            return
        now = self._clock()
        if now - self._last >= self.interval_s:
            self._last = now
            self._lines += 1
            log.info("%s", self.line())

    def _finish(self) -> None:
        """Stop the bar, or log the closing line (when lines were logged)."""
        if self._bar is not None:
            self._bar.stop()
        elif self.mode == "log" and self._lines:
            log.info("%s (finished)", self.line())


class Progress(_Shown):
    """Progress of one task: ``done`` of ``total`` steps, shown as the settings say.

    Use as a context manager (or call :meth:`close`). In ``log`` mode a line is logged when
    ``interval_s`` has passed since the last one (checked on every :meth:`advance`/:meth:`update`), and a
    closing line when at least one line was logged, so short loops stay silent.

    Args:
        description: What is counted, e.g. ``"scene_a: tiles"``.
        total: Number of steps (``None``: unknown; no percent or ETA).
        enabled: ``False`` shows nothing (the library's ``progress`` flag).
        unit: Name of a step in log lines (``tiles``, ``batches``, ``chips``...).
        settings: Overrides :func:`current_settings` (tests).
        clock: Monotonic clock in seconds (tests).
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        enabled: bool = True,
        unit: str = "steps",
        settings: ProgressSettings | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__(enabled, settings, clock)
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self._closed = False
        self._task: Any = None
        if self.mode == "bar":
            self._bar = _rich_progress()
            self._bar.start()
            self._task = self._bar.add_task(description, total=total)

    def line(self) -> str:
        """The current progress line (what ``log`` mode writes)."""
        return _line(self.description, self.done, self.total, self.unit, self.elapsed)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps done."""
        self.update(self.done + n)

    def update(self, done: int | None = None, total: int | None = None) -> None:
        """Set the steps done and/or the total."""
        if done is not None:
            self.done = int(done)
        if total is not None:
            self.total = int(total)
        if self.mode == "bar":
            self._bar.update(self._task, completed=self.done, total=self.total)
        else:
            self._maybe_log()

    def close(self) -> None:
        """Stop the bar, or log the closing line (when lines were logged)."""
        if self._closed:
            return
        self._closed = True
        self._finish()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_iter(
    items: Iterable[T],
    description: str,
    *,
    enabled: bool = True,
    total: int | None = None,
    unit: str = "steps",
) -> Iterator[T]:
    """Yield ``items``, counting each as one step of a :class:`Progress` (when ``enabled``)."""
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(description, total, unit=unit) as p:
        for item in items:
            yield item
            p.advance()


class BatchProgress(_Shown):
    """A batch's progress: scenes done of all, and the tiles of the scenes started so far.

    Fed with :meth:`advance` (scenes finished or skipped) and :meth:`event` (the ``start``/``tile``
    events of :func:`geosam.batch.execute`). ``bar`` mode shows two rich bars; ``log`` mode writes one
    line every ``interval_s``: ``batch: 3/10 scenes (1 failed), tiles 120/400 of 4 started scenes,
    0.51 tiles/s, elapsed 3:55, ETA of the started scenes 9:09``.

    Args:
        total: Scenes in the batch.
        enabled: ``False`` shows nothing.
        settings: Overrides :func:`current_settings` (tests).
        clock: Monotonic clock in seconds (tests).
    """

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        settings: ProgressSettings | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__(enabled, settings, clock)
        self.total = total
        self.done = 0
        self.failed = 0
        self.tiles: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> BatchProgress:
        if self.mode == "bar":
            self._bar = _rich_progress()
            self._bar.start()
            self._scenes = self._bar.add_task("scenes", total=self.total)
            self._tiles = self._bar.add_task("tiles", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()

    def tile_counts(self) -> tuple[int, int]:
        """``(done, total)`` tiles over the scenes that reported tiles."""
        return sum(d for d, _ in self.tiles.values()), sum(t for _, t in self.tiles.values())

    def line(self) -> str:
        """The current progress line (what ``log`` mode writes)."""
        elapsed = self.elapsed
        failed = f" ({self.failed} failed)" if self.failed else ""
        text = f"batch: {self.done}/{self.total} scenes{failed}"
        tdone, ttotal = self.tile_counts()
        if ttotal:
            rate = tdone / elapsed if elapsed > 0 else 0.0
            eta = format_duration((ttotal - tdone) / rate) if rate > 0 else "?"
            text += (
                f", tiles {tdone}/{ttotal} of {len(self.tiles)} started scene(s), "
                f"{_rate_text(rate, 'tiles')}, ETA of the started scenes {eta}"
            )
        return f"{text}, elapsed {format_duration(elapsed)}"

    def advance(self, n: int = 1, *, failed: int = 0) -> None:
        """Count ``n`` more scenes finished (``failed`` of them failed)."""
        if not n:
            return
        self.done += n
        self.failed += failed
        if self._bar is not None:
            self._bar.advance(self._scenes, n)
        self._maybe_log()

    def event(self, ev: dict[str, Any]) -> None:
        """Take a progress event (``{"kind": "tile", "scene_id", "done", "total"}``; others ignored)."""
        if ev.get("kind") != "tile":
            return
        self.tiles[str(ev["scene_id"])] = (int(ev["done"]), int(ev["total"]))
        if self._bar is not None:
            done, total = self.tile_counts()
            self._bar.update(self._tiles, completed=done, total=total)
        self._maybe_log()

    def outcome(self, outcome: Any) -> None:
        """Count a finished scene (a :class:`geosam.batch.SceneOutcome`)."""
        self.advance(1, failed=int(getattr(outcome, "status", "") == "failed"))
