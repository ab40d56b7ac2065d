"""Parity: ``geosam run`` gives chips the predictions of the training/validation path (>= 99 % agreement).

"The prediction of a chip through ``geosam run``" is the class the run's class map gives the chip's
pixels with ``--regions chips``: each encoder chip, anchored to the scene's chip grid, is one region
whose class and probability come from the chip's own pooled features, which is what the validation
path computes for a training chip (:func:`geosam.train.engine.predict_chips`: encoder, mean pooling,
head). For single-chip scenes the tiles layer's class (the scene is one tile) is checked too.

The check cannot pass by accident: the reference predictions must span most classes, the run's
confidence raster must carry the reference probability of each chip to 1e-4 (runs in fp32), and the
same chips run with ``--stretch percentile`` (the per-scene stretch ``geosam run`` applied before it
read the model's preprocessing) must fall far below parity. ``GEOSAM_PARITY_SRC=<checkout>`` runs
another checkout's ``geosam run`` (in a subprocess) against the same reference: main before the fix
fails here (single chips: 0.10 agreement; docs/training.md).

Data: EuroSAT RGB validation chips of the packaged default model (3 per class as single 64 x 64
scenes, 8 per class in 8 x 8 mosaics), and the 54 EuroSAT MS test chips (13 bands, their real
Sentinel-2 georeferencing) through a 13-band model trained here with the band adapter (probe on a tiny
SAM checkpoint).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geosam.cli.main import main as geosam_main
from geosam.train.data import EUROSAT_CLASSES

pytestmark = pytest.mark.shared


def run(scenes, out: Path, *options: str) -> None:
    """``geosam run`` (the CLI, in this process); rasters and tiles only, to keep it quick.

    fp32: the validation path's arithmetic, so probabilities can be compared to 1e-4 (``--precision
    auto`` picks bf16 autocast on CPUs that have it; agreement then stays >= 99 %, see
    benchmarks/parity_eurosat.py, but probabilities move by up to a few hundredths).
    """
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "cfg.yaml"
    cfg.write_text("output:\n  regions: false\n  qgis_project: false\n")
    args = ["-q", "run", *map(str, scenes), "--out", str(out), "-c", str(cfg), "--precision", "fp32"]
    src = os.environ.get("GEOSAM_PARITY_SRC")
    if src:  # another checkout's `geosam run`, e.g. main before the fix
        env = {**os.environ, "PYTHONPATH": src, "GEOSAM_NO_REEXEC": "1"}
        r = subprocess.run(
            [sys.executable, "-m", "geosam", *args, *options], env=env, cwd=src, capture_output=True
        )
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        return
    rc = geosam_main([*args, *options])
    assert rc == 0


def from_map(out: Path, scene: Path, offsets, chip: int) -> tuple[np.ndarray, np.ndarray]:
    """Class and confidence at each chip of a run's class map (the chip's centre pixel)."""
    with rasterio.open(out / f"{scene.stem}_classes.tif") as ds:
        cls = ds.read(1)
    with rasterio.open(out / f"{scene.stem}_confidence.tif") as ds:
        conf = ds.read(1)
    from geosam.testing_chips import chip_classes_from_map

    maj = chip_classes_from_map(out / f"{scene.stem}_classes.tif", offsets, chip)
    centre = np.array([cls[r + chip // 2, c + chip // 2] for r, c in offsets])
    assert (maj == centre).all()  # with --regions chips every pixel of a chip holds the chip's class
    return centre.astype(np.int64), np.array([conf[r + chip // 2, c + chip // 2] for r, c in offsets])


def assert_parity(pred, conf, ref_probs, what: str, min_classes: int, atol: float = 1e-4) -> float:
    ref = ref_probs.argmax(1)
    assert len(np.unique(ref)) >= min_classes, f"{what}: degenerate reference predictions"
    agreement = float((pred == ref).mean())
    assert agreement >= 0.99, f"{what}: {agreement:.3f} agreement with the validation path"
    same = pred == ref
    np.testing.assert_allclose(conf[same], ref_probs[same, ref[same]], atol=atol, err_msg=what)
    return agreement


# ------------------------------------------------------------------------------------ EuroSAT RGB


@pytest.fixture(scope="module")
def rgb(shared_data: Path):
    """Default model, validation chips, their validation-path probabilities."""
    from geosam.chips import read_chip, stack_chips
    from geosam.models.bundle import load_bundle
    from geosam.train.data import ChipData, _list_folder, stratified_split
    from geosam.train.engine import predict_chips

    root = shared_data / "eurosat_rgb" / "2750"
    files, labels, classes = _list_folder(root, None, 0)
    assert tuple(classes) == EUROSAT_CLASSES
    _, val = stratified_split(np.asarray(labels), 0.1, 0)  # the default model's own validation split
    rng = np.random.default_rng(0)
    lab = np.asarray(labels)
    pick = [sorted(rng.choice(val[lab[val] == c], 11, replace=False)) for c in range(10)]
    singles = [files[i] for p in pick for i in p[:3]]
    mosaic = [files[i] for p in pick for i in p[3:11]]
    bundle = load_bundle()

    def reference(chosen):
        chips = [read_chip(f) for f in chosen]
        images, _ = stack_chips(chips, (64, 64))
        y = [EUROSAT_CLASSES.index(f.parent.name) for f in chosen]
        data = ChipData.for_model(images, y, EUROSAT_CLASSES, bundle.meta.bands, bundle.meta.preprocessing)
        return [c.data for c in chips], predict_chips(bundle.model, data, size=bundle.meta.input_size)

    return {"singles": reference(singles), "mosaic": reference(mosaic)}


def test_rgb_single_chip_scenes_match_the_validation_path(rgb, tmp_path):
    from geosam.testing_chips import tile_classes, write_chip_scene

    chips, ref = rgb["singles"]
    scenes = [write_chip_scene(tmp_path / f"c{i:03d}.tif", c, rgb=True) for i, c in enumerate(chips)]
    # a single-chip scene is one tile (and, on the chip grid, one encoder chip): its tile class is the
    # chip's prediction, and with --regions tiles every pixel of the class map holds it
    run(scenes, tmp_path / "tiles", "--regions", "tiles")
    tiles = [tile_classes(tmp_path / "tiles" / f"{s.stem}_tiles.gpkg") for s in scenes]
    pred, conf = np.array([t[0][0] for t in tiles]), np.array([t[1][0] for t in tiles])
    assert_parity(pred, conf, ref, "single RGB chips, tile class", 8)
    got = [from_map(tmp_path / "tiles", s, [(0, 0)], 64) for s in scenes]
    pred, conf = np.array([g[0][0] for g in got]), np.array([g[1][0] for g in got])
    assert_parity(pred, conf, ref, "single RGB chips, class map", 8)
    # negative control: the per-scene percentile stretch runs applied before is far from parity
    run(scenes[::3], tmp_path / "pct", "--regions", "tiles", "--stretch", "percentile")
    pct = np.array([from_map(tmp_path / "pct", s, [(0, 0)], 64)[0][0] for s in scenes[::3]])
    assert (pct == ref[::3].argmax(1)).mean() < 0.8


def test_rgb_mosaics_match_the_validation_path(rgb, tmp_path):
    from geosam.testing_chips import write_mosaic

    chips, ref = rgb["mosaic"]
    preds, confs = [], []
    mosaics = []
    for m, s in enumerate(range(0, len(chips), 64)):
        mosaics.append(write_mosaic(tmp_path / f"m{m}.tif", chips[s : s + 64], 8, rgb=True))
    run([p for p, _ in mosaics], tmp_path / "out", "--regions", "chips")
    for p, where in mosaics:
        pr, cf = from_map(tmp_path / "out", p, where, 64)
        preds.append(pr)
        confs.append(cf)
    pred, conf = np.concatenate(preds), np.concatenate(confs)
    assert_parity(pred, conf, ref, "RGB 8x8 mosaics", 8)


def test_classify_cli_is_the_validation_path(rgb, tmp_path, shared_data):
    """``geosam classify`` on a class-per-subfolder folder of the same JPEGs gives the same probabilities."""
    import csv

    chips, ref = rgb["singles"]
    from PIL import Image

    for i, c in enumerate(chips):
        d = tmp_path / "chips" / EUROSAT_CLASSES[i // 3]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(c.transpose(1, 2, 0)).save(d / f"c{i:03d}.png")  # lossless, as decoded
    assert geosam_main(["-q", "classify", str(tmp_path / "chips"), "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    probs = np.array([[float(r[f"p_{c}"]) for c in EUROSAT_CLASSES] for r in rows])
    np.testing.assert_allclose(probs, ref, atol=1e-5)


# ------------------------------------------------------------------------------------- EuroSAT MS


@pytest.fixture(scope="module")
def ms(shared_data: Path, tmp_path_factory):
    """A 13-band model (band adapter on a tiny SAM checkpoint, probe) trained on the 216 MS training chips."""
    from geosam.testing_models import make_tiny_sam_checkpoint
    from geosam.train.config import TrainConfig
    from geosam.train.data import load_folder_chips
    from geosam.train.engine import train

    d = tmp_path_factory.mktemp("ms")
    ckpt = make_tiny_sam_checkpoint(d / "sam_tiny.pth", img_size=64)
    data = load_folder_chips(shared_data / "eurosat_ms" / "train")
    assert data.bands[-1] == "B8A" and data.record.space == "reflectance"  # EuroSAT MS: B8A last, DN/10000
    cfg = TrainConfig(
        backbone=str(ckpt),
        mode="probe",
        band_init="mean",  # every band reaches the features: a band-order slip would change predictions
        input_size=64,
        epochs=40,
        batch_size=32,
        lr=5e-2,
        warmup_steps=5,
        patience=0,
        threads=2,
        out=d / "ms_model",
    )
    res = train(cfg, data)
    assert res.meta.encoder.band_adapter == "mean" and res.meta.bands[-1] == "nir08"
    return d / "ms_model", ckpt


def test_ms_test_chips_through_geosam_run_match_the_validation_path(ms, shared_data, tmp_path):
    from geosam.chips import read_chip, stack_chips
    from geosam.models.bundle import load_bundle
    from geosam.testing_chips import write_mosaic
    from geosam.train.data import ChipData
    from geosam.train.engine import predict_chips

    bundle_dir, ckpt = ms
    files = sorted((shared_data / "eurosat_ms" / "test").glob("*/*.tif"))
    assert len(files) == 54
    bundle = load_bundle(bundle_dir, sam_checkpoint=ckpt)
    chips = [read_chip(f) for f in files]
    images, _ = stack_chips(chips, (64, 64))
    y = [EUROSAT_CLASSES.index(f.parent.name) for f in files]
    data = ChipData.for_model(images, y, EUROSAT_CLASSES, bundle.meta.bands, bundle.meta.preprocessing)
    ref = predict_chips(bundle.model, data, size=bundle.meta.input_size)
    opts = ("--model", str(bundle_dir), "--sam-checkpoint", str(ckpt), "--regions", "chips")
    # single chips: the real files, with their own UTM georeferencing
    run(files, tmp_path / "single", *opts)
    got = [from_map(tmp_path / "single", f, [(0, 0)], 64) for f in files]
    pred, conf = np.array([g[0][0] for g in got]), np.array([g[1][0] for g in got])
    assert_parity(pred, conf, ref, "single MS chips", 4)
    # a mosaic of all 54 (8 per row)
    mosaic, where = write_mosaic(tmp_path / "ms_mosaic.tif", [c.data for c in chips], 8, crs="EPSG:32631")
    run([mosaic], tmp_path / "mosaic", *opts)
    pred, conf = from_map(tmp_path / "mosaic", mosaic, where, 64)
    assert_parity(pred, conf, ref, "MS mosaic", 4)
