"""Scale-out on dask.distributed: cluster connection, a model-loading worker plugin, and the task loop.

geosam runs one **task per scene**. A task carries a :class:`~geosam.batch.tasks.SceneTask` (paths and
a name) and a :class:`~geosam.batch.tasks.JobSpec` (model paths and the :class:`~geosam.config.RunConfig`):
small picklable values, never arrays or open datasets. Each task opens its own rasterio datasets.

Models are loaded **once per worker process**: :class:`ModelPlugin` loads them when a worker starts
(or joins later, for example after a crashed worker was restarted by its nanny) into the process-level
cache of :func:`geosam.runtime.cached_models`, which the tasks then hit.

Progress flows back as small events (``{"kind": "start" | "tile", "scene_id": ..., ...}``) that tasks
log with :meth:`distributed.Worker.log_event`; the client subscribes to the topic and hands each event
to a callback **in the calling thread** (the loop in :func:`run_tasks` polls), so callers may update a
progress bar or an SQLite database without locks.

Worker loss: when a worker dies while running a scene (killed, out of memory, segfault), the scheduler
resubmits the scene to another worker, up to ``distributed.scheduler.allowed-failures`` (3) times; after
that the scene's outcome is a failure of type ``KilledWorker``. The batch goes on.

This module imports ``distributed``; ``import geosam`` and ``import geosam.batch`` do not import it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from distributed.diagnostics.plugin import WorkerPlugin

from geosam.batch.executor import ExecutorSpec
from geosam.batch.tasks import JobSpec, SceneOutcome, SceneTask
from geosam.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["EVENT_TOPIC", "ModelPlugin", "connect", "run_tasks"]

log = logging.getLogger(__name__)

EVENT_TOPIC = "geosam-batch"
"""Prefix of the event topic tasks log progress to (one topic per run: ``geosam-batch-<token>``)."""


class ModelPlugin(WorkerPlugin):
    """Load a job's models once per worker, when the worker starts (or joins), and set torch threads.

    The models go into :func:`geosam.runtime.cached_models`'s per-process cache, which tasks use. A
    failure here is only logged: each task then raises the same error and records it per scene.

    Torch threads: dask's nanny starts worker processes with ``OMP_NUM_THREADS=1``, which would leave
    torch on one core. Unless ``torch_threads`` is given, each worker process takes an equal share of
    its machine's cores: ``cpu_count // (worker processes on that host * tasks per worker)``. Workers
    running inside the client's process (threads) leave torch's setting alone.

    Args:
        job: Model paths and run configuration.
        torch_threads: ``torch.set_num_threads`` value for every worker process (``None``: a share).
        workers_per_host: Worker processes per host name when the plugin was registered.
    """

    idempotent = True

    def __init__(
        self, job: JobSpec, torch_threads: int | None = None, workers_per_host: dict[str, int] | None = None
    ) -> None:
        self.job = job
        self.torch_threads = torch_threads
        self.workers_per_host = dict(workers_per_host or {})
        self.client_pid = os.getpid()

    def threads_for(self, address: str, nthreads: int) -> int | None:
        """Torch threads for a worker at ``address`` running ``nthreads`` tasks at once."""
        if os.getpid() == self.client_pid:
            return None
        if self.torch_threads is not None:
            return self.torch_threads
        host = urlsplit(address).hostname or ""
        share = self.workers_per_host.get(host, 1) * max(1, nthreads)
        return max(1, (os.cpu_count() or 1) // share)

    def setup(self, worker: Any) -> None:
        """Called by each worker when the plugin is registered, and by workers joining later."""
        threads = self.threads_for(str(getattr(worker, "address", "")), int(getattr(worker, "nthreads", 1)))
        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            from geosam.runtime import cached_models

            cached_models(self.job.model, self.job.sam_checkpoint, self.job.cfg)
        except Exception as err:  # reported per scene by the tasks
            log.warning("worker %s could not load the models: %s", getattr(worker, "address", "?"), err)


def _workers_per_host(client: Client) -> dict[str, int]:
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return dict(Counter(urlsplit(addr).hostname or "" for addr in workers))


@contextmanager
def connect(spec: ExecutorSpec) -> Iterator[Client]:
    """A ``distributed.Client`` on the scheduler named by ``spec``, or on a new ``LocalCluster``.

    The local cluster (and its worker processes) is closed on exit; a remote cluster is left running.

    Raises:
        ConfigError: The scheduler cannot be reached, has no worker, or (``gpu``) no worker declares a
            ``GPU`` resource.
    """
    from distributed import Client, LocalCluster

    if spec.in_process:
        raise ValueError("an in-process ExecutorSpec has no cluster")
    cluster = None
    if spec.scheduler:
        try:
            client = Client(spec.scheduler, timeout=spec.connect_timeout_s)
        except OSError as err:
            msg = f"cannot reach the dask scheduler at {spec.scheduler} ({err}); is `dask scheduler` running?"
        else:
            msg = ""
        if msg:
            raise ConfigError(msg)
    else:
        cluster = LocalCluster(
            n_workers=spec.workers,
            threads_per_worker=1,
            processes=spec.processes,
            memory_limit=spec.memory_limit or 0,
            resources={"GPU": 1} if spec.gpu else None,
            dashboard_address=":0",  # any free port: several local runs may coexist
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        _check_workers(client, spec)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _check_workers(client: Client, spec: ExecutorSpec) -> None:
    try:
        client.wait_for_workers(1, timeout=spec.connect_timeout_s)
    except TimeoutError:
        raise ConfigError(
            f"no dask worker joined {spec.scheduler or 'the local cluster'} within "
            f"{spec.connect_timeout_s:.0f} s; start one with `dask worker {spec.scheduler or 'ADDRESS'}`"
        ) from None
    if spec.gpu:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers.values()):
            raise ConfigError(
                "--gpu: no worker declares a GPU resource, so GPU tasks would wait forever; start GPU "
                "workers with `dask worker tcp://SCHEDULER:8786 --nthreads 1 --resources GPU=1`"
            )


def _failure_from_future(task: SceneTask, err: BaseException) -> SceneOutcome:
    message = str(err) or type(err).__name__
    if type(err).__name__ == "KilledWorker":
        message = (
            "the worker died while processing this scene (killed, out of memory or crashed) on every "
            f"retry ({message})"
        )
    return SceneOutcome.failure(task, type(err).__name__, message)


def run_tasks(
    client: Client,
    tasks: Sequence[SceneTask],
    job: JobSpec,
    spec: ExecutorSpec,
    *,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    task_fn: Callable[..., SceneOutcome] | None = None,
    poll_s: float = 0.1,
) -> Iterator[SceneOutcome]:
    """Submit one task per scene and yield their outcomes as they complete.

    Args:
        client: From :func:`connect`.
        tasks: The scenes.
        job: Model paths and run configuration (sent once per task; a few KB).
        spec: Executor settings (``gpu`` makes tasks request ``resources={"GPU": 1}``).
        on_event: Called in this thread with each progress event a task logs.
        task_fn: The task function (default :func:`geosam.batch.tasks.run_scene_task`), called on a worker as
            ``task_fn(task, job, topic)``; it must return a ``SceneOutcome`` and not raise.
        poll_s: How often the loop checks for events while no task completes.

    Yields:
        One :class:`~geosam.batch.tasks.SceneOutcome` per task, in completion order. A task whose future
        fails (its worker died on every retry, it was cancelled) yields a failure outcome.
    """
    from distributed import as_completed

    from geosam.batch.tasks import run_scene_task

    fn = task_fn or run_scene_task
    token = secrets.token_hex(4)
    topic = f"{EVENT_TOPIC}-{token}"
    events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    client.subscribe_topic(topic, lambda event: events.put(event[1]))
    plugin = ModelPlugin(job, spec.torch_threads, _workers_per_host(client))
    client.register_plugin(plugin, name=f"geosam-models-{job.key}")
    resources = {"GPU": 1} if spec.gpu else None
    by_key: dict[str, SceneTask] = {}
    futures = []
    for task in tasks:
        key = f"geosam-scene-{task.scene_id}-{token}"
        fut = client.submit(fn, task, job, topic, key=key, pure=False, resources=resources)
        by_key[key] = task
        futures.append(fut)

    def drain() -> None:
        while True:
            try:
                event = events.get_nowait()
            except queue.Empty:
                return
            if on_event is not None and isinstance(event, dict):
                on_event(event)

    completed = as_completed(futures)
    try:
        while not completed.is_empty():
            drain()
            batch = completed.next_batch(block=False)
            if not batch:
                time.sleep(poll_s)
                continue
            for fut in batch:
                task = by_key[str(fut.key)]
                try:
                    outcome = fut.result()
                except Exception as err:  # KilledWorker, FutureCancelledError...
                    outcome = _failure_from_future(task, err)
                fut.release()
                drain()
                yield outcome
        drain()
    finally:
        for fut in futures:
            fut.release()
        with contextlib.suppress(ValueError):  # already unsubscribed
            client.unsubscribe_topic(topic)
