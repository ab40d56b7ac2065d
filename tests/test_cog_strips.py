"""Issue 11 item 11: thin strips (3000 x 1, 1 x 3000 and kin) give valid COGs in both orientations.

The kind: GDAL's automatic overviews halve a raster until it fits one block, also along a side that is
already one pixel, so a column strip got overviews of decimation 1 (an invalid COG for rio-cogeo and
rasterio). Generated variants: any width and height where one side is thin or both are small, class
maps and confidence rasters, both confidence dtypes (hypothesis); geosam runs on strips; a strip cut
from a real scene.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from helpers_field import crop, run_geosam, tiny_bundle_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rio_cogeo.cogeo import cog_validate

from geosam.io.cog import class_map_writer, cog_overview_options, confidence_writer, encode_confidence
from geosam.testing import make_raster
from geosam.types import ClassScheme, PixelWindow

SCHEME = ClassScheme(("water", "forest", "field"))
TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def assert_valid_cog(path, shape):
    ok, errors, _ = cog_validate(path, quiet=True)
    assert ok, errors
    with rasterio.open(path) as ds:
        assert (ds.height, ds.width) == shape
        w, h = ds.width, ds.height
        for level, factor in enumerate(ds.overviews(1)):
            assert factor > 1
            with rasterio.open(path, OVERVIEW_LEVEL=level) as ov:  # both axes shrink at every level
                assert ov.width < w and ov.height < h
                w, h = ov.width, ov.height


thin = st.integers(1, 4)
long = st.integers(1, 5000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.tuples(thin, long)
    | st.tuples(long, thin)
    | st.tuples(st.integers(1, 1100), st.integers(1, 1100)),
    kind=st.sampled_from(["classes", "float32", "uint8"]),
    seed=st.integers(0, 1000),
)
def test_strip_cogs_are_valid_in_both_orientations(shape, kind, seed, tmp_path):
    h, w = shape
    rng = np.random.default_rng(seed)
    path = tmp_path / f"s{seed}_{h}x{w}_{kind}.tif"
    common = {"width": w, "height": h, "transform": TRANSFORM, "crs": "EPSG:32633"}
    if kind == "classes":
        data = rng.integers(0, 3, size=(h, w)).astype(np.uint8)
        with class_map_writer(path, scheme=SCHEME, **common) as wr:
            wr.write(PixelWindow(0, 0, w, h), data)
    else:
        data = encode_confidence(rng.random((h, w)), kind)
        with confidence_writer(path, dtype=kind, **common) as wr:
            wr.write(PixelWindow(0, 0, w, h), data)
    assert_valid_cog(path, (h, w))
    with rasterio.open(path) as ds:
        assert np.array_equal(ds.read(1), data)


def test_overview_rule():
    assert cog_overview_options(3000, 3000) == {}  # GDAL's own choice
    assert cog_overview_options(1, 3000) == {"OVERVIEWS": "NONE"}
    assert cog_overview_options(3000, 1) == {"OVERVIEWS": "NONE"}
    assert cog_overview_options(2, 3000) == {"OVERVIEW_COUNT": "1"}
    assert cog_overview_options(100, 100) == {}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle_at(tmp_path_factory.mktemp("strip") / "bundle", gsd_m=None)


@pytest.mark.parametrize("shape", [(3000, 1), (1, 3000), (2, 700)])
def test_geosam_run_on_strips_writes_valid_cogs(shape, bundle, tmp_path, capsys, caplog):
    h, w = shape
    scene = make_raster(
        tmp_path / f"strip_{h}x{w}.tif",
        w,
        h,
        count=3,
        dtype="uint8",
        fill="random",
        colorinterp=["red", "green", "blue"],
    )
    out = tmp_path / "out"
    rc, _, err, _ = run_geosam(
        ["run", str(scene), "--model", str(bundle), "--out", str(out), "--regions", "tiles"], capsys, caplog
    )
    assert rc == 0, err
    for kind in ("classes", "confidence"):
        assert_valid_cog(out / f"{scene.stem}_{kind}.tif", shape)
    with rasterio.open(out / f"{scene.stem}_classes.tif") as ds:
        assert (ds.read(1) < 3).all()
    assert json.loads((out / f"{scene.stem}_run.json").read_text())["scene"]["width"] == w


@pytest.mark.shared
@pytest.mark.parametrize("orientation", ["column", "row"])
def test_strip_of_a_real_scene(orientation, shared_data, bundle, tmp_path, capsys, caplog):
    src = shared_data / "scenes" / "rasterio" / "RGB.byte.tif"
    if orientation == "column":
        scene = crop(src, tmp_path / "col.tif", 400, 0, 1, 718)
    else:
        scene = crop(src, tmp_path / "row.tif", 0, 400, 791, 1)
    out = tmp_path / "out"
    rc, _, err, _ = run_geosam(["run", str(scene), "--model", str(bundle), "--out", str(out)], capsys, caplog)
    assert rc == 0, err
    with rasterio.open(scene) as ds:
        shape = ds.shape
    for kind in ("classes", "confidence"):
        assert_valid_cog(out / f"{scene.stem}_{kind}.tif", shape)
