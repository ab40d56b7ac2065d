"""The inbox scan: new and changed scenes into the manifest, and why each found scene is (not) processed.

A scene's identity is its path relative to the inbox (or its absolute path for a scene list); its
content is its sha256, recomputed only when its size or mtime changed (``verify_hashes`` always).
Files younger than ``min_age_s`` are left for a later run (they may still be arriving).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from geosam.batch import discover_scenes, safe_name, scene_dir
from geosam.errors import ConfigError
from geosam.hashing import sha256_file
from geosam.ingest.config import IngestConfig
from geosam.ingest.report import IngestReport, SceneDecision

__all__ = ["decide", "scan"]

log = logging.getLogger("geosam.ingest")


def _scene_key(path: Path, inbox: Path | None) -> str:
    if inbox is not None:
        with contextlib.suppress(ValueError):
            return path.relative_to(inbox).as_posix()
    return str(path)


def _new_scene_id(key: str, taken: set[str]) -> str:
    base = safe_name(str(Path(key).with_suffix("")).strip("/").replace("/", "__"))
    sid = base if base not in taken else safe_name(f"{base}-{hashlib.sha1(key.encode()).hexdigest()[:8]}")
    taken.add(sid)
    return sid


def scan(cfg: IngestConfig, m: Any, report: IngestReport) -> dict[str, str]:
    """Record new and changed scenes in the manifest (inside the caller's transaction).

    Returns:
        The found scenes this scan leaves alone for a reason of the scan itself (too new, unreadable),
        key -> reason; the others' fate follows from their manifest row (see :func:`_decide`).
    """
    out = cfg.out.absolute()
    if cfg.inbox is not None:
        if not cfg.inbox.is_dir():
            raise ConfigError("the inbox folder does not exist", cfg.inbox)
        inputs: list[str] = [str(cfg.inbox)]
        inbox: Path | None = cfg.inbox.absolute()
    else:
        if cfg.scene_list is None or not cfg.scene_list.is_file():
            raise ConfigError("the scene list file does not exist", cfg.scene_list)
        text = cfg.scene_list.read_text(encoding="utf-8")
        lines = [s.strip() for s in text.splitlines() if s.strip() and not s.strip().startswith("#")]
        inputs = [s if os.path.isabs(s) else str(cfg.scene_list.parent / s) for s in lines]
        inbox = None
    refs = discover_scenes(
        inputs,
        exclude=[out],
        patterns=cfg.patterns,
        exclude_vrt_sources=cfg.exclude_vrt_sources,
    )
    taken = m.scene_ids()
    seen: set[str] = set()
    held: dict[str, str] = {}
    now = time.time()
    cutoff = now - cfg.min_age_s
    for ref in refs:
        path = Path(ref.path)
        key = _scene_key(path, inbox)
        try:
            st = path.stat()
        except OSError:
            log.warning("%s: listed but not readable now; skipped", path)
            held[key] = "listed but not readable now"
            continue
        if not path.is_file():
            continue
        seen.add(key)
        report.found += 1
        row = m.get(key)
        if st.st_mtime > cutoff and (row is None or (row.size, row.mtime_ns) != (st.st_size, st.st_mtime_ns)):
            report.too_new += 1
            ready = time.strftime("%H:%M:%S UTC", time.gmtime(st.st_mtime + cfg.min_age_s))
            held[key] = (
                f"modified {max(0.0, now - st.st_mtime):.0f} s ago; files younger than min_age_s "
                f"({cfg.min_age_s:g} s) may still be arriving and wait for a run from {ready} on"
            )
            continue
        if (
            row is not None
            and not cfg.verify_hashes
            and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
        ):
            continue
        try:
            sha = sha256_file(path)
        except OSError as err:
            log.warning("%s: cannot be read (%s); skipped", path, err.strerror or err)
            held[key] = f"cannot be read ({err.strerror or err})"
            continue
        if row is None:
            sid = _new_scene_id(key, taken)
            m.add(key, str(path), sid, str(scene_dir(out, sid)), sha, st.st_size, st.st_mtime_ns)
            report.new += 1
        elif sha != row.sha256:
            m.changed(key, str(path), sha, st.st_size, st.st_mtime_ns)
            report.changed += 1
        else:
            m.touched(key, str(path), st.st_size, st.st_mtime_ns)
    m.set_present(seen)
    report.found_keys = sorted(seen | set(held))
    return held


def decide(m: Any, keys: list[str], held: dict[str, str], max_attempts: int) -> list[SceneDecision]:
    """Why each found scene is, or is not, processed by this run (from the scan and the manifest)."""
    todo = {r.key for r in m.todo(max_attempts)}
    out = []
    for key in keys:
        row = m.get(key)
        if key in held:
            out.append(SceneDecision(key, False, held[key]))
        elif row is None:
            out.append(SceneDecision(key, False, "not in the manifest"))
        elif key in todo:
            if row.status == "failed":
                why = (
                    f"retry {row.attempts + 1} of {max_attempts} after {row.error_type}: {row.error_message}"
                )
            elif row.attempts == 0 and row.first_seen == row.changed:
                why = "new"
            elif row.attempts == 0:
                why = "content changed"
            else:
                why = f"pending ({row.error_message or 'attempt ' + str(row.attempts + 1)})"
            out.append(SceneDecision(key, True, why))
        elif row.status == "done":
            out.append(SceneDecision(key, False, f"done, unchanged since {row.finished or row.changed}"))
        elif row.status == "running":
            out.append(SceneDecision(key, False, f"running since {row.started} on {row.worker}"))
        elif row.status == "failed" and not row.retryable:
            out.append(
                SceneDecision(
                    key,
                    False,
                    f"failed with an input error ({row.error_type}: {row.error_message}); waits for a "
                    "new version of the file",
                )
            )
        elif row.status == "failed":
            out.append(
                SceneDecision(
                    key,
                    False,
                    f"failed {row.attempts} times ({row.error_type}: {row.error_message}); "
                    "`geosam ingest --retry-failed` resets it",
                )
            )
        else:
            out.append(SceneDecision(key, False, f"status {row.status}"))
    return out
