"""Where and how a batch's scene tasks run: :class:`ExecutorSpec`, one pydantic model.

The same settings drive ``geosam batch`` (its options), ``run_batch(executor=...)`` and the ingest
configuration (its ``executor:`` section, :class:`geosam.ingest.IngestConfig`), so they are defined once,
here, and validated by pydantic (``extra="forbid"``, ranges). Scenes run in this process without dask
(``workers=0``), on a ``LocalCluster`` started for the run (default: one worker process), or on a running
dask cluster (``scheduler="tcp://host:8786"``); see :mod:`geosam.batch.dask_backend`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ExecutorSpec"]


class ExecutorSpec(BaseModel):
    """Where and how scene tasks run.

    Attributes:
        scheduler: Address of a running dask scheduler (``tcp://host:8786``); ``None`` runs locally.
        workers: Local dask worker processes (one scene at a time each); ``0`` runs the scenes one
            after another in this process without dask. Ignored with ``scheduler``.
        processes: Local workers are processes (isolated: a crashed worker is restarted and its scene
            retried) or threads of this process (``False``: quick to start, shares one model copy).
        torch_threads: Torch threads per worker process (``None``: each worker process takes an equal
            share of its machine's cores; see :class:`geosam.batch.dask_backend.ModelPlugin`).
        memory_limit: Per local worker (``"8GB"``), ``"auto"`` (machine memory / workers) or ``None``.
        gpu: Tasks request ``resources={"GPU": 1}`` (workers started with ``--resources GPU=1``).
        connect_timeout_s: How long to wait for the scheduler and for a first worker, in seconds.

    Raises:
        pydantic.ValidationError: A value out of range (``workers < 0``, ``torch_threads < 1``...) or an
            unknown key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler: str | None = None
    workers: int = Field(1, ge=0)
    processes: bool = True
    torch_threads: int | None = Field(None, ge=1)
    memory_limit: str | None = "auto"
    gpu: bool = False
    connect_timeout_s: float = Field(60.0, gt=0)

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
