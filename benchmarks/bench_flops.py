"""How close the encoder gets to the machine's matrix-multiply rate, and where the rest of the time goes.

1. The practical limit: GFLOP/s of large ``torch.matmul`` (square, fp32 and bf16) and of the ViT-B MLP
   shape ``(4096 x 768) @ (768 x 3072)``, measured here.
2. FLOPs of one encoder pass (``torch.utils.flop_counter.FlopCounterMode``, checked against an analytic
   count for ViT-B at 1024) and of SAM's prompt encoder + mask decoder for one tile's point grid.
3. ``predict_scene`` on a real scene with every stage timed (the run record's ``timings_s`` plus timers
   patched around SAM's mask decoder, its mask upsampling, the automatic mask generator's RLE/NMS
   post-processing, painting, vectorizing, dissolving, the vector and COG writers): seconds, share of
   the total and, for the encoder and decoder, achieved GFLOP/s and the ratio to the matmul rate.
   Done for the SAM ViT-B set-up and for the default model.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as harness
import torch
from _fixtures import bench_scenes, default_setup, sam_setup, scene_tiles, work_dir
from _stage_timers import stage_timers


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (timings on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(
    dtype: torch.dtype, m: int, k: int, n: int, reps: int, device: torch.device | None = None
) -> dict[str, Any]:
    """GFLOP/s of ``(m x k) @ (k x n)`` in ``dtype`` on ``device`` (median of ``reps``)."""
    dev = device or torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    a = torch.randn((m, k), generator=g).to(dev, dtype)
    b = torch.randn((k, n), generator=g).to(dev, dtype)

    def call() -> None:
        torch.matmul(a, b)
        sync(dev)

    t = harness.repeat(call, reps, warmup=1)
    flops = 2.0 * m * k * n
    return {
        "dtype": str(dtype).replace("torch.", ""),
        "shape": f"({m}x{k})@({k}x{n})",
        "median_s": t["median_s"],
        "gflops": flops / 1e9,
        "gflop_per_s": flops / t["median_s"] / 1e9,
        "best_gflop_per_s": flops / t["min_s"] / 1e9,
    }


def vit_flops_analytic(cfg: Any, batch: int = 1) -> float:
    """FLOPs (2 x MACs) of segment-anything's ``ImageEncoderViT`` for ``cfg`` (matmuls and convs only)."""
    g = cfg.img_size // cfg.patch_size
    tokens = g * g
    d = cfg.embed_dim
    hidden = int(d * cfg.mlp_ratio)
    macs = tokens * d * cfg.in_chans * cfg.patch_size**2  # patch embedding
    head_dim = d // cfg.num_heads
    for i in range(cfg.depth):
        if i in cfg.global_attn_indexes or cfg.window_size == 0:
            n_win, win, side = 1, tokens, g
        else:
            side = cfg.window_size
            padded = -(-g // side) * side  # windowed blocks pad the grid to whole windows
            n_win, win = (padded // side) ** 2, side * side
        macs += n_win * win * 4 * d * d + tokens * 2 * d * hidden  # qkv + proj (padded tokens), MLP
        macs += n_win * cfg.num_heads * 2 * win * win * head_dim  # q k^T and attn v
        macs += n_win * cfg.num_heads * win * head_dim * 2 * side  # decomposed relative positions (einsum)
    macs += tokens * d * cfg.out_chans + tokens * cfg.out_chans * cfg.out_chans * 9  # neck
    return 2.0 * macs * batch


def count_flops(fn: Any) -> tuple[float, dict[str, float]]:
    """Total FLOPs of ``fn()`` and FLOPs per aten op."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    per_op: dict[str, float] = {}
    for ops in fc.get_flop_counts().values():
        for op, n in ops.items():
            per_op[str(op)] = max(per_op.get(str(op), 0.0), float(n))  # the Global entry holds totals
    return float(fc.get_total_flops()), per_op


def timed_predict(scene: Path, bands: list[int] | None, models: Any, cfg: Any) -> dict[str, Any]:
    """``predict_scene`` with every sub-stage timed."""
    import segment_anything.automatic_mask_generator as amg

    import geosam.io.cog as cog
    import geosam.io.scene_writer as scene_writer
    import geosam.io.vector as vector
    import geosam.predict as predict
    import geosam.segment as segment
    import geosam.vectorize as vectorize

    run_cfg = cfg.with_overrides(bands=bands) if bands else cfg
    with stage_timers() as st, tempfile.TemporaryDirectory(prefix="geosam-bench-") as tmp:
        if models.sam is not None:
            st.module(models.sam.prompt_encoder, "sam_prompt_encoder")
            st.module(models.sam.mask_decoder, "sam_mask_decoder")
            st.patch(models.sam, "postprocess_masks", "sam_mask_upsampling")
            for fn in ("batched_nms", "mask_to_rle_pytorch", "rle_to_mask", "calculate_stability_score"):
                st.patch(amg, fn, f"amg_{fn}")
            st.patch(segment, "paint_masks", "paint_masks")
        st.patch(segment, "felzenszwalb_regions", "felzenszwalb")
        st.patch(vectorize, "window_polygons", "vectorize_polygons")
        st.patch(vectorize.PolygonCollector, "dissolve", "dissolve_polygons")
        st.patch(vector, "write_gpkg", label=lambda *a, **k: f"write_gpkg_{k.get('layer', '?')}")
        st.patch(vector, "write_geojson", "write_geojson")
        st.patch(cog.RasterWriter, "write", "cog_write_windows")
        st.patch(cog.RasterWriter, "close", "cog_close")
        st.patch(scene_writer, "write_tiles_layer", "tiles_layer")
        st.patch(scene_writer, "write_project", "qgis_project")
        t0 = time.perf_counter()
        res = predict.predict_scene(scene, tmp, models, run_cfg)
        wall = time.perf_counter() - t0
        timers = st.as_dict()
    return {
        "scene": scene.name,
        "tiles": res.n_tiles,
        "regions": res.n_regions,
        "wall_s": wall,
        "timings_s": res.record.timings_s,
        "timers": timers,
    }


def breakdown(
    run: dict[str, Any], enc_flops_tile: float, dec_flops_tile: float, peak: float
) -> list[dict[str, Any]]:
    """Rows ``stage, seconds, share, GFLOP/s`` from a :func:`timed_predict` result."""
    t, tm = run["timings_s"], {k: v["s"] for k, v in run["timers"].items()}
    tiles = run["tiles"]
    total = t["total"]
    dec = tm.get("sam_prompt_encoder", 0.0) + tm.get("sam_mask_decoder", 0.0)
    ups = tm.get("sam_mask_upsampling", 0.0)
    amg_post = sum(v for k, v in tm.items() if k.startswith("amg_"))
    paint = tm.get("paint_masks", 0.0)
    felz = tm.get("felzenszwalb", 0.0)
    seg = t.get("segment", 0.0)
    vec = tm.get("vectorize_polygons", 0.0)
    dis = tm.get("dissolve_polygons", 0.0)
    regions_out = tm.get("write_gpkg_regions", 0.0) + tm.get("write_geojson", 0.0)
    cog_t = tm.get("cog_write_windows", 0.0) + tm.get("cog_close", 0.0)
    fin = t.get("finish", 0.0)
    rows = [
        ("read + stretch", t.get("read", 0.0), None),
        ("encode (image encoder)", t.get("encode", 0.0), enc_flops_tile * tiles),
        ("segment: SAM prompt enc + mask decoder", dec, dec_flops_tile * tiles if dec else None),
        ("segment: mask upsampling to tile", ups, None),
        ("segment: AMG stability/RLE/NMS", amg_post, None),
        ("segment: paint masks", paint, None),
        ("segment: felzenszwalb", felz, None),
        ("segment: other (AMG python, labels)", seg - dec - ups - amg_post - paint - felz, None),
        ("classify (pooling + head)", t.get("classify", 0.0), None),
        ("stitch (seams, scratch raster)", t.get("stitch", 0.0), None),
        ("finish: class map + confidence COGs", cog_t, None),
        ("finish: vectorize", vec, None),
        ("finish: dissolve", dis, None),
        ("finish: write regions gpkg+geojson", regions_out, None),
        ("finish: other", fin - cog_t - vec - dis - regions_out, None),
        ("tiles layer (gpkg)", tm.get("tiles_layer", 0.0), None),
        ("qgis project", tm.get("qgis_project", 0.0), None),
    ]
    named = sum(r[1] for r in rows)
    rows.append(("other (plan, stats, run record)", total - named, None))
    out = []
    for name, s, flops in rows:
        if abs(s) < 5e-4 and flops is None:
            continue
        r: dict[str, Any] = {
            "stage": name,
            "seconds": s,
            "share_pct": 100.0 * s / total,
            "s_per_tile": s / tiles,
        }
        if flops:
            r["gflop_per_s"] = flops / s / 1e9
            r["pct_of_matmul_rate"] = 100.0 * flops / s / 1e9 / peak
        out.append(r)
    out.append({"stage": "TOTAL", "seconds": total, "share_pct": 100.0, "s_per_tile": total / tiles})
    return out


def sam_flops(models: Any, sam: Any, scenes: list[Any], data: dict[str, Any]) -> None:
    """Count the encoder's FLOPs (and check them analytically) and the decoder's FLOPs for one tile."""
    from geosam.models.sam_config import SamConfig
    from geosam.segment import sam_regions

    model = models.bundle.model
    x = torch.rand((1, 3, models.input_size, models.input_size)).to(models.device)
    enc_flops, per_op = count_flops(lambda: model.features(x))
    cfg = SamConfig.from_dict(dict(models.bundle.meta.encoder.config)).with_img_size(models.input_size)
    analytic = vit_flops_analytic(cfg)
    _, tdata, tvalid = scene_tiles(scenes[0][0], scenes[0][1], models, sam.cfg, limit=1)[0]
    with torch.inference_mode():
        emb = model.features(torch.from_numpy(tdata)[None].float().to(models.device))
    dec_flops, dec_ops = count_flops(lambda: sam_regions(models.sam, emb, tvalid, sam.cfg.segment))
    data["encoder_flops"] = {
        "counted": enc_flops,
        "analytic": analytic,
        "per_op": per_op,
        "counted_vs_analytic": enc_flops / analytic,
    }
    data["decoder_flops_per_tile"] = {
        "counted": dec_flops,
        "per_op": dec_ops,
        "points": sam.cfg.segment.points_per_side**2,
    }
    print(
        f"encoder: {enc_flops / 1e9:.1f} GFLOP counted, {analytic / 1e9:.1f} analytic; "
        f"decoder per tile: {dec_flops / 1e9:.1f} GFLOP"
    )


def encoder_rate(models: Any, prec: str, reps: int, flops: float, peak: dict[str, float]) -> dict[str, Any]:
    """Time one encoder pass (batch 1) under ``prec``; GFLOP/s and the share of the matmul rate."""
    from geosam.encode import autocast_context

    model = models.bundle.model
    x = torch.rand((1, 3, models.input_size, models.input_size)).to(models.device)

    def call() -> None:
        with torch.inference_mode(), autocast_context(x.device, prec):
            model.features(x)
        sync(x.device)

    t = harness.repeat(call, reps, warmup=1)
    rate = flops / t["median_s"] / 1e9
    ref = peak["float32" if prec == "fp32" else "bfloat16"]
    return {
        "precision": prec,
        "median_s": t["median_s"],
        "gflop_per_s": rate,
        "matmul_gflop_per_s": ref,
        "pct_of_matmul_rate": 100 * rate / ref,
        "pct_of_fp32_matmul_rate": 100 * rate / peak["float32"],
    }


def run(
    size: str = "full", results: str | None = None, work: str | None = None, device: str = "auto"
) -> dict[str, Any]:
    from geosam.runtime import resolve_device, resolve_precision

    header = harness.start("flops", size)
    wd = work_dir(work)
    dev = resolve_device(device)
    data: dict[str, Any] = {**header, "device": str(dev)}
    n = 256 if size == "smoke" else 4096
    reps = 2 if size == "smoke" else 5
    slow16 = harness.emulated_bf16(dev)
    # emulated bf16 runs at ~1 GFLOP/s here: a smaller square and fewer repeats keep it to seconds
    n16, reps16 = (min(n, 1024), min(reps, 2)) if slow16 else (n, reps)
    print("matmul rates:", flush=True)
    mm = [
        matmul_rate(torch.float32, n, n, n, reps, dev),
        matmul_rate(torch.bfloat16, n16, n16, n16, reps16, dev),
    ]
    m, k, nn_ = (64, 32, 128) if size == "smoke" else (4096, 768, 3072)
    mm += [
        matmul_rate(torch.float32, m, k, nn_, reps, dev),
        matmul_rate(torch.bfloat16, m, k, nn_, reps16, dev),
    ]
    data["matmul"] = mm
    harness.table(
        mm, ["dtype", "shape", "median_s", "gflops", "gflop_per_s", "best_gflop_per_s"], title="torch.matmul"
    )
    peak = {r["dtype"]: r["gflop_per_s"] for r in mm[:2]}

    sam = sam_setup(size, wd)
    scenes = bench_scenes(size, wd)
    results_by_setup: dict[str, Any] = {}
    sam_precs = ("fp32",) if slow16 and size != "smoke" else ("fp32", "bf16")
    if len(sam_precs) == 1:
        data["sam_bf16"] = harness.BF16_SKIPPED
        print(f"SAM encoder bf16: {harness.BF16_SKIPPED}")
    for prec in sam_precs:
        models = sam.load(precision=prec, device=device)
        if prec == "fp32":
            sam_flops(models, sam, scenes, data)
        data.setdefault("encoder", []).append(
            encoder_rate(models, prec, 1 if size == "smoke" else 3, data["encoder_flops"]["counted"], peak)
        )
        if prec == resolve_precision("auto", models.device):
            print(f"stage breakdown ({prec}, the default precision here):")
            runs = [timed_predict(s, b, models, sam.cfg) for s, b in scenes]
            results_by_setup[sam.name] = (runs, prec)
        del models
    harness.table(data["encoder"], title="SAM image encoder, batch 1: achieved vs matmul rate")

    dm = default_setup(size, wd)
    models = dm.load(device=device)
    mdl = models.bundle.model
    xc = torch.rand((1, 3, models.input_size, models.input_size)).to(models.device)
    chip_flops, _ = count_flops(lambda: mdl.features(xc))
    data["default_chip_flops"] = chip_flops
    grid = models.tile_size // models.chip_size
    runs = [timed_predict(s, b, models, dm.cfg) for s, b in scenes]
    results_by_setup[dm.name] = (runs, models.precision)
    data["default_chip_gflop"] = chip_flops / 1e9

    data["breakdown"] = {}
    for name, (runs, prec) in results_by_setup.items():
        merged = _merge(runs)
        if name == dm.name:
            enc_tile, dec_tile = chip_flops * grid * grid, 0.0
        else:
            enc_tile, dec_tile = data["encoder_flops"]["counted"], data["decoder_flops_per_tile"]["counted"]
        rows = breakdown(merged, enc_tile, dec_tile, peak["float32" if prec == "fp32" else "bfloat16"])
        data["breakdown"][name] = {"precision": prec, "runs": runs, "rows": rows}
        harness.table(
            rows,
            ["stage", "seconds", "share_pct", "s_per_tile", "gflop_per_s", "pct_of_matmul_rate"],
            title=f"where time goes: {name} ({prec}), {merged['tiles']} tiles, {merged['regions']} regions, "
            f"scenes {', '.join(r['scene'] for r in runs)}",
        )
    data["sam_setup"], data["default_setup"] = sam.describe(), dm.describe()
    harness.finish(data)
    harness.write_result("flops", data, results)
    return data


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the timings of several :func:`timed_predict` results."""
    t: dict[str, float] = {}
    tm: dict[str, dict[str, float]] = {}
    for r in runs:
        for k, v in r["timings_s"].items():
            t[k] = t.get(k, 0.0) + v
        for k, v in r["timers"].items():
            cur = tm.setdefault(k, {"s": 0.0, "calls": 0})
            cur["s"] += v["s"]
            cur["calls"] += v["calls"]
    return {
        "tiles": sum(r["tiles"] for r in runs),
        "regions": sum(r["regions"] for r in runs),
        "timings_s": t,
        "timers": tm,
    }


def main(argv: list[str] | None = None) -> None:
    harness.ensure_allocator_env()
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    run(a.size, a.results, a.work, a.device)


if __name__ == "__main__":
    main(sys.argv[1:])
