"""A batch's tasks: the job they share, one scene each, its outcome, and the task body.

:class:`JobSpec` is what every scene task shares, :class:`SceneTask` one scene, :class:`SceneOutcome`
what happened to it, and :func:`run_scene_task` the task body.

Tasks carry paths and the run configuration (a few KB), never pixels or open datasets, so they pickle
to dask workers on other machines; each task opens its own rasterio datasets. The body never raises:
an error becomes a failed outcome with its type and message. It cleans what a killed earlier run of the
same scene left (:func:`clean_scene_dir`), loads the models once per process
(:func:`geosam.runtime.cached_models`) and runs :func:`geosam.predict.predict_scene` (which writes the
scene's STAC item inside the scene's transaction when asked).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from geosam.config import RunConfig

__all__ = [
    "JobSpec",
    "SceneOutcome",
    "SceneTask",
    "Status",
    "clean_scene_dir",
    "run_scene",
    "run_scene_task",
    "scene_files",
]

log = logging.getLogger("geosam.batch")

Status = Literal["done", "failed", "skipped", "pending"]


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


def run_scene(task: SceneTask, job: JobSpec, emit: Callable[[dict[str, Any]], None] | None) -> SceneOutcome:
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

    return run_scene(task, job, emit)
