"""``make demo``: the analyst's workflow on the sample scene, with its accuracy measured.

On the Raleigh Landsat-7 sample scene (28.5 m, 5 bands; ``sample_tiles/``) and its 34 reference
polygons in 7 classes:

1. **Spatial split.** The polygons are split into 3 folds of whole polygons, stratified by class
   (:func:`geosam.train.spatial_cv.grouped_folds`, seed 0): fold 0 is held out, the rest is for
   training. A polygon is never on both sides, so the accuracy below is measured on ground the model
   never saw (pixels of one polygon are strongly correlated; a random pixel split would flatter it).
2. ``geosam train polygons SCENE train.gpkg --class-column label`` (the defaults: the dense per-pixel
   head on the pixel values, ``geosam.train.workflows.POLYGONS_DENSE``).
3. ``geosam run SCENE --model model`` (class map, confidence, regions, QGIS project).
4. ``geosam evaluate CLASSES heldout.gpkg --field label``: confusion matrix, overall accuracy, kappa,
   producer's and user's accuracy of the held-out polygons, printed and written as JSON
   (``heldout_evaluation/``).
5. A second QGIS project, ``demo.qgs``, shows the run's layers with the training and the held-out
   reference polygons on top (class-coloured outlines), so the map can be checked against them.

Every step is the command a user would type (printed before it runs), called in-process. Outputs go to
``demo_out/`` (``--out``). Takes about 20-30 s on 2 CPU cores (21 s measured on 2026-11-30).

    python pipelines/demo.py [--out demo_out]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample_tiles" / "data"
SCENE = DATA / "raleigh_landsat7_2000_5band.vrt"
POLYGONS = DATA / "landsat96_polygons.shp"
FIELD = "label"


def split_polygons(out: Path, k: int = 3, seed: int = 0) -> tuple[Path, Path, int, int]:
    """Write ``train.gpkg`` and ``heldout.gpkg`` (fold 0 of ``k`` polygon folds); returns their sizes."""
    import geopandas as gpd

    from geosam.train.spatial_cv import grouped_folds

    polys = gpd.read_file(POLYGONS)
    classes = sorted(set(polys[FIELD]))
    labels = np.array([classes.index(c) for c in polys[FIELD]])
    folds = grouped_folds(labels, np.arange(len(polys)), k, seed)
    held = np.isin(np.arange(len(polys)), folds.test_groups(0))
    train_path, held_path = out / "train.gpkg", out / "heldout.gpkg"
    polys[~held].to_file(train_path, driver="GPKG", layer="train")
    polys[held].to_file(held_path, driver="GPKG", layer="heldout")
    return train_path, held_path, int((~held).sum()), int(held.sum())


def geosam(*args: str | Path) -> None:
    """Run one ``geosam`` command in-process, echoing it first; exit if it fails."""
    from geosam.cli.main import main

    argv = [str(a) for a in args]
    print(f"\n$ geosam {shlex.join(argv)}", flush=True)
    rc = main(argv)
    if rc != 0:
        sys.exit(rc)


def reference_project(out: Path, stem: str, train: Path, held: Path) -> Path:
    """``demo.qgs``: the run's layers with the training and held-out polygons outlined on top."""
    from geosam.io.qgis_project import QgisLayer, write_qgis_project
    from geosam.io.style import categorized_fill_qml, qml_path
    from geosam.models.bundle import read_bundle_meta

    scheme = read_bundle_meta(out / "model").class_scheme
    layers = []
    for path, name in ((held, "reference: held-out polygons"), (train, "reference: training polygons")):
        style = qml_path(path)
        style.write_text(
            categorized_fill_qml(scheme, field=FIELD, fill_opacity=0.0, outline_width_mm=0.8),
            encoding="utf-8",
        )
        layers.append(QgisLayer(path.name, name, "vector", layer_name=path.stem, style=style.name))
    for suffix, name, visible in (
        ("_regions.gpkg", "regions", False),
        ("_confidence.tif", "confidence", False),
        ("_classes.tif", "classes", True),
    ):
        data = out / f"{stem}{suffix}"
        if data.exists():
            kind = "vector" if suffix.endswith(".gpkg") else "raster"
            layer_name = "regions" if kind == "vector" else None
            qml = qml_path(data)
            layers.append(
                QgisLayer(
                    data.name,
                    name,
                    kind,
                    layer_name=layer_name,
                    style=qml.name if qml.exists() else None,
                    visible=visible,
                )
            )
    from geosam.io.read import open_scene

    return write_qgis_project(out / "demo.qgs", layers, crs=open_scene(SCENE).crs, title="geosam demo")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "demo_out")
    args = ap.parse_args(argv)
    if not SCENE.is_file():
        print(f"demo: {SCENE} is missing: run `python sample_tiles/fetch.py` first", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, held, n_train, n_held = split_polygons(out)
    print(f"spatial split: {n_train} training polygons, {n_held} held out (whole polygons, by class)")
    geosam("train", "polygons", SCENE, train, "--class-column", FIELD, "--out", out / "model")
    geosam("run", SCENE, "--model", out / "model", "--out", out)
    classes = out / f"{SCENE.stem}_classes.tif"
    geosam("evaluate", classes, held, "--field", FIELD, "--out", out / "heldout_evaluation")
    report = out / "heldout_evaluation" / f"{classes.stem}_evaluation.json"
    acc = json.loads(report.read_text(encoding="utf-8"))
    project = reference_project(out, SCENE.stem, train, held)
    pixels = acc.get("pixels", acc)
    print(
        f"\nheld-out polygons ({n_held}, never trained on): overall accuracy "
        f"{pixels['overall_accuracy']:.3f}, kappa {pixels['kappa']:.3f} "
        f"({time.perf_counter() - t0:.0f} s in all)"
    )
    print(f"open {project} in QGIS: the map with the reference polygons outlined on top")
    return 0


if __name__ == "__main__":
    sys.exit(main())
