"""Writing bundle folders: :func:`save_bundle`, and the atomic publishing it shares with ``geosam calibrate``.

Private to :mod:`geosam.models.bundle` (which documents the bundle format and re-exports every name
here); split from it to keep modules small.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from geosam.errors import BundleError
from geosam.models._bundle_meta import BUNDLE_FORMAT, META_FILE, WEIGHTS_FILE, BundleMeta


def save_bundle(
    path: str | os.PathLike[str],
    model: Any,
    meta: BundleMeta,
    *,
    dtype: Literal["float32", "float16"] = "float32",
    include_encoder: bool = True,
    include_prefixes: tuple[str, ...] = (),
    extra_files: dict[str, bytes] | None = None,
) -> BundleMeta:
    """Write ``model`` (a ``LandCoverModel``) and ``meta`` as a bundle folder, atomically.

    The folder is assembled under a temporary name and renamed into place; an existing bundle at
    ``path`` is replaced only after the new one is complete. Returns the metadata as written (with
    ``weights_sha256``, ``weights_dtype`` and ``geosam_version`` filled in). Without ``include_encoder``
    only encoder tensors whose names start with one of ``include_prefixes`` are kept (a band-adapted
    patch embedding on a frozen SAM encoder, for example). ``extra_files`` (relative
    path -> bytes, e.g. the training report) are written into the folder before it is renamed.
    """
    import torch
    from safetensors.torch import save_file

    import geosam
    from geosam.hashing import sha256_file

    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if not include_encoder:
        state = {
            k: v
            for k, v in state.items()
            if not k.startswith("encoder.") or (include_prefixes and k.startswith(include_prefixes))
        }
    if dtype == "float16":
        state = {
            k: v.half() if v.is_floating_point() and k not in ("mean", "std") else v for k, v in state.items()
        }
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": BUNDLE_FORMAT})
        meta = meta.model_copy(
            update={
                "weights_sha256": sha256_file(tmp / WEIGHTS_FILE),
                "weights_dtype": dtype,
                "geosam_version": geosam.__version__,
            }
        )
        BundleMeta.model_validate(meta.model_dump(mode="json"))  # re-validate the final form
        (tmp / META_FILE).write_text(
            json.dumps(meta.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )
        write_bundle_files(tmp, extra_files or {}, dest)
        publish_bundle_folder(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    del torch
    return meta


def write_bundle_files(folder: Path, files: dict[str, bytes], dest: Path) -> None:
    """Write ``files`` (relative path -> bytes) into a bundle being assembled in ``folder``.

    Raises:
        BundleError: A path would land outside ``folder`` (``dest`` is named in the message).
    """
    for rel, content in files.items():
        target = (folder / rel).resolve()
        if folder.resolve() not in target.parents:
            raise BundleError(f"extra file {rel!r} would escape the bundle folder", dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def check_bundle_destination(dest: str | os.PathLike[str]) -> None:
    """Refuse to write a bundle over anything but a missing folder, an empty one or another bundle.

    A bundle replaces an existing one at ``dest`` (retraining into the same folder); any other folder
    is the user's data (``--out .``, ``--out ~/project``) and is never deleted.

    Raises:
        ConfigError: ``dest`` is a file, or a non-empty folder without a bundle's ``model.json``.
    """
    from geosam.errors import ConfigError

    path = Path(dest)
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a model bundle folder: choose a new folder name")
    if (path / META_FILE).is_file() or not any(path.iterdir()):
        return
    n = sum(1 for _ in path.iterdir())
    raise ConfigError(
        f"--out {path} is a folder of {n} entries that is not a geosam model bundle (no {META_FILE}); "
        "a bundle replaces only an empty folder or another bundle: choose a new folder, e.g. "
        f"--out {path / 'model'}"
    )


def publish_bundle_folder(tmp: Path, dest: Path) -> None:
    """Put the bundle assembled in ``tmp`` (a folder beside ``dest``) in place of ``dest``.

    Gives it the usual modes (:func:`_publishable_permissions`), then renames: an existing ``dest`` is
    moved aside first and removed after, so readers see the old or the new bundle, never a mix.

    Raises:
        ConfigError: ``dest`` holds something other than a bundle (:func:`check_bundle_destination`).
    """
    check_bundle_destination(dest)
    _publishable_permissions(tmp)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def _publishable_permissions(folder: Path) -> None:
    """Give a bundle assembled in a private temp folder the usual modes (0755 dirs, 0644 files, less umask).

    ``mkdtemp`` makes 0700 folders; left as is, a bundle installed system-wide would be unreadable to
    other users and dask workers running under another account.
    """
    umask = os.umask(0)
    os.umask(umask)
    for p in [folder, *folder.rglob("*")]:
        p.chmod((0o755 if p.is_dir() else 0o644) & ~umask)
