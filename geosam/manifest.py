"""The ingestion manifest: an embedded SQLite database of every scene seen, its status and its outputs.

One process writes it (the ingest run holding the lock, see :mod:`geosam.ingest`); any number may read
it at the same time (WAL journal), for example ``sqlite3 manifest.sqlite 'select ...'`` or
``geosam ingest --status``. Every change is a short transaction, so a run killed at any point leaves a
consistent database.

Why this module is long: the schema, every statement that reads or writes it, and the read-only
in-memory snapshot (dry runs, ``--status``) stay together, so changing a column is one file.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)           -- schema_version, created
    scenes(
      key TEXT PRIMARY KEY,        -- identity: path relative to the inbox (POSIX), or absolute path
      path TEXT,                   -- absolute path where the scene was last seen
      scene_id TEXT UNIQUE,        -- output folder name under `out` (sanitized, never escapes it)
      status TEXT,                 -- pending | running | done | failed
      sha256 TEXT, size INTEGER, mtime_ns INTEGER,   -- content hash and the stat it was computed for
      present INTEGER,             -- 1 if found by the last scan
      attempts INTEGER,            -- processing attempts since the content last changed
      retryable INTEGER,           -- 0: a failure due to the input itself (waits for a new version)
      out_dir TEXT, record_path TEXT, outputs TEXT (JSON kind -> path), stac_item TEXT,
      n_tiles INTEGER, n_regions INTEGER, seconds REAL,
      error_type TEXT, error_message TEXT,
      run_id TEXT, worker TEXT, job_key TEXT,        -- last run, worker and model+config hash
      first_seen TEXT, changed TEXT, started TEXT, finished TEXT, updated TEXT  -- UTC ISO 8601
    )
    runs(run_id TEXT PRIMARY KEY, pid INTEGER, host TEXT, started TEXT, finished TEXT,
         status TEXT,              -- running | finished | interrupted | crashed
         found INTEGER, new INTEGER, changed INTEGER, done INTEGER, failed INTEGER, job_key TEXT)
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from geosam.errors import ConfigError, OutputError

__all__ = ["SCHEMA_VERSION", "STATUSES", "Manifest", "SceneRow"]

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenes (
  key TEXT PRIMARY KEY,
  path TEXT NOT NULL,
  scene_id TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  present INTEGER NOT NULL DEFAULT 1,
  attempts INTEGER NOT NULL DEFAULT 0,
  retryable INTEGER NOT NULL DEFAULT 1,
  out_dir TEXT NOT NULL,
  record_path TEXT,
  outputs TEXT,
  stac_item TEXT,
  n_tiles INTEGER,
  n_regions INTEGER,
  seconds REAL,
  error_type TEXT,
  error_message TEXT,
  run_id TEXT,
  worker TEXT,
  job_key TEXT,
  first_seen TEXT NOT NULL,
  changed TEXT NOT NULL,
  started TEXT,
  finished TEXT,
  updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scenes_status ON scenes (status);
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY,
  pid INTEGER,
  host TEXT,
  started TEXT NOT NULL,
  finished TEXT,
  status TEXT NOT NULL,
  found INTEGER,
  new INTEGER,
  changed INTEGER,
  done INTEGER,
  failed INTEGER,
  job_key TEXT
);
"""


def now_iso() -> str:
    """Current UTC time, ISO 8601 with microseconds."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables and the ``meta`` rows where they do not exist yet."""
    conn.executescript(_SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('created', ?)",
        (str(SCHEMA_VERSION), now_iso()),
    )


@dataclass(frozen=True)
class SceneRow:
    """One row of the ``scenes`` table (see the module docstring for the columns)."""

    key: str
    path: str
    scene_id: str
    status: Literal["pending", "running", "done", "failed"]
    sha256: str
    size: int
    mtime_ns: int
    present: int
    attempts: int
    retryable: int
    out_dir: str
    record_path: str | None
    outputs: str | None
    stac_item: str | None
    n_tiles: int | None
    n_regions: int | None
    seconds: float | None
    error_type: str | None
    error_message: str | None
    run_id: str | None
    worker: str | None
    job_key: str | None
    first_seen: str
    changed: str
    started: str | None
    finished: str | None
    updated: str

    @property
    def output_paths(self) -> dict[str, str]:
        """Output kind -> path of a done scene."""
        data: dict[str, str] = json.loads(self.outputs) if self.outputs else {}
        return data


