"""The benchmark scripts in benchmarks/ still run (tiny models, tiny scenes) and measure what they claim.

The default suite runs the quick paths (seconds); the full smoke run of every script (subprocesses,
dask clusters) is marked ``bench``: ``pytest -m bench tests/test_bench_smoke.py``.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

SCRIPTS = sorted(p.stem for p in BENCH.glob("bench_*.py"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-work")


def test_every_script_imports_and_is_run_by_run_all():
    import run_all

    assert SCRIPTS, "no benchmark scripts found"
    for name in SCRIPTS:
        mod = importlib.import_module(name)
        assert callable(mod.run) and callable(mod.main)
    assert sorted(s for s, _ in run_all.BENCHMARKS.values()) == sorted(f"{n}.py" for n in SCRIPTS)


def test_allocator_settings_match_the_cli():
    import _harness

    from geosam.cli.main import MALLOC_ENV

    assert _harness.MALLOC_ENV == MALLOC_ENV


def test_table_and_results(tmp_path, capsys):
    import _harness

    text = _harness.table([{"a": 1.23456, "b": "x"}, {"a": 1234.5, "b": "yy"}], title="t")
    assert "1.23" in text and "1234" in text.replace("1235", "1234")  # rounding of large values
    path = _harness.write_result("demo", {"v": np.float32(1.5), "arr": np.arange(2)}, tmp_path)
    assert json.loads(path.read_text()) == {"v": 1.5, "arr": [0, 1]}
    header = _harness.start("demo", "smoke")
    assert {"load1", "load5", "load15"} <= set(header["load_at_start"])
    assert "load at start" in capsys.readouterr().out


def test_vit_b_flops_analytic_equals_counted():
    """The analytic FLOP count used for GFLOP/s is exactly what torch's counter sees (meta tensors)."""
    import torch
    from bench_flops import count_flops, vit_flops_analytic

    from geosam.models.sam import build_encoder
    from geosam.models.sam_config import SamConfig

    for cfg in (SamConfig.preset("vit_b"), SamConfig.preset("small"), SamConfig.preset("tiny")):
        with torch.device("meta"):
            enc = build_encoder(cfg)
            x = torch.empty(1, cfg.in_chans, cfg.img_size, cfg.img_size)
        counted, _ = count_flops(lambda enc=enc, x=x: enc(x))
        assert counted == pytest.approx(vit_flops_analytic(cfg), rel=1e-9), cfg.name
    assert vit_flops_analytic(SamConfig.preset("vit_b")) == pytest.approx(972.08e9, rel=1e-4)


def test_stage_timers_time_and_restore():
    import _stage_timers

    class Thing:
        def work(self, n):
            return n + 1

    mod = type(sys)("fake_mod")
    mod.f = lambda x: x * 2
    original_f = mod.f
    with _stage_timers.stage_timers() as st:
        st.patch(mod, "f")
        st.patch(Thing, "work", label=lambda self, n: f"work{n}")
        assert mod.f(3) == 6 and Thing().work(1) == 2 and Thing().work(1) == 2
    assert mod.f is original_f and "work" in vars(Thing) and not hasattr(Thing.work, "__wrapped__")
    assert st.calls == {"f": 1, "work1": 2}


def test_mosaic_vrt_repeats_the_scene(work):
    import _fixtures
    import rasterio

    src = _fixtures.synthetic_scene(work)
    vrt = _fixtures.mosaic_vrt(work / "m.vrt", src, 2, 3)
    with rasterio.open(src) as a, rasterio.open(vrt) as b:
        assert (b.width, b.height, b.count) == (2 * a.width, 3 * a.height, a.count)
        assert b.nodata == a.nodata and b.crs == a.crs and b.transform == a.transform
        data = a.read()
        big = b.read()
    for j in range(3):
        for i in range(2):
            tile = big[
                :, j * data.shape[1] : (j + 1) * data.shape[1], i * data.shape[2] : (i + 1) * data.shape[2]
            ]
            np.testing.assert_array_equal(tile, data)


def test_single_vs_two_pass_smoke(work, tmp_path):
    """One pass, two passes and crop-classification produce the same kind of results on one scene."""
    import bench_single_vs_two_pass as b

    data = b.run("smoke", results=str(tmp_path), work=str(work), precisions=("fp32",))
    by = {s["method"]: s for s in data["summary"]}
    assert set(by) == {"one_pass", "two_pass", "two_pass_norle", "crop"}
    assert len({s["tiles"] for s in by.values()}) == 1 and by["one_pass"]["tiles"] > 0
    # the same masks with and without segment-anything's RLE round trip
    assert by["two_pass_norle"]["regions"] == by["two_pass"]["regions"]
    # the two-step variants run the image encoder twice (or more) per tile; geosam once
    for r in data["runs"]:
        if r["method"] == "one_pass":
            assert r["sam_encoder_s"] == 0.0
        else:
            assert r["sam_encoder_s"] > 0.0
    assert (tmp_path / "single_vs_two_pass_smoke.json").is_file()


