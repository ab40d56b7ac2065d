"""Raster and vector input/output: the only geosam modules that touch files."""
