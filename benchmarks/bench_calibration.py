"""Calibration (ECE before/after temperature scaling) and out-of-domain detection (AUROC) of a model.

Measures, for a model bundle (default: the packaged default model) trained on EuroSAT RGB:

1. **Calibration** on the bundle's own validation split (recomputed from the seed and validation
   fraction in ``model.json``): expected calibration error (15 equal-width bins, Guo et al. 2017) and
   negative log-likelihood of the raw probabilities, and after temperature scaling **cross-fitted** over
   2 folds (each half scaled by a temperature fitted on the other half), so the "after" figures come
   from data the temperature was not fitted on.
2. **Out-of-domain detection**: the domain score (:mod:`geosam.domain`, Mahalanobis distance to the
   closest class under a tied covariance, Lee et al. 2018) of the EuroSAT validation chips (in domain)
   against chips of other imagery produced as ``geosam run`` produces them (the scene's bands, stretch,
   chip grid and resampling to the encoder input, nodata filled with the model mean):

   * NAIP 2019 and 2020 (aerial, RGB of RGBN, 5 m): at native resolution ("aerial-photo chips") and
     resolution-matched to the model's 10 m (128 px chips resampled to the encoder input);
   * Raleigh Landsat-7 (28.5 m, the sample scene): native and resolution-matched (22 px chips);
   * extras, not in the target: Olinda Landsat-7 (28.5 m, Brazil) and RGB.byte (Landsat-7 at 300 m).

   The area under the ROC curve (AUROC, scikit-learn) of each set against the validation chips, of the
   target sets pooled, and of two baselines (maximum softmax probability, Hendrycks and Gimpel 2017;
   energy, Liu et al. 2020); and each scene's verdict (share of chips above the threshold, out of domain
   or not). False alarms: the share of random 8 x 8 mosaics of validation chips (512 px scenes of real
   EuroSAT) that the scene rule would flag.

Stretch: uint8 scenes as the default model was trained (value / 255, the bundle's preprocessing) and,
as a second figure, with the per-scene 2-98 % percentile stretch; float scenes (Raleigh) with the
percentile stretch. Needs ../shared/data (and sample_tiles/data for Raleigh).

    python benchmarks/bench_calibration.py [--model BUNDLE] [--size smoke|full] [--results DIR]

Results: ``benchmarks/results/calibration.json`` (``calibration_smoke.json`` for ``--size smoke``);
docs/calibration.md explains them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness as harness  # noqa: E402

ROOT = HERE.parent
SHARED = Path(os.environ.get("GEOSAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCENES = SHARED / "scenes"
EUROSAT = SHARED / "eurosat_rgb" / "2750"
RALEIGH = ROOT / "sample_tiles" / "data" / "raleigh_landsat7_2000.vrt"

#: name -> (path, bands (1-based, model order red, green, blue) or None: by name, in the AUROC target)
SCENE_SETS: dict[str, tuple[Path, list[int] | None, bool]] = {
    "naip2019": (SCENES / "naip" / "m_4709963_se_14_1_20190904.tif", [1, 2, 3], True),
    "naip2020": (SCENES / "naip" / "m_4709963_se_14_1_20200831.tif", [1, 2, 3], True),
    "raleigh": (RALEIGH, None, True),
    "olinda": (SCENES / "olinda" / "L7_ETMs.tif", [3, 2, 1], False),
    "rgb_byte_300m": (SCENES / "rasterio" / "RGB.byte.tif", None, False),
}


def _val_outputs(
    bundle: Any, data: Any, idx: np.ndarray, block: int | None, batch: int = 128
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Uncalibrated logits and pooled features of EuroSAT chips ``idx`` (the training path's input).

    Features: ``encoder`` (the encoder's output, what the head reads) and ``block`` (encoder block
    ``block``'s output, :func:`geosam.domain.capture_block`; the encoder's when ``block`` is ``None``).
    """
    import torch

    from geosam.domain import capture_block
    from geosam.train.chip_batches import model_input

    model = bundle.model
    logits, enc, blk = [], [], []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            # the training path: 0..1 chips resampled to the encoder input (v3: 64 -> 96 px, bilinear)
            x = model_input(data, idx[s : s + batch], bundle.meta.input_size, torch.device("cpu"))
            with capture_block(model.encoder, block) as captured:
                pooled = model.features(x).float().mean(dim=(2, 3))
            dom = captured[0].mean(dim=(2, 3)) if captured else pooled
            logits.append(model.head.net(pooled).double().numpy())  # .net: without the temperature
            enc.append(pooled.double().numpy())
            blk.append(dom.double().numpy())
    return np.concatenate(logits), {"encoder": np.concatenate(enc), "block": np.concatenate(blk)}


