"""Scheduled ingestion: classify the scenes that are new or changed in an inbox, exactly once each.

:func:`run_ingest` is what ``geosam ingest --config ingest.yaml`` and ``pipelines/ingest.py`` call, for
example every 15 minutes from cron or a systemd timer. One run:

1. takes an exclusive lock (``fcntl.flock`` on ``<db>.lock``); if another run holds it, raises
   :class:`~geosam.errors.LockedError` (exit status 75, "try again later") at once. The kernel releases
   the lock when a process dies, however it dies, so a crash never leaves a stale lock;
2. recovers from a crashed run: scenes it left ``running`` go back to ``pending`` (or to ``failed``
   after ``max_attempts``), and their leftovers (temp files, scratch folders, the outputs of a scene
   whose run record was never written) are removed;
3. scans the inbox (or reads the scene list) and records new scenes and scenes whose content sha256
   changed as ``pending`` in the manifest (:mod:`geosam.manifest`). The hash is recomputed only when a
   file's size or mtime changed (``verify_hashes: true`` always recomputes). Files younger than
   ``min_age_s`` are left for a later run (they may still be being copied in);
4. classifies the pending scenes (plus failed ones with a retryable error and attempts left) with
   :func:`geosam.batch.execute`, in this process, on a local dask cluster, or on a running scheduler.
   Each scene is marked ``running`` when it really starts and ``done`` only after its run record
   exists and records the same content hash; a failure stores its type and message. Failures caused
   by the input itself (corrupt or unreadable raster, missing CRS, wrong bands) are not retried until
   the file changes; other failures are retried by later runs up to ``max_attempts``;
5. with ``stac: true``, writes a STAC item per scene and rebuilds ``<out>/collection.json``.

Outputs go to ``<out>/<scene_id>/`` (one folder per scene, the name derived from the scene's path in
the inbox, sanitized so it can never leave ``out``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geosam.batch import (
    SCENE_PATTERNS,
    ExecutorSpec,
    JobSpec,
    SceneOutcome,
    SceneTask,
    clean_scene_dir,
    discover_scenes,
    execute,
    file_sha256,
    safe_name,
    scene_dir,
)
from geosam.config import RunConfig, format_validation_error, load_config, parse_config
from geosam.errors import ConfigError, InputMismatchError, LockedError, OutputError, RasterError

__all__ = ["IngestConfig", "IngestReport", "ingest_lock", "load_ingest_config", "run_ingest"]

log = logging.getLogger(__name__)

DB_NAME = "geosam-ingest.sqlite"


class IngestConfig(BaseModel):
    """``ingest.yaml``: what to watch, where outputs go, which model, and where scenes run.

    Relative paths in the YAML file are relative to the file's folder.

    Attributes:
        inbox: Folder scanned (recursively) for scenes. Exactly one of ``inbox`` and ``scene_list``.
        scene_list: Text file listing scene paths (or folders/globs), one per line, ``#`` comments.
        patterns: File name patterns picked up in the inbox (case-insensitive).
        exclude_vrt_sources: Rasters that an inbox VRT reads are its parts, not scenes of their own.
        min_age_s: Leave files modified less than this many seconds ago for a later run.
        out: Output folder (one sub-folder per scene).
        db: Manifest database (default ``<out>/geosam-ingest.sqlite``).
        lock: Lock file (default ``<db>.lock``).
        model: Classifier bundle (default: the packaged model).
        sam_checkpoint: SAM checkpoint for SAM regions.
        run_config: A ``geosam run`` configuration YAML.
        run: Overrides of the run configuration, as nested keys (``{tiling: {tile_size: 512}}``).
        workers: Local worker processes; ``0`` processes scenes in the ingest process itself.
        processes: Local workers are processes (isolated) rather than threads.
        torch_threads: Torch threads per local worker process.
        memory_limit: Per local worker (``"8GB"``, ``"auto"``, or ``null`` for none).
        scheduler: A running dask scheduler (``tcp://host:8786``) instead of local workers.
        gpu: Tasks request a ``GPU`` resource (workers started with ``--resources GPU=1``).
        stac: Write STAC items and ``<out>/collection.json``.
        max_attempts: Attempts per scene content before a retryable failure is left alone.
        verify_hashes: Hash every file on every run, not only those whose size or mtime changed.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: Literal[1] = 1
    inbox: Path | None = None
    scene_list: Path | None = None
    patterns: list[str] = Field(default_factory=lambda: list(SCENE_PATTERNS), min_length=1)
    exclude_vrt_sources: bool = True
    min_age_s: float = Field(60.0, ge=0)
    out: Path
    db: Path | None = None
    lock: Path | None = None
    model: Path | None = None
    sam_checkpoint: Path | None = None
    run_config: Path | None = None
    run: dict[str, Any] = Field(default_factory=dict)
    workers: int = Field(1, ge=0)
    processes: bool = True
    torch_threads: int | None = Field(None, ge=1)
    memory_limit: str | None = "auto"
    scheduler: str | None = None
    gpu: bool = False
    stac: bool = False
    max_attempts: int = Field(3, ge=1)
    verify_hashes: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> IngestConfig:
        if (self.inbox is None) == (self.scene_list is None):
            raise ValueError("set exactly one of 'inbox' (a folder to scan) and 'scene_list' (a file)")
        return self

    @property
    def db_path(self) -> Path:
        """The manifest database."""
        return self.db if self.db is not None else self.out / DB_NAME

    @property
    def lock_path(self) -> Path:
        """The lock file."""
        return self.lock if self.lock is not None else self.db_path.with_name(self.db_path.name + ".lock")

    def run_config_obj(self) -> RunConfig:
        """The run configuration: ``run_config`` (if any) with ``run`` overrides merged in.

        Outputs are always overwritten (a changed scene replaces its outputs).

        Raises:
            ConfigError: The run configuration is invalid.
        """
        base = load_config(self.run_config).to_json_dict() if self.run_config else {}
        data = _merge(base, self.run)
        data.setdefault("output", {})
        if isinstance(data["output"], dict):
            data["output"]["overwrite"] = True
        return parse_config(data, self.run_config)

    def executor(self) -> ExecutorSpec:
        """Where scenes run."""
        return ExecutorSpec(
            scheduler=self.scheduler,
            workers=self.workers,
            processes=self.processes,
            torch_threads=self.torch_threads,
            memory_limit=self.memory_limit,
            gpu=self.gpu,
        )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_PATH_FIELDS = ("inbox", "scene_list", "out", "db", "lock", "model", "sam_checkpoint", "run_config")


def load_ingest_config(path: str | os.PathLike[str], **overrides: Any) -> IngestConfig:
    """Load ``ingest.yaml`` (relative paths resolved against its folder) and apply ``overrides``.

    Raises:
        ConfigError: Missing file, invalid YAML, unknown keys, bad values, an invalid run config.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError("ingest configuration file not found", p)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"not a valid YAML file ({first})", p) from None
    if not isinstance(data, dict):
        raise ConfigError("an ingest configuration must be a mapping", p)
    data.update({k: v for k, v in overrides.items() if v is not None})
    base = p.parent.absolute()
    for key in _PATH_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and value:
            expanded = os.path.expanduser(value)
            data[key] = expanded if os.path.isabs(expanded) else str(base / expanded)
    try:
        cfg = IngestConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err), p) from None
    cfg.run_config_obj()  # fail now, not on a worker
    return cfg


@contextlib.contextmanager
def ingest_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block.

    The file keeps the holder's pid, host and start time for the message a second run prints. It is
    never deleted (deleting a lock file while others wait on it breaks the lock).

    Raises:
        LockedError: Another process holds the lock (exit status 75).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
        os.close(fd)
        raise LockedError(f"another geosam ingest is running ({holder}); this run did nothing", p) from None
    try:
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        yield p
    finally:
        os.close(fd)  # releases the lock


@dataclass
class IngestReport:
    """What one ingest run saw and did."""

    run_id: str
    found: int = 0
    new: int = 0
    changed: int = 0
    too_new: int = 0
    recovered: int = 0
    todo: list[str] = field(default_factory=list)
    outcomes: list[SceneOutcome] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stac_collection: str | None = None
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def done(self) -> int:
        """Scenes completed by this run."""
        return sum(o.status == "done" for o in self.outcomes)

    @property
    def failed(self) -> int:
        """Scenes that failed in this run."""
        return sum(o.status == "failed" for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when no scene failed in this run, else 1."""
        return 1 if self.failed else 0

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.dry_run:
            return f"dry run: {self.found} scenes found, {len(self.todo)} would be processed"
        return (
            f"{self.found} scenes found ({self.new} new, {self.changed} changed, {self.too_new} too new); "
            f"{self.done} done, {self.failed} failed in {self.seconds:.1f} s; manifest: "
            + ", ".join(f"{v} {k}" for k, v in self.counts.items())
        )


def _permanent_errors() -> frozenset[str]:
    """Error type names caused by the input itself: retrying the same bytes cannot help."""
    names: set[str] = set()
    stack: list[type] = [RasterError, InputMismatchError]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return frozenset(names)


def _scene_key(path: Path, inbox: Path | None) -> str:
    if inbox is not None:
        with contextlib.suppress(ValueError):
            return path.relative_to(inbox).as_posix()
    return str(path)


def _new_scene_id(key: str, taken: set[str]) -> str:
    base = safe_name(str(Path(key).with_suffix("")).strip("/").replace("/", "__"))
    sid = base if base not in taken else safe_name(f"{base}-{hashlib.sha1(key.encode()).hexdigest()[:8]}")
    taken.add(sid)
    return sid


def _scan(cfg: IngestConfig, m: Any, report: IngestReport) -> None:
    """Record new and changed scenes in the manifest (inside the caller's transaction)."""
    out = cfg.out.absolute()
    if cfg.inbox is not None:
        if not cfg.inbox.is_dir():
            raise ConfigError("the inbox folder does not exist", cfg.inbox)
        inputs: list[str] = [str(cfg.inbox)]
        inbox: Path | None = cfg.inbox.absolute()
    else:
        if cfg.scene_list is None or not cfg.scene_list.is_file():
            raise ConfigError("the scene list file does not exist", cfg.scene_list)
        text = cfg.scene_list.read_text(encoding="utf-8")
        lines = [s.strip() for s in text.splitlines() if s.strip() and not s.strip().startswith("#")]
        inputs = [s if os.path.isabs(s) else str(cfg.scene_list.parent / s) for s in lines]
        inbox = None
    refs = discover_scenes(
        inputs,
        exclude=[out],
        patterns=cfg.patterns,
        exclude_vrt_sources=cfg.exclude_vrt_sources,
    )
    taken = m.scene_ids()
    seen: set[str] = set()
    cutoff = time.time() - cfg.min_age_s
    for ref in refs:
        path = Path(ref.path)
        key = _scene_key(path, inbox)
        try:
            st = path.stat()
        except OSError:
            log.warning("%s: listed but not readable now; skipped", path)
            continue
        if not path.is_file():
            continue
        seen.add(key)
        report.found += 1
        row = m.get(key)
        if st.st_mtime > cutoff and (row is None or (row.size, row.mtime_ns) != (st.st_size, st.st_mtime_ns)):
            report.too_new += 1
            continue
        if (
            row is not None
            and not cfg.verify_hashes
            and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
        ):
            continue
        try:
            sha = file_sha256(path)
        except OSError as err:
            log.warning("%s: cannot be read (%s); skipped", path, err.strerror or err)
            continue
        if row is None:
            sid = _new_scene_id(key, taken)
            m.add(key, str(path), sid, str(scene_dir(out, sid)), sha, st.st_size, st.st_mtime_ns)
            report.new += 1
        elif sha != row.sha256:
            m.changed(key, str(path), sha, st.st_size, st.st_mtime_ns)
            report.changed += 1
        else:
            m.touched(key, str(path), st.st_size, st.st_mtime_ns)
    m.set_present(seen)


def _recover(cfg: IngestConfig, m: Any) -> int:
    """Scenes a dead run left ``running``: clean their folders; retry or give up after max_attempts."""
    from geosam.io.atomic import remove_stale_temps

    rows = m.rows("running")
    for row in rows:
        removed = clean_scene_dir(SceneTask(row.path, row.scene_id, row.out_dir))
        with m.transaction():
            if row.attempts >= cfg.max_attempts:
                msg = (
                    f"the run processing this scene was killed or crashed {row.attempts} times "
                    "(out of memory?); not retried until the file changes or `geosam ingest --retry-failed`"
                )
                m.failed(row.key, "Interrupted", msg, retryable=False)
            else:
                m.pending(row.key, "interrupted run: will be processed again")
        log.warning("%s: interrupted by a crashed run; %d leftovers removed", row.key, len(removed))
    remove_stale_temps(cfg.out, older_than_s=0)
    return len(rows)


def run_ingest(
    cfg: IngestConfig,
    *,
    dry_run: bool = False,
    progress: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> IngestReport:
    """One ingestion run (see the module docstring).

    Args:
        cfg: The ingest configuration.
        dry_run: Scan and report what would be processed; change nothing.
        progress: Show scene and tile progress bars.
        on_event: Called with each progress event (see :func:`geosam.batch.execute`).

    Raises:
        LockedError: Another run holds the lock (exit status 75).
        ConfigError: Bad configuration, missing inbox, unreachable scheduler.
        OutputError: The output folder or the manifest cannot be written.
    """
    from geosam.manifest import Manifest

    t0 = time.perf_counter()
    run_cfg = cfg.run_config_obj()
    job = JobSpec(
        None if cfg.model is None else str(cfg.model.absolute()),
        None if cfg.sam_checkpoint is None else str(cfg.sam_checkpoint.absolute()),
        run_cfg,
        cfg.stac,
    )
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    report = IngestReport(run_id, dry_run=dry_run)
    with ingest_lock(cfg.lock_path):
        cfg.out.mkdir(parents=True, exist_ok=True)
        with Manifest.open(cfg.db_path) as m:
            if dry_run:
                m.conn.execute("BEGIN IMMEDIATE")
                try:
                    _scan(cfg, m, report)
                    report.todo = [r.key for r in m.todo(cfg.max_attempts)]
                finally:
                    m.conn.execute("ROLLBACK")
                return report
            m.begin_run(run_id, job.key)
            status = "interrupted"
            try:
                report.recovered = _recover(cfg, m)
                with m.transaction():
                    _scan(cfg, m, report)
                rows = m.todo(cfg.max_attempts)
                report.todo = [r.key for r in rows]
                _process(cfg, m, rows, job, run_id, report, progress, on_event)
                if cfg.stac:
                    from geosam.stac import write_collection

                    coll = write_collection(cfg.out)
                    report.stac_collection = None if coll is None else str(coll)
                status = "finished"
            finally:
                report.counts = m.counts()
                report.seconds = time.perf_counter() - t0
                counts = {
                    "found": report.found,
                    "new": report.new,
                    "changed": report.changed,
                    "done": report.done,
                    "failed": report.failed,
                }
                m.end_run(run_id, status, counts)
    log.info("%s", report.summary())
    return report


def _drop_stale_outputs(task: SceneTask, sha256: str) -> None:
    """Remove a scene's outputs made from older content, so a failed rerun leaves none behind."""
    from geosam.io.transaction import discard_outputs
    from geosam.outputs import SceneOutputs
    from geosam.record import read_run_record

    outputs = SceneOutputs.for_scene(task.scene, task.out_dir)
    try:
        old = read_run_record(outputs.record).scene.sha256
    except OutputError:
        return
    if old != sha256:
        discard_outputs(outputs)  # the run record first: a partial removal is never complete


def _process(
    cfg: IngestConfig,
    m: Any,
    rows: list[Any],
    job: JobSpec,
    run_id: str,
    report: IngestReport,
    progress: bool,
    on_event: Callable[[dict[str, Any]], None] | None,
) -> None:
    from geosam.batch import _BatchProgress, _log_outcome

    if not rows:
        return
    by_id = {r.scene_id: r for r in rows}
    tasks = [SceneTask(r.path, r.scene_id, r.out_dir, r.key) for r in rows]
    for task, row in zip(tasks, rows, strict=True):
        _drop_stale_outputs(task, row.sha256)
    permanent = _permanent_errors()
    started: set[str] = set()
    log.info("%d scenes to process; %s", len(tasks), cfg.executor().describe())
    with _BatchProgress(len(tasks), enabled=progress) as bar:

        def event(ev: dict[str, Any]) -> None:
            if ev.get("kind") == "start" and ev.get("scene_id") in by_id:
                key = by_id[str(ev["scene_id"])].key
                if key not in started:
                    started.add(key)
                    m.running(key, run_id, ev.get("worker"))
            bar.event(ev)
            if on_event is not None:
                on_event(ev)

        for outcome in execute(tasks, job, cfg.executor(), on_event=event):
            row = by_id[outcome.scene_id]
            first = row.key not in started
            started.add(row.key)
            report.outcomes.append(outcome)
            bar.outcome(outcome)
            _log_outcome(outcome)
            complete = outcome.record is not None and Path(outcome.record).is_file()
            if outcome.status == "done" and complete and outcome.sha256 == row.sha256:
                m.done(row.key, outcome, job.key, count_attempt=first)
            elif outcome.status == "done":
                m.pending(row.key, "the file changed while it was processed; it will be processed again")
            else:
                m.failed(
                    row.key,
                    outcome.error_type or "Error",
                    outcome.error_message or "",
                    retryable=outcome.error_type not in permanent,
                    count_attempt=first,
                    seconds=outcome.seconds,
                )
