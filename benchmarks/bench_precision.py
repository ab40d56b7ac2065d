"""fp32 vs bf16 (and fp16 on GPUs) autocast: encoder speed per batch size, and how much the classes change.

Speed: the encoder alone (``LandCoverModel.features``: normalisation + SAM image encoder), per image,
for the SAM ViT-B set-up at 1024 px (batch = tiles per call) and for the default model (64 px chips;
batch = chips per call, ``chip_batch = 16 x batch_size`` in ``process_tile``).

Accuracy: on real tiles, the same regions (made once from the fp32 embedding) are classified from the
fp32 and from the reduced-precision features; reported are the max / mean absolute differences of the
tile and region probabilities and the share of tiles and regions whose top class agrees. For the SAM
set-up the regions SAM makes from each embedding are compared too (count, pixel agreement). With the
trained default model these differences are those users see; with random weights (the ViT-B set-up)
they only show the numeric error of the architecture.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _harness as harness
import numpy as np
import torch
from _fixtures import bench_scenes, default_setup, sam_setup, scene_tiles, work_dir


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (timings on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encoder_speed(models: Any, precisions: list[str], batches: list[int], n: int) -> list[dict[str, Any]]:
    """Seconds per image of ``model.features`` for each precision and batch size."""
    from geosam.encode import autocast_context

    model, dev = models.bundle.model, models.device
    size, bands = models.input_size, len(models.bundle.meta.bands)
    rows = []
    g = torch.Generator().manual_seed(0)
    for prec in precisions:
        for b in batches:
            x = torch.rand((b, bands, size, size), generator=g).to(dev)

            def call(x: torch.Tensor = x, prec: str = prec) -> None:
                with torch.inference_mode(), autocast_context(dev, prec):
                    model.features(x)
                sync(dev)

            t = harness.repeat(call, n, warmup=1)
            rows.append(
                {
                    "precision": prec,
                    "batch": b,
                    "input": f"{b}x{bands}x{size}x{size}",
                    "s_per_call": t["median_s"],
                    "s_per_image": t["median_s"] / b,
                    "min_s_per_image": t["min_s"] / b,
                }
            )
            print(f"  {prec} batch {b}: {t['median_s'] / b:.4f} s/image", flush=True)
    fp32 = {r["batch"]: r["s_per_image"] for r in rows if r["precision"] == "fp32"}
    best32 = min(fp32.values()) if fp32 else float("nan")
    for r in rows:
        r["speedup_vs_fp32_same_batch"] = fp32.get(r["batch"], float("nan")) / r["s_per_image"]
        r["speedup_vs_best_fp32"] = best32 / r["s_per_image"]
    return rows


def tile_speed(
    models: Any, tiles: list[Any], precisions: list[str], batch_sizes: list[int], cfg: Any
) -> list[dict[str, Any]]:
    """Seconds per tile of geosam's encode stage (chip grid, ``chip_batch = 16 x batch_size``)."""
    from geosam.encode import EncoderPlan, encode_tiles, fill_invalid

    model, dev = models.bundle.model, models.device
    mean = model.mean.detach().cpu().numpy().reshape(-1)
    grid = models.input_size // int(model.encoder.patch_embed.proj.kernel_size[0])
    plan = EncoderPlan(models.tile_size, models.chip_size, models.input_size, grid)
    xs = [torch.from_numpy(fill_invalid(d, v, mean))[None].to(dev) for _, d, v in tiles]
    rows = []
    for prec in precisions:
        for bs in batch_sizes:

            def call(prec: str = prec, bs: int = bs) -> None:
                for x in xs:
                    encode_tiles(model, x, plan, precision=prec, chip_batch=16 * bs)
                sync(dev)

            t = harness.repeat(call, 3, warmup=1)
            rows.append(
                {
                    "precision": prec,
                    "batch_size": bs,
                    "chip_batch": 16 * bs,
                    "chips_per_tile": plan.chips_per_tile,
                    "s_per_tile": t["median_s"] / len(xs),
                }
            )
            print(f"  {prec} batch_size {bs}: {t['median_s'] / len(xs):.4f} s/tile", flush=True)
    base = {r["batch_size"]: r["s_per_tile"] for r in rows if r["precision"] == "fp32"}
    for r in rows:
        r["speedup_vs_fp32"] = base.get(r["batch_size"], float("nan")) / r["s_per_tile"]
    return rows


