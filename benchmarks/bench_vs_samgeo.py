"""geosam against segment-geospatial (samgeo), the tool users would otherwise install, side by side.

Both tools run as whole processes (``python -m geosam run ...`` and a ``SamGeo(...).generate`` script in
segment-geospatial's own virtual environment) on the same scenes, with the same random-weight SAM ViT-B
checkpoint in Meta's format and the same automatic-mask-generator settings: an 8 x 8 point grid,
predicted-IoU and stability thresholds 0 (random weights give no confident masks), box NMS 0.7, fp32 on
the CPU, and the same 1024 px tiles encoded once each (``geosam --tile-size 1024 --halo 0``; samgeo's
``generate(batch=True, batch_sample_size=(1024, 1024), bound=0)``) and the same pixels (``geosam --stretch
dtype``: uint8 values / 255, normalised with SAM's own mean and std by the probe bundle, which is what
samgeo feeds SAM; nodata is the one difference: geosam fills it with the mean, samgeo reads it as 0).
Runs are interleaved, geosam then samgeo, ``--repeats`` times per scene, so both see the same load.

Per run: wall time of the whole process (interpreter start, imports, model loading included), peak
resident memory of the whole process tree (the larger of each process's ``VmHWM`` and the summed RSS
of the tree, polled every 50 ms) and the number of polygons written. Per scene: medians,
the ratios of medians (samgeo / geosam: above 1 means geosam is faster or smaller) and the IoU of the
two tools' mask rasters over the scene's valid pixels (geosam's region polygons rasterized on the
scene grid against samgeo's mask GeoTIFF).

What each tool writes: geosam a class map and a confidence COG, regions as GeoPackage and GeoJSON, a
tiles layer, a QGIS project and a run record (every region classified); samgeo its mask GeoTIFF, which
the script then vectorizes to a GeoPackage with samgeo's ``tiff_to_gpkg``. In batch mode samgeo's mask
is a foreground mask (all masks merged), so its polygons are the connected patches of that union, while
geosam's are the regions themselves.

segment-geospatial 1.4.2 is installed into its own virtual environment (default
``~/.cache/geosam-bench/samgeo-1.4.2``, or ``--samgeo-venv``), never into geosam's: torch and
torchvision at geosam's pinned versions, then ``segment-geospatial==1.4.2``. That install is the only
network use; the runs themselves get proxy variables pointing at a closed local port and
``HF_HUB_OFFLINE=1``, and the samgeo script checks that it used the given checkpoint (``SamGeo`` quietly
downloads ViT-H when a checkpoint path does not exist).

The samgeo process runs with glibc's allocator defaults, as its users run it; geosam's CLI sets its own
allocator variables (``docs/performance.md``), as it does for its users.

Scenes: ``rgb`` = rasterio's ``RGB.byte.tif`` (791 x 718, one tile) and ``mosaic`` = a 2048 x 2048
GeoTIFF cut from a 3 x 3 mosaic of it (4 tiles; memory growth with the scene). ``make bench`` runs the
reduced form (``--scenes rgb``, 3 runs each, about 8 minutes on 2 idle cores; results in
``vs_samgeo_reduced.json``); the full comparison (both scenes, about 30 minutes) is::

    python benchmarks/bench_vs_samgeo.py             # -> benchmarks/results/vs_samgeo.json

``--size smoke`` runs geosam's side only on a tiny model and scene (samgeo cannot load anything smaller
than ViT-B at 1024 px); ``--peer`` forces the samgeo side on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness as harness
from _fixtures import SHARED, mosaic_vrt, probe_bundle, random_sam_checkpoint, synthetic_scene, work_dir

SAMGEO_VERSION = "1.4.2"
#: What the samgeo environment gets: geosam's torch pins first (from the local wheel index), then samgeo.
SAMGEO_REQUIREMENTS = (["torch==2.14.1", "torchvision==0.29.1"], [f"segment-geospatial=={SAMGEO_VERSION}"])
DEFAULT_SAMGEO_VENV = Path(
    os.environ.get("GEOSAM_SAMGEO_VENV", Path.home() / ".cache" / "geosam-bench" / f"samgeo-{SAMGEO_VERSION}")
)

#: The generator settings both tools get (segment-anything's argument names).
GENERATOR = {
    "points_per_side": 8,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 0.7,
}
TILE = 1024
SCENES = ("rgb", "mosaic")

#: Environment variables removed from both tools' processes: the allocator settings (geosam's CLI sets
#: its own; samgeo runs with glibc's defaults), geosam's re-exec guard and this checkout's paths.
_STRIPPED = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
    "GEOSAM_NO_REEXEC",
)
#: No network for the runs: any download attempt fails at once instead of fetching weights.
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "",
    "NO_PROXY": "",
}

#: The samgeo side, run by the samgeo environment's interpreter: argv = checkpoint, scene, out folder,
#: tile size, generator settings as JSON. Prints one JSON line.
PEER_SCRIPT = r"""
import json, os, sys, time
t0 = time.perf_counter()
ckpt, scene, out, tile, gen = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
import samgeo
from samgeo import SamGeo
from samgeo.common import calculate_sample_grid
import rasterio
sam = SamGeo(model_type="vit_b", checkpoint=ckpt, device="cpu", sam_kwargs=gen)
if os.path.realpath(sam.checkpoint) != os.path.realpath(ckpt):
    raise SystemExit(f"samgeo used {sam.checkpoint!r}, not the given checkpoint")
