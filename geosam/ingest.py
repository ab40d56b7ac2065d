"""Scheduled ingestion: classify the scenes that are new or changed in an inbox, exactly once each.

:func:`run_ingest` is what ``geosam ingest --config ingest.yaml`` and ``pipelines/ingest.py`` call, for
example every 15 minutes from cron or a systemd timer. One run:

1. takes an exclusive lock (:class:`filelock.FileLock` on ``<db>.lock``); if another run holds it, raises
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
    safe_name,
    scene_dir,
)
from geosam.config import RunConfig, format_validation_error, load_config, parse_config
from geosam.errors import ConfigError, InputMismatchError, LockedError, OutputError, RasterError
from geosam.hashing import sha256_file

__all__ = [
    "IngestConfig",
    "IngestReport",
    "SceneDecision",
    "check_ingest_config",
    "ingest_lock",
    "load_ingest_config",
    "run_ingest",
]

log = logging.getLogger(__name__)

DB_NAME = "geosam-ingest.sqlite"
SCHEMA_VERSION: Literal[2] = 2
#: Executor keys that schema version 1 had at the top level of ``ingest.yaml``.
EXECUTOR_KEYS = tuple(ExecutorSpec.model_fields)


def upgrade_ingest_config(
    data: dict[str, Any], source: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Bring an ``ingest.yaml`` mapping to the current schema (:data:`SCHEMA_VERSION`).

    Version 1 (or no ``schema_version``) had the executor settings (``workers``, ``scheduler``...) at
    the top level; they move into ``executor``. A key given both ways is an error.

    Raises:
        ConfigError: A version from the future, or an executor key set twice.
    """
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise ConfigError(
            f"schema_version {version!r} is not supported by this geosam (supports 1..{SCHEMA_VERSION})",
            source,
        )
    out = dict(data)
    flat = {k: out.pop(k) for k in EXECUTOR_KEYS if k in out}
    if flat:
        nested = out.get("executor")
        nested = dict(nested) if isinstance(nested, dict) else {}
        twice = sorted(set(flat) & set(nested))
        if twice:
            raise ConfigError(f"{', '.join(twice)} given both at the top level and under 'executor'", source)
        out["executor"] = {**nested, **flat}
    out["schema_version"] = SCHEMA_VERSION
    return out


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
        executor: Where scenes run (:class:`geosam.batch.ExecutorSpec`: ``workers``, ``processes``,
            ``torch_threads``, ``memory_limit``, ``scheduler``, ``gpu``, ``connect_timeout_s``). Schema
            version 1 had these keys at the top level; such files are upgraded when loaded.
        stac: Write STAC items and ``<out>/collection.json``.
        max_attempts: Attempts per scene content before a retryable failure is left alone.
        verify_hashes: Hash every file on every run, not only those whose size or mtime changed.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: Literal[2] = SCHEMA_VERSION
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
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
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


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_PATH_FIELDS = ("inbox", "scene_list", "out", "db", "lock", "model", "sam_checkpoint", "run_config")


