"""Issue 11 item 1: every ground resolution from 1 cm to 1 km runs; outside it, one line and a remedy.

The kind: resolution matching derives chip and tile sizes from the ratio of the model's GSD to the
scene's; far from the model's resolution those sizes left TilingConfig's bounds (a pydantic traceback
at 300 m and at 0.25 m). Generated variants: any GSD, model chip, tile, training GSD, encoder grid,
user tile and halo (hypothesis) for the size rules; scenes at GSDs from 1 cm to 1 km (and beyond) for
the CLI; real scenes (300 m Landsat quadrant, NAIP relabelled as 0.25 m and 1 cm) when ../shared is
there.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import rasterio
from helpers_field import crop, one_error_line, relabel, run_geosam, tiny_bundle_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rio_cogeo.cogeo import cog_validate

from geosam.config import TilingConfig
from geosam.errors import InputMismatchError
from geosam.geodesy import GroundResolution
from geosam.resolution import (
    MAX_GSD_M,
    MAX_MATCHED_TILE,
    MAX_TILE,
    MAX_UPSAMPLE,
    MIN_CHIP,
    MIN_GSD_M,
    TOLERANCE,
    encoding_sizes,
)
from geosam.testing import make_raster

log_gsd = st.floats(math.log10(MIN_GSD_M), math.log10(MAX_GSD_M)).map(lambda v: 10**v)


def ground(gsd: float) -> GroundResolution:
    return GroundResolution(gsd, gsd, 15.0, 45.0, gsd)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gsd=log_gsd,
    model_chip=st.sampled_from([16, 32, 64, 224, 1024]),
    per_side=st.sampled_from([1, 2, 4, 8]),
    model_gsd=st.sampled_from([0.3, 1.0, 10.0, 30.0]),
    grid=st.sampled_from([1, 2, 4, 8, 14, 16, 64]),
    user_tile=st.none() | st.integers(32, 8192),
    halo=st.none() | st.integers(0, 3000),
    shape=st.none() | st.tuples(st.integers(1, 20000), st.integers(1, 20000)),
)
def test_derived_sizes_always_fit_the_tiling_rules(
    gsd, model_chip, per_side, model_gsd, grid, user_tile, halo, shape, caplog
):
    model_tile = model_chip * per_side if user_tile is None else user_tile
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geosam.resolution"):
        s = encoding_sizes(
            path="/data/scene.tif",
            model_chip=model_chip,
            model_tile=model_tile,
            model_gsd_m=model_gsd,
            scene=ground(gsd),
            match=True,
            grid=grid,
            tile_size=user_tile,
            halo=halo,
            scene_shape=shape,
        )
    # what used to be a pydantic traceback: the sizes must make a valid TilingConfig
    tiling = TilingConfig(tile_size=s.tile, halo=s.halo).resolved(s.tile)
    assert 32 <= tiling.tile_size <= MAX_TILE and tiling.halo * 4 < tiling.tile_size
    assert s.tile % s.chip == 0
    if halo is not None and halo * 4 < s.tile:
        assert s.halo == halo  # a halo that fits is kept
    # the choice is logged, and a clamp is a warning
    records = [r for r in caplog.records if r.name == "geosam.resolution"]
    assert records and "chips of" in records[-1].getMessage()
    assert (records[-1].levelno == logging.WARNING) == s.clamped
    if s.ideal_chip is None:
        return
    if not s.clamped:
        # matched: a chip covers the training chip's ground, to within half a scene pixel (or the
        # 5 % under which the model's own sizes are kept)
        err = abs(s.chip * gsd - model_chip * model_gsd)
        assert err <= max(0.5 * gsd, TOLERANCE * model_chip * model_gsd) + 1e-9
    else:
        assert "less reliable" in s.note
        min_chip = max(MIN_CHIP, grid, math.ceil(model_chip / MAX_UPSAMPLE))
        # either the smallest chip (coarse scenes) or the largest the tile limit and scene allow
        assert (s.chip == min_chip and "smallest" in s.note) or "largest" in s.note
        assert s.chip <= max(min_chip, MAX_MATCHED_TILE)
        if shape and "largest" in s.note:
            assert s.chip <= max(min_chip, *shape)
    if user_tile is None and abs(gsd - model_gsd) / model_gsd >= TOLERANCE:
        assert s.tile <= max(MAX_MATCHED_TILE, s.chip)
        assert s.chip >= max(MIN_CHIP, grid, model_chip / MAX_UPSAMPLE) or s.chip == model_chip


@pytest.mark.parametrize("gsd", [MIN_GSD_M / 10, 0.009, 1051.0, 5000.0, 1e6])
def test_implausible_ground_resolution_is_one_line_with_a_remedy(gsd):
    with pytest.raises(InputMismatchError) as info:
        encoding_sizes(
            path="/data/scene.tif",
            model_chip=64,
            model_tile=256,
            model_gsd_m=10.0,
            scene=ground(gsd),
            match=True,
            grid=8,
        )
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("/data/scene.tif: ")
    assert "--no-match-resolution" in msg and "on the ground" in msg


def test_pixels_far_from_square_on_the_ground_are_warned(caplog):
    stretched = GroundResolution(4.28, 6.28, -99.0, 47.0, None)  # EPSG:4326 at 47 N, square degrees
    with caplog.at_level(logging.WARNING, logger="geosam.resolution"):
        encoding_sizes(
            path="ll.tif", model_chip=64, model_tile=256, model_gsd_m=10.0, scene=stretched, match=True
        )
    assert "stretched" in caplog.text and "gdalwarp -t_srs" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geosam.resolution"):
        encoding_sizes(
            path="u.tif", model_chip=64, model_tile=256, model_gsd_m=10.0, scene=ground(5.0), match=True
        )
    assert "stretched" not in caplog.text


def test_matching_off_and_unknown_ground_keep_the_models_sizes(caplog):
    off = encoding_sizes(
        path="s.tif", model_chip=64, model_tile=256, model_gsd_m=10.0, scene=ground(300), match=False
    )
    assert (off.chip, off.tile, off.ideal_chip) == (64, 256, None)
    with caplog.at_level(logging.WARNING, logger="geosam.resolution"):
        unknown = encoding_sizes(
            path="s.tif", model_chip=64, model_tile=256, model_gsd_m=10.0, scene=None, match=True
        )
    assert (unknown.chip, unknown.tile) == (64, 256)
    assert "cannot be measured" in caplog.text  # not a silent skip


# -- the CLI over the whole range ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle_at(tmp_path_factory.mktemp("res") / "bundle", gsd_m=10.0)


def _scene(tmp_path, gsd, size=48):
    return make_raster(
        tmp_path / f"g{gsd:g}.tif",
        size,
        size,
        count=3,
        dtype="uint8",
        fill="random",
        transform=(gsd, 0.0, 500000.0, 0.0, -gsd, 5000000.0),
        colorinterp=["red", "green", "blue"],
    )


@pytest.mark.parametrize("gsd", [0.01, 0.25, 3.0, 10.0, 28.5, 300.0, 1000.0])
def test_every_resolution_from_1cm_to_1km_runs(gsd, bundle, tmp_path, capsys, caplog):
    scene = _scene(tmp_path, gsd)
    out = tmp_path / "out"
    rc, _, err, records = run_geosam(
        ["run", str(scene), "--model", str(bundle), "--out", str(out)], capsys, caplog
    )
    assert rc == 0, err
    rec = json.loads((out / f"{scene.stem}_run.json").read_text())
    t = rec["tiling"]
    assert t["scene_gsd_m"] == pytest.approx(gsd / 0.9996, rel=1e-3)  # UTM central meridian
    assert 32 <= t["tile_size"] <= MAX_TILE and t["tile_size"] % t["chip_size"] == 0
    ideal = 32 * 10.0 / (gsd / 0.9996)
    if 32 / MAX_UPSAMPLE <= ideal <= 48:  # within the limits for a 48 px scene: matched to the pixel
        assert t["chip_size"] == round(ideal)
    else:
        assert any(r.levelno == logging.WARNING and "less reliable" in r.getMessage() for r in records)
    assert any("chips of" in r.getMessage() for r in records), "the choice is logged"
    for kind in ("classes", "confidence"):
        assert cog_validate(out / f"{scene.stem}_{kind}.tif", quiet=True)[0]
    with rasterio.open(out / f"{scene.stem}_classes.tif") as ds:
        assert (ds.read(1) != ds.nodata).all()


@pytest.mark.parametrize("gsd", [0.001, 5000.0])
def test_outside_the_range_is_refused_and_the_hint_runs(gsd, bundle, tmp_path, capsys, caplog):
    scene = _scene(tmp_path, gsd)
    out = tmp_path / "out"
    args = ["run", str(scene), "--model", str(bundle), "--out", str(out)]
    rc, _, err, _ = run_geosam(args, capsys, caplog)
    line = one_error_line(err)
    assert rc == 4 and str(scene) in line and "--no-match-resolution" in line
    assert not out.exists() or not any(out.iterdir())
    rc, _, err, _ = run_geosam([*args, "--no-match-resolution"], capsys, caplog)  # the remedy it names
    assert rc == 0, err
    assert json.loads((out / f"{scene.stem}_run.json").read_text())["tiling"]["chip_size"] == 32


def test_user_halo_that_no_longer_fits_is_reduced_not_a_traceback(bundle, tmp_path, capsys, caplog):
    scene = _scene(tmp_path, 300.0)
    out = tmp_path / "out"
    rc, _, err, records = run_geosam(
        ["run", str(scene), "--model", str(bundle), "--out", str(out), "--halo", "40"], capsys, caplog
    )
    assert rc == 0, err
    t = json.loads((out / f"{scene.stem}_run.json").read_text())["tiling"]
    assert t["halo"] * 4 < t["tile_size"]
    # a scene that fits one tile of whole chips needs no halo (geosam.chip_grid); otherwise the halo
    # stays whole chips and the tile grows to hold it, which is logged
    one_tile = t["halo"] == 0 and t["tiles"] == 1 and t["tile_size"] >= 48  # the 48 px scene
    assert one_tile or any("to hold a" in r.getMessage() for r in records), t


# -- real scenes -----------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    ("case", "pixel"),
    [
        ("rgb1_300m", None),
        ("naip_25cm", 0.25),
        ("naip_1cm", 0.01),
        pytest.param("rgb_byte", None, marks=pytest.mark.slow),
    ],
)
def test_real_scenes_far_from_the_training_resolution(
    case, pixel, shared_data, bundle, tmp_path, capsys, caplog
):
    scenes = shared_data / "scenes"
    if case == "rgb1_300m":
        scene = crop(scenes / "rasterio" / "rgb1.tif", tmp_path / "rgb1_crop.tif", 150, 150, 120, 120)
    elif case == "rgb_byte":  # the whole scene: 791 x 718 pixels of 300 m
        scene = scenes / "rasterio" / "RGB.byte.tif"
    else:
        src = crop(
            scenes / "naip" / "m_4709963_se_14_1_20190904.tif", tmp_path / "naip.tif", 300, 300, 160, 160
        )
        with rasterio.open(src) as ds:
            t = ds.transform
        scene = relabel(
            src,
            tmp_path / f"{case}.tif",
            crs="EPSG:26914",
            transform=(pixel, 0.0, t.c, 0.0, -pixel, t.f),
            bands=[1, 2, 3],
            colorinterp=["red", "green", "blue"],
        )
    out = tmp_path / "out"
    rc, _, err, records = run_geosam(
        ["run", str(scene), "--model", str(bundle), "--out", str(out)], capsys, caplog
    )
    assert rc == 0, err
    rec = json.loads((out / f"{scene.stem}_run.json").read_text())
    assert 32 <= rec["tiling"]["tile_size"] <= MAX_TILE
    assert any("chips of" in r.getMessage() for r in records)
    with rasterio.open(scene) as src, rasterio.open(out / f"{scene.stem}_classes.tif") as cls:
        assert (cls.width, cls.height) == (src.width, src.height)
        valid = (src.read_masks() > 0).all(axis=0)
        assert (cls.read(1)[valid] != cls.nodata).all()
    assert np.isfinite(rec["tiling"]["scene_gsd_m"])
