"""Signals for clean stops: SIGTERM as an exception, and SIGINT/SIGTERM held back around commits.

Schedulers, ``docker stop`` and ``systemctl stop`` send SIGTERM; Python's default for it ends the
process at once, skipping every ``finally`` and ``except`` block (like SIGKILL). Entry points (the CLI)
enter :func:`sigterm_raises`, so SIGTERM raises :class:`Terminated` instead and unwinds like Ctrl-C
(``KeyboardInterrupt``): a scene's half-written outputs are rolled back on the way out.

:func:`signals_held` holds SIGINT and SIGTERM back for the few milliseconds a scene's outputs are
being swapped (:mod:`geosam.io.transaction`) and acts on them right after, so a stop request never
lands between two renames. Python runs signal handlers in the main thread only, and only the main
thread may change them: in other threads (dask worker threads) both context managers do nothing, and
the process's own handling applies (a process killed there is recovered like one killed with SIGKILL).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["EXIT_TERMINATED", "Terminated", "signals_held", "sigterm_raises"]

EXIT_TERMINATED = 128 + signal.SIGTERM
"""Exit status of a process stopped by SIGTERM (143), as shells report it."""

_HELD = (signal.SIGINT, signal.SIGTERM)
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Terminated(BaseException):
    """SIGTERM was received.

    Derives from ``BaseException``, like ``KeyboardInterrupt``, so ``except Exception`` blocks (a batch
    recording a failed scene and going on) do not swallow it.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum
        super().__init__(f"terminated by signal {signal.Signals(signum).name}")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Make SIGTERM raise :class:`Terminated` inside the block (main thread only; restored on exit)."""
    if not _in_main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _deliver(signum: int, handler: _Handler) -> None:
    """Act on a held signal as its handler would have: call it, or apply the default action."""
    if callable(handler):
        handler(signum, None)  # raises KeyboardInterrupt / Terminated for the usual handlers
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # the default action (end the process), now that it is safe
    # SIG_IGN or None (not set from Python): nothing to do


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM inside the block; act on them when it ends (in the order received).

    Reentrant: an inner block records into the outer one. Outside the main thread it does nothing.
    """
    if not _in_main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    old: dict[int, _Handler] = {s: signal.signal(s, hold) for s in _HELD}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(pending):
            _deliver(s, old[s])
