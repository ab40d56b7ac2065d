"""Content hashes of files (sha256, streamed in 1 MiB blocks): scene identity, bundle integrity."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["sha256_file", "sha256_files"]

_BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    _feed(h, path)
    return h.hexdigest()


def sha256_files(paths: Sequence[str | os.PathLike[str]]) -> str | None:
    """sha256 of the concatenated files, or ``None`` when one is remote, a GDAL virtual path or missing."""
    h = hashlib.sha256()
    for p in paths:
        s = os.fspath(p)
        if s.startswith("/vsi") or "://" in s or not os.path.isfile(s):
            return None
        _feed(h, s)
    return h.hexdigest()


def _feed(h: Any, path: str | os.PathLike[str]) -> None:
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
