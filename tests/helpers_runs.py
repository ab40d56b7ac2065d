"""Shared by tests that run a scene twice and expect the same maps and regions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def assert_same_outputs(first: Any, second: Any, rasters: Sequence[str] = ("classes", "confidence")) -> None:
    """Two ``SceneResult`` s wrote identical rasters (pixel for pixel) and identical region layers."""
    import geopandas as gpd
    import numpy as np
    import rasterio

    for kind in rasters:
        with rasterio.open(first.outputs[kind]) as a, rasterio.open(second.outputs[kind]) as b:
            assert np.array_equal(a.read(), b.read()), kind
    a, b = gpd.read_file(first.outputs["regions_gpkg"]), gpd.read_file(second.outputs["regions_gpkg"])
    assert len(a) == first.n_regions > 0
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
    assert a.geometry.geom_equals_exact(b.geometry, 0).all()
