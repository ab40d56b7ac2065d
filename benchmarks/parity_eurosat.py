"""Does ``geosam run`` give EuroSAT chips the predictions of the model's own validation path?

Measures, for the packaged default model, the agreement between the training/validation path (each
chip through the bundle's preprocessing and the model: what ``geosam train`` evaluates and
``geosam classify`` runs) and ``geosam run`` on the same chips as georeferenced scenes:

* **single chips**: each chip a 64 x 64 GeoTIFF at 10 m (EPSG:32631);
* **mosaics**: 8 x 8 chips per 512 x 512 GeoTIFF;
* **EuroSAT MS**: the 54 real Sentinel-2 L1C test chips (13 bands, their own UTM georeferencing) run
  with ``--bands 4,3,2`` through the reflectance-to-display mapping, against the RGB JPEGs of the
  same places through the model path.

Readouts of ``geosam run`` (each a run option set; "tile": the tiles layer's class of the one tile of a
single-chip scene; "map": the majority class of the chip's pixels in the class map):

* ``default``: ``geosam run`` with default options (regions: felzenszwalb superpixels; map readout);
* ``tiles``:   ``--regions tiles`` (tile readout, single chips only);
* ``chips``:   ``--regions chips`` (one region per encoder chip; map readout), where supported.

Chips come from the default model's own validation split (the 10 % of EuroSAT RGB it never trained
on, reproduced with ``stratified_split(labels, 0.1, seed=0)`` over the 25,000 chips), ``--per-class``
per class. ``--geosam-src`` runs another checkout's ``geosam run`` (e.g. main before the fix) on the
same chips; the model path is always this checkout's (it is pixels / 255, then the model).

    python benchmarks/parity_eurosat.py --per-class 10                  # this checkout
    python benchmarks/parity_eurosat.py --per-class 10 --geosam-src ../main --label before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fixtures import EUROSAT_CLASSES as CLASSES
from _harness import RESULTS, ROOT, ensure_allocator_env, start, table


def validation_sample(rgb_root: Path, per_class: int, seed: int = 0) -> list[Path]:
    """``per_class`` chips per class from the default model's validation split (reproduced)."""
    from geosam.train.data import _list_folder, stratified_split

    files, labels, _ = _list_folder(rgb_root, None, 0)
    _, val = stratified_split(np.asarray(labels), 0.1, 0)
    rng = np.random.default_rng(seed)
    out: list[Path] = []
    lab = np.asarray(labels)
    for c in range(len(CLASSES)):
        cand = val[lab[val] == c]
        out += [files[i] for i in sorted(rng.choice(cand, size=min(per_class, len(cand)), replace=False))]
    return out


def model_path(files: list[Path]) -> np.ndarray:
    """Class ids of chips through the training/validation path (ChipData -> engine batch -> model)."""
    import torch

    from geosam.chips import read_chip, stack_chips
    from geosam.models.bundle import load_bundle
    from geosam.preprocess import fill_values
    from geosam.train.chip_batches import model_input
    from geosam.train.data import ChipData

    chips = [read_chip(f) for f in files]
    images, _ = stack_chips(chips, chips[0].data.shape[1:])
    bundle = load_bundle()
    pre = bundle.meta.preprocessing
    data = ChipData(
        images,
        np.zeros(len(files), np.int64),
        CLASSES,
        tuple(bundle.meta.bands),
        np.asarray(pre.scaling.low),
        np.asarray(pre.scaling.high),
        scale=pre.input.scale,
        offset=pre.input.offset,
        preprocessing=pre,
    )
    fill = fill_values(pre, bundle.meta.mean)
    out = []
    with torch.inference_mode():
        for s in range(0, len(files), 64):
            idx = np.arange(s, min(s + 64, len(files)))
            out.append(
                bundle.model(
                    model_input(data, idx, bundle.meta.input_size, torch.device("cpu"), fill)
                ).argmax(1)
            )
    return torch.cat(out).numpy()


