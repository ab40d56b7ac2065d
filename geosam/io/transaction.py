"""A scene's outputs as one transaction: staged out of sight, committed as a set, run record last.

A run writes every output of a scene into a hidden staging folder beside the outputs; nothing in the
output folder changes until the whole new set, its STAC item and its run record are staged and on
disk. Then one short commit swaps the scene's earlier files for the new set. Files for stem ``s`` in
folder ``out`` while a run is under way::

    out/.geosam-txn-<12 hex>-s/     hidden; one per run of the scene (concurrent runs do not collide)
        lock                         flock(2) held by the writing process for the whole run
        new/                         the new set under its final names (the writers write here)
        work/                        scratch (the provisional region raster)
        journal.json                 present only while the commit is being applied

Commit, under an exclusive ``flock`` of ``out`` itself (commits and recoveries in one folder are serial)
with SIGINT and SIGTERM held back (:func:`geosam._signals.signals_held`):

1. transactions of this scene left by dead processes are finished first (see recovery below);
2. every staged file is flushed to disk (``fsync``);
3. ``journal.json`` is written atomically: the new files in commit order (run record last) and the
   scene's earlier files that the new set does not replace. From here on the commit is decided;
4. the earlier run record is removed first, so the folder no longer claims a complete set;
5. earlier files that the new set does not replace are removed (an earlier STAC item, regions of a
   run with regions...);
6. each new file is renamed onto its final name (``rename(2)`` replaces a file atomically), the run
   record last; the folder is flushed; then the journal and the staging folder are removed.

Recovery: a transaction folder whose ``lock`` no process holds belongs to a dead process (the kernel
releases ``flock`` locks however a process dies). With a journal it is rolled *forward* (steps 4-6
again; each step is idempotent); without one it is rolled *back* (deleted: the earlier set was never
touched). Every geosam process that writes, skips, cleans or catalogues a scene in a folder does this
first (:func:`recover`).

What is guaranteed, for the files the run record names (outputs, ``.qml`` and ``.aux.xml`` sidecars,
the STAC item):

* an exception, SIGINT (Ctrl-C) or SIGTERM (with :func:`geosam._signals.sigterm_raises`, as the CLI
  does) at any moment leaves the complete earlier set or, when it arrives during the commit, the
  complete new set (the signal is acted on right after). The staging folder is removed before the
  process exits;
* ``kill -9`` (SIGKILL, the OOM killer, a power cut) before step 3 leaves the earlier set untouched
  and a hidden staging folder that the next geosam process touching the folder removes; during steps
  4-6 (milliseconds, only renames and unlinks) it can leave a visible mix, but never with a run record
  that is not the new one: a folder without its run record, or whose files differ from the hashes the
  record lists, is never taken as complete (``batch --skip-existing``, ingest, STAC), and the next geosam
  process touching the folder finishes the commit from the journal;
* power loss: the staged files, the journal and the folder are ``fsync``-ed in order, so after a reboot
  the same recovery applies on file systems that honour ``fsync`` (ext4, XFS); not on all network file
  systems.

Locks use ``fcntl.flock``; where it does not exist (Windows) runs in one folder must not overlap.
``filelock`` is not used: it cannot lock a directory, and its lock files would stay in users' folders.

Why this module is long: begin, commit and recovery are one protocol whose steps must be read and
changed together (recovery replays the commit's steps); about a third of the lines are this docstring.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import string
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from geosam._signals import signals_held
from geosam.errors import GeosamError, OutputError
from geosam.io.atomic import atomic_path, output_error
from geosam.outputs import SceneOutputs

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from geosam.record import RunRecord

__all__ = ["TXN_PREFIX", "SceneTransaction", "discard_outputs", "recover"]

log = logging.getLogger(__name__)

TXN_PREFIX = ".geosam-txn-"
"""Name prefix of staging folders (hidden on POSIX)."""

_TOKEN = 12  # hex digits of a transaction's token
_JOURNAL = "journal.json"
_LOCK = "lock"
_NEW = "new"
_WORK = "work"


# -- locks -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive ``flock`` of the folder itself (never nested: a second fd would wait for the first)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _claim(txn: Path) -> tuple[bool, int | None]:
    """Whether ``txn``'s owner is dead, and then an fd holding its lock (``None`` if it has no lock file)."""
    if fcntl is None:  # pragma: no cover - Windows: no owner can be proven alive
        return True, None
    try:
        fd = os.open(txn / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True, None  # created and locked under the folder lock: no lock file = debris
    except OSError:
        return False, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False, None  # its process is alive
    return True, fd


# -- staging folders -------------------------------------------------------------------------------------


def _staging_folders(folder: Path, stem: str | None) -> list[Path]:
    """Staging folders in ``folder`` (of scene ``stem`` only, unless ``None``)."""
    found: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        name = entry.name
        if not name.startswith(TXN_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        token, sep, entry_stem = name[len(TXN_PREFIX) :].partition("-")
        if len(token) != _TOKEN or not sep or set(token) - set(string.hexdigits):
            continue
        if stem is None or entry_stem == stem:
            found.append(Path(entry.path))
    return found


def _fsync(path: Path, *, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if directory:
            return  # not supported everywhere (Windows, some FUSE mounts)
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _apply(folder: Path, txn: Path, journal: dict[str, object]) -> None:
    """Steps 4-6 of the commit (idempotent: also what recovery runs)."""
    new_dir = txn / _NEW
    record = str(journal["record"])
    names = [str(n) for n in journal["new"]]  # type: ignore[attr-defined]
    remove = [str(n) for n in journal["remove"]]  # type: ignore[attr-defined]
    if (new_dir / record).exists():  # the new record is not in place yet: the earlier one goes first
        with contextlib.suppress(FileNotFoundError):
            (folder / record).unlink()
        SceneTransaction._checkpoint("record-removed")
    for name in remove:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    for name in names:
        src = new_dir / name
        if src.exists():
            os.replace(src, folder / name)
            SceneTransaction._checkpoint(f"moved:{name}")
    _fsync(folder, directory=True)


def _remove_staging(txn: Path) -> None:
    """Delete a staging folder, its journal first (a commit is then over, whatever else remains)."""
    with contextlib.suppress(FileNotFoundError):
        (txn / _JOURNAL).unlink()
    shutil.rmtree(txn, ignore_errors=True)


def _recover_locked(folder: Path, stem: str | None) -> list[Path]:
    """Finish (journal) or drop (no journal) the staging folders of dead processes; folder lock held."""
    done = []
    for txn in _staging_folders(folder, stem):
        dead, fd = _claim(txn)
        if not dead:
            continue
        try:
            try:
                journal = json.loads((txn / _JOURNAL).read_text(encoding="utf-8"))
            except FileNotFoundError:
                journal = None
            except (OSError, ValueError) as err:  # written atomically: only damaged storage gets here
                log.warning("%s: unreadable commit journal (%s); dropped", txn, err)
                journal = None
            if journal is not None:
                _apply(folder, txn, journal)
                log.warning("%s: finished the commit of a run that was killed while committing", folder)
            else:
                log.info("%s: removed the staging folder of a run that was killed", txn)
            _remove_staging(txn)
            done.append(txn)
        finally:
            if fd is not None:
                os.close(fd)
    return done


def recover(folder: str | os.PathLike[str], stem: str | None = None) -> list[Path]:
    """Finish or roll back the scene transactions that dead processes left in ``folder``.

    Staging folders of live processes are left alone. Safe to call at any time, from any process.

    Args:
        folder: An output folder (missing folders are fine).
        stem: Only this scene's transactions (``SceneOutputs.stem``); ``None``: every scene's.

    Returns:
        The staging folders that were finished or removed.
    """
    d = Path(folder)
    if not _staging_folders(d, stem):
        return []
    with signals_held(), _folder_lock(d):
        return _recover_locked(d, stem)


def discard_outputs(outputs: SceneOutputs) -> list[Path]:
    """Remove a scene's outputs from its folder: run record first, so a partial removal is never complete.

    Returns:
        The removed files.
    """
    folder = outputs.directory
    if not folder.is_dir():
        return []
    removed = []
    with signals_held(), _folder_lock(folder):
        _recover_locked(folder, outputs.stem)
        for p in [outputs.record, *outputs.all_files(), *outputs.foreign_sidecars()]:
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            except IsADirectoryError:
                continue
            removed.append(p)
    return removed


# -- the transaction -------------------------------------------------------------------------------------


class SceneTransaction:
    """Stage a scene's outputs out of sight, then commit them as one set (see the module docstring).

    Use as a context manager; write the outputs to :attr:`staged` and scratch files to :attr:`work`,
    then call :meth:`commit` with the run record. Leaving the block without a commit (an exception,
    SIGINT, SIGTERM) rolls back: the earlier set stays, the staging folder goes.

    Args:
        outputs: The scene's outputs in their folder (created if needed).
        overwrite: Replace an earlier set; when false, an existing output is an :class:`OutputError`.
        what: How errors name the outputs (``"the outputs of <scene id>"``).

    Raises:
        OutputError: The folder cannot be created or written, or (``overwrite`` false) it holds an
            output of the scene already.
    """

    def __init__(self, outputs: SceneOutputs, *, overwrite: bool = True, what: str | None = None) -> None:
        self.outputs = outputs
        self.overwrite = overwrite
        self.what = what or f"the outputs of {outputs.stem}"
        self.token = secrets.token_hex(_TOKEN // 2)
        self.folder = outputs.directory
        self.txn = self.folder / f"{TXN_PREFIX}{self.token}-{outputs.stem}"
        self.staged = outputs.in_directory(self.txn / _NEW)
        self.work = self.txn / _WORK
        self._lock_fd: int | None = None
        self._state = "new"  # new -> open -> committed | rolled back | stuck

    # -- test hook ---------------------------------------------------------------------------------------

    @staticmethod
    def _checkpoint(name: str) -> None:
        """Called at each step of staging and commit; does nothing (tests stop a child process here)."""

    # -- begin -------------------------------------------------------------------------------------------

    def __enter__(self) -> SceneTransaction:
        folder = self.folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create the output directory ({err.strerror})", folder) from None
        with signals_held(), _folder_lock(folder):
            _recover_locked(folder, self.outputs.stem)
            self._refuse_existing()
            try:
                os.mkdir(self.txn)
            except OSError as err:
                raise output_error(
                    err, folder, f"{self.outputs.stem}'s scratch folder", creating=True
                ) or OutputError(f"cannot write here ({err.strerror or err})", folder) from None
            try:
                self._lock_fd = os.open(self.txn / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
                if fcntl is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.write(self._lock_fd, f"{os.getpid()}\n".encode())
                os.mkdir(self.txn / _NEW)
                os.mkdir(self.work)
            except OSError as err:
                self._close_lock()
                _remove_staging(self.txn)
                raise output_error(err, folder, f"{self.outputs.stem}'s scratch folder", creating=True) or (
                    OutputError(f"cannot write here ({err.strerror or err})", folder)
                ) from None
        self._state = "open"
        return self

    def _refuse_existing(self) -> None:
        if self.overwrite:
            return
        for p in self.outputs.all_files():
            if p.exists() or p.is_symlink():
                raise OutputError("already exists (set overwrite to replace it)", p)

    # -- commit ------------------------------------------------------------------------------------------

    def commit(self, record: RunRecord) -> None:
        """Write the run record into the staged set and swap the set into the folder.

        Raises:
            OutputError: The folder refused the record or the swap; with ``overwrite`` false, an output
                appeared meanwhile. Before the swap began the earlier set is intact; if the swap itself
                failed part-way, the next geosam process in the folder finishes it (the journal stays).
        """
        if self._state != "open":
            raise RuntimeError(f"this transaction is {self._state}; it cannot commit")
        with atomic_path(self.staged.record) as tmp:
            tmp.write_text(record.to_json(), encoding="utf-8")
        self._checkpoint("staged")
        with signals_held(), _folder_lock(self.folder):
            _recover_locked(self.folder, self.outputs.stem)
            self._refuse_existing()
            journal = self._prepare()
            self._write_journal(journal)
            self._checkpoint("journal")
            try:
                _apply(self.folder, self.txn, journal)
            except BaseException as exc:
                self._state = "stuck"
                self._close_lock()  # the journal stays: the next process in the folder finishes it
                err = output_error(exc, self.folder, self.what)
                msg = (
                    f"cannot finish writing {self.what} ({err.message if err else exc}); "
                    "run geosam again on this folder to complete it"
                )
                raise OutputError(msg, self.folder) from exc
            self._checkpoint("committed")
            _remove_staging(self.txn)
            self._close_lock()
            self._state = "committed"

    def _prepare(self) -> dict[str, object]:
        """Flush the staged files and list what the commit does (the journal's content)."""
        new_dir = self.txn / _NEW
        record = self.outputs.record.name
        allowed = {p.name for p in self.outputs.all_files()}
        names = sorted(p.name for p in new_dir.iterdir())
        stray = [n for n in names if n not in allowed]
        if stray:  # a writer wrote a file SceneOutputs does not know: add it there
            raise OutputError(f"not an output of this scene: {', '.join(stray)}", new_dir)
        for name in names:
            _fsync(new_dir / name)
        _fsync(new_dir, directory=True)
        names = [n for n in names if n != record] + [record]
        present = [
            p.name
            for p in (*self.outputs.all_files(), *self.outputs.foreign_sidecars())
            if p.exists() or p.is_symlink()
        ]
        return {
            "version": 1,
            "stem": self.outputs.stem,
            "record": record,
            "new": names,
            "remove": [n for n in present if n not in names],
            "pid": os.getpid(),
        }

    def _write_journal(self, journal: dict[str, object]) -> None:
        tmp = self.txn / f"{_JOURNAL}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(journal, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.txn / _JOURNAL)
        _fsync(self.txn, directory=True)

    # -- rollback ----------------------------------------------------------------------------------------

    def rollback(self) -> None:
        """Drop the staged set (idempotent); the folder keeps its earlier set."""
        if self._state != "open":
            return
        with signals_held(), _folder_lock(self.folder):
            _remove_staging(self.txn)
            self._close_lock()
        self._state = "rolled back"

    def _close_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            if self._state == "open":
                self.rollback()  # no commit was asked for: nothing of the staged set is kept
                raise RuntimeError("a scene transaction ended without commit(); nothing was written")
            return
        failure = None if isinstance(exc, GeosamError) else output_error(exc, self.folder, self.what)
        self.rollback()
        if isinstance(exc, OutputError) and exc.path is not None:
            rerooted = self._reroot(exc)
            if rerooted is not exc:
                raise rerooted from None
        if failure is not None and failure is not exc:
            raise failure from None

    def _reroot(self, err: OutputError) -> OutputError:
        """An error naming a staging path, made to name the output folder or the final file."""
        path = Path(err.path or "")
        try:
            rel = path.relative_to(self.txn / _NEW)
        except ValueError:
            pass
        else:  # a staged file -> the final file; the staging folder -> the output folder
            return type(err)(err.message, self.folder / rel)
        if path == self.txn or self.txn in path.parents:  # scratch
            return type(err)(err.message, self.folder)
        return err
