"""`geosam info` shows the plan `geosam run` uses (same model, same resolution matching, same tiles),
and counts huge plans without building them; a model without a training GSD is logged on metric scenes."""

from __future__ import annotations

import json
import logging
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geosam import tiling
from geosam.cli.main import main
from geosam.config import RunConfig, TilingConfig
from geosam.io.read import open_scene
from geosam.scene_plan import describe_run, model_geometry, scene_encoding
from geosam.testing import make_large_vrt, make_raster
from geosam.testing_models import make_tiny_bundle
from geosam.tiling import plan_tiles, summarize_plan


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("info")
    return {
        "gsd": make_tiny_bundle(d / "gsd20", input_size=32, tile_size=128, gsd_m=20.0),
        "nogsd": make_tiny_bundle(d / "nogsd", input_size=32, tile_size=128),
    }


def half_empty_scene(path: Path, size: int = 400, empty: int = 200) -> Path:
    nodata = np.zeros((size, size), dtype=bool)
    nodata[:empty, :empty] = True
    return make_raster(path, size, size, count=3, dtype="uint8", fill="random", nodata=0, nodata_where=nodata)


def info_lines(args: list[str], capsys) -> dict[str, str]:
    capsys.readouterr()
    assert main(["info", *args]) == 0
    out = capsys.readouterr().out.splitlines()[1:]
    return {ln.split()[0]: ln.split(None, 1)[1] for ln in out}


def test_info_shows_the_plan_run_uses(tmp_path, bundles, capsys):
    # 10 m scene, model trained at 20 m on 32 px chips: run encodes 64 px chips, tiles of 4 x 4 chips
    scene = half_empty_scene(tmp_path / "scene.tif")
    lines = info_lines([str(scene), "--model", str(bundles["gsd"])], capsys)
    assert lines["use"] == "red <- band 1, green <- band 2, blue <- band 3"
    assert lines["encoder"].startswith(
        "64 px chips at 32 px input; pixels of 10 m on the ground, model trained at 20 m"
    )
    # the scene fits one tile of whole 64 px chips (geosam.chip_grid): 448 px, no halo
    assert (
        lines["tiles"]
        == "1 to process; 448 px tiles (halo 0, stride 448), grid 1 x 1 = 1; 0 empty tiles skipped"
    )

    assert main(["run", str(scene), "--model", str(bundles["gsd"]), "--out", str(tmp_path / "o")]) == 0
    record = json.loads((tmp_path / "o" / "scene_run.json").read_text())
    t = record["tiling"]
    assert (t["tiles"], t["skipped_empty"], t["tile_size"], t["halo"], t["chip_size"]) == (1, 0, 448, 0, 64)

    # run's options change info's plan the same way
    lines = info_lines([str(scene), "--model", str(bundles["gsd"]), "--no-match-resolution"], capsys)
    assert (
        lines["encoder"] == "32 px chips at 32 px input; resolution matching is off (--no-match-resolution)"
    )
    assert (
        lines["tiles"]
        == "8 to process; 256 px tiles (halo 32, stride 192), grid 3 x 3 = 9; 1 empty tiles skipped"
    )
    lines = info_lines([str(scene), "--model", str(bundles["gsd"]), "--bands", "3,2,1"], capsys)
    assert lines["use"] == "red <- band 3, green <- band 2, blue <- band 1"
    lines = info_lines([str(scene), "--model", str(bundles["gsd"]), "--regions", "sam"], capsys)
    assert lines["plan"].startswith("none: `geosam run` would stop: segment.source is 'sam' but no SAM")


def test_info_describes_problems_run_would_stop_on(tmp_path, bundles, capsys):
    scene = make_raster(tmp_path / "two.tif", 64, 64, count=2, dtype="uint8")
    lines = info_lines([str(scene), "--model", str(bundles["gsd"])], capsys)
    assert lines["use"].startswith("cannot choose the model's bands: ")
    assert lines["plan"].startswith("none: `geosam run` would stop: ")
    lines = info_lines([str(scene), "--model", str(tmp_path / "nope")], capsys)
    assert lines["model"].startswith(f"none: {tmp_path / 'nope'}: model bundle not found")


def test_model_without_gsd_is_logged_on_metric_scenes(tmp_path, bundles, caplog):
    scene = open_scene(make_raster(tmp_path / "s.tif", 64, 64))  # UTM, 10 m
    meta = __import__("geosam.models.bundle", fromlist=["x"]).read_bundle_meta(bundles["nogsd"])
    cfg = RunConfig()
    geom = model_geometry(meta, cfg, sam_checkpoint=False)
    with caplog.at_level(logging.INFO, logger="geosam.scene_plan"):
        enc = scene_encoding(geom, scene)
    # the 64 x 64 scene fits one tile of whole 32 px chips (geosam.chip_grid): 64 px, no halo
    assert (enc.chip_size, enc.tile_size, enc.halo, enc.matched) == (32, 64, 0, False)
    msg = [r.getMessage() for r in caplog.records if r.name == "geosam.scene_plan"]
    assert msg == [
        "s.tif: model 'tiny-test-model' records no training GSD, so resolution matching is off: the "
        "scene's 10 m pixels are encoded as 32 px chips as they are; retrain with `geosam train ... "
        "--gsd METRES` to record it"
    ]
    caplog.clear()  # a scene in degrees: its ground GSD is measured geodesically, so the same line
    geo = open_scene(
        make_raster(tmp_path / "g.tif", 64, 64, crs="EPSG:4326", transform=(1e-4, 0, 10, 0, -1e-4, 50))
    )
    with caplog.at_level(logging.INFO, logger="geosam.scene_plan"):
        scene_encoding(geom, geo)
    msg = [r.getMessage() for r in caplog.records if r.name == "geosam.scene_plan"]
    assert len(msg) == 1 and "the scene's 8.93 m pixels" in msg[0]


