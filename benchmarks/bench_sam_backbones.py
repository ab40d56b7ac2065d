"""SAM 1 ViT-B vs SAM 2.1 Hiera-T/S/B+ per tile, end to end, at equal tile size (and peak memory).

Each set-up is a checkpoint in Meta's format with RANDOM weights (architecture-identical to
``sam_vit_b_01ec64.pth`` / ``sam2.1_hiera_{tiny,small,base_plus}.pt``; built with segment-anything's
and sam2's own builders) plus a head-only "probe" bundle on its frozen encoder, so a tile is encoded
once for masks and classes. Per tile, geosam's tile inference runs: one encoder pass, the automatic
mask generator (same settings for all: ``points_per_side`` 8 = 64 prompts, thresholds 0, NMS 0.7)
and region + tile classification. Reading and stitching are the same for every backbone and are not
timed. A last set-up runs the packaged default model's classifier with SAM 2.1 Hiera-T regions (each
encoder once per tile): the CPU recommendation of ``docs/sam_models.md``.

Every set-up runs in its own process (peak RSS per set-up), interleaved over ``--rounds`` rounds
(A B C D A B C D) so that machine load hits all alike; reported are the median seconds per tile, the
stage split, the ratio to ViT-B, and peak RSS. Random weights make masks and classes meaningless but
every FLOP of the encoders is that of the real checkpoints; the mask decoder's cost depends on the
number of prompts, not on the weights. Besides wall time, the process CPU time per tile (all threads)
is recorded: on a machine shared with other jobs it measures the work far more steadily than wall time,
and the ratio of CPU times is the one to trust there.

Usage::

    python benchmarks/bench_sam_backbones.py                # full: 1024 px tiles of the NAIP scene
    python benchmarks/bench_sam_backbones.py --size smoke   # tiny models, 128 px tiles (seconds)
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _harness as harness
from _fixtures import EUROSAT_CLASSES, bench_scenes, sam_config, sam_setup, work_dir

NAME = "sam_backbones"
#: Set-up name -> SAM 2.1 configuration (``None``: SAM 1 ViT-B).
SETUPS_FULL = {
    "sam1_vit_b": None,
    "sam2.1_hiera_tiny": "sam2.1_hiera_tiny",
    "sam2.1_hiera_small": "sam2.1_hiera_small",
    "sam2.1_hiera_base_plus": "sam2.1_hiera_base_plus",
    "default+sam2.1_hiera_tiny": "sam2.1_hiera_tiny",
}
SETUPS_SMOKE = {"sam1_tiny": None, "sam2.1_hiera_tiny": "sam2.1_hiera_tiny"}


def random_sam2_checkpoint(work: Path, variant: str, seed: int = 0) -> Path:
    """A random-weight SAM 2.x checkpoint in Meta's ``{"model": state_dict}`` format (cached in ``work``)."""
    from geosam.testing_models import make_tiny_sam2_checkpoint

    path = work / f"{variant}_random{seed}.pt"
    if not path.is_file():
        make_tiny_sam2_checkpoint(path, variant=variant, seed=seed)
    return path


def sam2_probe_bundle(work: Path, checkpoint: Path) -> Path:
    """A head-only bundle (10 EuroSAT classes, RGB) on ``checkpoint``'s frozen Hiera (cached)."""
    from geosam.testing_models import make_tiny_sam2_bundle

    path = work / f"probe_{checkpoint.stem}"
    if not (path / "model.json").is_file():
        make_tiny_sam2_bundle(path, checkpoint, classes=EUROSAT_CLASSES)
    return path


def prepare(size: str, work: Path) -> dict[str, tuple[Path | None, Path, Any]]:
    """Checkpoints and bundles of every set-up: name -> (bundle or None for the default model, ckpt, cfg)."""
    out: dict[str, tuple[Path | None, Path, Any]] = {}
    setups = SETUPS_SMOKE if size == "smoke" else SETUPS_FULL
    for name, variant in setups.items():
        if variant is None:
            s = sam_setup(size, work)
            out[name] = (s.model, s.sam_checkpoint, s.cfg)  # type: ignore[assignment]
            continue
        ckpt = random_sam2_checkpoint(work, variant)
        cfg = sam_config(size)
        if name.startswith("default+"):
            # the default model's own 64 px chips (no resampling to the scene's GSD): the classifier's
            # cost per tile is then that of a 10 m scene
            out[name] = (None, ckpt, cfg.with_overrides(match_resolution=False))
        else:
            out[name] = (sam2_probe_bundle(work, ckpt), ckpt, cfg)
    return out


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 2**20)


