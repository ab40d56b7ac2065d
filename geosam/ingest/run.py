"""One ingestion run (:func:`run_ingest`): lock, recover, scan, process, STAC (see :mod:`geosam.ingest`)."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geosam.batch import JobSpec, SceneTask, clean_scene_dir, execute
from geosam.errors import ConfigError, InputMismatchError, OutputError, RasterError
from geosam.ingest.config import IngestConfig, check_ingest_config
from geosam.ingest.lock import ingest_lock
from geosam.ingest.report import IngestReport
from geosam.ingest.scan import decide, scan

__all__ = ["run_ingest"]

log = logging.getLogger("geosam.ingest")


def _permanent_errors() -> frozenset[str]:
    """Error type names caused by the input itself: retrying the same bytes cannot help."""
    names: set[str] = set()
    stack: list[type] = [RasterError, InputMismatchError]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return frozenset(names)


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
            held = scan(cfg, m, report)
            report.todo = [r.key for r in m.todo(cfg.max_attempts)]
            report.decisions = decide(m, report.found_keys, held, cfg.max_attempts)
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
                    held = scan(cfg, m, report)
                rows = m.todo(cfg.max_attempts)
                report.todo = [r.key for r in rows]
                report.decisions = decide(m, report.found_keys, held, cfg.max_attempts)
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
