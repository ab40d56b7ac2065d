"""Progress bars for long work (rich), silent when disabled or when output is not a terminal.

Library functions take ``progress: bool`` and use :func:`progress_iter`; nothing else in the library
prints. The CLI enables progress; dask workers and tests leave it off.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress_iter"]

T = TypeVar("T")


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


def progress_iter(
    items: Iterable[T], description: str, *, enabled: bool = True, total: int | None = None
) -> Iterator[T]:
    """Yield ``items`` while showing a rich progress bar with rate and ETA (when ``enabled``)."""
    if not enabled:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    _RateColumn = _rate_column_class()
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