def geosam_run(src: Path, scenes: list[Path], out: Path, args: list[str]) -> float:
    """Run ``geosam run`` of checkout ``src`` on ``scenes``; returns seconds. Raises on failure."""
    cfg = out / "cfg.yaml"
    out.mkdir(parents=True, exist_ok=True)
    cfg.write_text("output:\n  regions: false\n  qgis_project: false\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(src), "GEOSAM_NO_REEXEC": "1"}
    cmd = [
        sys.executable,
        "-m",
        "geosam",
        "-q",
        "run",
        *map(str, scenes),
        "--out",
        str(out),
        "-c",
        str(cfg),
        *args,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=src)
    if r.returncode != 0:
        raise RuntimeError(f"geosam run failed ({' '.join(args)}): {r.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t0


def supports_chips(src: Path) -> bool:
    """Whether that checkout's ``geosam run`` knows ``--regions chips``."""
    env = {**os.environ, "PYTHONPATH": str(src), "GEOSAM_NO_REEXEC": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "geosam", "run", "--help"], env=env, capture_output=True, text=True, cwd=src
    )
    return "tiles|chips" in r.stdout.replace(" ", "").replace("\n", "")


def score(pred: np.ndarray, ref: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {
        "agreement": round(float((pred == ref).mean()), 4),
        "accuracy": round(float((pred == truth).mean()), 4),
        "n": len(pred),
    }


def main() -> None:
    ensure_allocator_env()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("GEOSAM_SHARED_DATA", ROOT.parent / "shared" / "data")),
    )
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--geosam-src", type=Path, default=ROOT, help="checkout whose `geosam run` is measured")
    ap.add_argument("--label", default="after", help="name of this measurement in the results file")
    ap.add_argument("--no-ms", action="store_true", help="skip the EuroSAT MS measurement")
    args = ap.parse_args()
    header = start("parity_eurosat", f"{args.per_class} per class")
    from geosam.chips import read_chip
    from geosam.testing_chips import chip_classes_from_map, tile_classes, write_chip_scene, write_mosaic

    src = args.geosam_src.resolve()
    files = validation_sample(args.data / "eurosat_rgb" / "2750", args.per_class)
    truth = np.array([CLASSES.index(f.parent.name) for f in files])
    ref = model_path(files)
    chips = [read_chip(f).data for f in files]
    rows: dict[str, dict[str, float]] = {"model path (validation)": score(ref, ref, truth)}
    chips_ok = supports_chips(src)
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        d = Path(tmp)
        (d / "single").mkdir()
        singles = [write_chip_scene(d / "single" / f"c{i:04d}.tif", c, rgb=True) for i, c in enumerate(chips)]
        mosaics, offsets = [], []
        (d / "mosaic").mkdir()
        for m, s in enumerate(range(0, len(chips), 64)):
            p, where = write_mosaic(d / "mosaic" / f"m{m}.tif", chips[s : s + 64], 8, rgb=True)
            mosaics.append(p)
            offsets.append(where)
        runs = [("default", []), ("tiles", ["--regions", "tiles"])]
        if chips_ok:
            runs.append(("chips", ["--regions", "chips"]))
        for name, opts in runs:
            out = d / f"run_single_{name}"
            try:
                secs = geosam_run(src, singles, out, opts)
            except RuntimeError as err:  # record it, measure the rest
                rows[f"single chips, {name}"] = {"error": str(err)}
                continue
            if name == "tiles":
                pred = np.array([tile_classes(out / f"{p.stem}_tiles.gpkg")[0][0] for p in singles])
            else:
                pred = np.array(
                    [chip_classes_from_map(out / f"{p.stem}_classes.tif", [(0, 0)], 64)[0] for p in singles]
                )
            rows[f"single chips, {name}"] = {**score(pred, ref, truth), "seconds": round(secs, 1)}
            if name == "tiles":
                continue
            out = d / f"run_mosaic_{name}"
            secs = geosam_run(src, mosaics, out, opts)
            pred = np.concatenate(
                [
                    chip_classes_from_map(out / f"{p.stem}_classes.tif", w, 64)
                    for p, w in zip(mosaics, offsets, strict=True)
                ]
            )
            rows[f"mosaics 8x8, {name}"] = {**score(pred, ref, truth), "seconds": round(secs, 1)}
        if not args.no_ms:
            ms = sorted((args.data / "eurosat_ms" / "test").glob("*/*.tif"))
            jpgs = [args.data / "eurosat_rgb" / "2750" / f.parent.name / (f.stem + ".jpg") for f in ms]
            ms_truth = np.array([CLASSES.index(f.parent.name) for f in ms])
            ms_ref = model_path(jpgs)
            rows["EuroSAT MS test: RGB JPEGs, model path"] = score(ms_ref, ms_ref, ms_truth)
            out = d / "run_ms"
            try:
                secs = geosam_run(src, ms, out, ["--regions", "tiles", "--bands", "4,3,2"])
                pred = np.array([tile_classes(out / f"{p.stem}_tiles.gpkg")[0][0] for p in ms])
                rows["EuroSAT MS test: L1C reflectance, geosam run --bands 4,3,2"] = {
                    **score(pred, ms_ref, ms_truth),
                    "seconds": round(secs, 1),
                }
            except RuntimeError as err:
                rows["EuroSAT MS test: L1C reflectance, geosam run --bands 4,3,2"] = {"error": str(err)}
    print(f"geosam run of {src} ({args.label}); {len(files)} validation chips, {args.per_class} per class")
    table(
        [
            {
                "readout": k,
                "agreement with model path": v.get("agreement", v.get("error", "-")),
                "accuracy": v.get("accuracy", "-"),
                "chips": v.get("n", "-"),
                "run s": v.get("seconds", "-"),
            }
            for k, v in rows.items()
        ]
    )
    res_path = RESULTS / "parity_eurosat.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results[args.label] = {
        "header": header,
        "geosam_src": str(src),
        "per_class": args.per_class,
        "rows": rows,
    }
    res_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