def _peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``; unlike ``ru_maxrss`` it does not carry the parent's over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_setup(
    name: str, bundle: Path | None, ckpt: Path, cfg: Any, scene: Path, bands: list[int] | None, tiles: int
) -> dict[str, Any]:
    """Load one set-up and time its tile inference on the scene's first tiles (one warm-up tile first)."""
    from _fixtures import scene_tiles

    from geosam.encode import plan_encoder
    from geosam.inference import tile_inference
    from geosam.io.read import open_scene
    from geosam.runtime import load_models

    t0 = time.perf_counter()
    models = load_models(bundle, ckpt, cfg)
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mb()
    data = scene_tiles(scene, bands, models, cfg, limit=tiles + 1)
    info = open_scene(str(scene))
    plan = plan_encoder(models, info, match_resolution=cfg.match_resolution, tile_size=cfg.tiling.tile_size)
    infer = tile_inference(models, plan, cfg.segment, batch_size=cfg.batch_size)
    import torch

    per_tile, cpu, stages, regions = [], [], [], []
    with torch.no_grad():
        for i, (spec, d, v) in enumerate(data):
            t, c = time.perf_counter(), time.process_time()
            res = infer(d, v, spec)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            if i == 0 and len(data) > 1:
                first = dt  # warm-up (first-call allocations), reported apart
                continue
            per_tile.append(dt)
            cpu.append(dc)
            stages.append(res.seconds)
            regions.append(int(res.labels.max()))
    peak = _peak_rss_mb()
    return {
        "setup": name,
        "region_source": models.region_source,
        "sam_model": (models.sam_info or {}).get("model", "vit_b" if "vit_b" in name else name),
        "encoder_pass": (models.sam_info or {}).get("encoder_pass", "shared with the classifier"),
        "precision": models.precision,
        "tile_size": plan.tile_size,
        "load_s": load_s,
        "first_tile_s": first if len(data) > 1 else float("nan"),
        "s_per_tile": per_tile,
        "cpu_s_per_tile": cpu,
        "stages_s": {k: statistics.median(s[k] for s in stages) for k in stages[0]} if stages else {},
        "regions_per_tile": regions,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak,
    }


def _child(argv: list[str]) -> int:
    """``--child NAME BUNDLE CKPT CFG_JSON SCENE BANDS TILES``: run one set-up, print its JSON result."""
    from geosam.config import RunConfig

    name, bundle, ckpt, cfg_json, scene, bands, tiles = argv
    cfg = RunConfig.model_validate(json.loads(cfg_json))
    res = run_setup(
        name,
        None if bundle == "-" else Path(bundle),
        Path(ckpt),
        cfg,
        Path(scene),
        None if bands == "-" else [int(b) for b in bands.split(",")],
        int(tiles),
    )
    print("RESULT " + json.dumps(res), flush=True)
    return 0


