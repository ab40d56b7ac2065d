"""GPU throughput of a Sentinel-2-size scene with SAM ViT-B masks (32 x 32 points) and classes.

Run by ``benchmarks/gpu_check.sh`` on a GPU machine (about 10 minutes in all); tested on a CPU at a tiny
size by the test suite (``--size smoke``).

What it does, in one process:

1. builds a random-weight SAM ViT-B checkpoint in Meta's format and a probe bundle on its frozen
   encoder (compute per tile equals ``sam_vit_b_01ec64.pth``'s; masks and classes are meaningless);
2. writes a synthetic 3-band uint16 scene of a Sentinel-2 tile's size (10,980 x 10,980 px at 10 m,
   UTM 32N), structured so that SAM finds masks, in strips (bounded memory);
3. loads the models once, then runs ``predict_scene`` (every output: class map and confidence COGs,
   region GeoPackage and GeoJSON, QGIS project) on a *calibration* cut of the scene (one row of 1024 px
   tiles across its full width), then on the largest cut of whole tile rows that the time budget
   allows, up to the full scene;
4. samples the GPU's utilisation and memory every 0.5 s (``nvidia-smi``) while ``predict_scene`` runs,
   and reports tiles/s, peak GPU memory (PyTorch's and the device's), the GPU busy share, and the
   projected time for the full tile: model loading + the measured seconds per tile x the full scene's
   tiles (or the measured time, when the full scene ran).

Settings: 1024 px tiles, the default halo, ``points_per_side`` 32 (1,024 prompts, 3,072 candidate masks
per tile), predicted-IoU and stability thresholds 0 (random weights give no confident or stable masks;
with SAM's defaults every mask would be dropped and the mask path would cost nothing, so every
candidate goes through upsampling, scoring and NMS: the worst case), ``precision auto`` (bf16 where the
GPU has it), ``batch_size`` 1 (16 tiles per encoder call on a GPU). Target (issue 14): the full tile in
under 3 minutes on one H100/H200-class GPU.

Results: ``benchmarks/results/gpu_throughput.json`` (``_smoke`` for the CPU run).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _harness as harness
from _fixtures import probe_bundle, random_sam_checkpoint, work_dir

S2_SIZE = 10980
TARGET_S = 180.0


def synthetic_scene(path: Path, width: int, height: int, seed: int = 0, strip: int = 1024) -> Path:
    """A 3-band uint16 scene of ``width`` x ``height`` px (10 m, UTM 32N), written in strips.

    Fields of smoothly varying brightness with sharp-edged parcels on a 96 px grid and a little noise,
    like agricultural land at 10 m: the structure SAM's point grid turns into masks.
    """
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    parcel = rng.integers(2000, 9000, size=(3, height // 96 + 2, width // 96 + 2)).astype(np.float32)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint16",
        "crs": "EPSG:32632",
        "transform": from_origin(300000.0, 5000040.0, 10.0, 10.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "nodata": 0,
        "BIGTIFF": "IF_SAFER",
    }
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as ds:
        for r0 in range(0, height, strip):
            h = min(strip, height - r0)
            yy, xx = np.mgrid[r0 : r0 + h, 0:width]
            base = parcel[:, yy // 96, xx // 96]
            wave = 800 * np.sin(xx / 211.0) * np.cos(yy / 173.0)
            noise = rng.normal(0, 60, (3, h, width))
            data = np.clip(base + wave + noise, 1, 65535).astype(np.uint16)
            ds.write(data, window=rasterio.windows.Window(0, r0, width, h))
    tmp.replace(path)
    return path


def cut(scene: Path, path: Path, rows: int) -> Path:
    """A VRT of the first ``rows`` pixel rows of ``scene`` (written by hand: no pixels copied)."""
    from xml.sax.saxutils import escape

    import rasterio
    from rasterio.windows import Window

    with rasterio.open(scene) as src:
        w, h = src.width, min(rows, src.height)
        t = src.window_transform(Window(0, 0, w, h))
        dtype = {"uint16": "UInt16", "uint8": "Byte"}[src.dtypes[0]]
        bands = "".join(
            f'<VRTRasterBand dataType="{dtype}" band="{b}"><NoDataValue>{src.nodata!r}</NoDataValue>'
            f"<SimpleSource><SourceFilename>{escape(str(scene.resolve()))}</SourceFilename>"
            f"<SourceBand>{b}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/></SimpleSource></VRTRasterBand>'
            for b in range(1, src.count + 1)
        )
        gt = ", ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
        xml = (
            f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{escape(src.crs.to_wkt())}</SRS>'
            f"<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>"
        )
    path.write_text(xml, encoding="utf-8")
    return path


class GpuSampler:
    """Samples ``nvidia-smi`` utilisation (%) and memory (MiB) every ``period`` s on a thread."""

    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self.util: list[float] = []
        self.mem_mb: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = shutil.which("nvidia-smi") is not None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    [
                        "nvidia-smi",
                        "--query-gpu=utilization.gpu,memory.used",
                        "--format=csv,noheader,nounits",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=True,
                ).stdout.splitlines()[0]
                u, m = (float(v) for v in out.split(","))
                self.util.append(u)
                self.mem_mb.append(m)
            except (subprocess.SubprocessError, OSError, ValueError, IndexError):
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict[str, float | None]:
        return {
            "gpu_busy_pct": statistics.fmean(self.util) if self.util else None,
            "gpu_memory_used_peak_mb": max(self.mem_mb) if self.mem_mb else None,
            "gpu_samples": len(self.util),
        }


def run_scene(scene: Path, models: Any, cfg: Any, out: Path) -> dict[str, Any]:
    """``predict_scene`` once, with GPU sampling: wall seconds, tiles, stage seconds, GPU figures."""
    import torch

    from geosam.predict import predict_scene

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    with GpuSampler() as gpu:
        t0 = time.perf_counter()
        res = predict_scene(scene, out, models, cfg)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    row: dict[str, Any] = {
        "scene": scene.name,
        "tiles": res.n_tiles,
        "regions": res.n_regions,
        "wall_s": wall,
        "tiles_per_s": res.n_tiles / wall,
        "stages_s": {k: round(v, 2) for k, v in res.seconds.items()},
        **gpu.summary(),
    }
    if torch.cuda.is_available():
        row["torch_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        row["torch_max_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    shutil.rmtree(out, ignore_errors=True)
    return row


def run(
    size: str = "full",
    results: str | None = None,
    work: str | None = None,
    *,
    budget_s: float = 420.0,
    scene_px: int | None = None,
    points: int | None = None,
    batch_size: int = 1,
    precision: str = "auto",
) -> dict[str, Any]:
    """Measure and write ``gpu_throughput.json``."""
    import torch

    from geosam.config import RunConfig
    from geosam.runtime import load_models
    from geosam.tiling import plan_tiles

    t_start = time.perf_counter()
    header = harness.start("gpu_throughput", size)
    wd = work_dir(work)
    smoke = size == "smoke"
    tile = 128 if smoke else 1024
    side = scene_px or (2 * tile + 40 if smoke else S2_SIZE)
    pps = points or (4 if smoke else 32)
    ckpt = random_sam_checkpoint(wd, "tiny", img_size=tile) if smoke else random_sam_checkpoint(wd, "vit_b")
    bundle = probe_bundle(wd, ckpt, tile)
    t0 = time.perf_counter()
    scene = synthetic_scene(wd / f"s2like_{side}.tif", side, side)
    scene_s = time.perf_counter() - t0
    cfg = RunConfig.model_validate(
        {
            "tiling": {"tile_size": tile},
            "segment": {
                "source": "sam",
                "points_per_side": pps,
                "pred_iou_thresh": 0.0,
                "stability_score_thresh": 0.0,
            },
            "precision": precision,
            "batch_size": batch_size,
            "device": "auto",
        }
    )
    t0 = time.perf_counter()
    models = load_models(bundle, ckpt, cfg)
    load_s = time.perf_counter() - t0
    full_tiles = len(plan_tiles(str(scene), cfg.tiling.resolved(tile)).tiles)
    rows_per_strip = tile  # one row of tiles
    out_root = Path(tempfile.mkdtemp(prefix="geosam-gpu-", dir=wd))
    runs = []
    # 1. calibration: one row of tiles across the full width
    strip = cut(scene, wd / f"cut_{side}_{rows_per_strip}.vrt", rows_per_strip)
    calib = run_scene(strip, models, cfg, out_root / "c")
    runs.append({"what": "calibration (one row of tiles)", **calib})
    per_tile = calib["wall_s"] / max(1, calib["tiles"])
    elapsed = time.perf_counter() - t_start
    left = budget_s - elapsed
    # 2. the largest cut of whole tile rows that fits what is left (the full scene if it does)
    tile_rows = math.ceil(side / tile)
    fit_rows = int(left / max(1e-9, per_tile * max(1, calib["tiles"])) * 0.85)
    if fit_rows >= tile_rows:
        main = run_scene(scene, models, cfg, out_root / "f")
        runs.append({"what": "full scene", **main})
    elif fit_rows >= 2:
        rows = fit_rows * tile
        main = run_scene(cut(scene, wd / f"cut_{side}_{rows}.vrt", rows), models, cfg, out_root / "m")
        runs.append({"what": f"{fit_rows} rows of tiles", **main})
    else:
        main = calib
    shutil.rmtree(out_root, ignore_errors=True)
    full_measured = main["tiles"] == full_tiles
    projected = load_s + (main["wall_s"] if full_measured else main["wall_s"] / main["tiles"] * full_tiles)
    device = str(models.device)
    summary = {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "precision": models.precision,
        "tiles_per_call": None,
        "scene_px": side,
        "full_scene_tiles": full_tiles,
        "measured_tiles": main["tiles"],
        "full_scene_measured": full_measured,
        "tiles_per_s": main["tiles_per_s"],
        "model_load_s": load_s,
        "synthetic_scene_write_s": scene_s,
        "projected_full_scene_s": projected,
        "target_s": TARGET_S,
        "target_met": projected < TARGET_S,
        "gpu_busy_pct": main.get("gpu_busy_pct"),
        "gpu_memory_used_peak_mb": main.get("gpu_memory_used_peak_mb"),
        "torch_max_allocated_mb": main.get("torch_max_allocated_mb"),
    }
    from geosam.tile_pipeline import tiles_per_call

    summary["tiles_per_call"] = tiles_per_call(models.device, batch_size, 1)
    harness.table(
        [{k: v for k, v in r.items() if k != "stages_s"} for r in runs],
        ["what", "tiles", "regions", "wall_s", "tiles_per_s", "gpu_busy_pct", "gpu_memory_used_peak_mb"],
        title=f"predict_scene on {device} ({models.precision}), SAM {'tiny' if smoke else 'ViT-B'} "
        f"{pps}x{pps} points + classes",
    )
    print(
        f"projected full {side} x {side} scene ({full_tiles} tiles): {projected:.0f} s "
        f"(target {TARGET_S:.0f} s: {'met' if projected < TARGET_S else 'NOT met'})"
    )
    header["seconds"] = time.perf_counter() - t_start
    harness.finish(header)
    data = {
        **header,
        "settings": {
            "tile_size": tile,
            "points_per_side": pps,
            "pred_iou_thresh": 0.0,
            "stability_score_thresh": 0.0,
            "batch_size": batch_size,
            "checkpoint": f"{ckpt.name} (random weights, Meta's format)",
        },
        "runs": runs,
        "summary": summary,
    }
    harness.write_result("gpu_throughput", data, results)
    return data


def main(argv: list[str] | None = None) -> None:
    harness.ensure_allocator_env()
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=420.0, help="seconds for everything (default 420)")
    ap.add_argument("--scene-px", type=int, default=None, help="scene edge (default 10980; smoke 296)")
    ap.add_argument("--points", type=int, default=None, help="points per side (default 32; smoke 4)")
    ap.add_argument("--batch-size", type=int, default=1, help="RunConfig.batch_size (16 x N inputs per call)")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    a = ap.parse_args(argv)
    data = run(
        a.size,
        a.results,
        a.work,
        budget_s=a.budget_s,
        scene_px=a.scene_px,
        points=a.points,
        batch_size=a.batch_size,
        precision=a.precision,
    )
    print(json.dumps(data["summary"], indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
