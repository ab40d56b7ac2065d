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
     resolution-matched to the model's 10 m (128 px chips resampled to 64);
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


def _val_outputs(bundle: Any, data: Any, idx: np.ndarray, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated logits and pooled features of EuroSAT chips ``idx`` (the training path's input)."""
    import torch

    model = bundle.model
    logits, feats = [], []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            x = torch.from_numpy(data.to_unit(idx[s : s + batch]))
            pooled = model.features(x).float().mean(dim=(2, 3))
            logits.append(model.head.net(pooled).double().numpy())  # .net: without the temperature
            feats.append(pooled.double().numpy())
    return np.concatenate(logits), np.concatenate(feats)


def scene_chip_outputs(
    models: Any, path: Path, bands: list[int] | None, method: str, match: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Logits and pooled features of every encoder chip of a scene, made as ``geosam run`` makes them.

    Tiles without halo (each chip once), chips at least half valid; returns ``(logits, features, info)``.
    """
    import torch

    from geosam.bands import resolve_bands
    from geosam.config import NormalizeConfig, RunConfig, TilingConfig
    from geosam.domain import chip_features
    from geosam.encode import encode_tiles, fill_invalid, plan_encoder
    from geosam.io.read import open_scene, read_tile
    from geosam.stretch import apply_stretch, compute_stretch
    from geosam.tiling import plan_tiles

    cfg = RunConfig(match_resolution=match, normalize=NormalizeConfig(method=method))  # type: ignore[arg-type]
    model = models.bundle.model
    info = open_scene(path)
    b = resolve_bands(info, bands, models.bundle.meta.bands)
    stretch = compute_stretch(path, b, cfg.normalize)
    enc = plan_encoder(models, info, match_resolution=match, tile_size=None)
    chip, tile, grid = enc.chip_size, enc.tile_size, enc.grid
    plan = plan_tiles(info, TilingConfig(tile_size=tile, halo=0).resolved(tile))
    mean = model.mean.detach().cpu().numpy().reshape(-1)
    logits, feats = [], []
    for spec in plan.tiles:
        t = read_tile(path, spec, b)
        x = torch.from_numpy(fill_invalid(apply_stretch(t.data, t.valid, stretch), t.valid, mean))[None]
        f = chip_features(encode_tiles(model, x, enc)[0], t.valid, grid)
        if len(f):
            with torch.inference_mode():
                logits.append(model.head.net(torch.from_numpy(f).float()).double().numpy())
            feats.append(f)
    meta = {"scene_gsd_m": info.gsd_m, "chip_px": chip, "stretch": method, "resolution_matched": match}
    if not feats:
        return np.zeros((0, len(models.bundle.meta.class_scheme))), np.zeros((0, 1)), meta
    return np.concatenate(logits), np.concatenate(feats), meta


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
    val_logits, val_feats = _val_outputs(bundle, data, val_idx)
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
    stats = bundle.domain
    domain_source = "bundle"
    if stats is None:  # fit as `geosam calibrate` would (on fewer chips)
        n_fit = 40 if size == "smoke" else 400
        fit = np.sort(
            np.concatenate(
                [rng.choice(train_idx[data.labels[train_idx] == c], n_fit, replace=False) for c in range(10)]
            )
        )
        _, fit_feats = _val_outputs(bundle, data, fit)
        stats = fit_domain(fit_feats, data.labels[fit], 10).with_threshold(val_feats)
        domain_source = f"fitted here on {len(fit)} training chips (the bundle has none)"
    inside = stats.score(val_feats)
    inside_base = _baselines(val_logits)
    groups = rng.permutation(len(inside))[: (len(inside) // 64) * 64].reshape(-1, 64)
    mosaics = [scene_report(inside[g], stats).out_of_domain for g in groups]
    sets: list[dict[str, Any]] = []
    target_scores: list[np.ndarray] = []
    variants = [("dtype", False), ("dtype", True), ("percentile", False), ("percentile", True)]
    for name, (path, bands, target) in SCENE_SETS.items():
        if size == "smoke" and name != "naip2019":
            continue
        if not path.exists():
            print(f"{name}: {path} absent, skipped")
            continue
        for method, match in variants if size == "full" else [("dtype", False)]:
            from geosam.io.read import open_scene

            info = open_scene(path)
            if method == "dtype" and not np.issubdtype(np.dtype(info.dtype), np.integer):
                continue
            if match and (info.gsd_m is None or info.gsd_m > 100):  # 300 m: 2 px chips, not meaningful
                continue
            logits, feats, extra = scene_chip_outputs(models, path, bands, method, match)
            if len(feats) == 0:
                continue
            scores = stats.score(feats)
            base = _baselines(logits)
            rep = scene_report(scores, stats)
            # the bundle's preprocessing for uint8 scenes is value / 255 (dtype); float scenes: percentile
            primary = method == "dtype" or not np.issubdtype(np.dtype(info.dtype), np.integer)
            row = {
                "set": name,
                **extra,
                "target": target,
                "as_bundle_preprocessing": primary,
                "chips": len(scores),
                "auroc_domain": _auroc(inside, scores),
                "auroc_max_softmax": _auroc(inside_base["max_softmax"], base["max_softmax"]),
                "auroc_energy": _auroc(inside_base["energy"], base["energy"]),
                "share_out": rep.share_out,
                "ratio": rep.ratio,
                "scene_out_of_domain": rep.out_of_domain,
                "mean_top_probability_calibrated": float(
                    softmax(logits, meta.calibration.temperature if meta.calibration else 1.0).max(1).mean()
                ),
            }
            sets.append(row)
            if target and primary:
                target_scores.append(scores)
            print(
                f"{name:14s} {method:10s} {'matched' if match else 'native ':8s} {len(scores):4d} chips  "
                f"AUROC {row['auroc_domain']:.3f} (MSP {row['auroc_max_softmax']:.3f}, energy "
                f"{row['auroc_energy']:.3f})  {100 * rep.share_out:3.0f}% chips out -> "
                f"{'OUT OF DOMAIN' if rep.out_of_domain else 'in domain'}"
            )
    pooled = _auroc(inside, np.concatenate(target_scores)) if target_scores else None
    domain = {
        "statistics": domain_source,
        "threshold": stats.threshold,
        "in_domain_chips": len(inside),
        "validation_share_above_threshold": float(np.mean(inside > stats.threshold)),
        "mosaic_false_alarms": f"{sum(mosaics)} of {len(mosaics)}",
        "auroc_target_pooled": pooled,
        "sets": sets,
    }
    if pooled is not None:
        print(f"pooled AUROC (NAIP + Raleigh, as the bundle's preprocessing): {pooled:.3f}")
    print(f"false alarms on 8x8 mosaics of validation chips: {sum(mosaics)} of {len(mosaics)}")
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
