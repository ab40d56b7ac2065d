"""Peak memory of ``predict_scene`` on scenes of 1x, 4x and 16x the area: it must stay nearly flat.

Scenes are VRT mosaics repeating a real scene (``RGB.byte.tif``, 791 x 718, nodata 0 around a rotated
footprint) 1x1, 2x2 and 4x4 times: real pixels, no copy written. Each run is a fresh subprocess that
loads the models, runs one warm-up tile, records its peak resident set size (``VmHWM``), runs
``predict_scene`` with every output enabled, and records the peak again. Reported: the baseline
(interpreter, libraries, models), the peak, and the growth during the scene; a whole-scene approach
would need at least the scene's float32 pixels (shown for scale).

Set-ups: the default model (felzenszwalb regions, 256 px tiles) on 1x/4x/16x; a dense-head model
(per-pixel probabilities kept in a scratch raster, class map refined by the regions, probability COG
written) on 1x/4x/16x; and SAM ViT-B at 1024 px on 1x/4x (each 1024 px tile costs about as much as
a hundred 256 px ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _harness as harness
from _fixtures import bench_scenes, default_setup, dense_setup, mosaic_vrt, sam_setup, work_dir

CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path

def peak_mb():
    # VmHWM: this process image's own high-water mark. ru_maxrss is not: Linux carries the parent's
    # peak over fork and exec, so a child of a large benchmark process reported the parent's peak
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

scene, model, ckpt, cfg_json = sys.argv[1:5]
regions_mode = sys.argv[6]
import torch
import geosam.predict
from geosam.config import parse_config
from geosam.predict import predict_scene, process_tile
from geosam.runtime import load_models
cfg = parse_config(json.loads(cfg_json))

def collected_finish(plan, models, cfg, stitched, scratch, outputs, *, progress=False, dense=None):
    # the control: every region's polygon kept until the end, then one frame written (before streaming)
    from geosam.io import scene_writer
    from geosam.region_table import region_frame
    scheme = models.bundle.meta.class_scheme
    table = stitched.stitcher.finish(cfg.segment.min_region_area)
    tags = scene_writer.scene_tags(plan.path, models.bundle.meta.name, models.region_source)
    polygons = scene_writer.write_maps(scratch / geosam.predict._PROVISIONAL, plan.tiles, table,
                                       stitched.tile_probs, outputs, scheme, cfg.output, tags,
                                       progress=progress, dense=dense, refine=cfg.dense.refine == "regions",
                                       probabilities=cfg.dense.probabilities)
    regions = region_frame(polygons, table, plan.tiles, scheme, models.region_source)
    scene_writer.write_regions(regions, outputs, scheme, cfg.output)
    return len(regions)

if regions_mode == "collected":
    geosam.predict._finish = collected_finish
models = load_models(model, ckpt or None, cfg)
sys.path.insert(0, sys.argv[5])
from _fixtures import scene_tiles
spec, data, valid = scene_tiles(Path(scene), None, models, cfg, limit=1)[0]
with torch.no_grad():
    process_tile(models, data, valid, spec, cfg)
base = peak_mb()
t0 = time.perf_counter()
with tempfile.TemporaryDirectory(prefix="geosam-bench-mem-") as out:
    res = predict_scene(scene, out, models, cfg)
    sizes = sum(p.stat().st_size for p in Path(out).iterdir() if p.is_file())
gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
print(json.dumps({"baseline_mb": base, "peak_mb": peak_mb(), "seconds": time.perf_counter() - t0,
                  "gpu_peak_mb": gpu,
                  "tiles": res.n_tiles, "skipped": res.n_skipped, "regions": res.n_regions,
                  "output_mb": sizes / 2**20}))
"""


def measure(scene: Path, setup: Any, regions: str = "streamed") -> dict[str, Any]:
    """Run :data:`CHILD` on ``scene`` in a fresh interpreter; returns its JSON line.

    ``regions``: ``streamed`` (geosam: polygons written as regions complete) or ``collected`` (the
    control: every polygon kept in memory and written at the end, as before streaming).
    """
    env = dict(os.environ)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(scene),
            str(setup.model or ""),
            str(setup.sam_checkpoint or ""),
            json.dumps(setup.cfg.to_json_dict()),
            str(Path(__file__).resolve().parent),
            regions,
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run(
    size: str = "full",
    results: str | None = None,
    work: str | None = None,
    with_sam: bool = True,
    with_control: bool = True,
) -> dict[str, Any]:
    import rasterio

    header = harness.start("memory", size)
    wd = work_dir(work)
    base_scene = bench_scenes(size, wd)[0][0]
    factors = (1, 2) if size == "smoke" else (1, 2, 4)
    scenes = {
        f * f: mosaic_vrt(wd / f"mosaic_{base_scene.stem}_{f}x{f}.vrt", base_scene, f, f) for f in factors
    }
    default = default_setup(size, wd)
    # (set-up, factor, region layers): the default model streamed at every size, with the collected
    # control at the smallest and largest; the dense head streamed at every size; SAM ViT-B streamed
    # at 1x and 4x
    plan = [(default, f, "streamed") for f in factors]
    plan += [(dense_setup(size, wd), f, "streamed") for f in factors]  # the dense (per-pixel) head
    if with_control:
        plan += [(default, f, "collected") for f in (factors[0], factors[-1])]
    if with_sam:
        sam = sam_setup(size, wd)
        plan += [(sam, f, "streamed") for f in factors[:2]]
    setups = list({s.name: s for s, _, _ in plan}.values())
    rows = []
    t_start = time.perf_counter()
    for setup, f, mode in plan:
        scene = scenes[f * f]
        with rasterio.open(scene) as ds:
            w, h, count = ds.width, ds.height, ds.count
        m = measure(scene, setup, mode)
        m.update(
            setup=setup.name,
            regions_layers=mode,
            area=f"{f * f}x",
            width=w,
            height=h,
            scene_float32_mb=w * h * count * 4 / 2**20,
            growth_mb=m["peak_mb"] - m["baseline_mb"],
        )
        rows.append(m)
        print(
            f"  {setup.name} {mode} {f * f}x ({w}x{h}): peak {m['peak_mb']:.0f} MB, "
            f"growth {m['growth_mb']:.0f} MB, "
            f"{m['tiles']} tiles, {m['seconds']:.1f} s",
            flush=True,
        )
    for setup in setups:
        for mode in ("streamed", "collected"):
            mine = [r for r in rows if r["setup"] == setup.name and r["regions_layers"] == mode]
            for r in mine:
                r["peak_vs_1x"] = r["peak_mb"] / mine[0]["peak_mb"]
    harness.table(
        rows,
        [
            "setup",
            "regions_layers",
            "area",
            "width",
            "height",
            "tiles",
            "regions",
            "scene_float32_mb",
            "baseline_mb",
            "peak_mb",
            "growth_mb",
            "peak_vs_1x",
            "seconds",
        ],
        title="peak resident memory of predict_scene (fresh process per run)",
    )
    header["seconds"] = time.perf_counter() - t_start
    harness.finish(header)
    data = {
        **header,
        "setups": [s.describe() for s in setups],
        "base_scene": str(base_scene),
        "runs": rows,
    }
    harness.write_result("memory", data, results)
    return data


def main(argv: list[str] | None = None) -> None:
    harness.ensure_allocator_env()
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--no-sam", action="store_true", help="only the default-model set-up")
    ap.add_argument("--no-control", action="store_true", help="skip the collected-polygons control runs")
    a = ap.parse_args(argv)
    run(a.size, a.results, a.work, not a.no_sam, not a.no_control)


if __name__ == "__main__":
    main(sys.argv[1:])
