"""How an EuroSAT model transfers to the Raleigh Landsat-7 sample scene, measured with ``geosam evaluate``.

The default model was trained on 10 m Sentinel-2 chips of Europe (EuroSAT, 10 classes); the sample scene
is 28.5 m Landsat-7 over North Carolina with 34 reference polygons in 7 classes of another legend. This
script classifies the scene with ``geosam run`` (the library call, default settings: resolution matched
to the model's 10 m, and at the scene's native 28.5 m), then assesses each class map against the
polygons with ``geosam evaluate`` and the packaged class mapping ``eurosat_to_raleigh``
(geosam/data/class_maps/eurosat_to_raleigh.yaml: AnnualCrop and PermanentCrop -> agriculture, Pasture
and HerbaceousVegetation -> herbaceous, Forest -> forest, Highway, Industrial and Residential ->
developed, River and SeaLake -> water; shrubland and sediment have no EuroSAT class). Two readings:
all 7 reference classes (shrubland and sediment count as errors of the map) and the 5 matched classes
only (``--drop-unmatched``). Pixels are the units; the per-polygon majority is reported too.

It is a transfer check of models trained elsewhere, not the accuracy a model trained on this scene
reaches (that is ``geosam train polygons``; see benchmarks/bench_vs_random_forest.py).

    python benchmarks/eval_raleigh_polygons.py --model geosam/data/default_model:v2 \\
        --model /tmp/default_v1:v1 [--out /tmp/geosam-raleigh-eval] [--results benchmarks/results]

Writes ``raleigh_transfer.json`` (every model and reading) into ``--results``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "sample_tiles/data/raleigh_landsat7_2000.vrt"
POLYGONS = ROOT / "sample_tiles/data/landsat96_polygons.shp"
MAPPING = "eurosat_to_raleigh"


def evaluate_model(model: str | None, out: Path, match: bool) -> dict[str, Any]:
    """Classify the scene with ``model`` and assess it (both readings); returns a JSON-ready summary."""
    from geosam.accuracy.config import EvaluateConfig
    from geosam.accuracy.evaluate import evaluate
    from geosam.accuracy.report import to_dict
    from geosam.config import RunConfig
    from geosam.predict import predict_scene
    from geosam.runtime import load_models

    cfg = RunConfig(match_resolution=match)
    models = load_models(model, None, cfg)
    res = predict_scene(SCENE, out / ("matched" if match else "native"), models, cfg)
    row: dict[str, Any] = {
        "resolution_matched": match,
        "weights_sha256": models.bundle.meta.weights_sha256,
        "domain": res.record.domain,
        "seconds": res.seconds,  # shared machines: compare models only within one run of this script
    }
    for name, drop in (("all_7_classes", False), ("matched_5_classes", True)):
        ev = evaluate(
            res.outputs["classes"],
            POLYGONS,
            EvaluateConfig(field="label", classes=MAPPING, drop_unmatched=drop),
        )
        d = to_dict(ev)
        px, poly = ev.units, ev.polygons
        row[name] = {
            "pixels": {
                "n": px.agreement.n,
                "overall_accuracy": px.agreement.overall_accuracy,
                "kappa": px.agreement.kappa,
                "macro_f1": px.agreement.macro_f1,
            },
            "polygons": None
            if poly is None
            else {"n": poly.agreement.n, "overall_accuracy": poly.agreement.overall_accuracy},
            "evaluation": d,
        }
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        action="append",
        default=None,
        help="BUNDLE:LABEL (repeat for before/after); default: the packaged model, label 'packaged'",
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/geosam-raleigh-eval"))
    ap.add_argument("--results", type=Path, default=None, help="folder for raleigh_transfer.json")
    args = ap.parse_args(argv)
    pairs = [m.rsplit(":", 1) if ":" in m else [m, Path(m).name] for m in (args.model or [])]
    models: list[tuple[str | None, str]] = [(p, label) for p, label in pairs] or [(None, "packaged")]
    results = []
    for path, label in models:
        for match in (True, False):
            row = {
                "model": label,
                "bundle": path or "packaged",
                **evaluate_model(path, args.out / label, match),
            }
            results.append(row)
            secs = row["seconds"]
            stages = ", ".join(f"{k} {v:.1f}" for k, v in secs.items())
            print(f"{label:10s} {'matched' if match else 'native ':8s} run seconds: {stages}")
            for reading in ("all_7_classes", "matched_5_classes"):
                r = row[reading]
                poly = r["polygons"]["overall_accuracy"] if r["polygons"] else float("nan")
                print(
                    f"{label:10s} {'matched' if match else 'native ':8s} {reading:18s} pixels: OA "
                    f"{r['pixels']['overall_accuracy']:.3f} kappa {r['pixels']['kappa']:.3f} macro-F1 "
                    f"{r['pixels']['macro_f1']:.3f} (n {r['pixels']['n']}); polygons: OA {poly:.3f}"
                )
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        summary = {
            "scene": str(SCENE.name),
            "reference": str(POLYGONS.name),
            "mapping": MAPPING,
            "runs": results,
        }
        path = args.results / "raleigh_transfer.json"
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
