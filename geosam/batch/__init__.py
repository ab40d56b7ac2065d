"""Batch runs: many scenes, one :func:`~geosam.predict.predict_scene` task each, locally or on dask.

The package, one concept per module:

* :mod:`geosam.batch.inputs`: what the user names -> scenes (:func:`discover_scenes`), safe archive
  extraction;
* :mod:`geosam.batch.tasks`: the job every task shares, one scene task, its outcome, the task body;
* :mod:`geosam.batch.executor`: where tasks run (:class:`ExecutorSpec`, also the ingest config's
  ``executor`` section);
* :mod:`geosam.batch.dask_backend`: the dask.distributed connection, the model-loading worker plugin
  and the task loop (imported only when a cluster is used);
* :mod:`geosam.batch.run`: the batch itself (:func:`run_batch`, :class:`BatchReport`).

Imports go one way: ``run -> dask_backend -> tasks, executor``; ``inputs`` and ``tasks`` import none
of the others; :mod:`geosam.stac` and :mod:`geosam.ingest` use the package, never the reverse.

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
exits with status 1. See ``docs/batch.md``.
"""

from geosam.batch.executor import ExecutorSpec
from geosam.batch.inputs import (
    ARCHIVE_SUFFIXES,
    LIST_SUFFIXES,
    SCENE_PATTERNS,
    SceneRef,
    discover_scenes,
    extract_archive,
    safe_name,
    scene_dir,
)
from geosam.batch.run import BatchReport, execute, log_outcome, plan_tasks, run_batch
from geosam.batch.tasks import (
    JobSpec,
    SceneOutcome,
    SceneTask,
    clean_scene_dir,
    run_scene_task,
    scene_files,
)

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
    "log_outcome",
    "plan_tasks",
    "run_batch",
    "run_scene_task",
    "safe_name",
    "scene_dir",
    "scene_files",
]
