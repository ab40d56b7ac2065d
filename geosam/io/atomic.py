"""Atomic file writes: outputs appear complete, all at once, or not at all.

Every geosam output is first written under a hidden temporary name *in its destination directory*
(``.geosam-tmp-<token>-<name>``), flushed to disk with ``fsync`` and then renamed onto its final name with
:func:`os.replace`, which is atomic on POSIX file systems when source and target share a directory. A
reader (QGIS, a scheduled ingest job, a rerun after a crash) therefore never sees a half-written file.

:class:`AtomicGroup` extends this to files that belong together (``x.tif`` + ``x.tif.aux.xml`` +
``x.qml``): they are written side by side under temporary names and renamed only when all of them are
complete. The *first* path of a group is its primary file and is renamed *last*, so by the time it
appears its sidecars are already in place. POSIX has no multi-file atomic rename; if a rename fails
part-way, the files of the group already moved are removed again, so a group never appears half.

On any exception inside the ``with`` block (``KeyboardInterrupt`` included) every temporary file of the
group, and every file a library created next to one (``<temp>.aux.xml``, ``<temp>.ovr.tmp``, SQLite
``-journal`` files...), is removed. A process killed with ``SIGKILL`` cannot clean up; its leftovers keep
the ``.geosam-tmp-`` prefix and :func:`remove_stale_temps` deletes them.

Errors that mean "this directory cannot take the output" (missing, not a directory, read-only,
permission denied, disk or quota full) are raised as :class:`~geosam.errors.OutputError` whose path is
the *directory*, with the reason spelled out.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "hello.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> (d / "hello.txt").read_text()
    'hi'
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from geosam.errors import GeosamError, OutputError

__all__ = ["TEMP_PREFIX", "AtomicGroup", "atomic_path", "atomic_paths", "output_error", "remove_stale_temps"]

TEMP_PREFIX = ".geosam-tmp-"
"""Name prefix of every temporary file geosam writes (hidden on POSIX)."""

PathLike = str | os.PathLike[str]

# Errors that can only mean "the disk refused the write", wherever they happen.
_WRITE_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the directory is on a read-only file system",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _WRITE_ERRNOS[errno.EDQUOT] = "disk quota exceeded"
# Errors that mean "this directory cannot take files" when creating a probe file in it. Inside a
# writer's body they may come from reading some input instead, so they are not translated there.
_PROBE_ERRNOS: dict[int, str] = {
    **_WRITE_ERRNOS,
    errno.EACCES: "permission denied (the directory is not writable)",
    errno.EPERM: "operation not permitted (the directory is not writable)",
    errno.ENOENT: "the directory does not exist",
    errno.ENOTDIR: "a parent of the path is not a directory",
}
# Libraries whose errors carry GDAL's message text but no errno.
_IO_LIBRARIES = frozenset({"rasterio", "pyogrio", "fiona", "osgeo"})
# GDAL reports some of these as text only, for example GTiff's free-space check.
_MESSAGE_REASONS: tuple[tuple[str, str], ...] = (
    ("no space left", "no space left on the device"),
    ("free disk space", "no space left on the device"),
    ("disk quota", "disk quota exceeded"),
    ("read-only file system", "the directory is on a read-only file system"),
)


def output_error(
    exc: BaseException, directory: PathLike, what: str, *, creating: bool = False
) -> OutputError | None:
    """Translate a low-level write failure into an :class:`OutputError` naming ``directory``.

    Only failures that mean "the disk or directory refused the output" are translated: disk or quota
    full and read-only file systems (as ``errno`` or as GDAL message text) and, when ``creating`` a
    file in ``directory``, also permission errors and missing directories.

    Args:
        exc: The exception raised while writing (``OSError``, a rasterio/pyogrio error...).
        directory: The output directory; it becomes the error's path.
        what: The file being written, for the message (``"cannot write x.tif: ..."``).
        creating: ``exc`` came from creating a file directly in ``directory``.

    Returns:
        The translated error, or ``None`` when ``exc`` is something else (the caller should then
        re-raise ``exc`` unchanged).
    """
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, GeosamError):  # an input problem (a corrupt tile...), not the output's
        return None
    reasons = _PROBE_ERRNOS if creating else _WRITE_ERRNOS
    reason = None
    if isinstance(exc, OSError) and exc.errno in reasons:
        reason = reasons[exc.errno]
    elif isinstance(exc, OSError | RuntimeError) or type(exc).__module__.split(".")[0] in _IO_LIBRARIES:
        text = str(exc).lower()
        for needle, why in _MESSAGE_REASONS:
            if needle in text:
                reason = why
                break
        if reason is None:
            # GDAL/OGR often report a full disk only as "Write failed" or "Failed to commit
            # transaction" (the errno goes to stderr or is lost): ask the file system itself.
            reason = _full_disk_reason(directory)
    if reason is None:
        return None
    return OutputError(f"cannot write {what}: {reason}", directory)


#: A write that failed while less than this is free on the device is reported as "disk full". Callers
#: translate errors *before* removing their temp files, which would free the space again.
_NEARLY_FULL_BYTES = 1 << 20


def _full_disk_reason(directory: PathLike) -> str | None:
    try:
        st = os.statvfs(directory)
    except (OSError, AttributeError):  # no statvfs on Windows; a vanished directory
        return None
    if st.f_bavail * st.f_frsize < _NEARLY_FULL_BYTES:
        return "no space left on the device"
    if st.f_files and st.f_favail == 0:
        return "no free inodes left on the device"
    return None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # Makes the renames themselves durable. Not supported everywhere (Windows, some FUSE mounts).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except IsADirectoryError:  # a library made a directory next to a temp file; leave nothing behind
        import shutil

        shutil.rmtree(path, ignore_errors=True)


class AtomicGroup:
    """Temporary paths for files that must appear together, committed by rename.

    Use it as a context manager (commit on success, abort on exception) or call :meth:`commit` /
    :meth:`abort` yourself when the write spans several calls (see ``RasterWriter``).

    Args:
        paths: Final paths. The first is the primary file and is renamed last. Paths may sit in
            different directories; each temp file lives next to its final path.
        overwrite: Replace existing files. When ``False`` an existing final path is an
            :class:`OutputError`, checked on entry and again just before renaming.
        stale: Files to delete just before the renames, for example a ``x.tif.aux.xml`` left by an
            earlier run that would otherwise be attached to the new ``x.tif`` by GDAL.

    Raises:
        OutputError: A directory is missing, not a directory, read-only, full, or not writable, or a
            final path exists and ``overwrite`` is false. No file is left behind.
    """

    def __init__(
        self, paths: Sequence[PathLike], *, overwrite: bool = True, stale: Sequence[PathLike] = ()
    ) -> None:
        if not paths:
            raise ValueError("an atomic group needs at least one path")
        finals = [Path(os.path.abspath(os.fspath(p))) for p in paths]
        if len(set(finals)) != len(finals):
            raise ValueError(f"an atomic group lists the same path twice: {[str(p) for p in finals]}")
        self.finals: tuple[Path, ...] = tuple(finals)
        self.overwrite = overwrite
        self.stale: tuple[Path, ...] = tuple(Path(os.path.abspath(os.fspath(p))) for p in stale)
        self.token = secrets.token_hex(6)
        prefix = f"{TEMP_PREFIX}{self.token}-"
        self.temps: tuple[Path, ...] = tuple(p.with_name(prefix + p.name) for p in finals)
        self._done = False
        for directory in dict.fromkeys(p.parent for p in finals):
            self._check_directory(directory)
        self._check_overwrite()

    # -- public -----------------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """Directory of the primary file."""
        return self.finals[0].parent

    def temp_for(self, final: PathLike) -> Path:
        """The temporary path standing in for ``final`` (one of the group's paths)."""
        target = Path(os.path.abspath(os.fspath(final)))
        try:
            return self.temps[self.finals.index(target)]
        except ValueError:
            raise ValueError(f"{target} is not part of this atomic group") from None

    def scratch(self, name: str) -> Path:
        """A scratch path next to the primary file, deleted on commit and on abort.

        Args:
            name: A plain file name (no directory), for example ``"src.tif"``; keep the extension the
                writing library needs to pick its driver.
        """
        if os.sep in name or (os.altsep and os.altsep in name):
            raise ValueError(f"scratch name must be a plain file name, not {name!r}")
        return self.directory / f"{TEMP_PREFIX}{self.token}-scratch-{name}"

    def commit(self) -> None:
        """Flush every temp file to disk and rename the group onto its final names.

        Raises:
            OutputError: A temp file was never written, a final path appeared meanwhile while
                ``overwrite`` is false, or the disk refused the rename. Nothing of the group remains.
        """
        if self._done:
            raise RuntimeError("this atomic group was already committed or aborted")
        moved: list[Path] = []
        try:
            for temp, final in zip(self.temps, self.finals, strict=True):
                if not temp.is_file():
                    msg = f"{final.name} was not written (no temporary file {temp.name})"
                    raise OutputError(msg, final.parent)
                _fsync_file(temp)
            self._check_overwrite()
            for old in self.stale:
                if old not in self.finals:
                    _remove_quietly(old)
            order = [*range(1, len(self.finals)), 0]  # sidecars first, primary file last
            for i in order:
                os.replace(self.temps[i], self.finals[i])
                moved.append(self.finals[i])
            for directory in dict.fromkeys(p.parent for p in self.finals):
                _fsync_dir(directory)
        except BaseException as exc:
            err = output_error(exc, self.directory, self.finals[0].name, creating=True)
            for path in moved:
                _remove_quietly(path)
            self.abort()
            if err is not None and err is not exc:
                raise err from exc
            raise
        self._cleanup()
        self._done = True

    def abort(self) -> None:
        """Remove every temp and scratch file of the group (idempotent); finals are left as they were."""
        self._cleanup()
        self._done = True

    def __enter__(self) -> AtomicGroup:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            if not self._done:
                self.commit()
            return
        err = output_error(exc, self.directory, self.finals[0].name)  # before abort frees the space
        self.abort()
        if err is not None and err is not exc:
            raise err from exc

    # -- internals --------------------------------------------------------------------------------------

    def _cleanup(self) -> None:
        prefix = f"{TEMP_PREFIX}{self.token}-"
        for directory in dict.fromkeys(p.parent for p in self.finals):
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(prefix):
                    _remove_quietly(Path(entry.path))

    def _check_directory(self, directory: Path) -> None:
        if not directory.exists():
            raise OutputError("cannot write here: the output directory does not exist", directory)
        if not directory.is_dir():
            raise OutputError("cannot write here: this is not a directory", directory)
        # os.access() lies for root and on some network file systems; creating a file is the real test.
        probe = directory / f"{TEMP_PREFIX}{self.token}-probe"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as exc:
            err = output_error(exc, directory, self.finals[0].name, creating=True)
            if err is None:
                msg = f"cannot write {self.finals[0].name}: {exc.strerror or exc}"
                raise OutputError(msg, directory) from exc
            raise err from exc
        os.close(fd)
        _remove_quietly(probe)

    def _check_overwrite(self) -> None:
        for final in self.finals:
            if final.is_dir():
                raise OutputError("cannot replace a directory with a file", final)
            if not self.overwrite and (final.exists() or final.is_symlink()):
                raise OutputError("already exists (set overwrite to replace it)", final)


@contextmanager
def atomic_paths(
    paths: Sequence[PathLike], *, overwrite: bool = True, stale: Sequence[PathLike] = ()
) -> Iterator[tuple[Path, ...]]:
    """Yield temporary paths for a group of files; rename them all into place on success.

    Write each file to the yielded path at the same position. See :class:`AtomicGroup` for the rename
    order, ``overwrite`` and ``stale``.

    Raises:
        OutputError: The directory cannot take the files (see :class:`AtomicGroup`), or one of the
            files was not written. Nothing of the group is left behind.
    """
    group = AtomicGroup(paths, overwrite=overwrite, stale=stale)
    with group:
        yield group.temps


@contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a hidden temporary path next to ``path``; rename it onto ``path`` on success.

    The temp name keeps ``path``'s extension, so GDAL/OGR pick the right driver from it. On an
    exception (``KeyboardInterrupt`` included) the temp file and anything created next to it are
    removed and the existing ``path``, if any, is left untouched.

    Raises:
        OutputError: The directory is missing, read-only, full or not writable, or ``path`` exists
            and ``overwrite`` is false.
    """
    with atomic_paths([path], overwrite=overwrite) as (temp,):
        yield temp


def remove_stale_temps(directory: PathLike, *, older_than_s: float = 3600.0) -> list[Path]:
    """Delete geosam temp files left in ``directory`` by killed processes.

    Only names starting with :data:`TEMP_PREFIX` and last modified more than ``older_than_s`` seconds
    ago are removed, so writers still running in other processes are not disturbed.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    _remove_quietly(Path(entry.path))
                    removed.append(Path(entry.path))
            except OSError:
                continue
    return removed
