"""Side by side: the default model's old recipe against the transfer recipe, on a subset of EuroSAT.

Two ``small`` models are trained from scratch on the same subset of the **training** split of
EuroSAT RGB (the packaged model's validation split is never touched: its figures stay an unbiased
hold-out), with the same seed, schedule and epochs:

* ``old``: dihedral augmentation only (the v1 recipe);
* ``augment``: dihedral plus the sensor augmentations of geosam/train/augment.py (scale 0.3,
  radiometry 0.3, blur 0.2);
* ``transfer``: ``augment`` and an exponential moving average of the weights (decay 0.999, warmed up
  because these runs are a few hundred steps long), the v2 recipe.

Each is scored on the subset's own validation split (clean), on the same chips under fixed simulated
sensor shifts (coarser GSD after resolution matching, other radiometry, blur), and on the Raleigh
Landsat-7 sample scene through ``geosam run`` against its 34 reference polygons (pixels under the
polygons, EuroSAT classes mapped to the Raleigh classes as in geosam/data/class_maps; shrubland and
sediment, which have no EuroSAT class, left out). The simulated shifts are the family the transfer
recipe trains on, so they show robustness to what it models; the Raleigh scene is the independent
check. Small runs are noisy (a subset validation chip is 0.4 points): read differences of a point or
two as ties.

    python pipelines/compare_recipes.py --per-class 250 --epochs 6 --threads 1 \\
        --data ../shared/data/eurosat_rgb/2750 --work /tmp/recipes

Writes benchmarks/results/recipe_comparison.json (or ``--results``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RALEIGH = ROOT / "sample_tiles" / "data" / "raleigh_landsat7_2000.vrt"
POLYGONS = ROOT / "sample_tiles" / "data" / "landsat96_polygons.shp"
#: EuroSAT -> Raleigh classes (the mapping of geosam/data/class_maps/eurosat_to_raleigh.yaml).
EUROSAT_TO_RALEIGH = {
    "AnnualCrop": "agriculture",
    "PermanentCrop": "agriculture",
    "Pasture": "herbaceous",
    "HerbaceousVegetation": "herbaceous",
    "Forest": "forest",
    "Highway": "developed",
    "Industrial": "developed",
    "Residential": "developed",
    "River": "water",
    "SeaLake": "water",
}

AUGMENT = {"augment_scale": 0.3, "augment_radiometry": 0.3, "augment_blur": 0.2}
#: the EMA warms up here (a few hundred steps: a constant 0.999 would average mostly the initial weights)
RECIPES: dict[str, dict[str, Any]] = {
    "old": {},
    "augment": AUGMENT,
    "transfer": {**AUGMENT, "ema_decay": 0.999, "ema_warmup": True},
}


def subset(data: Any, per_class: int, seed: int) -> Any:
    """``per_class`` chips of each class from the training split (seed 0, 10 %) of ``data``."""
    from geosam.train.data import ChipData, stratified_split

    train_idx, _ = stratified_split(data.labels, 0.1, 0, data.groups)
    rng = np.random.default_rng(seed)
    pick = np.sort(
        np.concatenate(
            [rng.choice(train_idx[data.labels[train_idx] == c], per_class, replace=False) for c in range(10)]
        )
    )
    return ChipData(
        images=np.asarray(data.images[pick]),
        labels=data.labels[pick],
        classes=data.classes,
        bands=data.bands,
        low=data.low,
        high=data.high,
        provenance={**data.provenance, "subset": f"{per_class} per class of the training split"},
        gsd_m=10.0,
    )


def shifted_accuracy(model: Any, x: Any, y: np.ndarray) -> dict[str, float]:
    """Accuracy of ``model`` on 0..1 chips ``x`` under fixed simulated sensor shifts."""
    import kornia
    import torch

    from geosam.train.augment import resolution_loss

    n, c = x.shape[0], x.shape[1]
    gain = torch.tensor([0.85, 1.0, 1.15][:c] + [1.0] * max(0, c - 3)).view(1, c, 1, 1)
    shifts = {
        "clean": x,
        "gsd_20m": resolution_loss(x, torch.full((n,), 2.0)),
        "gsd_30m": resolution_loss(x, torch.full((n,), 3.0)),
        "radiometry": (gain * x.clamp(0, 1) ** 1.25 + 0.03).clamp(0, 1),
        "blur_1px": kornia.filters.gaussian_blur2d(x, (7, 7), (1.0, 1.0)),
    }
    out = {}
    with torch.no_grad():
        for name, xs in shifts.items():
            pred = torch.cat([model(b).argmax(1) for b in xs.split(256)]).numpy()
            out[name] = float(np.mean(pred == y))
    return out


def raleigh_agreement(bundle: Path, work: Path) -> dict[str, Any]:
    """Pixel accuracy under the Raleigh polygons of ``geosam run`` (resolution matched), mapped classes."""
    import geopandas as gpd
    import rasterio
    from rasterio.features import rasterize

    from geosam.config import RunConfig
    from geosam.predict import predict_scene
    from geosam.runtime import load_models

    cfg = RunConfig()
    models = load_models(bundle, None, cfg)
    names = list(models.bundle.meta.class_scheme.names)
    res = predict_scene(RALEIGH, work, models, cfg)
    with rasterio.open(res.outputs["classes"]) as ds:
        classes = ds.read(1)
        polys = gpd.read_file(POLYGONS).to_crs(ds.crs)
        ids = rasterize(
            ((g, i + 1) for i, g in enumerate(polys.geometry)), out_shape=ds.shape, transform=ds.transform
        )
    mapped = np.array([EUROSAT_TO_RALEIGH.get(n, "") for n in names] + [""] * (256 - len(names)))
    ok = tot = 0
    per: dict[str, list[int]] = {}
    for i, label in enumerate(polys["label"]):
        if label not in set(EUROSAT_TO_RALEIGH.values()):
            continue
        px = classes[(ids == i + 1) & (classes != 255)]
        good = int(np.sum(mapped[px] == label))
        per.setdefault(label, [0, 0])
        per[label][0] += good
        per[label][1] += int(px.size)
        ok, tot = ok + good, tot + int(px.size)
    return {
        "pixel_accuracy": ok / max(tot, 1),
        "pixels": tot,
        "per_class": {k: v[0] / v[1] for k, v in per.items() if v[1]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/eurosat_rgb/2750")
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/geosam-recipes"))
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    from geosam.models.bundle import load_bundle
    from geosam.train.config import TrainConfig
    from geosam.train.data import load_folder_chips, stratified_split
    from geosam.train.engine import train

    data = subset(load_folder_chips(args.data, cache_dir=args.cache_dir), args.per_class, seed=1)
    _, val = stratified_split(data.labels, 0.1, 0, data.groups)
    x_val = torch.from_numpy(data.to_unit(val))
    rows = []
    for name, extra in RECIPES.items():
        t0 = time.time()
        cfg = TrainConfig(
            backbone="small",
            epochs=args.epochs,
            lr=1e-3,
            warmup_steps=100,
            patience=0,
            keep="last",
            calibrate=False,
            threads=args.threads,
            tile_size=256,
            out=args.work / name,
            **extra,
        )
        train(cfg, data)
        model = load_bundle(args.work / name).model
        row = {
            "recipe": name,
            "config": extra,
            "train_seconds": time.time() - t0,
            "subset_validation": shifted_accuracy(model, x_val, data.labels[val]),
            "raleigh": raleigh_agreement(args.work / name, args.work / f"{name}_raleigh"),
        }
        logging.info("%s: %s", name, json.dumps(row))
        rows.append(row)
    out = {
        "what": __doc__.splitlines()[0],
        "per_class": args.per_class,
        "epochs": args.epochs,
        "subset_validation_chips": len(val),
        "runs": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "recipe_comparison.json").write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        v = r["subset_validation"]
        print(
            f"{r['recipe']:9s} "
            + " ".join(f"{k} {v[k]:.3f}" for k in v)
            + f"  Raleigh {r['raleigh']['pixel_accuracy']:.3f}"
        )


if __name__ == "__main__":
    main()
