"""Read-ahead, background stitching and tile batching keep results, order and errors as they were."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from geosam.tile_pipeline import MAX_TILES_PER_CALL, SerialWorker, batched, prefetch, tiles_per_call


def test_prefetch_keeps_order_and_reads_ahead():
    started: list[int] = []
    lock = threading.Lock()

    def load(i):
        with lock:
            started.append(i)
        time.sleep(0.01 * (5 - i % 5))  # later items finish first
        return i * i

    out = []
    for i, r in prefetch(range(12), load, depth=3):
        out.append((i, r))
        if i == 0:
            time.sleep(0.1)
            with lock:
                assert len(started) >= 3  # loads ran while the consumer worked on item 0
    assert out == [(i, i * i) for i in range(12)]


def test_prefetch_raises_at_the_failing_item_and_stops():
    def load(i):
        if i == 4:
            raise ValueError("bad tile 4")
        return i

    seen = []
    with pytest.raises(ValueError, match="bad tile 4"):
        for i, _ in prefetch(range(100), load, depth=2):
            seen.append(i)
    assert seen == [0, 1, 2, 3]


def test_batched():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []
    assert list(batched(range(3), 0)) == [[0], [1], [2]]


def test_serial_worker_runs_in_order_on_one_thread():
    seen, threads = [], set()

    def work(i):
        time.sleep(0.001 * (i % 3))
        seen.append(i)
        threads.add(threading.get_ident())

    with SerialWorker() as w:
        for i in range(20):
            w.submit(work, i)
    assert seen == list(range(20)) and len(threads) == 1
    assert threading.get_ident() not in threads


def test_serial_worker_raises_errors():
    def boom():
        raise RuntimeError("stitch failed")

    with pytest.raises(RuntimeError, match="stitch failed"), SerialWorker() as w:
        w.submit(boom)
    with pytest.raises(RuntimeError, match="stitch failed"), SerialWorker() as w:
        w.submit(boom)
        time.sleep(0.05)
        w.submit(lambda: None)  # the earlier failure surfaces here


def test_tiles_per_call():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert tiles_per_call(cpu, 8, 1) == 1  # a CPU encodes one tile at a time
    assert tiles_per_call(gpu, 1, 1) == 16  # SAM: one input per tile
    assert tiles_per_call(gpu, 1, 16) == 1  # default model: 16 chips per tile
    assert tiles_per_call(gpu, 4, 16) == 4
    assert tiles_per_call(gpu, 100, 1) == MAX_TILES_PER_CALL


def test_run_batch_equals_one_at_a_time(tmp_path):
    """Several tiles through one encoder call give each tile's own results."""
    from geosam.config import RunConfig
    from geosam.encode import EncoderPlan, patch_size
    from geosam.inference import tile_inference
    from geosam.runtime import load_models
    from geosam.testing import make_raster
    from geosam.testing_models import make_tiny_bundle
    from geosam.tiling import plan_tiles

    bundle = make_tiny_bundle(tmp_path / "b", input_size=32, tile_size=128)
    cfg = RunConfig.model_validate({"tiling": {"tile_size": 128}})
    models = load_models(bundle, None, cfg)
    rng = np.random.default_rng(0)
    scene = make_raster(
        tmp_path / "s.tif", 300, 260, count=3, dtype="uint8", fill=rng.integers(1, 255, (3, 260, 300))
    )
    specs = plan_tiles(str(scene), cfg.tiling.resolved(128)).tiles[:3]
    grid = models.input_size // patch_size(models.bundle.model.encoder)
    infer = tile_inference(models, EncoderPlan(128, 32, models.input_size, grid), cfg.segment)
    tiles = [(rng.random((3, 128, 128), dtype=np.float32), rng.random((128, 128)) > 0.1, s) for s in specs]
    with torch.no_grad():
        together = infer.run_batch(tiles)
        alone = [infer(*t) for t in tiles]
    for a, b in zip(together, alone, strict=True):
        assert a.spec == b.spec
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.tile_probs, b.tile_probs, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.region_probs, b.region_probs, rtol=1e-4, atol=1e-5)
