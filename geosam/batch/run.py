"""A batch run: discover the scenes, name them, skip the finished ones, run the rest, report.

:func:`run_batch` is what ``geosam batch`` calls; :func:`execute` runs tasks where an
:class:`~geosam.batch.executor.ExecutorSpec` says (in this process, or through
:mod:`geosam.batch.dask_backend`) and yields their outcomes as they complete. See :mod:`geosam.batch`
for the inputs, the output layout and the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import geosam
from geosam.batch.executor import ExecutorSpec
from geosam.batch.inputs import SCENE_PATTERNS, SceneRef, discover_scenes, scene_dir
from geosam.batch.tasks import JobSpec, SceneOutcome, SceneTask, run_scene
from geosam.config import RunConfig
from geosam.errors import ConfigError, OutputError
from geosam.hashing import sha256_file
from geosam.outputs import safe_name

__all__ = ["REPORT_NAME", "WORK_DIR", "BatchReport", "execute", "log_outcome", "plan_tasks", "run_batch"]

log = logging.getLogger("geosam.batch")

WORK_DIR = ".geosam-work"
REPORT_NAME = "batch_report.json"
REPORT_VERSION = 1


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def plan_tasks(
    scenes: Sequence[SceneRef],
    out_dir: str | os.PathLike[str],
    layout: Literal["folders", "flat"] = "folders",
) -> list[SceneTask]:
    """Name each scene and choose its output folder (see the module docstring).

    Raises:
        ConfigError: ``flat`` layout with two scenes of the same stem (their files would collide).
    """
    out = Path(out_dir).absolute()
    ids = [safe_name(Path(s.path).stem) for s in scenes]
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    tasks = []
    for ref, sid in zip(scenes, ids, strict=True):
        if counts[sid] > 1:
            sid = safe_name(f"{sid}-{hashlib.sha1(ref.path.encode()).hexdigest()[:8]}")
        where = out if layout == "flat" else scene_dir(out, sid)
        tasks.append(SceneTask(ref.path, sid, str(where), ref.source, layout == "flat"))
    if layout == "flat":
        from geosam.outputs import output_stem

        stems: dict[str, list[str]] = {}
        for ref in scenes:
            stems.setdefault(output_stem(ref.path), []).append(ref.path)
        dup = {k: v for k, v in stems.items() if len(v) > 1}
        if dup:
            first = next(iter(dup.values()))
            raise ConfigError(
                f"--layout flat: scenes share a file name stem ({', '.join(first)}); use folders"
            )
    return tasks


def execute(
    tasks: Sequence[SceneTask],
    job: JobSpec,
    executor: ExecutorSpec,
    *,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[SceneOutcome]:
    """Run the tasks where ``executor`` says and yield outcomes as they complete.

    ``on_event`` receives progress events (``{"kind": "start", "scene_id", "worker"}`` and
    ``{"kind": "tile", "scene_id", "done", "total"}``) in the calling thread. A local cluster is
    started only here, when there is work.
    """
    if not tasks:
        return
    if executor.in_process:
        for task in tasks:
            yield run_scene(task, job, on_event)
        return
    from geosam.batch.dask_backend import connect, run_tasks

    with connect(executor) as client:
        yield from run_tasks(client, tasks, job, executor, on_event=on_event)


@dataclass
class BatchReport:
    """A batch run's report (also written as JSON: :meth:`to_dict`)."""

    out_dir: str
    inputs: list[str]
    executor: str
    job: JobSpec
    layout: str = "folders"
    started: str = field(default_factory=_now)
    finished: str | None = None
    seconds: float = 0.0
    scenes: list[SceneOutcome] = field(default_factory=list)
    stac_collection: str | None = None

    def counts(self) -> dict[str, int]:
        """Scenes per status, plus tile and region totals."""
        c = {s: sum(o.status == s for o in self.scenes) for s in ("done", "failed", "skipped", "pending")}
        c["scenes"] = len(self.scenes)
        c["tiles"] = sum(o.n_tiles for o in self.scenes)
        c["regions"] = sum(o.n_regions for o in self.scenes)
        return c

    @property
    def failed(self) -> list[SceneOutcome]:
        """The failed scenes."""
        return [o for o in self.scenes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when no scene failed, else 1."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "report_version": REPORT_VERSION,
            "geosam": geosam.__version__,
            "started": self.started,
            "finished": self.finished,
            "seconds": round(self.seconds, 3),
            "inputs": self.inputs,
            "out": self.out_dir,
            "layout": self.layout,
            "executor": self.executor,
            "model": self.job.model,
            "sam_checkpoint": self.job.sam_checkpoint,
            "config": self.job.cfg.to_json_dict(),
            "stac_collection": self.stac_collection,
            "totals": self.counts(),
            "scenes": [o.to_dict() for o in self.scenes],
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the report atomically (readers never see a partial file)."""
        from geosam.io.atomic import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return Path(path)


def _skip_if_done(task: SceneTask) -> SceneOutcome | None:
    """A ``skipped`` outcome when the scene's complete set exists for the same input content.

    Complete: the run record is there and every file it lists has the sha256 it records
    (:func:`geosam.record.verify_outputs`), after killed commits in the folder are finished.
    """
    from geosam.io.transaction import recover
    from geosam.outputs import SceneOutputs
    from geosam.record import verify_outputs

    outputs = SceneOutputs.for_scene(task.scene, task.out_dir)
    recover(outputs.directory, outputs.stem)
    try:
        record = verify_outputs(outputs)
        sha = sha256_file(task.scene)
    except OSError as err:  # OutputError included: incomplete, changed or unreadable
        log.info("%s: not skipped: %s", task.scene_id, err)
        return None
    if record.scene.sha256 != sha:
        return None
    written = {k: str(p) for k, p in outputs.paths.items() if p.exists()}
    if outputs.stac_item.is_file():
        written["stac_item"] = str(outputs.stac_item)
    return SceneOutcome(
        task.scene, task.scene_id, task.out_dir, "skipped", task.source,
        n_tiles=record.tiling.tiles, n_regions=record.results.regions,
        record=str(outputs.record), outputs=written, sha256=sha,
    )  # fmt: skip


def run_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    cfg: RunConfig | None = None,
    executor: ExecutorSpec | None = None,
    layout: Literal["folders", "flat"] = "folders",
    stac: bool = False,
    skip_existing: bool = False,
    report_path: str | os.PathLike[str] | None = None,
    keep_extracted: bool = False,
    progress: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_outcome: Callable[[SceneOutcome], None] | None = None,
) -> BatchReport:
    """Classify every scene in ``inputs`` into ``out_dir`` (see the module docstring).

    Args:
        inputs: Files, folders, globs, list files, archives.
        out_dir: Output folder (created).
        model: Classifier bundle (default: the packaged model).
        sam_checkpoint: SAM checkpoint for SAM regions.
        cfg: Run configuration (default ``RunConfig()``).
        executor: Where tasks run (default: a local cluster with one worker process).
        layout: ``folders`` (one folder per scene) or ``flat``.
        stac: Write a STAC Item per scene and ``<out>/collection.json`` (see :mod:`geosam.stac`).
        skip_existing: Skip scenes whose run record exists for the same input content (sha256).
        report_path: Where the report goes (default ``<out>/batch_report.json``).
        keep_extracted: Keep archives' extracted files in ``<out>/.geosam-work/``.
        progress: Show scene and tile progress with rates and ETA (:class:`geosam.progress.BatchProgress`:
            bars on a terminal, INFO log lines otherwise).
        on_event: Called with each progress event (see :func:`execute`).
        on_outcome: Called with each scene's outcome as it completes.

    Returns:
        The report; ``report.exit_code`` is 1 when a scene failed.

    Raises:
        ConfigError: No scene found, bad executor settings, unreachable scheduler.
        OutputError: The output folder cannot be created.
    """
    t0 = time.perf_counter()
    cfg = cfg if cfg is not None else RunConfig()
    executor = executor if executor is not None else ExecutorSpec()
    if executor.gpu and cfg.device == "cpu":
        raise ConfigError("--gpu with device 'cpu': use device auto or cuda")
    out = Path(out_dir).absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the output directory ({err.strerror})", out) from None
    work = out / WORK_DIR
    refs = discover_scenes(inputs, work_dir=work, exclude=[out])
    if not refs:
        raise ConfigError(
            f"no scenes found in {', '.join(map(str, inputs))} (looked for {', '.join(SCENE_PATTERNS)})"
        )
    _check_models(model, sam_checkpoint, executor)
    tasks = plan_tasks(refs, out, layout)
    job = JobSpec(
        None if model is None else os.path.abspath(model),
        None if sam_checkpoint is None else os.path.abspath(sam_checkpoint),
        cfg,
        stac,
    )
    report = BatchReport(str(out), [os.fspath(i) for i in inputs], executor.describe(), job, layout)
    index = {t.scene_id: i for i, t in enumerate(tasks)}
    report.scenes = [SceneOutcome.pending(t) for t in tasks]
    report_file = Path(report_path) if report_path else out / REPORT_NAME
    todo = []
    for ref, task in zip(refs, tasks, strict=True):
        done = _skip_if_done(task) if skip_existing and ref.error is None else None
        if ref.error is not None:
            report.scenes[index[task.scene_id]] = SceneOutcome.failure(
                task, ref.error_type or "Error", ref.error
            )
        elif done is not None:
            report.scenes[index[task.scene_id]] = done
        else:
            todo.append(task)
    report.write(report_file)
    log.info("%d scenes (%d to process) -> %s; %s", len(tasks), len(todo), out, executor.describe())
    last_write = time.monotonic()
    from geosam.progress import BatchProgress

    with BatchProgress(len(tasks), enabled=progress) as bar:
        bar.advance(len(tasks) - len(todo), failed=sum(r.error is not None for r in refs))

        def event(ev: dict[str, Any]) -> None:
            bar.event(ev)
            if on_event is not None:
                on_event(ev)

        try:
            for outcome in execute(todo, job, executor, on_event=event):
                report.scenes[index[outcome.scene_id]] = outcome
                bar.outcome(outcome)
                log_outcome(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
                if time.monotonic() - last_write > 5.0:
                    report.write(report_file)
                    last_write = time.monotonic()
        finally:
            if stac:
                from geosam.stac import write_collection

                report.stac_collection = str(write_collection(out))
            report.finished = _now()
            report.seconds = time.perf_counter() - t0
            report.write(report_file)
            if not keep_extracted:
                shutil.rmtree(work, ignore_errors=True)
    return report


def _check_models(
    model: str | os.PathLike[str] | None,
    sam_checkpoint: str | os.PathLike[str] | None,
    executor: ExecutorSpec,
) -> None:
    """Fail before starting workers when a local model path does not exist (remote workers may differ)."""
    if executor.scheduler is not None:
        return
    from geosam.errors import WeightsNotFoundError

    for what, p in (("model bundle", model), ("SAM checkpoint", sam_checkpoint)):
        if p is not None and not os.path.exists(p):
            raise WeightsNotFoundError(f"{what} not found", p)


def log_outcome(o: SceneOutcome) -> None:
    """Log a scene's outcome: INFO when done, WARNING with the reason when it failed."""
    if o.status == "done":
        log.info(
            "%s: %d tiles, %d regions in %.1f s -> %s",
            o.scene_id,
            o.n_tiles,
            o.n_regions,
            o.seconds,
            o.out_dir,
        )
    else:
        log.warning("%s: failed (%s): %s", o.scene_id, o.error_type, o.error_message)
