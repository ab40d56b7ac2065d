"""geosam: land-cover classification of satellite rasters with Segment Anything.

Importing :mod:`geosam` is light: it does not import torch, dask or rasterio. The heavy stages are in
their own modules (``geosam.tiling``, ``geosam.predict``, ``geosam.models``...) and import their
dependencies when used.
"""

from __future__ import annotations

from geosam.errors import GeosamError
from geosam.types import ClassScheme, PixelWindow, SceneInfo, TileSpec

__version__ = "0.1.0"

__all__ = ["ClassScheme", "GeosamError", "PixelWindow", "SceneInfo", "TileSpec", "__version__"]