class Manifest:
    """The manifest database (open with :meth:`open`; use as a context manager to close it).

    Args:
        conn: An open connection in autocommit mode with the schema in place.
        path: The database file.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> Manifest:
        """Open (creating it and its folder if needed) the manifest at ``path``.

        Raises:
            ConfigError: The file is not a geosam manifest, or from a newer geosam.
            OutputError: The database cannot be created or opened.
        """
        p = Path(path)
        try:
            if readonly:
                if not p.is_file():
                    raise ConfigError("no ingest manifest here yet (run `geosam ingest` first)", p)
                conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30, isolation_level=None)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(p, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            conn.row_factory = sqlite3.Row
            if not readonly:
                _create_schema(conn)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as err:
            msg = f"cannot open the ingest manifest ({err})"
        else:
            msg = ""
        if msg:
            raise OutputError(msg, p)
        return cls._of_version(conn, p, row)

    @classmethod
    def snapshot(cls, path: str | os.PathLike[str]) -> Manifest:
        """An in-memory copy of the manifest at ``path`` (empty when there is none), writing nothing.

        For dry runs and ``--status``: changes to the copy stay in memory. Opening the file read-only
        would still create ``-wal``/``-shm`` files next to a WAL database, so the file is read with
        SQLite's ``immutable`` flag; when a ``-wal`` file exists (a run is active, or one was killed),
        the database and its WAL are copied to a temporary folder first and read there, so committed
        changes still in the WAL are seen and nothing beside the manifest is touched.

        Raises:
            ConfigError: The file is not a geosam manifest, or from a newer geosam.
            OutputError: The file cannot be read.
        """
        import shutil
        import tempfile
        from urllib.parse import quote

        p = Path(path)
        mem = sqlite3.connect(":memory:", isolation_level=None)
        mem.row_factory = sqlite3.Row
        if not p.is_file():
            _create_schema(mem)
            return cls(mem, p)
        wal = p.with_name(p.name + "-wal")
        try:
            with tempfile.TemporaryDirectory(prefix="geosam-manifest-") as tmp:
                if wal.is_file():
                    src_path = Path(tmp) / p.name
                    shutil.copyfile(p, src_path)
                    shutil.copyfile(wal, Path(tmp) / wal.name)
                    src = sqlite3.connect(src_path, isolation_level=None)
                else:
                    src = sqlite3.connect(f"file:{quote(str(p.absolute()))}?immutable=1", uri=True)
                try:
                    src.backup(mem)
                finally:
                    src.close()
            row = mem.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except (OSError, sqlite3.DatabaseError) as err:
            msg = f"cannot read the ingest manifest ({err})"
        else:
            msg = ""
        if msg:
            raise OutputError(msg, p)
        return cls._of_version(mem, p, row)

    @classmethod
    def _of_version(cls, conn: sqlite3.Connection, path: Path, row: sqlite3.Row | None) -> Manifest:
        """The manifest on ``conn`` if ``row`` (its ``meta`` schema_version) is this geosam's schema.

        Raises:
            ConfigError: Another (or no) schema version; ``conn`` is closed.
        """
        version = int(row["value"]) if row else 0
        if version != SCHEMA_VERSION:
            conn.close()
            raise ConfigError(
                f"manifest schema version {version} is not {SCHEMA_VERSION} (another geosam?)", path
            )
        return cls(conn, path)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on exception)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- reading -----------------------------------------------------------------------------------

    def get(self, key: str) -> SceneRow | None:
        """The row of ``key``, or ``None``."""
        r = self.conn.execute("SELECT * FROM scenes WHERE key = ?", (key,)).fetchone()
        return None if r is None else SceneRow(**dict(r))

    def rows(self, status: str | None = None) -> list[SceneRow]:
        """Every row (or those with ``status``), ordered by key."""
        if status is None:
            cur = self.conn.execute("SELECT * FROM scenes ORDER BY key")
        else:
            cur = self.conn.execute("SELECT * FROM scenes WHERE status = ? ORDER BY key", (status,))
        return [SceneRow(**dict(r)) for r in cur.fetchall()]

    def todo(self, max_attempts: int) -> list[SceneRow]:
        """Present scenes to process: pending, or failed with a retryable error and attempts left."""
        cur = self.conn.execute(
            "SELECT * FROM scenes WHERE present = 1 AND (status = 'pending' OR "
            "(status = 'failed' AND retryable = 1 AND attempts < ?)) ORDER BY key",
            (max_attempts,),
        )
        return [SceneRow(**dict(r)) for r in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        """Number of scenes per status (every status listed)."""
        out = dict.fromkeys(STATUSES, 0)
        for r in self.conn.execute("SELECT status, count(*) AS n FROM scenes GROUP BY status"):
            out[r["status"]] = r["n"]
        return out

    def scene_ids(self) -> set[str]:
        """Every scene id in use."""
        return {r[0] for r in self.conn.execute("SELECT scene_id FROM scenes")}

    def last_runs(self, n: int = 5) -> list[dict[str, Any]]:
        """The ``n`` most recent runs, newest first."""
        cur = self.conn.execute("SELECT * FROM runs ORDER BY started DESC LIMIT ?", (n,))
        return [dict(r) for r in cur.fetchall()]

    # -- scanning ----------------------------------------------------------------------------------

    def add(
        self, key: str, path: str, scene_id: str, out_dir: str, sha256: str, size: int, mtime_ns: int
    ) -> None:
        """Insert a newly seen scene as ``pending``."""
        t = now_iso()
        self.conn.execute(
            "INSERT INTO scenes (key, path, scene_id, status, sha256, size, mtime_ns, out_dir, "
            "first_seen, changed, updated) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
            (key, path, scene_id, sha256, size, mtime_ns, out_dir, t, t, t),
        )

    def changed(self, key: str, path: str, sha256: str, size: int, mtime_ns: int) -> None:
        """New content for a known scene: back to ``pending`` with no attempts and no error."""
        t = now_iso()
        self.conn.execute(
            "UPDATE scenes SET path = ?, sha256 = ?, size = ?, mtime_ns = ?, present = 1, "
            "status = 'pending', attempts = 0, retryable = 1, error_type = NULL, error_message = NULL, "
            "changed = ?, updated = ? WHERE key = ?",
            (path, sha256, size, mtime_ns, t, t, key),
        )

    def touched(self, key: str, path: str, size: int, mtime_ns: int) -> None:
        """Same content, new stat (a ``touch`` or a copy): remember the stat to skip hashing next time."""
        self.conn.execute(
            "UPDATE scenes SET path = ?, size = ?, mtime_ns = ?, present = 1, updated = ? WHERE key = ?",
            (path, size, mtime_ns, now_iso(), key),
        )

    def set_present(self, keys: set[str]) -> None:
        """Flag rows found by this scan as present and the others as absent (only where it changes)."""
        for r in self.conn.execute("SELECT key, present FROM scenes").fetchall():
            want = 1 if r["key"] in keys else 0
            if r["present"] != want:
                self.conn.execute(
                    "UPDATE scenes SET present = ?, updated = ? WHERE key = ?", (want, now_iso(), r["key"])
                )

    # -- processing --------------------------------------------------------------------------------

    def running(self, key: str, run_id: str, worker: str | None) -> None:
        """A scene started on ``worker``: ``running``, one more attempt."""
        t = now_iso()
        self.conn.execute(
            "UPDATE scenes SET status = 'running', attempts = attempts + 1, run_id = ?, worker = ?, "
            "started = ?, finished = NULL, updated = ? WHERE key = ? AND status != 'done'",
            (run_id, worker, t, t, key),
        )

    def done(self, key: str, outcome: Any, job_key: str, *, count_attempt: bool = False) -> None:
        """Record a completed scene (``outcome`` is a :class:`geosam.batch.SceneOutcome`)."""
        t = now_iso()
        self.conn.execute(
            "UPDATE scenes SET status = 'done', attempts = attempts + ?, record_path = ?, outputs = ?, "
            "stac_item = ?, n_tiles = ?, n_regions = ?, seconds = ?, error_type = NULL, "
            "error_message = NULL, worker = ?, job_key = ?, finished = ?, updated = ? WHERE key = ?",
            (
                int(count_attempt),
                outcome.record,
                json.dumps(outcome.outputs, sort_keys=True),
                outcome.stac_item,
                outcome.n_tiles,
                outcome.n_regions,
                round(outcome.seconds, 3),
                outcome.worker,
                job_key,
                t,
                t,
                key,
            ),
        )

    def failed(
        self,
        key: str,
        error_type: str,
        message: str,
        *,
        retryable: bool,
        count_attempt: bool = False,
        seconds: float | None = None,
    ) -> None:
        """Record a failure with its reason; earlier outputs are left as they are."""
        t = now_iso()
        self.conn.execute(
            "UPDATE scenes SET status = 'failed', attempts = attempts + ?, retryable = ?, error_type = ?, "
            "error_message = ?, seconds = ?, finished = ?, updated = ? WHERE key = ?",
            (int(count_attempt), int(retryable), error_type, message, seconds, t, t, key),
        )

    def pending(self, key: str, note: str | None = None) -> None:
        """Back to ``pending`` (an interrupted run; ``note`` goes to ``error_message``)."""
        self.conn.execute(
            "UPDATE scenes SET status = 'pending', error_type = NULL, error_message = ?, updated = ? "
            "WHERE key = ?",
            (note, now_iso(), key),
        )

    def retry_failed(self) -> int:
        """Reset every failed scene to ``pending`` with zero attempts; returns how many."""
        cur = self.conn.execute(
            "UPDATE scenes SET status = 'pending', attempts = 0, retryable = 1, updated = ? "
            "WHERE status = 'failed'",
            (now_iso(),),
        )
        return cur.rowcount

    # -- runs --------------------------------------------------------------------------------------

    def begin_run(self, run_id: str, job_key: str) -> None:
        """Record a run start; runs still marked ``running`` (their process died) become ``crashed``."""
        self.conn.execute("UPDATE runs SET status = 'crashed' WHERE status = 'running'")
        self.conn.execute(
            "INSERT INTO runs (run_id, pid, host, started, status, job_key) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            (run_id, os.getpid(), socket.gethostname(), now_iso(), job_key),
        )

    def end_run(self, run_id: str, status: str, counts: dict[str, int]) -> None:
        """Record a run's end and its counts."""
        self.conn.execute(
            "UPDATE runs SET finished = ?, status = ?, found = ?, new = ?, changed = ?, done = ?, failed = ? "
            "WHERE run_id = ?",
            (
                now_iso(),
                status,
                counts.get("found"),
                counts.get("new"),
                counts.get("changed"),
                counts.get("done"),
                counts.get("failed"),
                run_id,
            ),
        )
