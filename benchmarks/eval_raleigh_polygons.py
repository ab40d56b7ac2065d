"""How the packaged EuroSAT model transfers to the Raleigh Landsat-7 sample scene (a domain-shift check).

The default model was trained on 10 m Sentinel-2 chips of Europe (EuroSAT, 10 classes); the sample scene is
28.5 m Landsat-7 over North Carolina with 34 land-cover polygons in 7 classes of another legend. This
script runs ``geosam run`` on the scene, then, for each polygon, compares the class map under it with the
EuroSAT classes that mean the same thing (below). Pixel agreement is reported per Raleigh class and
overall, with and without resolution matching. It is a rough transfer check, not an accuracy figure of
the model: the legends differ and "sediment" has no EuroSAT equivalent (it is left out).

    python benchmarks/eval_raleigh_polygons.py [--model BUNDLE] [--out /tmp/geosam-raleigh-eval]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize

from geosam.config import RunConfig
from geosam.predict import predict_scene
from geosam.runtime import load_models

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "sample_tiles/data/raleigh_landsat7_2000.vrt"
POLYGONS = ROOT / "sample_tiles/data/landsat96_polygons.shp"

#: Raleigh class -> EuroSAT classes with the same meaning.
COMPATIBLE = {
    "developed": {"Residential", "Industrial", "Highway"},
    "agriculture": {"AnnualCrop", "PermanentCrop", "Pasture"},
    "herbaceous": {"HerbaceousVegetation", "Pasture"},
    "shrubland": {"HerbaceousVegetation", "Pasture", "Forest"},
    "forest": {"Forest"},
    "water": {"River", "SeaLake"},
}


def evaluate(model: str | None, out: Path, match: bool) -> dict[str, object]:
    cfg = RunConfig(match_resolution=match)
    models = load_models(model, None, cfg)
    names = models.bundle.meta.class_scheme.names
    res = predict_scene(SCENE, out / ("match" if match else "native"), models, cfg)
    with rasterio.open(res.outputs["classes"]) as ds:
        classes = ds.read(1)
        polys = gpd.read_file(POLYGONS).to_crs(ds.crs)
        ids = rasterize(
            ((g, i + 1) for i, g in enumerate(polys.geometry)),
            out_shape=ds.shape,
            transform=ds.transform,
            dtype="int32",
        )
    per_class: dict[str, list[int]] = {}
    for i, label in enumerate(polys["label"]):
        if label not in COMPATIBLE:
            continue
        px = classes[(ids == i + 1) & (classes != 255)]
        ok = int(np.isin(px, [names.index(n) for n in COMPATIBLE[label]]).sum())
        tot = per_class.setdefault(label, [0, 0])
        tot[0] += ok
        tot[1] += int(px.size)
    agree = {k: round(v[0] / v[1], 3) for k, v in per_class.items() if v[1]}
    ok_all = sum(v[0] for v in per_class.values())
    n_all = sum(v[1] for v in per_class.values())
    hist = np.bincount(classes[classes != 255], minlength=len(names))
    return {
        "match_resolution": match,
        "pixel_agreement": round(ok_all / max(n_all, 1), 3),
        "per_class": agree,
        "pixels": n_all,
        "scene_class_share": {n: round(float(h / hist.sum()), 3) for n, h in zip(names, hist, strict=True)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="bundle (default: the packaged model)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/geosam-raleigh-eval"))
    args = ap.parse_args()
    results = [evaluate(args.model, args.out, m) for m in (True, False)]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