def test_huge_vrt_is_summarized_in_well_under_a_second(tmp_path, bundles):
    """200,000 x 200,000 px, default-model geometry: millions of tiles are counted, never built."""
    nodata = np.zeros((400, 400), dtype=bool)
    nodata[:200, :200] = True
    t500 = (500.0, 0, 500000.0, 0, -500.0, 5000000.0)
    small = make_raster(tmp_path / "small.tif", 400, 400, count=3, dtype="uint8", fill="random", nodata=0,
                        nodata_where=nodata, transform=t500)  # fmt: skip
    vrt = make_large_vrt(tmp_path / "big.vrt", small, 200_000, 200_000, overview_from_source=False)
    info = open_scene(vrt)  # 1 m pixels
    cfg = RunConfig.model_validate({"tiling": {"tile_size": 96}, "match_resolution": False})
    describe_run(info, bundles["gsd"], None, RunConfig())  # warm imports
    tracemalloc.start()
    t0 = time.perf_counter()
    for c in (RunConfig(), cfg):
        desc = describe_run(info, bundles["gsd"], None, c)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 0.5 and peak < 4 * 2**20, (seconds, peak)
    # --tile-size 96 with 32 px chips: the halo is one chip, and a tile holds it (4 x halo < tile), so
    # the tile grows to 160 px, stride 96 (geosam.chip_grid)
    assert desc.plan is not None and desc.plan.grid == (2084, 2084) and desc.plan.n_grid == 4_343_056
    # no overviews: the empty-tile screen would read 40 Gpx, so it is left to `run` and said so
    assert desc.plan.screening == "skipped" and desc.plan.n_tiles is None
    assert dict(desc.lines())["tiles"].startswith("up to 4,343,056 to process; 160 px tiles (halo 32")
    # a scene that cannot hold nodata needs no screen: exact count
    plain = make_raster(tmp_path / "plain.tif", 400, 400, count=3, dtype="uint8", fill="random")
    big = open_scene(make_large_vrt(tmp_path / "plain.vrt", plain, 200_000, 200_000))
    s = summarize_plan(big, TilingConfig(tile_size=88, halo=11))
    assert (s.n_tiles, s.screening) == (9_186_961, "not-needed")


@settings(max_examples=20, deadline=None)
@given(
    width=st.integers(1, 160),
    height=st.integers(1, 160),
    tile=st.sampled_from([32, 48]),
    halo_frac=st.sampled_from([0, 0.1, 0.2]),
    screen=st.sampled_from([4, 16, 2048]),
    density=st.sampled_from([0.0, 0.002, 0.05, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_summary_counts_what_plan_tiles_keeps(width, height, tile, halo_frac, screen, density, seed):
    valid = np.random.default_rng(seed).random((height, width)) < density
    cfg = TilingConfig(tile_size=tile, halo=int(tile * halo_frac))
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiling, "_SCREEN_SIDE", screen)
        path = make_raster(Path(tmp) / "p.tif", width, height, count=1, dtype="uint8", nodata=0,
                           nodata_where=~valid)  # fmt: skip
        plan = plan_tiles(path, cfg)
        s = summarize_plan(path, cfg)
        tight = summarize_plan(path, cfg, max_read_px=0)
    assert s.grid == plan.grid and s.screening == "exact"
    assert s.n_tiles == len(plan.tiles) and s.n_skipped == plan.n_skipped
    # with no read budget: nothing read, nothing claimed
    assert tight.screening == "skipped" and tight.n_tiles is None


@pytest.mark.parametrize("gsd_m", [10.0, 20.0, 28.5])
def test_the_resolution_line_names_the_tile_the_run_reads(tmp_path, bundles, gsd_m, caplog):
    """One INFO line on the choice, and its tile and halo are the chip grid's (what the record holds)."""
    from geosam.models.bundle import read_bundle_meta

    transform = (gsd_m, 0, 500000, 0, -gsd_m, 5000000)
    scene = open_scene(make_raster(tmp_path / "s.tif", 600, 600, fill="random", transform=transform))
    geom = model_geometry(read_bundle_meta(bundles["gsd"]), RunConfig(), sam_checkpoint=False)
    with caplog.at_level(logging.INFO, logger="geosam"):
        enc = scene_encoding(geom, scene)
    lines = [r.getMessage() for r in caplog.records if r.name == "geosam.resolution"]
    assert len(lines) == 1, lines
    assert f"tiles of {enc.tile_size} px with a {enc.halo} px halo" in lines[0]
    assert lines[0].count("tiles of") == 1 and f"chips of {enc.chip_size} px" in lines[0]