def test_sam_backbones_smoke(work, tmp_path):
    """SAM 1 and SAM 2.1 set-ups run through geosam's tile inference side by side; ratios are computed."""
    import importlib.util

    if importlib.util.find_spec("sam2") is None:
        pytest.skip("needs the sam2 package")
    import bench_sam_backbones as b

    data = b.run("smoke", results=str(tmp_path), work=str(work), in_process=True)
    by = {s["setup"]: s for s in data["summary"]}
    assert set(by) == {"sam1_tiny", "sam2.1_hiera_tiny"}
    assert by["sam1_tiny"]["x_faster_than_vit_b"] == 1.0
    assert by["sam2.1_hiera_tiny"]["sam_model"] == "sam2.1_hiera_tiny"
    runs = {r["setup"]: r for r in data["runs"]}
    assert (
        runs["sam2.1_hiera_tiny"]["region_source"] == "sam2.1" and runs["sam1_tiny"]["region_source"] == "sam"
    )
    for s in by.values():
        assert s["s_per_tile"] > 0 and s["encode_s"] > 0 and s["segment_s"] > 0 and s["n_tiles"] == 1
    assert (tmp_path / "sam_backbones_smoke.json").is_file()


@pytest.mark.bench
@pytest.mark.parametrize(
    "name",
    [
        "bench_precision",
        "bench_flops",
        "bench_memory",
        "bench_scaling",
        "bench_allocator",
        "bench_sam_backbones",
        "bench_train_precision",
    ],
)
def test_script_smoke(name, work, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSAM_NO_REEXEC", "1")  # main() would otherwise re-execute pytest itself
    mod = importlib.import_module(name)
    mod.main(["--size", "smoke", "--results", str(tmp_path), "--work", str(work)])
    out = list(tmp_path.glob("*_smoke.json"))
    assert len(out) == 1
    data = json.loads(out[0].read_text())
    assert data["size"] == "smoke" and "load_at_start" in data


def test_hiera_level_dilution_measure():
    """The own-pixel share of pooled region features: 1 for cell-aligned regions, area/cell for one cell."""
    from measure_hiera_levels import own_share

    labels = np.zeros((16, 16), np.int32)
    labels[:8, :8] = 1  # four whole 4 x 4 cells
    labels[8, 8] = 2  # one pixel of a 4 x 4 cell
    labels[12:16, 0:6] = 3  # one whole cell and half of another
    share, area = own_share(labels, 4)
    assert area.tolist() == [64, 1, 24]  # regions 1..3 (0 is no region)
    assert share[0] == pytest.approx(1.0)
    assert share[1] == pytest.approx(1 / 16)
    assert share[2] == pytest.approx((1 + 0.5**2) / 1.5)


def test_gpu_check_cpu_tiny(tmp_path, work):
    """benchmarks/gpu_check.sh --smoke: the GPU script's whole path on a CPU at a tiny size.

    No GPU was lent to this project's development machine; on one, ``bash benchmarks/gpu_check.sh``
    runs the same code at the Sentinel-2 size.
    """
    import os
    import subprocess

    env = {**os.environ, "PYTHON": sys.executable, "GEOSAM_BENCH_WORK": str(work)}
    out = subprocess.run(
        ["bash", str(BENCH / "gpu_check.sh"), "--smoke", "--results", str(tmp_path), "--work", str(work)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads((tmp_path / "gpu_throughput_smoke.json").read_text())
    s = data["summary"]
    assert s["device"] == "cpu" and s["gpu"] is None and s["gpu_busy_pct"] is None
    assert s["full_scene_measured"] and s["measured_tiles"] == s["full_scene_tiles"] > 1
    assert s["tiles_per_s"] > 0 and s["projected_full_scene_s"] >= s["model_load_s"]
    assert "projected full" in out.stdout


def test_vs_samgeo_geosam_side_smoke(work, tmp_path):
    """bench_vs_samgeo's geosam side as a whole process (tiny model); samgeo needs ViT-B, see bench tests."""
    import bench_vs_samgeo as b

    data = b.run("smoke", results=str(tmp_path), work=str(work), repeats=1, peer=False)
    (row,) = data["summary"]
    assert row["tiles"] > 0 and row["geosam_wall_s"] > 0 and row["geosam_peak_rss_mb"] > 100
    assert "wall_ratio" not in row  # no peer, no ratio invented
    assert (tmp_path / "vs_samgeo_smoke.json").is_file()
    assert "--halo 0" in data["geosam_command"] and "--stretch dtype" in data["geosam_command"]


def test_vs_random_forest_smoke(work, tmp_path):
    """RF, RF + geosam's regions and geosam's default recipe on the same 2 folds and the same pixels.

    The smoke size trains geosam for 4 steps, so its numbers mean nothing; what is checked is that every
    method is scored, with real numbers, on identical folds and identical held-out pixels.
    """
    import bench_vs_random_forest as b

    if not (b.SCENE.exists() and b.POLYGONS.exists()):
        pytest.skip("needs the Raleigh sample (python sample_tiles/fetch.py)")
    data = b.run("smoke", results=str(tmp_path), work=str(work / "vs_rf"))
    by = {s["method"]: s for s in data["summary"]}
    assert set(by) == {"random_forest", "random_forest_regions", "default"}
    (run,) = data["runs"]
    assert run["folds"]["k"] == data["k"] == 2
    for method, s in by.items():
        assert run[method]["folds"] == run["folds"], method  # the same polygons held out
        for key in ("overall_accuracy", "kappa", "macro_f1", "miou"):
            assert np.isfinite(s[key]) and -1.0 <= s[key] <= 1.0, (method, key)
            assert np.isfinite(s[f"{key}_fold_mean"]) and s[f"{key}_fold_std"] >= 0.0
        assert set(s["f1_per_class"]) == set(run[method]["classes"])
    # the same pixels: reference pixels, scored pixels and per-fold counts identical for every method
    assert len({(s["n_pixels"], s["scored_pixels"], s["unclassified"]) for s in by.values()}) == 1
    assert by["random_forest"]["scored_pixels"] == by["default"]["scored_pixels"] > 1000
    per_fold = {m: [f["n"] for f in run[m]["per_fold"]] for m in by}
    assert per_fold["random_forest"] == per_fold["default"] == per_fold["random_forest_regions"]
    assert by["random_forest"]["overall_accuracy"] > 0.4  # a forest on 5 Landsat bands learns something
    assert {c["method"] for c in data["comparison"]} == {"random_forest_regions", "default"}
    assert data["settings"]["geosam_head"] == "dense"
    assert data["command"] == "python benchmarks/bench_vs_random_forest.py --size smoke"
    assert (tmp_path / "vs_random_forest_smoke.json").is_file()


def test_measure_process_sums_the_tree(tmp_path):
    """Peak RSS of a process tree: a parent and a child holding 150 MB each at the same time."""
    import bench_vs_samgeo as b

    child = "import time; y = bytearray(150 * 2**20); time.sleep(1.5)"
    code = (
        "import subprocess, sys, time\n"
        "x = bytearray(150 * 2**20)\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "time.sleep(1.0); p.wait()\n"
    )
    m = b.measure_process([sys.executable, "-c", code], dict(__import__("os").environ), tmp_path)
    assert m["rc"] == 0
    assert 150 <= m["hwm_mb"] < 280  # the largest single process
    assert m["polled_tree_mb"] >= 290  # both at once
    assert m["peak_rss_mb"] == max(m["hwm_mb"], m["polled_tree_mb"])


def test_mask_iou(tmp_path):
    import bench_vs_samgeo as b
    import geopandas as gpd
    import rasterio
    from shapely.geometry import box

    from geosam.testing import make_raster

    where = np.zeros((40, 50), bool)
    where[:, :10] = True  # nodata strip: left out of the IoU
    scene = make_raster(
        tmp_path / "s.tif", 50, 40, count=3, dtype="uint8", fill=9, nodata=0, nodata_where=where
    )
    with rasterio.open(scene) as ds:
        t, crs = ds.transform, ds.crs
        profile = {**ds.profile, "count": 1}
    # geosam: columns 0..29 (20 valid columns); samgeo: columns 20..49 (30 valid columns); overlap 10
    x0, y0 = t @ (0, 0)
    x30, y40 = t @ (30, 40)
    gpd.GeoDataFrame({"region_id": [1]}, geometry=[box(x0, y40, x30, y0)], crs=crs).to_file(
        tmp_path / "g.gpkg"
    )
    mask = np.zeros((1, 40, 50), np.uint8)
    mask[0, :, 20:] = 255
    with rasterio.open(tmp_path / "m.tif", "w", **profile) as ds:
        ds.write(mask)
    r = b.mask_iou(scene, tmp_path / "g.gpkg", tmp_path / "m.tif")
    assert r["iou"] == pytest.approx(10 / 40)
    assert r["geosam_cover"] == pytest.approx(20 / 40) and r["samgeo_cover"] == pytest.approx(30 / 40)
