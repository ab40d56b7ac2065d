"""Batch runs on dask.distributed: the same outputs as sequential runs, models loaded once per worker
by the plugin, a killed worker process does not lose the batch, and GPU resource requests.

One LocalCluster with two worker *processes* serves this module (starting workers and importing torch
in them dominates the cost), reached through its address like any running cluster (`--scheduler`)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geosam.batch import ExecutorSpec, run_batch
from geosam.config import RunConfig
from geosam.errors import ConfigError
from geosam.predict import predict_scene
from geosam.runtime import load_models
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle

CFG = {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}, "device": "cpu"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", input_size=32, tile_size=128)


@pytest.fixture(scope="module")
def cfg():
    return RunConfig.model_validate(CFG)


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit=0,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as c:
        yield c


def blocky(path, h, w, seed):
    rng = np.random.default_rng(seed)
    img = np.full((3, h, w), 1000, np.uint16)
    img[:, 10 : h // 2, 20 : w - 10] = np.array([3000, 500, 500])[:, None, None]
    img[:, h // 2 :, : w // 3] = np.array([500, 3000, 800])[:, None, None]
    img = img + rng.integers(0, 30, img.shape).astype(np.uint16)
    where = np.zeros((h, w), bool)
    where[:20, :25] = True
    return make_raster(path, w, h, count=3, dtype="uint16", fill=img, nodata=0, nodata_where=where)


def real_crop(sample: Path, path: Path) -> Path:
    """A 160 x 160 window of the real Landsat sample scene (named bands, nodata, its CRS)."""
    from rasterio.windows import Window

    with rasterio.open(sample / "raleigh_landsat7_2000.vrt") as src:
        win = Window(200, 150, 160, 160)
        profile = {
            "driver": "GTiff",
            "width": 160,
            "height": 160,
            "count": src.count,
            "dtype": src.dtypes[0],
            "crs": src.crs,
            "transform": src.window_transform(win),
            "nodata": src.nodata,
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=win))
            for i, d in enumerate(src.descriptions, 1):
                dst.set_band_description(i, d)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("scenes")
    out = [
        blocky(d / "blocks.tif", 150, 150, 0),
        make_raster(d / "random.tif", 90, 200, count=3, dtype="uint16", fill="random", seed=1),
    ]
    try:
        sample = request.getfixturevalue("sample_data")
    except pytest.skip.Exception:
        sample = None
    if sample is not None:
        out.append(real_crop(sample, d / "raleigh_crop.tif"))
    return out


def test_cluster_batch_matches_sequential_runs(tmp_path, bundle, cfg, cluster, scenes):
    report = run_batch(
        [str(s) for s in scenes],
        tmp_path / "batch",
        model=bundle,
        cfg=cfg,
        executor=ExecutorSpec(scheduler=cluster.scheduler_address),
    )
    assert report.exit_code == 0 and report.counts()["done"] == len(scenes)
    assert len({s.worker for s in report.scenes}) == 2  # both workers took scenes
    models = load_models(bundle, None, cfg)
    by_id = {s.scene_id: s for s in report.scenes}
    for path in scenes:
        ref = predict_scene(path, tmp_path / "seq" / path.stem, models, cfg)
        got = by_id[path.stem]
        assert (got.n_tiles, got.n_regions) == (ref.n_tiles, ref.n_regions), path.name
        with rasterio.open(ref.outputs["classes"]) as a, rasterio.open(got.outputs["classes"]) as b:
            assert a.transform == b.transform and a.crs == b.crs
            assert np.array_equal(a.read(1), b.read(1)), path.name
        with rasterio.open(ref.outputs["confidence"]) as a, rasterio.open(got.outputs["confidence"]) as b:
            np.testing.assert_allclose(a.read(1), b.read(1), atol=1e-4)
        ra = gpd.read_file(ref.outputs["regions_gpkg"]).sort_values("region_id").reset_index(drop=True)
        rb = gpd.read_file(got.outputs["regions_gpkg"]).sort_values("region_id").reset_index(drop=True)
        assert len(ra) == len(rb) > 0
        for col in ("region_id", "class_id", "class_name", "area_px", "tile_id"):
            assert ra[col].tolist() == rb[col].tolist(), (path.name, col)
        np.testing.assert_allclose(ra["probability"], rb["probability"], atol=1e-3)
        np.testing.assert_allclose(ra.geometry.area, rb.geometry.area, rtol=1e-9)

    # the worker plugin loaded the models once per worker process, before any task ran on it
    from distributed import Client

    with Client(cluster.scheduler_address) as client:

        def cached() -> tuple[int, int, int]:
            import torch

            from geosam import runtime

            return len(runtime._CACHE), os.getpid(), torch.get_num_threads()

        state = client.run(cached)
    assert len(state) == 2 and all(n == 1 for n, _, _ in state.values())
    assert all(t == max(1, (os.cpu_count() or 1) // 2) for _, _, t in state.values())
    assert all(pid != os.getpid() for _, pid, _ in state.values())


def test_killed_worker_does_not_lose_the_batch(tmp_path, bundle, cfg, cluster):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        blocky(d / f"s{i}.tif", 90, 180, i)  # two tiles each
    starts: list[dict] = []

    def on_event(ev):
        if ev["kind"] == "start":
            starts.append(ev)
            if len(starts) == 1:  # the first scene to start: kill its worker process mid-scene
                os.kill(ev["pid"], signal.SIGKILL)

    report = run_batch(
        [d],
        tmp_path / "out",
        model=bundle,
        cfg=cfg,
        executor=ExecutorSpec(scheduler=cluster.scheduler_address),
        on_event=on_event,
    )
    victim = starts[0]["scene_id"]
    again = [e for e in starts if e["scene_id"] == victim]
    assert len(again) >= 2 and again[-1]["pid"] != again[0]["pid"]  # resubmitted to a live worker
    assert [s.status for s in report.scenes] == ["done"] * 3, [s.error_message for s in report.scenes]
    out = tmp_path / "out"
    assert not [p for p in out.rglob("*") if p.name.startswith(".geosam-tmp-") or ".work-" in p.name]
    for s in report.scenes:
        with rasterio.open(s.outputs["classes"]) as ds:
            assert ds.read(1).shape == (90, 180)
        assert Path(s.record).is_file()


def test_gpu_tasks_need_gpu_workers(tmp_path, bundle, cfg):
    from distributed import LocalCluster

    auto = cfg.with_overrides(device="auto")
    (tmp_path / "in").mkdir()
    make_raster(tmp_path / "in" / "s.tif", 90, 90, count=3, fill="random")
    no_gpu = LocalCluster(n_workers=1, processes=False, dashboard_address=":0", silence_logs=logging.ERROR)
    with no_gpu, pytest.raises(ConfigError, match="--resources GPU=1"):
        run_batch([tmp_path / "in"], tmp_path / "out", model=bundle, cfg=auto,
                  executor=ExecutorSpec(scheduler=no_gpu.scheduler_address, gpu=True))  # fmt: skip
    with pytest.raises(ConfigError, match="device 'cpu'"):
        run_batch([tmp_path / "in"], tmp_path / "out", model=bundle, cfg=cfg, executor=ExecutorSpec(gpu=True))
    # a local cluster declares GPU=1 per worker; the GPU tasks then run (device auto: CPU here)
    report = run_batch([tmp_path / "in"], tmp_path / "out", model=bundle, cfg=auto,
                       executor=ExecutorSpec(workers=1, processes=False, gpu=True))  # fmt: skip
    assert report.counts()["done"] == 1 and "GPU tasks" in report.executor


def test_unreachable_scheduler_is_a_clear_error(tmp_path, bundle, cfg):
    make_raster(tmp_path / "s.tif", 90, 90, count=3, fill="random")
    with pytest.raises(ConfigError, match="cannot reach the dask scheduler"):
        run_batch([tmp_path / "s.tif"], tmp_path / "out", model=bundle, cfg=cfg,
                  executor=ExecutorSpec(scheduler="tcp://127.0.0.1:9", connect_timeout_s=2))  # fmt: skip
