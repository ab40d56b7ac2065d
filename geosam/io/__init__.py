"""Raster and vector input/output: the only geosam modules that touch files.

* :mod:`geosam.io.env`: GDAL options and the :func:`~geosam.io.env.geosam_env` context manager.
* :mod:`geosam.io.read`: scene headers (``open_scene``), tiles (``read_tile``), windows and decimated
  samples, with one definition of valid pixels.

Submodules import rasterio when imported; this package itself imports nothing heavy.
"""