def run(
    size: str = "full",
    *,
    results: str | None = None,
    work: str | None = None,
    rounds: int | None = None,
    tiles: int | None = None,
    in_process: bool = False,
) -> dict[str, Any]:
    """Benchmark every set-up, interleaved, and write ``benchmarks/results/sam_backbones[_smoke].json``.

    Args:
        size: ``full`` (1024 px tiles of a real scene) or ``smoke`` (tiny models, 128 px).
        results: Results folder.
        work: Scratch folder for checkpoints and bundles (cached between runs).
        rounds: Interleaved rounds (default 2 full, 1 smoke).
        tiles: Timed tiles per set-up and round (after one warm-up tile).
        in_process: Run set-ups in this process (no per-set-up peak RSS; for tests).
    """
    header = harness.start(NAME, size)
    w = work_dir(work)
    setups = prepare(size, w)
    scenes = bench_scenes(size, w)
    scene, bands = scenes[-1]  # full: the NAIP scene when present (many 1024 px tiles), else RGB.byte.tif
    rounds = rounds or (1 if size == "smoke" else 2)
    tiles = tiles or (1 if size == "smoke" else 2)
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        for name, (bundle, ckpt, cfg) in setups.items():
            print(f"round {r + 1}/{rounds}: {name}", flush=True)
            if in_process:
                res = run_setup(name, bundle, ckpt, cfg, scene, bands, tiles)
                res["peak_rss_mb"] = float("nan")  # shared process: not per set-up
            else:
                res = _run_child(name, bundle, ckpt, cfg, scene, bands, tiles)
            res["round"] = r + 1
            runs.append(res)
            print(
                f"  {statistics.median(res['s_per_tile']):.2f} s/tile "
                f"({statistics.median(res['cpu_s_per_tile']):.2f} CPU s), peak {res['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    summary = summarise(runs, list(setups))
    harness.table(
        summary,
        [
            "setup",
            "s_per_tile",
            "cpu_s_per_tile",
            "encode_s",
            "segment_s",
            "classify_s",
            "x_faster_than_vit_b",
            "x_less_cpu_than_vit_b",
            "peak_rss_mb",
        ],
        title=f"per tile at {runs[0]['tile_size']} px ({size}; medians over {rounds} round(s))",
    )
    harness.finish(header)
    data = {
        **header,
        "scene": str(scene),
        "rounds": rounds,
        "tiles_per_round": tiles,
        "segment": setups[next(iter(setups))][2].segment.model_dump(),
        "note": "RANDOM weights (architecture-identical); timings under load are only good for ratios "
        "measured side by side in this run",
        "runs": runs,
        "summary": summary,
    }
    harness.write_result(NAME, data, results)
    return data


def _run_child(
    name: str, bundle: Path | None, ckpt: Path, cfg: Any, scene: Path, bands: list[int] | None, tiles: int
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        str(bundle) if bundle else "-",
        str(ckpt),
        json.dumps(cfg.to_json_dict()),
        str(scene),
        ",".join(map(str, bands)) if bands else "-",
        str(tiles),
    ]
    env = {**os.environ, **harness.MALLOC_ENV, "GEOSAM_NO_REEXEC": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"{name} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def summarise(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Median seconds per tile and stage, ratio to the SAM 1 set-up, and the largest peak RSS per set-up."""
    rows = []
    for name in names:
        mine = [r for r in runs if r["setup"] == name]
        secs = [s for r in mine for s in r["s_per_tile"]]
        cpus = [s for r in mine for s in r["cpu_s_per_tile"]]
        stage = {k: statistics.median(r["stages_s"][k] for r in mine) for k in mine[0]["stages_s"]}
        rows.append(
            {
                "setup": name,
                "sam_model": mine[0]["sam_model"],
                "encoder_pass": mine[0]["encoder_pass"],
                "s_per_tile": statistics.median(secs),
                "cpu_s_per_tile": statistics.median(cpus),
                "encode_s": stage.get("encode", float("nan")),
                "segment_s": stage.get("segment", float("nan")),
                "classify_s": stage.get("classify", float("nan")),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                "n_tiles": len(secs),
            }
        )
    base, base_cpu = rows[0]["s_per_tile"], rows[0]["cpu_s_per_tile"]
    for r in rows:
        r["x_faster_than_vit_b"] = base / r["s_per_tile"]
        r["x_less_cpu_than_vit_b"] = base_cpu / r["cpu_s_per_tile"]
    return rows


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        return _child(args[1:])
    harness.ensure_allocator_env()
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2; smoke 1)")
    ap.add_argument("--tiles", type=int, default=None, help="timed tiles per set-up and round (default 2)")
    ap.add_argument("--in-process", action="store_true", help="no subprocesses (no per-set-up memory)")
    a = ap.parse_args(args)
    run(a.size, results=a.results, work=a.work, rounds=a.rounds, tiles=a.tiles, in_process=a.in_process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
