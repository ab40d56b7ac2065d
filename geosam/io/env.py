"""GDAL configuration for geosam reads, as data plus one context manager.

Every geosam read happens inside :func:`geosam_env`, which wraps :class:`rasterio.Env` with the options
below. Options are scoped to the ``with`` block (rasterio keeps them thread-local), so nothing is set
process-wide and nothing is read or written at import time.

Options a user has already chosen win: a key set in an enclosing :class:`rasterio.Env` or as a GDAL
environment variable (``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR python ...``) is not overridden.

``GDAL_CACHEMAX`` is not among these options: the block cache's size is process-wide, not per thread.
:func:`geosam.predict.predict_scene` caps it for the length of a run to what streaming the scene needs
(:mod:`geosam.io.block_cache`); a ``GDAL_CACHEMAX`` environment variable (or an enclosing
``rasterio.Env``) wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import rasterio

__all__ = ["GDAL_DEFAULTS", "REMOTE_GDAL_DEFAULTS", "gdal_options", "geosam_env", "is_remote"]

#: Options for every read.
#:
#: * ``GDAL_DISABLE_READDIR_ON_OPEN=TRUE``: do not list the directory of each file on open (slow for the
#:   large flat folders scene archives often are), but still probe for side-car files, so external
#:   overviews (``.ovr``), masks (``.msk``) and band names in ``.aux.xml`` keep working.
#: * ``GDAL_VRT_ENABLE_PYTHON=NO``: a VRT with Python pixel functions cannot run code in a worker.
GDAL_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "GDAL_DISABLE_READDIR_ON_OPEN": "TRUE",
        "GDAL_VRT_ENABLE_PYTHON": "NO",
    }
)

#: Extra options for ``/vsicurl/``, ``/vsis3/``, ``http(s)://``... paths (cloud-optimised GeoTIFFs).
#: ``EMPTY_DIR`` stops GDAL issuing a request per possible side-car file; a COG carries its overviews
#: and mask inside, so nothing is lost. Consecutive ranges are merged and transient HTTP errors retried.
REMOTE_GDAL_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "GDAL_HTTP_MAX_RETRY": "3",
        "GDAL_HTTP_RETRY_DELAY": "1",
        "VSI_CACHE": "TRUE",
    }
)

_REMOTE_PREFIXES = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsihdfs")
_REMOTE_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://", "az://", "abfs://")


def is_remote(path: str | os.PathLike[str] | None) -> bool:
    """Whether ``path`` names a network resource (a URL or a GDAL network virtual file system)."""
    if path is None:
        return False
    p = os.fspath(path).lower()
    return p.startswith(_REMOTE_SCHEMES) or p.startswith(_REMOTE_PREFIXES)


def gdal_options(path: str | os.PathLike[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """The GDAL options :func:`geosam_env` applies for ``path``, before user settings are honoured.

    Args:
        path: The file about to be read; remote paths get :data:`REMOTE_GDAL_DEFAULTS` too.
        **overrides: Options that replace the defaults (``GDAL_NUM_THREADS="ALL_CPUS"``...).
    """
    options = dict(GDAL_DEFAULTS)
    if is_remote(path):
        options.update(REMOTE_GDAL_DEFAULTS)
    options.update(overrides)
    return options


@contextmanager
def geosam_env(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Iterator[rasterio.Env]:
    """Enter a :class:`rasterio.Env` with geosam's GDAL defaults for reading ``path``.

    Defaults (see :func:`gdal_options`) are skipped for keys the user already set, in an enclosing
    ``rasterio.Env`` or as environment variables; ``overrides`` always apply.

    Args:
        path: The file about to be read (only its kind, local or remote, matters).
        **overrides: GDAL options that take precedence over everything else.

    Yields:
        The active :class:`rasterio.Env`.
    """
    import rasterio
    from rasterio.env import getenv, hasenv

    outer = getenv() if hasenv() else {}
    options = {k: v for k, v in gdal_options(path).items() if k not in outer and k not in os.environ}
    options.update(overrides)
    with rasterio.Env(**options) as env:
        yield env