t1 = time.perf_counter()
mask = os.path.join(out, "samgeo_mask.tif")
sam.generate(scene, mask, batch=True, batch_sample_size=(tile, tile), bound=0, erosion_kernel=None,
             foreground=True)
t2 = time.perf_counter()
gpkg = os.path.join(out, "samgeo_mask.gpkg")
sam.tiff_to_gpkg(mask, gpkg)
t3 = time.perf_counter()
with rasterio.open(scene) as ds:
    tiles = len(calculate_sample_grid(ds.height, ds.width, tile, tile, 0))
print(json.dumps({"version": samgeo.__version__, "checkpoint": sam.checkpoint, "mask": mask, "gpkg": gpkg,
                  "tiles": tiles, "load_s": t1 - t0, "generate_s": t2 - t1, "vectorize_s": t3 - t2}))
"""


# -- the samgeo environment -----------------------------------------------------------------------------


def samgeo_python(venv: Path) -> Path:
    """The samgeo environment's interpreter."""
    return venv / "bin" / "python"


def samgeo_version(venv: Path) -> str | None:
    """segment-geospatial's installed version in ``venv`` (``None`` when absent or broken)."""
    py = samgeo_python(venv)
    if not py.is_file():
        return None
    out = subprocess.run(
        [str(py), "-c", "from importlib.metadata import version; print(version('segment-geospatial'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None if out.returncode == 0 else None


def ensure_samgeo(venv: Path, *, install: bool = True) -> Path:
    """segment-geospatial in its own virtual environment ``venv``, created and installed when missing.

    Raises:
        RuntimeError: It is missing and ``install`` is off, or the install failed.
    """
    if samgeo_version(venv) == SAMGEO_VERSION:
        return samgeo_python(venv)
    if not install:
        raise RuntimeError(f"segment-geospatial {SAMGEO_VERSION} is not installed in {venv}")
    print(f"installing segment-geospatial {SAMGEO_VERSION} into {venv} (once; several GB with torch)")
    if not samgeo_python(venv).is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(samgeo_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for group in SAMGEO_REQUIREMENTS:
        subprocess.run([*pip, *group], check=True)
    if samgeo_version(venv) != SAMGEO_VERSION:
        raise RuntimeError(f"segment-geospatial {SAMGEO_VERSION} did not install into {venv}")
    return samgeo_python(venv)


# -- measuring a process --------------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    """A ``VmHWM``/``VmRSS`` line of ``/proc/<pid>/status`` in KiB (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def measure_process(cmd: list[str], env: dict[str, str], cwd: Path, poll_s: float = 0.05) -> dict[str, Any]:
    """Run ``cmd`` to completion: wall seconds, peak RSS of its process tree (MB), exit code, output.

    Polled every ``poll_s`` seconds: each process's own high-water mark (``VmHWM``, exact for one
    process; reset by ``exec``, so the re-exec of the ``geosam`` CLI starts afresh) and the sum of the
    current RSS of the process and its descendants (children running at the same time add up). The
    peak is the larger of the two. The kernel's ``ru_maxrss`` is not used: a child spawned by this
    process inherits this process's resident size at the fork in it.
    """
    import psutil

    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out_f, stderr=err_f)
        ps = psutil.Process(proc.pid)
        polled = 0
        hwm_kb = 0
        while proc.poll() is None:
            total = 0
            try:
                procs = [ps, *ps.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
                hwm_kb = max(hwm_kb, _status_kb(p.pid, "VmHWM"))
            polled = max(polled, total)
            time.sleep(poll_s)
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode(errors="replace")
        stderr = err_f.read().decode(errors="replace")
    hwm_mb = hwm_kb / 1024
    return {
        "wall_s": wall,
        "peak_rss_mb": max(hwm_mb, polled / 2**20),
        "hwm_mb": hwm_mb,
        "polled_tree_mb": polled / 2**20,
        "rc": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
    }


def clean_env(extra: dict[str, str] | None = None, *, keep_pythonpath: bool) -> dict[str, str]:
    """This process's environment minus :data:`_STRIPPED`, offline, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED}
    if not keep_pythonpath:
        env.pop("PYTHONPATH", None)
    env.update(_OFFLINE)
    env.update(extra or {})
    return env


# -- the two tools --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """What both tools run with."""

    checkpoint: Path
    bundle: Path
    tile: int
    generator: dict[str, Any]
    peer_python: Path | None


def geosam_command(tools: Tools, scene: Path, out: Path) -> list[str]:
    """``python -m geosam run`` with the shared settings (the CLI sets its allocator variables itself)."""
    g = tools.generator
    return [
        sys.executable,
        "-m",
        "geosam",
        "-q",
        "run",
        str(scene),
        "--out",
        str(out),
        "--model",
        str(tools.bundle),
        "--sam-checkpoint",
        str(tools.checkpoint),
        "--tile-size",
        str(tools.tile),
        "--halo",
        "0",
        "--points-per-side",
        str(g["points_per_side"]),
        "--pred-iou-thresh",
        str(g["pred_iou_thresh"]),
        "--stability-score-thresh",
        str(g["stability_score_thresh"]),
        "--min-region-area",
        "0",
        "--stretch",
        "dtype",
        "--device",
        "cpu",
        "--precision",
        "fp32",
    ]


def run_geosam(tools: Tools, scene: Path, out: Path) -> dict[str, Any]:
    """One geosam run: measurements, regions written, tiles and the in-process seconds."""
    import pyogrio

    from geosam.outputs import SceneOutputs

    m = measure_process(geosam_command(tools, scene, out), clean_env(keep_pythonpath=True), out)
    if m["rc"] != 0:
        raise RuntimeError(f"geosam failed ({m['rc']}): {m['stderr'][-2000:]}")
    outputs = SceneOutputs.for_scene(str(scene), out)
    record = json.loads(outputs.record.read_text(encoding="utf-8"))
    gpkg = outputs.path("regions_gpkg")
    return {
        **_public(m),
        "polygons": int(pyogrio.read_info(gpkg)["features"]) if gpkg.exists() else 0,
        "tiles": record["tiling"]["tiles"],
        "inner_s": record["timings_s"]["total"],
        "mask": str(gpkg),
    }


def run_samgeo(tools: Tools, scene: Path, out: Path) -> dict[str, Any]:
    """One samgeo run (its own environment, glibc allocator defaults, no network)."""
    import pyogrio

    assert tools.peer_python is not None
    cmd = [
        str(tools.peer_python),
        "-c",
        PEER_SCRIPT,
        str(tools.checkpoint),
        str(scene),
        str(out),
        str(tools.tile),
        json.dumps(tools.generator),
    ]
    m = measure_process(cmd, clean_env(keep_pythonpath=False), out)
    if m["rc"] != 0:
        raise RuntimeError(f"samgeo failed ({m['rc']}): {m['stderr'][-2000:]}")
    info = json.loads(m["stdout"].strip().splitlines()[-1])
    return {
        **_public(m),
        "polygons": int(pyogrio.read_info(info["gpkg"])["features"]),
        "tiles": info["tiles"],
        "inner_s": info["load_s"] + info["generate_s"] + info["vectorize_s"],
        "mask": info["mask"],
        "samgeo_version": info["version"],
    }


def _public(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in ("wall_s", "peak_rss_mb", "hwm_mb", "polled_tree_mb")}


# -- agreement of the masks -----------------------------------------------------------------------------


def mask_iou(scene: Path, geosam_regions: Path, samgeo_mask: Path) -> dict[str, float]:
    """IoU of geosam's regions (rasterized on the scene grid) and samgeo's mask over valid pixels.

    Returns:
        ``iou`` and each tool's share of valid pixels covered by a mask.
    """
    import numpy as np
    import pyogrio
    import rasterio
    from rasterio.features import rasterize

    with rasterio.open(scene) as ds:
        valid = ds.dataset_mask() > 0
        shape, transform = (ds.height, ds.width), ds.transform
    if geosam_regions.exists():
        gdf = pyogrio.read_dataframe(geosam_regions)
        geoms = [g for g in gdf.geometry if g is not None and not g.is_empty]
    else:
        geoms = []
    a = (
        rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform, fill=0, dtype="uint8") > 0
        if geoms
        else np.zeros(shape, bool)
    )
    with rasterio.open(samgeo_mask) as ds:
        b = ds.read(1) > 0
    a &= valid
    b &= valid
    union = int((a | b).sum())
    n = max(1, int(valid.sum()))
    return {
        "iou": float((a & b).sum() / union) if union else 1.0,
        "geosam_cover": float(a.sum() / n),
        "samgeo_cover": float(b.sum() / n),
    }


# -- scenes ---------------------------------------------------------------------------------------------


def mosaic_scene(work: Path, source: Path, size: int = 2048) -> Path:
    """A ``size`` x ``size`` GeoTIFF of real pixels: the top-left of a 3 x 3 mosaic of ``source``."""
    import rasterio
    from rasterio.windows import Window

    path = work / f"mosaic_{source.stem}_{size}.tif"
    if path.is_file():
        return path
    vrt = mosaic_vrt(work / f"mosaic_{source.stem}_3x3.vrt", source, 3, 3)
    with rasterio.open(vrt) as src:
        if src.width < size or src.height < size:
            raise ValueError(f"{source} is too small for a {size} px mosaic")
        win = Window(0, 0, size, size)
        profile = {
            **src.profile,
            "driver": "GTiff",
            "width": size,
            "height": size,
            "transform": src.window_transform(win),
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        tmp = path.with_suffix(".tmp.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(src.read(window=win))
            dst.colorinterp = src.colorinterp
    os.replace(tmp, path)
    return path


def scenes_for(size: str, names: list[str], work: Path) -> dict[str, Path]:
    """Scene name -> path (smoke: a small synthetic scene; no shared data: synthetic stand-ins)."""
    if size == "smoke":
        return {"synthetic": synthetic_scene(work, 300, 200)}
    rgb = SHARED / "scenes" / "rasterio" / "RGB.byte.tif"
    if not rgb.is_file():
        print(f"note: {rgb} is absent; using a synthetic scene of its size")
        rgb = synthetic_scene(work, 791, 718)
    out: dict[str, Path] = {}
    for name in names:
        out[name] = rgb if name == "rgb" else mosaic_scene(work, rgb)
    return out


# -- the benchmark --------------------------------------------------------------------------------------


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def summarize(runs: list[dict[str, Any]], ious: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per scene: medians of both tools and the ratios of medians (samgeo / geosam)."""
    out = []
    for scene in dict.fromkeys(r["scene"] for r in runs):
        g = [r for r in runs if r["scene"] == scene and r["tool"] == "geosam"]
        p = [r for r in runs if r["scene"] == scene and r["tool"] == "samgeo"]
        row: dict[str, Any] = {
            "scene": scene,
            "tiles": g[0]["tiles"],
            "runs_each": len(g),
            "geosam_wall_s": _median(g, "wall_s"),
            "geosam_peak_rss_mb": _median(g, "peak_rss_mb"),
            "geosam_polygons": g[0]["polygons"],
        }
        if p:
            row.update(
                samgeo_wall_s=_median(p, "wall_s"),
                samgeo_peak_rss_mb=_median(p, "peak_rss_mb"),
                samgeo_polygons=p[0]["polygons"],
                wall_ratio=_median(p, "wall_s") / _median(g, "wall_s"),
                rss_ratio=_median(p, "peak_rss_mb") / _median(g, "peak_rss_mb"),
                geosam_ahead_wall=_median(g, "wall_s") < _median(p, "wall_s"),
                geosam_ahead_rss=_median(g, "peak_rss_mb") < _median(p, "peak_rss_mb"),
                **{f"mask_{k}": v for k, v in ious.get(scene, {}).items()},
            )
        out.append(row)
    return out


def run(
    size: str = "full",
    results: str | None = None,
    work: str | None = None,
    *,
    scenes: list[str] | None = None,
    repeats: int = 3,
    peer: bool | None = None,
    samgeo_venv: Path = DEFAULT_SAMGEO_VENV,
    install: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    """Run the comparison and write ``<name>.json`` (default ``vs_samgeo``)."""
    header = harness.start("vs_samgeo", size)
    wd = work_dir(work)
    with_peer = (size != "smoke") if peer is None else peer
    peer_python = ensure_samgeo(samgeo_venv, install=install) if with_peer else None
    if size == "smoke":
        ckpt = random_sam_checkpoint(wd, "tiny", img_size=128)
        tools = Tools(ckpt, probe_bundle(wd, ckpt, 128), 128, {**GENERATOR, "points_per_side": 3}, None)
    else:
        ckpt = random_sam_checkpoint(wd, "vit_b")
        tools = Tools(ckpt, probe_bundle(wd, ckpt, TILE), TILE, dict(GENERATOR), peer_python)
    scene_paths = scenes_for(size, list(scenes or SCENES), wd)
    runs: list[dict[str, Any]] = []
    ious: dict[str, dict[str, float]] = {}
    t_start = time.perf_counter()
    keep = Path(tempfile.mkdtemp(prefix="geosam-vs-samgeo-", dir=wd))
    try:
        for scene_name, scene in scene_paths.items():
            for i in range(max(1, repeats)):
                order = [("geosam", run_geosam)]
                if tools.peer_python is not None:
                    order.append(("samgeo", run_samgeo))
                for tool, fn in order:  # interleaved: A B A B ...
                    out = keep / f"{scene_name}_{tool}_{i}"
                    out.mkdir()
                    r = {"scene": scene_name, "tool": tool, "run": i, **fn(tools, scene, out)}
                    runs.append(r)
                    print(
                        f"  {scene_name} {tool} #{i}: {r['wall_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB, "
                        f"{r['polygons']} polygons, {r['tiles']} tiles",
                        flush=True,
                    )
            if tools.peer_python is not None:
                g0 = next(r for r in runs if r["scene"] == scene_name and r["tool"] == "geosam")
                p0 = next(r for r in runs if r["scene"] == scene_name and r["tool"] == "samgeo")
                ious[scene_name] = mask_iou(scene, Path(g0["mask"]), Path(p0["mask"]))
    finally:
        shutil.rmtree(keep, ignore_errors=True)
    for r in runs:
        r.pop("mask", None)
    summary = summarize(runs, ious)
    harness.table(
        runs,
        ["scene", "tool", "run", "wall_s", "peak_rss_mb", "polygons", "tiles", "inner_s"],
        title="runs (interleaved; whole processes)",
    )
    harness.table(
        summary,
        [
            c
            for c in (
                "scene",
                "tiles",
                "runs_each",
                "geosam_wall_s",
                "samgeo_wall_s",
                "wall_ratio",
                "geosam_peak_rss_mb",
                "samgeo_peak_rss_mb",
                "rss_ratio",
                "geosam_polygons",
                "samgeo_polygons",
                "mask_iou",
            )
            if c in summary[0]
        ],
        title="medians; ratios = samgeo / geosam (above 1: geosam faster / smaller)",
    )
    header["seconds"] = time.perf_counter() - t_start
    harness.finish(header)
    data = {
        **header,
        "samgeo_version": SAMGEO_VERSION if tools.peer_python else None,
        "checkpoint": f"{ckpt.name} (random weights, Meta's format)",
        "generator": tools.generator,
        "tile_size": tools.tile,
        "geosam_command": " ".join(geosam_command(tools, Path("SCENE"), Path("OUT"))[1:]),
        "samgeo_call": (
            f"SamGeo(model_type='vit_b', checkpoint=..., device='cpu', sam_kwargs={tools.generator})"
            f".generate(scene, mask, batch=True, batch_sample_size=({tools.tile}, {tools.tile}), bound=0, "
            "erosion_kernel=None); tiff_to_gpkg(mask, gpkg)"
        ),
        "allocator": {"geosam": "the CLI's own (MALLOC_* set at start)", "samgeo": "glibc defaults"},
        "caveats": [
            "random weights: masks and classes are meaningless; compute per pass equals the real one's",
            "permissive thresholds (predicted IoU and stability 0), an 8 x 8 point grid instead of 32 x 32",
            "geosam also classifies every region and writes COGs, GeoJSON, a tiles layer and a QGIS project",
        ],
        "runs": runs,
        "summary": summary,
    }
    harness.write_result(name or "vs_samgeo", data, results)
    return data


def main(argv: list[str] | None = None) -> None:
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--scenes", nargs="+", choices=SCENES, default=list(SCENES))
    ap.add_argument("--repeats", type=int, default=3, help="runs of each tool per scene (interleaved)")
    ap.add_argument(
        "--reduced", action="store_true", help="make bench's form: --scenes rgb, vs_samgeo_reduced.json"
    )
    ap.add_argument("--peer", action=argparse_bool(), default=None, help="run samgeo too (default: full)")
    ap.add_argument("--samgeo-venv", type=Path, default=DEFAULT_SAMGEO_VENV)
    ap.add_argument("--no-install", action="store_true", help="fail instead of installing samgeo")
    ap.add_argument("--name", default=None, help="result file stem (default vs_samgeo[_reduced])")
    a = ap.parse_args(argv)
    scenes = ["rgb"] if a.reduced else a.scenes
    run(
        a.size,
        a.results,
        a.work,
        scenes=scenes,
        repeats=a.repeats,
        peer=a.peer,
        samgeo_venv=a.samgeo_venv,
        install=not a.no_install,
        name=a.name or ("vs_samgeo_reduced" if a.reduced else "vs_samgeo"),
    )


def argparse_bool() -> Any:
    import argparse

    return argparse.BooleanOptionalAction


if __name__ == "__main__":
    main(sys.argv[1:])