def prob_diffs(
    models: Any, tiles: list[Any], precision: str, cfg: Any, compare_sam_regions: bool
) -> dict[str, Any]:
    """Class-probability differences between fp32 and ``precision`` features on the same regions."""
    from geosam.classify import classify_tile
    from geosam.encode import EncoderPlan, encode_tiles, fill_invalid
    from geosam.segment import Regions, felzenszwalb_regions, sam_regions

    model, dev = models.bundle.model, models.device
    mean = model.mean.detach().cpu().numpy().reshape(-1)
    grid = models.input_size // int(model.encoder.patch_embed.proj.kernel_size[0])
    plan = EncoderPlan(models.tile_size, models.chip_size, models.input_size, grid)
    tile_d, reg_d, tile_agree, reg_agree, rel_err = [], [], [], [], []
    sam_counts, sam_pixel_agree = [], []
    for _, data, valid in tiles:
        x = torch.from_numpy(fill_invalid(data, valid, mean))[None].to(dev)
        f32 = encode_tiles(model, x, plan, precision="fp32")
        flo = encode_tiles(model, x, plan, precision=precision)
        rel_err.append(float((flo - f32).norm() / f32.norm().clamp_min(1e-12)))
        if models.region_source == "sam":
            regions = sam_regions(models.sam, f32, valid, cfg.segment)
            if compare_sam_regions:
                other = sam_regions(models.sam, flo, valid, cfg.segment)
                sam_counts.append((regions.count, other.count))
                sam_pixel_agree.append(float(((regions.labels > 0) == (other.labels > 0))[valid].mean()))
        elif models.region_source == "felzenszwalb":
            regions = felzenszwalb_regions(data, valid, cfg.segment)
        else:
            regions = Regions.empty(valid.shape)
        a = classify_tile(model, f32[0], valid, regions.labels, regions.count)
        b = classify_tile(model, flo[0], valid, regions.labels, regions.count)
        tile_d.append(np.abs(a.tile - b.tile))
        tile_agree.append(int(np.argmax(a.tile) == np.argmax(b.tile)))
        if regions.count:
            reg_d.append(np.abs(a.regions - b.regions).ravel())
            reg_agree.extend((np.argmax(a.regions, 1) == np.argmax(b.regions, 1)).astype(int).tolist())
    td = np.concatenate(tile_d) if tile_d else np.zeros(0)
    rd = np.concatenate(reg_d) if reg_d else np.zeros(0)
    out: dict[str, Any] = {
        "precision": precision,
        "tiles": len(tiles),
        "regions": len(reg_agree),
        "embedding_rel_err": float(np.mean(rel_err)) if rel_err else float("nan"),
        "tile_prob_max_abs_diff": float(td.max()) if td.size else float("nan"),
        "tile_prob_mean_abs_diff": float(td.mean()) if td.size else float("nan"),
        "tile_top1_agreement": float(np.mean(tile_agree)) if tile_agree else float("nan"),
        "region_prob_max_abs_diff": float(rd.max()) if rd.size else float("nan"),
        "region_prob_mean_abs_diff": float(rd.mean()) if rd.size else float("nan"),
        "region_top1_agreement": float(np.mean(reg_agree)) if reg_agree else float("nan"),
    }
    if sam_counts:
        out["sam_regions_fp32"] = sum(c[0] for c in sam_counts)
        out["sam_regions_low"] = sum(c[1] for c in sam_counts)
        out["sam_region_pixel_agreement"] = float(np.mean(sam_pixel_agree))
    return out


