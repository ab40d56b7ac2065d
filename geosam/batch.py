"""Batch runs: many scenes, one :func:`~geosam.predict.predict_scene` task each, locally or on dask.

Inputs (:func:`discover_scenes`) are any mix of

* raster files (``.tif``, ``.tiff``, ``.vrt``; other files GDAL reads work when named explicitly),
* directories, scanned recursively for ``*.tif``, ``*.tiff``, ``*.vrt`` (hidden files and folders and
  the output folder are skipped; rasters that a VRT of the same scan uses as a source are that VRT's
  parts and are not processed on their own),
* glob patterns (``'archive/**/*.tif'``, quoted so the shell leaves them alone),
* text files listing one path, directory or glob per line (``.txt``, ``.lst``, ``.list``; ``#``
  comments; relative paths are relative to the list file),
* archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``), extracted into
  ``<out>/.geosam-work/`` and scanned like a directory. Members with absolute paths or ``..``
  components make the archive fail as a whole; links and devices are skipped.

Layout (``layout="folders"``, the default): each scene's outputs go to ``<out>/<scene_id>/``, where
``scene_id`` is the scene file's stem reduced to ``[A-Za-z0-9._-]`` (plus a short hash of the path when
two scenes share a stem). ``layout="flat"`` writes every scene's files directly into ``<out>``
(stems must then be unique). A batch report, ``<out>/batch_report.json``, lists every scene with its
status (``done``, ``failed``, ``skipped``, or ``pending`` while running), seconds, tiles, regions and,
for failures, the error type and message; it is rewritten atomically as scenes complete.

A scene that fails (corrupt file, wrong bands...) is recorded and the batch goes on; the CLI then
exits with status 1. Execution (:class:`ExecutorSpec`): in this process without dask
(``workers=0``), on a ``LocalCluster`` started for the run (default, one worker process), or on a
running dask cluster (``scheduler="tcp://host:8786"``); see :mod:`geosam.distributed` and
``docs/batch.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import geosam
from geosam._batch_inputs import (
    ARCHIVE_SUFFIXES,
    LIST_SUFFIXES,
    SCENE_PATTERNS,
    SceneRef,
    discover_scenes,
    extract_archive,
    file_sha256,
    safe_name,
    scene_dir,
)
from geosam.config import RunConfig
from geosam.errors import ConfigError, OutputError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "LIST_SUFFIXES",
    "SCENE_PATTERNS",
    "BatchReport",
    "ExecutorSpec",
    "JobSpec",
    "SceneOutcome",
    "SceneRef",
    "SceneTask",
    "clean_scene_dir",
    "discover_scenes",
    "execute",
    "extract_archive",
    "file_sha256",
    "plan_tasks",
    "run_batch",
    "run_scene_task",
    "safe_name",
    "scene_dir",
    "scene_files",
]

log = logging.getLogger(__name__)

WORK_DIR = ".geosam-work"
REPORT_NAME = "batch_report.json"
REPORT_VERSION = 1
Status = Literal["done", "failed", "skipped", "pending"]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- tasks ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutorSpec:
    """Where and how scene tasks run (see :mod:`geosam.distributed`).

    Attributes:
        scheduler: Address of a running dask scheduler (``tcp://host:8786``); ``None`` runs locally.
        workers: Local dask worker processes (one scene at a time each); ``0`` runs the scenes one
            after another in this process without dask. Ignored with ``scheduler``.
        processes: Local workers are processes (isolated: a crashed worker is restarted and its scene
            retried) or threads of this process (``False``: quick to start, shares one model copy).
        torch_threads: Torch threads per worker process (``None``: each worker process takes an equal
            share of its machine's cores; see :class:`geosam.distributed.ModelPlugin`).
        memory_limit: Per local worker (``"8GB"``), ``"auto"`` (machine memory / workers) or ``None``.
        gpu: Tasks request ``resources={"GPU": 1}`` (workers started with ``--resources GPU=1``).
        connect_timeout_s: How long to wait for the scheduler and for a first worker.
    """

    scheduler: str | None = None
    workers: int = 1
    processes: bool = True
    torch_threads: int | None = None
    memory_limit: str | None = "auto"
    gpu: bool = False
    connect_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, not {self.workers}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"torch threads must be >= 1, not {self.torch_threads}")

    @property
    def in_process(self) -> bool:
        """Scenes run one after another in this process, without dask."""
        return self.scheduler is None and self.workers == 0

    def describe(self) -> str:
        """One line for logs and reports."""
        gpu = " (GPU tasks)" if self.gpu else ""
        if self.scheduler:
            return f"dask scheduler {self.scheduler}{gpu}"
        if self.in_process:
            return "in this process (no dask)"
        kind = "process" if self.processes else "thread"
        if self.workers != 1:
            kind = "processes" if self.processes else "threads"
        return f"local dask cluster, {self.workers} worker {kind}{gpu}"


@dataclass(frozen=True)
class JobSpec:
    """What every scene task of a run shares: model paths and the run configuration.

    Paths must be valid on the workers (the same shared file system on a cluster).
    """

    model: str | None
    sam_checkpoint: str | None
    cfg: RunConfig
    stac: bool = False

    @property
    def key(self) -> str:
        """Short hash identifying the models and configuration (names the worker plugin)."""
        text = json.dumps([self.model, self.sam_checkpoint, self.cfg.to_json_dict()], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SceneTask:
    """One scene to classify: its raster, its name, and the folder its outputs go to.

    ``shared_dir`` marks a folder shared with other scenes (flat layout): leftovers of killed runs
    are then only removed when older than an hour, in case another process is writing them.
    """

    scene: str
    scene_id: str
    out_dir: str
    source: str = ""
    shared_dir: bool = False


@dataclass(frozen=True)
class SceneOutcome:
    """What happened to a scene (plain values, so it pickles across workers and into JSON)."""

    scene: str
    scene_id: str
    out_dir: str
    status: Status
    source: str = ""
    seconds: float = 0.0
    n_tiles: int = 0
    n_regions: int = 0
    record: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    sha256: str | None = None
    stac_item: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    worker: str | None = None

    @classmethod
    def failure(cls, task: SceneTask, error_type: str, message: str, **kw: Any) -> SceneOutcome:
        """A failed outcome for ``task``."""
        return cls(task.scene, task.scene_id, task.out_dir, "failed", task.source, **kw,
                   error_type=error_type, error_message=message)  # fmt: skip

    @classmethod
    def pending(cls, task: SceneTask) -> SceneOutcome:
        """Placeholder for a scene not finished yet."""
        return cls(task.scene, task.scene_id, task.out_dir, "pending", task.source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``error`` as ``{"type", "message"}`` or ``None``)."""
        d = asdict(self)
        etype, msg = d.pop("error_type"), d.pop("error_message")
        d["error"] = None if etype is None else {"type": etype, "message": msg}
        d["seconds"] = round(self.seconds, 3)
        return d


def scene_files(task: SceneTask) -> list[Path]:
    """Every file a scene's run may write: outputs, ``.qml`` and ``.aux.xml`` sidecars, STAC item."""
    from geosam.outputs import SceneOutputs

    return SceneOutputs.for_scene(task.scene, task.out_dir).all_files()


def clean_scene_dir(task: SceneTask, *, older_than_s: float = 0.0) -> list[Path]:
    """Remove what a killed run of this scene left: staging folders, temp files, partial outputs.

    Transactions of dead runs are finished or rolled back first (:func:`geosam.io.transaction.recover`;
    live runs are never touched). Temp names of older geosam versions start with
    ``.geosam-tmp-<token>-<stem>`` and their scratch folders with ``.<stem>.work-``; ``older_than_s``
    protects concurrent writers of those in a shared flat output folder. When the scene's run record
    is missing, its other outputs are incomplete and are removed too, so a failed scene has no outputs.
    Only this scene's files are touched.

    Returns:
        The removed paths.
    """
    from geosam.io.atomic import TEMP_PREFIX
    from geosam.io.transaction import recover
    from geosam.outputs import SceneOutputs

    out = Path(task.out_dir)
    outputs = SceneOutputs.for_scene(task.scene, out)
    record, stem = outputs.record, outputs.stem
    removed: list[Path] = recover(out, stem)
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(out))
    except FileNotFoundError:
        return removed
    for entry in entries:
        name = entry.name
        rest = name[len(TEMP_PREFIX) :].split("-", 1)[-1] if name.startswith(TEMP_PREFIX) else None
        ours = (rest is not None and rest.startswith((f"{stem}_", f"{stem}."))) or name.startswith(
            f".{stem}.work-"
        )
        try:
            if ours and entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    if not record.exists():
        for p in scene_files(task):
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed.append(p)
    return removed


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def _run_scene(task: SceneTask, job: JobSpec, emit: Callable[[dict[str, Any]], None] | None) -> SceneOutcome:
    """Classify one scene; never raises (errors become a failed outcome of ``(type, message)``)."""
    import geosam.predict
    from geosam.runtime import cached_models

    worker = _worker_name()
    t0 = time.perf_counter()

    def on_tile(done: int, total: int) -> None:
        if emit is not None:
            emit({"kind": "tile", "scene_id": task.scene_id, "done": done, "total": total})

    try:
        if emit is not None:
            emit({"kind": "start", "scene_id": task.scene_id, "worker": worker, "pid": os.getpid()})
        clean_scene_dir(task, older_than_s=3600.0 if task.shared_dir else 0.0)
        models = cached_models(job.model, job.sam_checkpoint, job.cfg)
        res = geosam.predict.predict_scene(
            task.scene,
            task.out_dir,
            models,
            job.cfg,
            model_path=job.model,
            on_tile=on_tile,
            stac_item_id=task.scene_id if job.stac else None,
        )
        item = str(res.outputs["stac_item"]) if "stac_item" in res.outputs else None
    except Exception as err:
        if not isinstance(err, geosam.GeosamError):
            log.error("%s: unexpected error", task.scene, exc_info=True)
        if not task.shared_dir:
            with contextlib.suppress(OSError):
                os.rmdir(task.out_dir)  # only if empty: a failed scene leaves no folder behind
        return SceneOutcome.failure(
            task, type(err).__name__, str(err) or repr(err), seconds=time.perf_counter() - t0, worker=worker
        )
    return SceneOutcome(
        task.scene,
        task.scene_id,
        task.out_dir,
        "done",
        task.source,
        seconds=time.perf_counter() - t0,
        n_tiles=res.n_tiles,
        n_regions=res.n_regions,
        record=str(res.outputs["record"]),
        outputs={k: str(v) for k, v in res.outputs.items()},
        sha256=res.record.scene.sha256,
        stac_item=item,
        worker=worker,
    )


def run_scene_task(task: SceneTask, job: JobSpec, topic: str | None = None) -> SceneOutcome:
    """The dask task: classify one scene, logging progress events to ``topic``; never raises."""
    emit = None
    if topic is not None:
        from distributed import get_worker

        worker = get_worker()

        def emit(event: dict[str, Any]) -> None:
            worker.log_event(topic, event)

    return _run_scene(task, job, emit)


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
            yield _run_scene(task, job, on_event)
        return
    from geosam.distributed import connect, run_tasks

    with connect(executor) as client:
        yield from run_tasks(client, tasks, job, executor, on_event=on_event)


# -- the batch --------------------------------------------------------------------------------------


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
        sha = file_sha256(task.scene)
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
        progress: Show scene and tile progress bars (rich) with rates and ETA.
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
    with _BatchProgress(len(tasks), enabled=progress) as bar:
        bar.advance(len(tasks) - len(todo))

        def event(ev: dict[str, Any]) -> None:
            bar.event(ev)
            if on_event is not None:
                on_event(ev)

        try:
            for outcome in execute(todo, job, executor, on_event=event):
                report.scenes[index[outcome.scene_id]] = outcome
                bar.outcome(outcome)
                _log_outcome(outcome)
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


def _log_outcome(o: SceneOutcome) -> None:
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


class _BatchProgress:
    """Two rich bars, scenes and tiles, with rates and ETA (silent when disabled)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self.tiles: dict[str, tuple[int, int]] = {}
        self._bar: Any = None

    def __enter__(self) -> _BatchProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from geosam.progress import _rate_column_class

            self._bar = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _rate_column_class()(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._bar.__enter__()
            self._scenes = self._bar.add_task("scenes", total=self.total)
            self._tiles = self._bar.add_task("tiles", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def advance(self, n: int) -> None:
        if self._bar is not None and n:
            self._bar.advance(self._scenes, n)

    def event(self, ev: dict[str, Any]) -> None:
        if ev.get("kind") == "tile":
            self.tiles[str(ev["scene_id"])] = (int(ev["done"]), int(ev["total"]))
            if self._bar is not None:
                done = sum(d for d, _ in self.tiles.values())
                total = sum(t for _, t in self.tiles.values())
                self._bar.update(self._tiles, completed=done, total=total)

    def outcome(self, o: SceneOutcome) -> None:
        self.advance(1)
