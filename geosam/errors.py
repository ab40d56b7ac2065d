"""The one geosam error hierarchy.

Every error raised for a user mistake or bad input derives from :class:`GeosamError` and carries the
offending path (when there is one) so that messages read ``<path>: <problem>``. Each error also derives
from the builtin exception a caller would naturally catch (``FileNotFoundError``, ``ValueError``, ...),
following ``rasterio.errors``.

The CLI prints ``str(error)`` on one line, without a traceback, and exits with :attr:`GeosamError.exit_code`.
"""

from __future__ import annotations

import os

__all__ = [
    "BandError",
    "BundleError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EmptyRasterError",
    "GeosamError",
    "InputMismatchError",
    "LockedError",
    "MissingCRSError",
    "ModelError",
    "NotARasterError",
    "OutputError",
    "RasterError",
    "RasterNotFoundError",
    "TileReadError",
    "UnsupportedDtypeError",
    "WeightsNotFoundError",
]


class GeosamError(Exception):
    """Root of all geosam errors.

    Args:
        message: What is wrong and, where possible, what to do about it.
        path: The file or directory concerned; it prefixes the message.
    """

    exit_code: int = 1

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __reduce__(self) -> tuple[type[GeosamError], tuple[str, str | None]]:
        # Keep errors picklable across dask workers with their path intact.
        return (type(self), (self.message, self.path))


class ConfigError(GeosamError, ValueError):
    """An invalid configuration file, option or option combination."""

    exit_code = 2


class RasterError(GeosamError):
    """An input raster cannot be used."""

    exit_code = 3


class RasterNotFoundError(RasterError, FileNotFoundError):
    """The input raster does not exist."""


class NotARasterError(RasterError, ValueError):
    """The file exists but GDAL cannot open it as a raster (corrupt, truncated or another format)."""


class MissingCRSError(RasterError, ValueError):
    """The raster has no coordinate reference system or no geotransform."""


class EmptyRasterError(RasterError, ValueError):
    """The raster has zero width/height/bands, or every pixel is nodata."""


class UnsupportedDtypeError(RasterError, TypeError):
    """The raster's data type is not one geosam reads (complex types, for example)."""


class BandError(RasterError, IndexError):
    """A requested band index or name does not exist in the raster."""


class TileReadError(RasterError, OSError):
    """Reading a window failed (corrupt or truncated data)."""


class ModelError(GeosamError):
    """A model, checkpoint or bundle cannot be used."""

    exit_code = 4


class WeightsNotFoundError(ModelError, FileNotFoundError):
    """A checkpoint or bundle path does not exist; the message says where to get it."""


class CheckpointError(ModelError, ValueError):
    """A checkpoint is corrupt, not a state dict, unsafe to load, or for another architecture."""


class BundleError(ModelError, ValueError):
    """A model bundle has missing or invalid metadata, or its weights do not match their hash."""


class InputMismatchError(ModelError, ValueError):
    """The scene does not fit the model (for example the wrong number or names of bands)."""


class DataError(GeosamError, ValueError):
    """Training data is missing, empty or inconsistent."""

    exit_code = 5


class OutputError(GeosamError, OSError):
    """An output cannot be written (read-only directory, disk full, path escaping the output folder)."""

    exit_code = 6


class LockedError(GeosamError, RuntimeError):
    """Another run holds the lock (scheduled ingestion)."""

    exit_code = 75  # EX_TEMPFAIL: cron/systemd may retry later
