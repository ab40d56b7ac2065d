"""Batch throughput in this process and with 1 and 2 local dask workers (``geosam.batch.run_batch``).

The same ``N`` scenes (one-source VRT copies of ``RGB.byte.tif``) are classified three ways:
``workers=0`` (one after another in this process, torch using every core), a ``LocalCluster`` with one
worker process (torch threads = all cores) and with two (torch threads = cores / 2 each; see
``geosam.batch.dask_backend.ModelPlugin``). Reported: wall time including cluster start and model loading,
the processing window (first scene started to last scene done), scenes per minute and tiles per second
over that window, and the speed-up over one worker.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as harness
from _fixtures import bench_scenes, default_setup, mosaic_vrt, sam_setup, work_dir


def scene_copies(scenes: list[tuple[Path, Any]], n: int, folder: Path) -> list[Path]:
    """``n`` distinct scene files cycling over ``scenes``: one-source VRTs (a few hundred bytes each)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        mosaic_vrt(
            folder / f"scene{i:02d}_{scenes[i % len(scenes)][0].stem}.vrt", scenes[i % len(scenes)][0], 1, 1
        )
        for i in range(n)
    ]


def one_run(inputs: list[Path], setup: Any, workers: int, out: Path) -> dict[str, Any]:
    """A ``run_batch`` with ``workers`` (0 = in process); timings from its events and outcomes."""
    from geosam.batch import ExecutorSpec, run_batch

    starts: list[float] = []
    ends: list[float] = []
    t0 = time.perf_counter()
    if workers == 0:  # in process: load the models up front, as dask workers do when they start
        from geosam.runtime import cached_models

        cached_models(setup.model, setup.sam_checkpoint, setup.cfg)
    report = run_batch(
        [str(p) for p in inputs],
        out,
        model=setup.model,
        sam_checkpoint=setup.sam_checkpoint,
        cfg=setup.cfg,
        executor=ExecutorSpec(workers=workers),
        on_event=lambda ev: starts.append(time.perf_counter()) if ev.get("kind") == "start" else None,
        on_outcome=lambda o: ends.append(time.perf_counter()),
    )
    wall = time.perf_counter() - t0
    counts = report.counts()
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} scenes failed: {report.failed[0].error_message}")
    first = min(starts) if starts else t0
    window = max(ends) - first
    return {
        "workers": workers,
        "executor": report.executor,
        "scenes": counts["scenes"],
        "tiles": counts["tiles"],
        "wall_s": wall,
        "startup_s": first - t0,
        "window_s": window,
        "scenes_per_min": 60.0 * counts["scenes"] / window,
        "tiles_per_s": counts["tiles"] / window,
        "scenes_per_min_incl_startup": 60.0 * counts["scenes"] / wall,
    }


def run(
    size: str = "full", results: str | None = None, work: str | None = None, n: int = 8, sam: bool = False
) -> dict[str, Any]:
    header = harness.start("scaling", size)
    wd = work_dir(work)
    setup = sam_setup(size, wd) if sam else default_setup(size, wd)
    scenes = bench_scenes(size, wd)
    n = 2 if size == "smoke" else n
    worker_counts = (0, 1) if size == "smoke" else (0, 1, 2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="geosam-bench-scale-") as tmp:
        inputs = scene_copies(scenes[:1], n, Path(tmp) / "in")  # one band layout for the whole batch
        for w in worker_counts:
            r = one_run(inputs, setup, w, Path(tmp) / f"out{w}")
            rows.append(r)
            print(
                f"  workers={w}: {r['scenes_per_min']:.2f} scenes/min ({r['wall_s']:.1f} s wall)", flush=True
            )
    one = next((r for r in rows if r["workers"] == 1), rows[0])
    for r in rows:
        r["speedup_vs_1_worker"] = r["scenes_per_min"] / one["scenes_per_min"]
    harness.table(
        rows,
        [
            "workers",
            "executor",
            "scenes",
            "tiles",
            "wall_s",
            "startup_s",
            "window_s",
            "scenes_per_min",
            "tiles_per_s",
            "speedup_vs_1_worker",
        ],
        title=f"batch throughput, {setup.name}",
    )
    harness.finish(header)
    data = {**header, "setup": setup.describe(), "scene": str(scenes[0][0]), "copies": n, "runs": rows}
    harness.write_result("scaling" + ("_sam" if sam else ""), data, results)
    return data


def main(argv: list[str] | None = None) -> None:
    harness.ensure_allocator_env()
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--sam", action="store_true", help="SAM ViT-B set-up instead of the default model")
    a = ap.parse_args(argv)
    run(a.size, a.results, a.work, a.scenes, a.sam)


if __name__ == "__main__":
    main(sys.argv[1:])
