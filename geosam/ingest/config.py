"""``ingest.yaml``: what to watch, where outputs go, which model, where scenes run; checked before a run.

:func:`load_ingest_config` reads the file (relative paths against its folder), upgrades older schema
versions (:func:`upgrade_ingest_config`) and validates it (:class:`IngestConfig`, pydantic, unknown keys
are errors). :func:`check_ingest_config` finds what would stop every run but can only be seen on the
machine (a missing inbox, model or checkpoint; an output folder that cannot be created).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geosam.batch import SCENE_PATTERNS, ExecutorSpec
from geosam.config import RunConfig, load_config, parse_config
from geosam.config_io import check_schema_version, format_validation_error, read_yaml
from geosam.errors import ConfigError

__all__ = [
    "DB_NAME",
    "EXECUTOR_KEYS",
    "SCHEMA_VERSION",
    "IngestConfig",
    "check_ingest_config",
    "load_ingest_config",
    "upgrade_ingest_config",
]

log = logging.getLogger("geosam.ingest")

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
    check_schema_version(data, SCHEMA_VERSION, source)
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
    p = Path(path)
    data = upgrade_ingest_config(read_yaml(p, what="ingest configuration"), p)
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
