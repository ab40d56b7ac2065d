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

The package: :mod:`~geosam.ingest.config` (``ingest.yaml``), :mod:`~geosam.ingest.lock` (one run at a
time), :mod:`~geosam.ingest.scan` (the inbox scan and the reasons), :mod:`~geosam.ingest.report` (what a
run did) and :mod:`~geosam.ingest.run` (:func:`run_ingest`).
"""

from geosam.ingest.config import (
    DB_NAME,
    SCHEMA_VERSION,
    IngestConfig,
    check_ingest_config,
    load_ingest_config,
    upgrade_ingest_config,
)
from geosam.ingest.lock import ingest_lock
from geosam.ingest.report import IngestReport, SceneDecision
from geosam.ingest.run import run_ingest

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "IngestConfig",
    "IngestReport",
    "SceneDecision",
    "check_ingest_config",
    "ingest_lock",
    "load_ingest_config",
    "run_ingest",
    "upgrade_ingest_config",
]