def scene_chip_outputs(
    models: Any, path: Path, bands: list[int] | None, method: str, match: bool, block: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Logits and pooled features of every encoder chip of a scene, made as ``geosam run`` makes them.

    ``method``: ``run`` applies exactly the preprocessing ``geosam run`` resolves for the scene (the
    bundle's, :func:`geosam.scene_preprocessing.scene_preprocessing`); ``dtype`` or ``percentile``
    force that stretch. Tiles without halo (each chip once), chips at least half valid; returns
    ``(logits, features, info)``; ``features`` as :func:`_val_outputs`' (``encoder`` and ``block``),
    pooled per chip as ``geosam run`` pools them.
    """
    import torch

    from geosam.bands import resolve_bands
    from geosam.config import NormalizeConfig, RunConfig, TilingConfig
    from geosam.domain import capture_block, chip_features
    from geosam.encode import chips_to_tiles, encode_tiles, fill_invalid, plan_encoder
    from geosam.io.read import open_scene, read_tile
    from geosam.stretch import apply_stretch, compute_stretch
    from geosam.tiling import plan_tiles

    mean = models.bundle.model.mean.detach().cpu().numpy().reshape(-1)
    norm = NormalizeConfig(method="auto" if method == "run" else method)  # type: ignore[arg-type]
    cfg = RunConfig(match_resolution=match, normalize=norm)
    model = models.bundle.model
    info = open_scene(path)
    b = resolve_bands(info, bands, models.bundle.meta.bands)
    if method == "run":
        from geosam.preprocess import model_preprocessing
        from geosam.scene_preprocessing import scene_preprocessing

        pre = scene_preprocessing(path, b, model_preprocessing(models.bundle.meta), mean)
        prepare = pre.apply
        applied = pre.applied
    else:
        stretch = compute_stretch(path, b, cfg.normalize)

        def prepare(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
            return fill_invalid(apply_stretch(data, valid, stretch), valid, mean)

        applied = method
    enc = plan_encoder(models, info, match_resolution=match, tile_size=None)
    chip, tile, grid = enc.chip_size, enc.tile_size, enc.grid
    plan = plan_tiles(info, TilingConfig(tile_size=tile, halo=0).resolved(tile))
    logits, feats, blocks = [], [], []
    for spec in plan.tiles:
        t = read_tile(path, spec, b)
        x = torch.from_numpy(np.ascontiguousarray(prepare(t.data, t.valid), np.float32))[None]
        with capture_block(model.encoder, block) as captured:
            emb = encode_tiles(model, x, enc)
        dom = chips_to_tiles(torch.cat(captured), 1, enc.chips_per_side) if captured else emb
        f = chip_features(emb[0], t.valid, grid)
        if len(f):
            with torch.inference_mode():
                logits.append(model.head.net(torch.from_numpy(f).float()).double().numpy())
            feats.append(f)
            blocks.append(chip_features(dom[0], t.valid, grid))
    meta = {
        "scene_gsd_m": info.gsd_m,
        "chip_px": chip,
        "stretch": method,
        "applied": applied,
        "resolution_matched": match,
    }
    if not feats:
        empty = np.zeros((0, 1))
        return np.zeros((0, len(models.bundle.meta.class_scheme))), {"encoder": empty, "block": empty}, meta
    return np.concatenate(logits), {"encoder": np.concatenate(feats), "block": np.concatenate(blocks)}, meta


def sentinel2_chip_rates(
    models: Any, stats: Any, inside: np.ndarray, limit: int | None = None
) -> dict[str, Any] | None:
    """In-domain false alarms on real Sentinel-2 L1C: the EuroSAT MS GeoTIFF chips through ``geosam run``.

    Each 13-band chip (uint16 L1C digital numbers, real UTM georeferencing; the same places as EuroSAT
    RGB JPEGs) is a one-chip scene prepared as ``geosam run`` prepares it (red, green and blue found by
    name, the bundle's reflectance-to-display mapping). Its share above the threshold is the per-chip
    false-alarm rate on real imagery like the training data; the probability that a scene of ``n`` such
    chips is called partly or wholly out of domain follows from it (binomial: chips taken as
    independent, an optimistic assumption for neighbouring chips of one scene).
    """
    from scipy.stats import binom

    from geosam.domain import MIN_CHIPS_OUT

    root = SHARED / "eurosat_ms"
    files = sorted(root.glob("*/*/*.tif"))[:limit] if root.is_dir() else []
    if not files:
        print(f"EuroSAT MS chips not found under {root}: skipped")
        return None
    import logging

    scores = []
    quiet = logging.getLogger("geosam")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one "read as Sentinel-2 DN" line per chip otherwise
    for f in files:
        _, feats, _ = scene_chip_outputs(models, f, [4, 3, 2], "run", True, stats.block)  # B04, B03, B02
        scores.extend(stats.score(feats[_kind(stats)]))
    quiet.setLevel(level)
    s = np.asarray(scores)
    rate = float(np.mean(s > stats.threshold))
    scenes = {}
    for n in (20, 64, 256, 680):
        k_partly = max(MIN_CHIPS_OUT, int(np.ceil(stats.partly_share * n)))
        k_out = int(np.floor(stats.scene_share * n)) + 1
        scenes[str(n)] = {
            "p_partly_or_out": float(binom.sf(k_partly - 1, n, rate)),
            "p_out": float(binom.sf(k_out - 1, n, rate)),
        }
    print(
        f"EuroSAT MS (Sentinel-2 L1C) chips through geosam run: {len(s)} chips, {100 * rate:.1f} % above the "
        f"threshold (EuroSAT RGB validation: 5 %), AUROC vs validation {_auroc(inside, s):.3f}; "
        f"P(scene of 64 such chips flagged partly or out) = {scenes['64']['p_partly_or_out']:.2g}"
    )
    return {
        "chips": len(s),
        "share_above_threshold": rate,
        "auroc_vs_validation": _auroc(inside, s),
        "median_score": float(np.median(s)),
        "scene_false_alarm_probability": scenes,
    }


def _kind(stats: Any) -> str:
    """Which pooled features ``stats`` score: ``block`` or ``encoder`` (output)."""
    return "encoder" if stats.block is None else "block"


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(y, np.r_[inside, outside]))


def _baselines(logits: np.ndarray) -> dict[str, np.ndarray]:
    """Higher = more out of domain: negative max softmax probability and the energy score."""
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1)) + logits.max(axis=1)
    msp = np.exp(logits.max(axis=1) - lse)
    return {"max_softmax": -msp, "energy": -lse}


def run(
    size: str = "full",
    results: str | None = None,
    work: str | None = None,
    model: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure and write ``calibration[_smoke].json``; returns the result dict."""
    import torch

    from geosam.calibration import cross_fitted_calibration, reliability_bins, softmax
    from geosam.config import RunConfig
    from geosam.domain import fit_domain
    from geosam.domain_check import scene_report
    from geosam.runtime import load_models
    from geosam.train.data import load_folder_chips, stratified_split

    if threads:
        torch.set_num_threads(threads)
    header = harness.start("calibration", size)
    t0 = time.perf_counter()
    models = load_models(model, None, RunConfig())
    bundle = models.bundle
    meta = bundle.meta
    cache = Path(work) / "chips" if work else None
    data = load_folder_chips(EUROSAT, cache_dir=cache)
    tcfg = meta.training.get("config", {})
    train_idx, val_idx = stratified_split(
        data.labels, float(tcfg.get("val_fraction", 0.1)), int(tcfg.get("seed", 0)), data.groups
    )
    rng = np.random.default_rng(0)
    if size == "smoke":  # 20 validation chips per class
        per_class = [rng.choice(val_idx[data.labels[val_idx] == c], 20, replace=False) for c in range(10)]
        val_idx = np.sort(np.concatenate(per_class))
    from geosam.domain import domain_block

    block = bundle.domain.block if bundle.domain is not None else domain_block(bundle.model.encoder)
    val_logits, val_all = _val_outputs(bundle, data, val_idx, block)
    labels = data.labels[val_idx]

    # 1. calibration (cross-fitted)
    cf = cross_fitted_calibration(val_logits, labels, folds=2, seed=0)
    calibration = {
        "split": f"validation split of the bundle's training run ({len(val_idx)} chips)",
        "bins": cf.n_bins,
        "accuracy": cf.accuracy,
        "ece_before": cf.ece_before,
        "ece_after_crossfitted": cf.ece_after,
        "nll_before": cf.nll_before,
        "nll_after_crossfitted": cf.nll_after,
        "temperature_all": cf.temperature,
        "fold_temperatures": list(cf.fold_temperatures),
        "bundle_temperature": meta.calibration.temperature if meta.calibration else None,
        "reliability_before": _listed(reliability_bins(softmax(val_logits), labels)),
        "reliability_after": _listed(reliability_bins(cf.probs_after, labels)),
    }
    print(
        f"calibration ({len(val_idx)} validation chips): ECE {cf.ece_before:.4f} -> {cf.ece_after:.4f} "
        f"(cross-fitted; T = {cf.temperature:.3f}), NLL {cf.nll_before:.4f} -> {cf.nll_after:.4f}"
    )

    # 2. domain
    # both features side by side, fitted here on the same training chips (as `geosam calibrate` does, on
    # fewer chips); the bundle's own statistics give the verdicts
    from dataclasses import replace

    n_fit = 40 if size == "smoke" else 400
    fit = np.sort(
        np.concatenate(
            [rng.choice(train_idx[data.labels[train_idx] == c], n_fit, replace=False) for c in range(10)]
        )
    )
    _, fit_all = _val_outputs(bundle, data, fit, block)
    here = {
        kind: replace(
            fit_domain(fit_all[kind], data.labels[fit], 10), block=block if kind == "block" else None
        ).with_threshold(val_all[kind])
        for kind in ("encoder", "block")
    }
    stats = bundle.domain
    domain_source = "bundle"
    if stats is None:
        stats = here["block"]
        domain_source = f"fitted here on {len(fit)} training chips (the bundle has none)"
    val_feats = val_all[_kind(stats)]
    inside = stats.score(val_feats)
    inside_here = {kind: here[kind].score(val_all[kind]) for kind in here}
    target_here: dict[str, list[np.ndarray]] = {kind: [] for kind in here}
    inside_base = _baselines(val_logits)
    groups = rng.permutation(len(inside))[: (len(inside) // 64) * 64].reshape(-1, 64)
    mosaic_reports = [scene_report(inside[g], stats) for g in groups]
    mosaics = [r.out_of_domain for r in mosaic_reports]
    mosaics_partly = [r.partly_out_of_domain for r in mosaic_reports]
    sets: list[dict[str, Any]] = []
    target_scores: list[np.ndarray] = []
    # "run": what `geosam run` does (the bundle's preprocessing, resolution matched); then forced stretches
    variants = [("run", True), ("dtype", False), ("dtype", True), ("percentile", False), ("percentile", True)]
    for name, (path, bands, target) in SCENE_SETS.items():
        if size == "smoke" and name != "naip2019":
            continue
        if not path.exists():
            print(f"{name}: {path} absent, skipped")
            continue
        for method, match in variants if size == "full" else [("run", True)]:
            from geosam.io.read import open_scene

            info = open_scene(path)
            if method == "dtype" and not np.issubdtype(np.dtype(info.dtype), np.integer):
                continue
            if match and (info.gsd_m is None or info.gsd_m > 100):  # 300 m: 2 px chips, not meaningful
                continue
            logits, feats, extra = scene_chip_outputs(models, path, bands, method, match, block)
            if len(logits) == 0:
                continue
            scores = stats.score(feats[_kind(stats)])
            scores_here = {kind: here[kind].score(feats[kind]) for kind in here}
            base = _baselines(logits)
            rep = scene_report(scores, stats)
            primary = method == "run"  # what a user gets
            row = {
                "set": name,
                **extra,
                "target": target,
                "as_geosam_run": primary,
                "chips": len(scores),
                "auroc_domain": _auroc(inside, scores),
                "auroc_fitted_here": {k: _auroc(inside_here[k], scores_here[k]) for k in here},
                "auroc_max_softmax": _auroc(inside_base["max_softmax"], base["max_softmax"]),
                "auroc_energy": _auroc(inside_base["energy"], base["energy"]),
                "share_out": rep.share_out,
                "ratio": rep.ratio,
                "scene_out_of_domain": rep.out_of_domain,
                "scene_verdict": rep.verdict,
                "mean_top_probability_calibrated": float(
                    softmax(logits, meta.calibration.temperature if meta.calibration else 1.0).max(1).mean()
                ),
            }
            sets.append(row)
            if target and primary:
                target_scores.append(scores)
                for k in here:
                    target_here[k].append(scores_here[k])
            print(
                f"{name:14s} {method:10s} {'matched' if match else 'native ':8s} {len(scores):4d} chips  "
                f"AUROC {row['auroc_domain']:.3f} (MSP {row['auroc_max_softmax']:.3f}, energy "
                f"{row['auroc_energy']:.3f}; fitted here: encoder output "
                f"{row['auroc_fitted_here']['encoder']:.3f}, block {row['auroc_fitted_here']['block']:.3f})  "
                f"{100 * rep.share_out:3.0f}% chips out -> "
                f"{rep.verdict}"
            )
    pooled = _auroc(inside, np.concatenate(target_scores)) if target_scores else None
    pooled_here = (
        {k: _auroc(inside_here[k], np.concatenate(target_here[k])) for k in here} if target_scores else None
    )
    ms = sentinel2_chip_rates(models, stats, inside, limit=20 if size == "smoke" else None)
    domain = {
        "statistics": domain_source,
        "threshold": stats.threshold,
        "in_domain_chips": len(inside),
        "validation_share_above_threshold": float(np.mean(inside > stats.threshold)),
        "mosaic_false_alarms": f"{sum(mosaics)} of {len(mosaics)}",
        "mosaic_partly_false_alarms": f"{sum(mosaics_partly)} of {len(mosaics_partly)}",
        "mosaic_share_out_max": float(max(r.share_out for r in mosaic_reports)) if mosaic_reports else None,
        "sentinel2_l1c_chips": ms,
        "feature": _kind(stats),
        "block": stats.block,
        "auroc_target_pooled": pooled,
        "fitted_here": {
            "chips": len(fit),
            "note": "both features fitted on the same training chips, thresholds on the validation chips",
            "block": block,
            "auroc_target_pooled": pooled_here,
        },
        "sets": sets,
    }
    if pooled is not None:
        print(f"pooled AUROC (NAIP + Raleigh, as geosam run prepares them): {pooled:.3f}")
    if pooled_here is not None:
        print(
            f"  side by side, fitted here on {len(fit)} training chips: encoder output "
            f"{pooled_here['encoder']:.3f}, block {block} {pooled_here['block']:.3f}"
        )
    print(
        f"false alarms on 8x8 mosaics of validation chips: {sum(mosaics)} of {len(mosaics)} out of domain, "
        f"{sum(mosaics_partly)} partly (largest share of chips out: "
        f"{100 * max((r.share_out for r in mosaic_reports), default=0):.0f} %)"
    )
    out = {
        **header,
        "model": {"name": meta.name, "weights_sha256": meta.weights_sha256, "path": str(bundle.path)},
        "calibration": calibration,
        "domain": domain,
        "seconds": time.perf_counter() - t0,
    }
    harness.finish(out)
    harness.write_result("calibration", out, results)
    return out


def _listed(bins: dict[str, Any]) -> dict[str, list[float | None]]:
    return {k: [None if not np.isfinite(x) else float(x) for x in np.asarray(v)] for k, v in bins.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("smoke", "full"), default="full")
    ap.add_argument("--model", default=None, help="model bundle [default: the packaged default model]")
    ap.add_argument("--results", default=None)
    ap.add_argument("--work", default=None, help="cache folder for decoded EuroSAT chips")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if not EUROSAT.is_dir():
        print(f"EuroSAT RGB not found at {EUROSAT}: this benchmark needs ../shared/data", file=sys.stderr)
        return 2
    run(args.size, args.results, args.work, args.model, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
