"""Run every benchmark (``make bench``), each in its own process, and print the headline numbers.

Usage::

    python benchmarks/run_all.py                 # full run (~30 min on 2 idle cores)
    python benchmarks/run_all.py --size smoke    # tiny models, a minute or two
    python benchmarks/run_all.py --only flops precision

Measure on an otherwise idle machine: every script prints the load averages at its start and warns
when other processes keep more than half of the cores busy (those numbers are not valid). Results go
to ``benchmarks/results/<name>.json`` (``--results DIR`` elsewhere); ``docs/performance.md`` explains them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _harness as harness  # noqa: E402

#: Script, extra arguments of the full run.
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "flops": ("bench_flops.py", []),
    "precision": ("bench_precision.py", []),
    "train_precision": ("bench_train_precision.py", []),
    "single_vs_two_pass": ("bench_single_vs_two_pass.py", []),
    "sam_backbones": ("bench_sam_backbones.py", []),
    "sam_mask_stage": ("bench_sam_mask_stage.py", []),
    "allocator": ("bench_allocator.py", []),
    "memory": ("bench_memory.py", []),
    "scaling": ("bench_scaling.py", []),
    "calibration": ("bench_calibration.py", []),
    "vs_samgeo": ("bench_vs_samgeo.py", ["--reduced"]),
    "vs_random_forest": ("bench_vs_random_forest.py", []),
}


def headline(name: str, data: dict[str, Any]) -> list[str]:
    """A few lines of the most important numbers of one result file."""
    out = []
    if name == "single_vs_two_pass":
        for s in data["summary"]:
            out.append(
                f"{s['precision']} {s['method']}: {s['s_per_tile']:.2f} s/tile end to end, "
                f"x{s['x_slower_end_to_end']:.2f} vs one pass"
            )
    elif name == "sam_backbones":
        for s in data["summary"]:
            out.append(
                f"{s['setup']}: {s['s_per_tile']:.2f} s/tile, x{s['x_faster_than_vit_b']:.2f} vs ViT-B "
                f"(CPU time x{s['x_less_cpu_than_vit_b']:.2f}), peak {s['peak_rss_mb']:.0f} MB"
            )
    elif name == "sam_mask_stage":
        for r in data["rows"]:
            extra = f", x{r['tile_speedup_vs_vit_b']:.2f} vs ViT-B" if "tile_speedup_vs_vit_b" in r else ""
            out.append(
                f"{r['setup']} {r['precision']}: encoder {r['encoder_s']:.2f} s, mask decoder "
                f"{r['decoder_s']:.2f} s of {r['tile_s']:.2f} s per tile{extra}"
            )
    elif name == "precision":
        rec = data["recommendation"]
        out.append(f"auto -> {rec['auto_resolves_to']}; s per 1024 px tile: {rec['seconds_per_1024_tile']}")
    elif name == "train_precision":
        for s in data["summary"]:
            out.append(
                f"training, {s['backbone']} at {s['input_size']} px: fp32 {s['fp32_s_per_step']:.2f} s/step, "
                f"bf16 {s['bf16_s_per_step']:.2f} s/step, x{s['x_faster_bf16']:.2f}"
            )
    elif name == "flops":
        for e in data["encoder"]:
            out.append(
                f"encoder {e['precision']}: {e['gflop_per_s']:.0f} GFLOP/s = "
                f"{e['pct_of_matmul_rate']:.0f}% of matmul"
            )
    elif name == "allocator":
        for s in data["summary"]:
            out.append(
                f"{s['where']} {s['precision']}: defaults {s['defaults_s']:.2f} s, tuned {s['tuned_s']:.2f} s"
            )
    elif name == "memory":
        for r in data["runs"]:
            out.append(
                f"{r['setup']} {r.get('regions_layers', '')} {r['area']}: peak {r['peak_mb']:.0f} MB "
                f"(x{r.get('peak_vs_1x', 1.0):.2f} vs 1x, growth {r['growth_mb']:.0f} MB)"
            )
    elif name == "calibration":
        c, d = data["calibration"], data["domain"]
        ece = f"ECE {c['ece_before']:.4f} -> {c['ece_after_crossfitted']:.4f}"
        out.append(f"{ece} (cross-fitted; T {c['temperature_all']:.3f})")
        if d["auroc_target_pooled"] is not None:
            out.append(f"out-of-domain AUROC (NAIP + Raleigh) {d['auroc_target_pooled']:.3f}")
    elif name.startswith("vs_samgeo"):
        for r in data["summary"]:
            if "wall_ratio" in r:
                out.append(
                    f"{r['scene']}: geosam {r['geosam_wall_s']:.0f} s / {r['geosam_peak_rss_mb']:.0f} MB, "
                    f"samgeo {r['samgeo_wall_s']:.0f} s / {r['samgeo_peak_rss_mb']:.0f} MB: "
                    f"x{r['wall_ratio']:.2f} time, x{r['rss_ratio']:.2f} memory, mask IoU {r['mask_iou']:.2f}"
                )
            else:
                out.append(f"{r['scene']}: geosam {r['geosam_wall_s']:.0f} s (samgeo not run)")
    elif name == "vs_random_forest":
        for r in data["summary"]:
            out.append(
                f"{r['method']} (seed {r['seed']}, {data['k']} folds, {r['scored_pixels']} px): "
                f"OA {r['overall_accuracy']:.3f}, kappa {r['kappa']:.3f}, macro-F1 {r['macro_f1']:.3f}"
            )
    elif name.startswith("scaling"):
        for r in data["runs"]:
            out.append(f"workers={r['workers']}: {r['scenes_per_min']:.2f} scenes/min")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("smoke", "full"), default="full")
    ap.add_argument("--results", default=None)
    ap.add_argument("--work", default=None)
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None)
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    ld = harness.load()
    print(
        f"before the benchmarks: load {ld['load1']} / {ld['load5']} / {ld['load15']} on {cores} cores, "
        f"{ld['cpu_busy_pct']}% busy"
    )
    if ld["cpu_busy_pct"] > 25.0:
        print("WARNING: the machine is busy; numbers measured now are not valid", file=sys.stderr)
    results = Path(a.results) if a.results else harness.RESULTS
    failed = []
    t0 = time.perf_counter()
    for name in a.only or list(BENCHMARKS):
        script, extra = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / script), "--size", a.size, "--results", str(results)]
        if a.work:
            cmd += ["--work", a.work]
        if a.size == "full":
            cmd += extra
        t = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"[{name}: exit {rc}, {time.perf_counter() - t:.0f} s]\n", flush=True)
        if rc:
            failed.append(name)
    print(f"== headline numbers ({a.size}, {time.perf_counter() - t0:.0f} s in all) ==")
    for name in a.only or list(BENCHMARKS):
        stem = "vs_samgeo_reduced" if name == "vs_samgeo" and a.size == "full" else name
        path = results / f"{harness.result_name(stem, a.size)}.json"
        if path.is_file():
            for line in headline(name, json.loads(path.read_text(encoding="utf-8"))):
                print(f"{name}: {line}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
