"""Benchmark harness: machine description, load check, timing, result tables and JSON.

Every benchmark script imports this module (the scripts run with ``benchmarks/`` on ``sys.path``):

* :func:`start` prints the machine, its load (``os.getloadavg()``) and warns when other processes keep
  more than half of the cores busy (numbers measured then are not valid), and returns a header dict
  stored with the results.
* :func:`ensure_allocator_env` re-executes the script once with the glibc allocator variables the
  ``geosam`` CLI sets (see ``docs/performance.md``), so library-level benchmarks measure what the CLI
  runs. ``bench_allocator.py`` controls these variables itself.
* :func:`timed` / :func:`repeat` time callables; :func:`table` prints aligned tables;
  :func:`write_result` writes ``benchmarks/results/<name>.json`` (or the folder given).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: The glibc allocator settings of ``geosam.cli.main.MALLOC_ENV`` (kept in sync by a smoke test).
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "MALLOC_TOP_PAD_": "1073741824",
    "MALLOC_ARENA_MAX": "1",
}


def ensure_allocator_env() -> None:
    """Re-execute this script once with :data:`MALLOC_ENV` set, as the ``geosam`` CLI does.

    Skipped when the variables are already set, when ``GEOSAM_NO_REEXEC`` is set (then the numbers are
    those of glibc's defaults; the result header says which), or off Linux.
    """
    if os.environ.get("GEOSAM_NO_REEXEC") or not sys.platform.startswith("linux"):
        return
    if all(os.environ.get(k) for k in MALLOC_ENV):
        return
    env = {**os.environ, **MALLOC_ENV, "GEOSAM_NO_REEXEC": "1"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def allocator_env_state() -> str:
    """``tuned`` when the process started with :data:`MALLOC_ENV`, ``glibc defaults`` otherwise."""
    if all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return "tuned"
    if any(os.environ.get(k) for k in MALLOC_ENV):
        return "partial: " + ", ".join(f"{k}={os.environ.get(k)}" for k in MALLOC_ENV)
    return "glibc defaults"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")
            return [f for f in wanted if f in flags]
    return []


def machine() -> dict[str, Any]:
    """CPU, cores, memory, accelerator and library versions of this machine."""
    import psutil
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_flags": _cpu_flags(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "allocator_env": allocator_env_state(),
    }
    try:
        import geosam

        info["geosam"] = geosam.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def emulated_bf16(device: Any) -> bool:
    """True on a CPU without native bf16 (no AVX512-BF16/AMX): bf16 matmuls there are emulated.

    On such CPUs (AVX2-only EPYCs, for one) bf16 autocast is 5-25x *slower* than fp32, so the benchmarks
    time bf16 only on the small default model and a few matmuls, and skip bf16 for SAM ViT-B at 1024 px
    (one pass takes minutes). ``precision: auto`` resolves to fp32 there.
    """
    from geosam.runtime import cpu_supports_bf16

    return getattr(device, "type", str(device)) == "cpu" and not cpu_supports_bf16()


BF16_SKIPPED = (
    "skipped: this CPU has no native bf16 (AVX512-BF16/AMX), where bf16 autocast is emulated and far slower"
)


def load() -> dict[str, float]:
    """Load averages and the share of CPU time used system-wide over the last second."""
    import psutil

    l1, l5, l15 = os.getloadavg()
    busy = psutil.cpu_percent(interval=1.0)
    return {"load1": round(l1, 2), "load5": round(l5, 2), "load15": round(l15, 2), "cpu_busy_pct": busy}


def start(name: str, size: str) -> dict[str, Any]:
    """Print and return the header of a benchmark run (machine, load, warning if the machine is busy)."""
    cores = os.cpu_count() or 1
    ld = load()
    m = machine()
    print(f"== {name} ({size}) ==")
    print(
        f"machine: {m['cpu']}, {m['logical_cores']} logical cores, {m['memory_gib']} GiB, "
        f"flags {','.join(m['cpu_flags']) or '-'}; torch {m['torch']} ({m['torch_threads']} threads); "
        f"GPU: {m['cuda'] or 'none'}; allocator: {m['allocator_env']}"
    )
    print(
        f"load at start: {ld['load1']} / {ld['load5']} / {ld['load15']} (1/5/15 min), "
        f"{ld['cpu_busy_pct']}% busy"
    )
    # The CPU share over the last second judges the machine, not the load average: that one still counts
    # the previous benchmark of a ``run_all`` sequence for minutes after it ended.
    valid = ld["cpu_busy_pct"] <= 25.0
    if not valid:
        print(
            f"WARNING: {ld['cpu_busy_pct']}% of {cores} cores busy before the start: other processes are "
            "running; timings from this run are NOT valid",
            file=sys.stderr,
        )
    return {
        "benchmark": name,
        "size": size,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": m,
        "load_at_start": ld,
        "load_ok": valid,
    }


def finish(header: dict[str, Any]) -> None:
    """Record the load averages at the end (they include this benchmark's own work)."""
    l1, l5, l15 = os.getloadavg()
    header["load_at_end"] = {"load1": round(l1, 2), "load5": round(l5, 2), "load15": round(l15, 2)}
    header["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def repeat(fn: Callable[[], Any], n: int, warmup: int = 1) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times untimed, then ``n`` times: median, min and max seconds."""
    for _ in range(warmup):
        fn()
    secs = [timed(fn)[0] for _ in range(max(1, n))]
    return {"median_s": statistics.median(secs), "min_s": min(secs), "max_s": max(secs), "n": len(secs)}


def fmt(v: Any) -> str:
    """Compact cell text for tables."""
    if isinstance(v, float):
        if v != v:  # NaN
            return "nan"
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 1:
            return f"{v:.2f}"
        if a >= 1e-3:
            return f"{v:.4f}"
        return f"{v:.2e}"
    return str(v)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str = "") -> str:
    """Print (and return) ``rows`` as an aligned text table."""
    if not rows:
        return ""
    cols = list(columns or rows[0].keys())
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
    text = "\n".join(lines)
    print(text + "\n")
    return text


def result_name(name: str, size: str) -> str:
    """File stem of a result: smoke runs get ``_smoke`` so they never overwrite full results."""
    return f"{name}_smoke" if size == "smoke" else name


def write_result(name: str, data: dict[str, Any], results_dir: str | os.PathLike[str] | None) -> Path:
    """Write ``<results_dir>/<name>[_smoke].json`` (default ``benchmarks/results``; size from ``data``)."""
    out = Path(results_dir) if results_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result_name(name, data.get('size', 'full'))}.json"
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    print(f"results: {path}")
    return path


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def base_parser(description: str) -> Any:
    """Argument parser shared by the scripts: ``--size smoke|full`` and ``--results DIR``."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--size",
        choices=("smoke", "full"),
        default="full",
        help="smoke: tiny models and scenes (seconds, for tests); full: the measured configuration",
    )
    ap.add_argument(
        "--results", default=None, help="folder for the JSON results (default benchmarks/results)"
    )
    ap.add_argument(
        "--work", default=None, help="scratch folder for models and scenes (default /tmp/geosam-bench)"
    )
    return ap
