"""The SAM encoder with glibc's default allocator settings vs the ones the ``geosam`` CLI sets.

glibc serves allocations above ``M_MMAP_THRESHOLD`` (128 KiB, adapting up to 32 MiB) with fresh
``mmap`` calls and gives freed heap memory back above ``M_TRIM_THRESHOLD``. The encoder allocates and
frees attention maps and MLP activations of tens to hundreds of MB per block, so with the defaults
every block pays for new pages (page faults, zeroing) again. ``MALLOC_MMAP_THRESHOLD_=4294967296
MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=1073741824`` keep those pages in the heap for reuse,
and ``MALLOC_ARENA_MAX=1`` makes threads other than the main one (a dask worker runs tasks in a thread)
use that heap too: secondary arenas cannot hold a buffer over 64 MB, so there every attention map would
be a fresh ``mmap`` whatever the thresholds.
The variables are read when a process starts, so each case runs in its own subprocess, one after the
other (never at the same time), with identical code:

* ``process``: a plain Python process running the encoder (what a library user gets);
* ``dask worker``: a task on a worker of ``geosam.batch.dask_backend.connect`` (a ``LocalCluster``, as
  ``geosam batch`` starts) with torch on all cores; dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``
  for its workers (``distributed.nanny.pre-spawn-environ``) unless the variable is already set in the
  environment of the process that starts the cluster.

Reported per case: seconds per encoder pass (median), peak resident memory, and the allocator
variables the measuring process actually saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import _harness as harness

CHILD = r"""
import json, os, resource, sys, time
preset, size, precision, where = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[5]
reps = int(sys.argv[4])
KEYS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")

def encoder_seconds(preset, size, precision, reps):
    import statistics, torch
    from geosam.encode import autocast_context
    from geosam.models.sam import build_encoder
    from geosam.models.sam_config import SamConfig
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    enc = build_encoder(SamConfig.preset(preset, img_size=size)).eval()
    x = torch.rand(1, 3, size, size)
    secs = []
    for i in range(reps + 1):  # the first pass warms up (oneDNN kernels, first page faults)
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast_context(x.device, precision):
            enc(x)
        if i:
            secs.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(secs), "min_s": min(secs), "max_s": max(secs),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "env": {k: os.environ.get(k) for k in KEYS}, "torch_threads": torch.get_num_threads()}

if where == "process":
    out = encoder_seconds(preset, size, precision, reps)
else:
    from geosam.batch import ExecutorSpec
    from geosam.batch.dask_backend import connect
    with connect(ExecutorSpec(workers=1, memory_limit=None)) as client:
        out = client.submit(encoder_seconds, preset, size, precision, reps, pure=False).result()
print(json.dumps(out))
"""


def child_env(tuned: bool) -> dict[str, str]:
    """This environment with the allocator variables set (``tuned``) or removed."""
    env = {k: v for k, v in os.environ.items() if k not in harness.MALLOC_ENV}
    env["GEOSAM_NO_REEXEC"] = "1"
    if tuned:
        env.update(harness.MALLOC_ENV)
    return env


def measure(tuned: bool, where: str, preset: str, size: int, precision: str, reps: int) -> dict[str, Any]:
    """One case in a fresh subprocess."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, preset, str(size), precision, str(reps), where],
        check=True,
        capture_output=True,
        text=True,
        env=child_env(tuned),
    )
    res = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    res.update(
        allocator="tuned" if tuned else "glibc defaults",
        where=where,
        precision=precision,
        subprocess_s=time.perf_counter() - t0,
    )
    return res


def run(
    size: str = "full",
    results: str | None = None,
    work: str | None = None,
    dask: bool = True,
    rounds: int = 1,
) -> dict[str, Any]:
    header = harness.start("allocator", size)
    import torch

    from geosam.runtime import resolve_precision

    auto = resolve_precision("auto", torch.device("cpu"))
    precisions = sorted({"fp32", auto})
    preset, img, reps = ("tiny", 256, 2) if size == "smoke" else ("vit_b", 1024, 3)
    cases = [
        (where, prec)
        for where in (("process", "dask worker") if dask else ("process",))
        for prec in precisions
    ]
    if size == "smoke":
        cases = cases[:1] + [c for c in cases if c[0] == "dask worker"][:1]
    rows = []
    for _ in range(rounds):
        for where, prec in cases:
            for tuned in (False, True):  # side by side: defaults then tuned, same code, same machine
                r = measure(tuned, where, preset, img, prec, reps)
                rows.append(r)
                print(
                    f"  {where} {prec} {r['allocator']}: {r['median_s']:.2f} s/pass, "
                    f"peak {r['peak_rss_mb']:.0f} MB "
                    f"(env {r['env']})",
                    flush=True,
                )
    summary = []
    for where, prec in cases:
        d = [
            r for r in rows if (r["where"], r["precision"], r["allocator"]) == (where, prec, "glibc defaults")
        ]
        t = [r for r in rows if (r["where"], r["precision"], r["allocator"]) == (where, prec, "tuned")]
        ds, ts = min(r["median_s"] for r in d), min(r["median_s"] for r in t)
        summary.append(
            {
                "where": where,
                "precision": prec,
                "defaults_s": ds,
                "tuned_s": ts,
                "speedup": ds / ts,
                "defaults_peak_mb": max(r["peak_rss_mb"] for r in d),
                "tuned_peak_mb": max(r["peak_rss_mb"] for r in t),
                "defaults_env_trim": d[0]["env"]["MALLOC_TRIM_THRESHOLD_"],
            }
        )
    harness.table(
        summary, title=f"{preset} encoder at {img} px, seconds per pass (median of {reps}) and peak RSS"
    )
    harness.finish(header)
    data = {**header, "encoder": f"{preset} at {img} px (random weights)", "summary": summary, "runs": rows}
    harness.write_result("allocator", data, results)
    return data


def main(argv: list[str] | None = None) -> None:
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--no-dask", action="store_true", help="skip the dask-worker cases")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole comparison")
    a = ap.parse_args(argv)
    run(a.size, a.results, a.work, not a.no_dask, a.rounds)


if __name__ == "__main__":
    main(sys.argv[1:])
