"""Scene inputs of batch runs: files, folders, globs, list files and archives (safe extraction).

Public names are re-exported by :mod:`geosam.batch`; see its docstring for the rules. ``safe_name``
lives in :mod:`geosam.outputs` (it names output folders and STAC ids) and is re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geosam.errors import ConfigError, OutputError
from geosam.outputs import safe_name

__all__ = [
    "ARCHIVE_SUFFIXES",
    "LIST_SUFFIXES",
    "SCENE_PATTERNS",
    "SceneRef",
    "discover_scenes",
    "extract_archive",
    "safe_name",
    "scene_dir",
]

log = logging.getLogger("geosam.batch")

SCENE_PATTERNS: tuple[str, ...] = ("*.tif", "*.tiff", "*.vrt")
ARCHIVE_SUFFIXES: tuple[str, ...] = (
    ".zip",
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz2",
    ".tar.xz",
    ".txz",
)
LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".list")


# -- names and paths --------------------------------------------------------------------------------


def scene_dir(out_dir: str | os.PathLike[str], name: str) -> Path:
    """``out_dir/name``, checked to stay inside ``out_dir`` (symlinks resolved).

    Raises:
        OutputError: ``name`` is not a plain safe name or the folder resolves outside ``out_dir``.
    """
    if name != safe_name(name, max_len=max(len(name), 1)):
        raise OutputError(f"unsafe scene folder name {name!r}", out_dir)
    root = os.path.realpath(out_dir)
    target = os.path.realpath(os.path.join(root, name))
    if os.path.dirname(target) != root:
        raise OutputError(f"scene folder {name!r} resolves outside the output directory", out_dir)
    return Path(out_dir) / name


# -- discovery --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneRef:
    """A scene found in the inputs.

    Attributes:
        path: Absolute path of the raster.
        source: Where it came from: the input as given, or ``archive.zip!member/path.tif``.
        error: Why the input could not be used (an unreadable archive...); the scene then fails.
        error_type: Error class name for ``error``.
    """

    path: str
    source: str
    error: str | None = None
    error_type: str | None = None


def _matches(name: str, patterns: Sequence[str]) -> bool:
    import fnmatch

    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def _is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def _scan_dir(root: Path, patterns: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        real = os.path.realpath(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d != "__MACOSX"
            and os.path.realpath(os.path.join(dirpath, d)) not in exclude
        )
        if real in exclude:
            continue
        for name in sorted(filenames):
            if not name.startswith(".") and _matches(name, patterns):
                found.append(Path(dirpath) / name)
    return found


def _vrt_sources(vrt: Path) -> set[str]:
    """Absolute paths of the files a VRT reads (local ``SourceFilename`` entries)."""
    import xml.etree.ElementTree as ET

    try:
        if vrt.stat().st_size > 10_000_000:
            return set()
        tree = ET.parse(vrt)
    except (OSError, ET.ParseError):
        return set()
    out = set()
    for el in tree.iter("SourceFilename"):
        name = (el.text or "").strip()
        if not name or name.startswith("/vsi"):
            continue
        p = vrt.parent / name if el.get("relativeToVRT", "0") == "1" else Path(name)
        out.add(os.path.realpath(p))
    return out


def _drop_vrt_sources(paths: list[Path]) -> list[Path]:
    sources: set[str] = set()
    for p in paths:
        if p.suffix.lower() == ".vrt":
            sources |= _vrt_sources(p)
    return [p for p in paths if os.path.realpath(p) not in sources]


def _member_path(dest: Path, name: str) -> Path:
    n = name.replace("\\", "/")
    parts = [p for p in n.split("/") if p not in ("", ".")]
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n) or ".." in parts or not parts:
        raise ConfigError(f"archive member {name!r} would be written outside the extraction folder")
    target = dest.joinpath(*parts)
    root = os.path.realpath(dest)
    if os.path.commonpath([root, os.path.realpath(target)]) != root:
        raise ConfigError(f"archive member {name!r} would be written outside the extraction folder")
    return target


def _copy_member(stream: Any, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as f:
        shutil.copyfileobj(stream, f, 1 << 20)


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract the regular files of a zip or tar archive into ``dest`` (emptied first), safely.

    Every member path is checked before anything is written: absolute paths, drive letters and
    ``..`` components raise (nothing is extracted); symbolic/hard links, devices and ``__MACOSX/``
    entries are skipped. Tar members are then extracted by :meth:`tarfile.TarFile.extractall` with
    the ``"data"`` filter (PEP 706: no links, devices or paths outside ``dest``; no setuid, setgid or
    group/other write bits), zip members are copied into files created fresh (never through an
    existing link).

    Raises:
        ConfigError: An unsafe member, an unreadable or corrupt archive.
        OutputError: Not enough free disk space for the declared uncompressed size.
    """
    src, out = Path(archive), Path(dest)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        if src.name.lower().endswith(".zip"):
            with zipfile.ZipFile(src) as zf:
                infos = [
                    i
                    for i in zf.infolist()
                    if not i.is_dir()
                    and not stat.S_ISLNK(i.external_attr >> 16)
                    and not i.filename.startswith("__MACOSX/")
                ]
                targets = [_member_path(out, i.filename) for i in infos]
                _check_space(out, sum(i.file_size for i in infos))
                for info, target in zip(infos, targets, strict=True):
                    with zf.open(info) as stream:
                        _copy_member(stream, target)
        else:
            with tarfile.open(src, "r:*") as tf:
                members = [m for m in tf.getmembers() if m.isfile()]
                targets = [_member_path(out, m.name) for m in members]  # all checked before any write
                _check_space(out, sum(m.size for m in members))
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (PEP 706)
                    tf.extractall(out, members=members, filter="data")
                else:  # pragma: no cover - older 3.11 patch releases
                    for member, target in zip(members, targets, strict=True):
                        tar_stream = tf.extractfile(member)
                        if tar_stream is not None:
                            _copy_member(tar_stream, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        reason = f"cannot read the archive ({type(err).__name__}: {err})"
    else:
        return out
    shutil.rmtree(out, ignore_errors=True)
    raise ConfigError(reason, src)


def _check_space(dest: Path, need: int) -> None:
    free = shutil.disk_usage(dest).free
    if need > free:
        raise OutputError(f"the archive needs {need / 1e9:.1f} GB but {free / 1e9:.1f} GB are free", dest)


def _read_list(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(s if os.path.isabs(s) else str(path.parent / s))
    return out


def discover_scenes(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    exclude: Sequence[str | os.PathLike[str]] = (),
    patterns: Sequence[str] = SCENE_PATTERNS,
    exclude_vrt_sources: bool = True,
) -> list[SceneRef]:
    """Expand files, folders, globs, list files and archives into scenes (see the module docstring).

    Args:
        inputs: What the user named.
        work_dir: Where archives are extracted (required when an input is an archive).
        exclude: Folders never scanned (the output folder).
        patterns: File name patterns (case-insensitive) that folder and archive scans pick up.
        exclude_vrt_sources: Drop rasters that a scanned VRT reads.

    Returns:
        Unique scenes in input order. Explicitly named files that do not exist and archives that
        cannot be extracted are included with ``error`` set, so they are reported as failed.
    """
    import glob

    excl = [os.path.realpath(p) for p in exclude]
    refs: dict[str, SceneRef] = {}

    def add(path: Path | str, source: str, error: str | None = None, etype: str | None = None) -> None:
        key = os.path.realpath(path)
        if key not in refs:
            refs[key] = SceneRef(os.path.abspath(path), source, error, etype)

    def visit(item: str, depth: int) -> None:
        if glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                log.warning("%s: no file matches this pattern", item)
            files = [Path(m) for m in matches if os.path.isfile(m) and _matches(Path(m).name, patterns)]
            for p in _drop_vrt_sources(files) if exclude_vrt_sources else files:
                add(p, item)
            for m in matches:
                if os.path.isdir(m) or _is_archive(m):
                    visit(m, depth)
            return
        p = Path(item)
        if p.is_dir():
            files = _scan_dir(p, patterns, excl)
            for f in _drop_vrt_sources(files) if exclude_vrt_sources else files:
                add(f, item)
        elif _is_archive(item) and p.is_file():
            if work_dir is None:
                raise ValueError("work_dir is needed to extract archives")
            dest = (
                Path(work_dir)
                / f"{safe_name(p.name)}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"
            )
            try:
                root = extract_archive(p, dest)
            except (ConfigError, OutputError) as err:
                add(p, item, str(err), type(err).__name__)
                return
            files = _scan_dir(root, patterns, [])
            for f in _drop_vrt_sources(files) if exclude_vrt_sources else files:
                add(f, f"{item}!{f.relative_to(root).as_posix()}")
        elif p.suffix.lower() in LIST_SUFFIXES and p.is_file() and depth == 0:
            for line in _read_list(p):
                visit(line, depth + 1)
        else:
            add(p, item)  # a scene named explicitly (missing files fail with the reader's message)

    for raw in inputs:
        visit(os.fspath(raw), 0)
    return list(refs.values())
