"""The ingest lock: one run at a time per manifest, whatever kills a run."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from geosam.errors import LockedError

__all__ = ["ingest_lock"]


@contextlib.contextmanager
def ingest_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    The lock is :class:`filelock.FileLock` (``flock`` on Unix, ``msvcrt.locking`` on Windows): the kernel
    releases it when the holder dies, however it dies, so a crash never leaves a stale lock, and the
    file is never deleted (deleting a lock file while others wait on it breaks the lock). Who holds it
    (pid, host, start time) is written to ``<path>.holder`` for the message a second run prints.

    Raises:
        LockedError: Another process holds the lock (exit status 75).
    """
    from filelock import FileLock, Timeout

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    holder = p.with_name(p.name + ".holder")
    lock = FileLock(str(p))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            who = holder.read_text(encoding="utf-8").strip() or "unknown process"
        except OSError:
            who = "unknown process"
        raise LockedError(f"another geosam ingest is running ({who}); this run did nothing", p) from None
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        holder.write_text(f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n", encoding="utf-8")
        yield p
    finally:
        lock.release()