def run(
    size: str = "full",
    results: str | None = None,
    work: str | None = None,
    device: str = "auto",
    max_tiles: int = 4,
) -> dict[str, Any]:
    header = harness.start("precision", size)
    wd = work_dir(work)
    from geosam.runtime import cpu_supports_bf16, resolve_device, resolve_precision

    dev = resolve_device(device)
    auto = resolve_precision("auto", dev)
    precisions = ["fp32", "bf16"] + (["fp16"] if dev.type == "cuda" else [])
    print(f"device {dev}; precision 'auto' resolves to {auto} (native CPU bf16: {cpu_supports_bf16()})")
    scenes = bench_scenes(size, wd)
    data: dict[str, Any] = {
        **header,
        "device": str(dev),
        "auto_precision": auto,
        "cpu_native_bf16": cpu_supports_bf16(),
    }
    t_start = time.perf_counter()

    # -- SAM ViT-B at 1024 --------------------------------------------------------------------------
    sam = sam_setup(size, wd)
    models = sam.load(device=device)
    sam_batches = [1, 2] if dev.type == "cpu" else [1, 2, 4, 8]
    n = 1 if size == "smoke" else 2
    sam_precisions = ["fp32"] if harness.emulated_bf16(dev) and size != "smoke" else precisions
    if sam_precisions != precisions:
        data["sam_bf16"] = harness.BF16_SKIPPED
        print(f"SAM encoder bf16: {harness.BF16_SKIPPED}")
    print("SAM encoder speed:")
    data["sam_encoder_speed"] = encoder_speed(models, sam_precisions, sam_batches, n)
    harness.table(
        data["sam_encoder_speed"],
        ["precision", "batch", "input", "s_per_image", "min_s_per_image", "speedup_vs_fp32_same_batch"],
        title=f"SAM image encoder ({sam.name}), seconds per image",
    )
    tiles = [t for s, b in scenes for t in scene_tiles(s, b, models, sam.cfg, limit=2)][:max_tiles]
    data["sam_prob_diffs"] = [prob_diffs(models, tiles, p, sam.cfg, True) for p in sam_precisions[1:]]
    if data["sam_prob_diffs"]:
        harness.table(
            data["sam_prob_diffs"],
            title=f"{sam.name}: fp32 vs reduced precision, same regions (random weights)",
        )
    data["sam_setup"] = sam.describe()
    del models

    # -- default model (chips) ------------------------------------------------------------------------
    dm = default_setup(size, wd)
    models = dm.load(device=device)
    tiles = [t for s, b in scenes for t in scene_tiles(s, b, models, dm.cfg, limit=8)][: max(8, max_tiles)]
    print("default model encode stage:")
    data["default_tile_speed"] = tile_speed(models, tiles, precisions, [1, 4, 16], dm.cfg)
    harness.table(
        data["default_tile_speed"],
        ["precision", "batch_size", "chip_batch", "chips_per_tile", "s_per_tile", "speedup_vs_fp32"],
        title=f"default model ({dm.name}) encode stage, seconds per {models.tile_size} px tile",
    )
    data["default_prob_diffs"] = [prob_diffs(models, tiles, p, dm.cfg, False) for p in precisions[1:]]
    harness.table(data["default_prob_diffs"], title=f"{dm.name}: fp32 vs reduced precision, same regions")
    data["default_setup"] = dm.describe()

    fast = {r["precision"]: r["s_per_image"] for r in data["sam_encoder_speed"] if r["batch"] == 1}
    chips: dict[str, float] = {}
    for r in data["default_tile_speed"]:
        chips[r["precision"]] = min(chips.get(r["precision"], float("inf")), r["s_per_tile"])
    best = min(chips, key=lambda k: chips[k])
    data["recommendation"] = {
        "auto_resolves_to": auto,
        "fastest_default_model": best,
        "fastest_sam_batch1": min(fast, key=lambda k: fast[k]),
        "auto_is_fastest": best == auto,
        "seconds_per_1024_tile": fast,
        "best_seconds_per_default_tile": chips,
    }
    print(
        f"precision 'auto' -> {auto}; fastest for the default model here: {best} "
        f"({', '.join(f'{k} {v:.3f} s/tile' for k, v in chips.items())}); "
        f"SAM encoder s per 1024 px tile: {', '.join(f'{k} {v:.2f}' for k, v in fast.items())}"
    )
    data["seconds"] = time.perf_counter() - t_start
    harness.finish(data)
    harness.write_result("precision", data, results)
    return data


def main(argv: list[str] | None = None) -> None:
    harness.ensure_allocator_env()
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-tiles", type=int, default=4)
    a = ap.parse_args(argv)
    run(a.size, a.results, a.work, a.device, a.max_tiles)


if __name__ == "__main__":
    main(sys.argv[1:])