def load_ingest_config(path: str | os.PathLike[str], **overrides: Any) -> IngestConfig:
    """Load ``ingest.yaml`` (relative paths resolved against its folder) and apply ``overrides``.

    The file is upgraded to the current schema first (:func:`upgrade_ingest_config`). ``overrides``
    are top-level keys (``stac=True``) or executor keys (``workers=0``, ``scheduler=...``), which go
    into the ``executor`` section; ``None`` values are ignored.

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
    data = upgrade_ingest_config(data, p)
    given = {k: v for k, v in overrides.items() if v is not None}
    executor_over = {k: given.pop(k) for k in EXECUTOR_KEYS if k in given}
    if executor_over:
        current = data.get("executor")
        data["executor"] = {**(current if isinstance(current, dict) else {}), **executor_over}
    data.update(given)
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


def check_ingest_config(cfg: IngestConfig) -> list[str]:
    """Problems that would stop every run of this configuration, one line each (``path: problem``).

    What :func:`load_ingest_config` cannot check because it changes after the file was written: the
    inbox or scene list, the model bundle and SAM checkpoint exist; the output folder, the manifest and
    the lock file can be created. ``geosam ingest --status`` prints them; :func:`run_ingest` refuses to
    start with the first.
    """
    problems: list[str] = []
    if cfg.inbox is not None and not cfg.inbox.is_dir():
        what = "is not a folder" if cfg.inbox.exists() else "does not exist"
        problems.append(
            f"{cfg.inbox}: the inbox folder {what} (create it, or fix 'inbox' in the configuration)"
        )
    if cfg.scene_list is not None and not cfg.scene_list.is_file():
        problems.append(f"{cfg.scene_list}: the scene list file does not exist (fix 'scene_list')")
    if cfg.model is not None and not (cfg.model / "model.json").is_file():
        problems.append(f"{cfg.model}: model bundle not found (a folder with model.json; fix 'model')")
    if cfg.sam_checkpoint is not None and not cfg.sam_checkpoint.is_file():
        problems.append(f"{cfg.sam_checkpoint}: SAM checkpoint not found (fix 'sam_checkpoint')")
    for what, target in (("output folder", cfg.out), ("manifest", cfg.db_path), ("lock file", cfg.lock_path)):
        problem = _cannot_create(target, folder=what == "output folder")
        if problem:
            problems.append(f"{target}: the {what} cannot be created ({problem})")
    return problems


def _cannot_create(path: Path, *, folder: bool) -> str | None:
    """Why ``path`` (a file, or a folder) could not be created or written, or ``None``."""
    p = path.absolute()
    if p.exists():
        if folder != p.is_dir():
            return "a file is in the way" if folder else "it is a folder"
        return None if os.access(p, os.W_OK) else "not writable"
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"{parent} is not writable"


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


@dataclass(frozen=True)
class SceneDecision:
    """What a run does with one scene it found, and why.

    Attributes:
        key: The scene's manifest key (path relative to the inbox, or absolute).
        process: Whether this run processes it.
        reason: Why, in words: ``new``, ``content changed``, ``retry 2 of 3 after ...``; or why not:
            ``done, unchanged since ...``, ``modified 12 s ago; ...min_age_s...``, ``failed with an
            input error ...``.
    """

    key: str
    process: bool
    reason: str

    def line(self) -> str:
        """``would process: KEY (reason)`` or ``not processed: KEY: reason``."""
        return (
            f"would process: {self.key} ({self.reason})"
            if self.process
            else f"skip: {self.key}: {self.reason}"
        )


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
    decisions: list[SceneDecision] = field(default_factory=list)
    found_keys: list[str] = field(default_factory=list)

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
            skipped = len(self.decisions) - len(self.todo)
            return (
                f"dry run: {self.found} scenes found, {len(self.todo)} would be processed, "
                f"{skipped} would not (reasons above); nothing was written"
            )
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


def _scan(cfg: IngestConfig, m: Any, report: IngestReport) -> dict[str, str]:
    """Record new and changed scenes in the manifest (inside the caller's transaction).

    Returns:
        The found scenes this scan leaves alone for a reason of the scan itself (too new, unreadable),
        key -> reason; the others' fate follows from their manifest row (see :func:`_decide`).
    """
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
    held: dict[str, str] = {}
    now = time.time()
    cutoff = now - cfg.min_age_s
    for ref in refs:
        path = Path(ref.path)
        key = _scene_key(path, inbox)
        try:
            st = path.stat()
        except OSError:
            log.warning("%s: listed but not readable now; skipped", path)
            held[key] = "listed but not readable now"
            continue
        if not path.is_file():
            continue
        seen.add(key)
        report.found += 1
        row = m.get(key)
        if st.st_mtime > cutoff and (row is None or (row.size, row.mtime_ns) != (st.st_size, st.st_mtime_ns)):
            report.too_new += 1
            ready = time.strftime("%H:%M:%S UTC", time.gmtime(st.st_mtime + cfg.min_age_s))
            held[key] = (
                f"modified {max(0.0, now - st.st_mtime):.0f} s ago; files younger than min_age_s "
                f"({cfg.min_age_s:g} s) may still be arriving and wait for a run from {ready} on"
            )
            continue
        if (
            row is not None
            and not cfg.verify_hashes
            and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
        ):
            continue
        try:
            sha = sha256_file(path)
        except OSError as err:
            log.warning("%s: cannot be read (%s); skipped", path, err.strerror or err)
            held[key] = f"cannot be read ({err.strerror or err})"
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
    report.found_keys = sorted(seen | set(held))
    return held


def _decide(m: Any, keys: list[str], held: dict[str, str], max_attempts: int) -> list[SceneDecision]:
    """Why each found scene is, or is not, processed by this run (from the scan and the manifest)."""
    todo = {r.key for r in m.todo(max_attempts)}
    out = []
    for key in keys:
        row = m.get(key)
        if key in held:
            out.append(SceneDecision(key, False, held[key]))
        elif row is None:
            out.append(SceneDecision(key, False, "not in the manifest"))
        elif key in todo:
            if row.status == "failed":
                why = (
                    f"retry {row.attempts + 1} of {max_attempts} after {row.error_type}: {row.error_message}"
                )
            elif row.attempts == 0 and row.first_seen == row.changed:
                why = "new"
            elif row.attempts == 0:
                why = "content changed"
            else:
                why = f"pending ({row.error_message or 'attempt ' + str(row.attempts + 1)})"
            out.append(SceneDecision(key, True, why))
        elif row.status == "done":
            out.append(SceneDecision(key, False, f"done, unchanged since {row.finished or row.changed}"))
        elif row.status == "running":
            out.append(SceneDecision(key, False, f"running since {row.started} on {row.worker}"))
        elif row.status == "failed" and not row.retryable:
            out.append(
                SceneDecision(
                    key,
                    False,
                    f"failed with an input error ({row.error_type}: {row.error_message}); waits for a "
                    "new version of the file",
                )
            )
        elif row.status == "failed":
            out.append(
                SceneDecision(
                    key,
                    False,
                    f"failed {row.attempts} times ({row.error_type}: {row.error_message}); "
                    "`geosam ingest --retry-failed` resets it",
                )
            )
        else:
            out.append(SceneDecision(key, False, f"status {row.status}"))
    return out


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
        dry_run: Scan and report what would be processed and why the other scenes are not
            (``report.decisions``); write nothing (no lock file, output folder or manifest: the scan
            runs on an in-memory copy of the manifest).
        progress: Show scene and tile progress bars.
        on_event: Called with each progress event (see :func:`geosam.batch.execute`).

    Raises:
        LockedError: Another run holds the lock (exit status 75).
        ConfigError: Bad configuration (:func:`check_ingest_config`: a missing inbox...), unreachable
            scheduler; raised before anything is written.
        OutputError: The output folder or the manifest cannot be written.
    """
    from geosam.manifest import Manifest

    t0 = time.perf_counter()
    problems = check_ingest_config(cfg)
    if problems:  # before the lock, the output folder or the manifest exist: nothing is written
        more = (
            f" (and {len(problems) - 1} more: `geosam ingest --status` lists them)"
            if len(problems) > 1
            else ""
        )
        raise ConfigError(problems[0] + more)
    run_cfg = cfg.run_config_obj()
    job = JobSpec(
        None if cfg.model is None else str(cfg.model.absolute()),
        None if cfg.sam_checkpoint is None else str(cfg.sam_checkpoint.absolute()),
        run_cfg,
        cfg.stac,
    )
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    report = IngestReport(run_id, dry_run=dry_run)
    if dry_run:
        # no lock, no folder, no database: the scan runs on an in-memory copy of the manifest
        with Manifest.snapshot(cfg.db_path) as m:
            held = _scan(cfg, m, report)
            report.todo = [r.key for r in m.todo(cfg.max_attempts)]
            report.decisions = _decide(m, report.found_keys, held, cfg.max_attempts)
        report.seconds = time.perf_counter() - t0
        return report
    with ingest_lock(cfg.lock_path):
        cfg.out.mkdir(parents=True, exist_ok=True)
        with Manifest.open(cfg.db_path) as m:
            m.begin_run(run_id, job.key)
            status = "interrupted"
            try:
                report.recovered = _recover(cfg, m)
                with m.transaction():
                    held = _scan(cfg, m, report)
                rows = m.todo(cfg.max_attempts)
                report.todo = [r.key for r in rows]
                report.decisions = _decide(m, report.found_keys, held, cfg.max_attempts)
                for d in report.decisions:
                    if not d.process and d.key in held:
                        log.info("%s: not processed: %s", d.key, d.reason)
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
    from geosam.batch import log_outcome
    from geosam.progress import BatchProgress

    if not rows:
        return
    by_id = {r.scene_id: r for r in rows}
    tasks = [SceneTask(r.path, r.scene_id, r.out_dir, r.key) for r in rows]
    for task, row in zip(tasks, rows, strict=True):
        _drop_stale_outputs(task, row.sha256)
    permanent = _permanent_errors()
    started: set[str] = set()
    log.info("%d scenes to process; %s", len(tasks), cfg.executor.describe())
    with BatchProgress(len(tasks), enabled=progress) as bar:

        def event(ev: dict[str, Any]) -> None:
            if ev.get("kind") == "start" and ev.get("scene_id") in by_id:
                key = by_id[str(ev["scene_id"])].key
                if key not in started:
                    started.add(key)
                    m.running(key, run_id, ev.get("worker"))
            bar.event(ev)
            if on_event is not None:
                on_event(ev)

        for outcome in execute(tasks, job, cfg.executor, on_event=event):
            row = by_id[outcome.scene_id]
            first = row.key not in started
            started.add(row.key)
            report.outcomes.append(outcome)
            bar.outcome(outcome)
            log_outcome(outcome)
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
