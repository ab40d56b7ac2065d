"""Train geosam's default model (the one shipped in geosam/data/default_model) on EuroSAT RGB.

This is the exact recipe of the packaged model. Stages on the same chips and the same split (seed 0,
10 % of each class held out for validation, never trained on in any stage):

1. ``--stage 1`` (model v1, packaged from 0090990 until 2026-11-30, val OA 0.944): the ``small``
   SAM encoder from scratch, 12 epochs, AdamW lr 1e-3, 500 warm-up steps then cosine decay, label
   smoothing 0.1, dihedral augmentation, the best epoch by validation macro-F1 (it was the last).
   Equivalent command:

       geosam train folder ../shared/data/eurosat_rgb/2750 --backbone small --mode full --epochs 12 \\
           --batch-size 64 --lr 1e-3 --patience 6 --save-dtype float16 --tile-size 256 \\
           --name geosam-default-eurosat-rgb --reflectance-to-display eurosat-l1c --out /tmp/default_v1

   The JPEG chips are display levels (stored / 255); ``EUROSAT_RGB_FROM_L1C`` (fitted by
   benchmarks/fit_eurosat_display.py) is recorded in the bundle so that Sentinel-2 reflectance scenes
   reach the model as these chips did (docs/preprocessing.md).

2. ``--stage 2`` (model v2, **not packaged**: see below): a second cosine cycle (a warm restart,
   Loshchilov and Hutter 2017, "SGDR") from stage 1's bundle: 20 epochs, lr 5e-4, the dihedral
   augmentation plus sensor augmentations for transfer (per chip: a ground-sampling-distance change
   with probability 0.3, radiometric gain/offset/gamma 0.3, Gaussian blur 0.2; see
   geosam/train/augment.py), an exponential moving average of the weights (constant decay 0.999), and
   the **last** epoch kept: nothing is chosen on the validation split, so its figures are an unbiased
   hold-out estimate.

3. ``--stage 3`` (model v3, **the packaged one**, val OA 0.963): stage 1's bundle fine-tuned at
   96 px encoder input (each 64 px chip resampled to 96 px with the bundle's bilinear kernel, in
   training and in ``geosam run`` alike; the position tables interpolated from 8 x 8 to 12 x 12 by
   ``init_from``), 6 epochs, AdamW lr 3e-4 with 200 warm-up steps then cosine decay, dihedral
   augmentation, label smoothing 0.1, a warmed-up exponential moving average of the weights (0.999),
   bf16 autocast, and the **last** epoch kept (nothing chosen on the validation split). Validation
   accuracy by epoch: 0.956, 0.956, 0.959, 0.959, 0.964, 0.963. 2,910 s of epochs on 2 cores with
   native bf16 (one epoch shared the cores with tests). Run from the v1 bundle as committed in 0090990
   (weights sha256 b2dd8565...). Equivalent command:

       geosam train folder ../shared/data/eurosat_rgb/2750 --backbone small --mode full --epochs 6 \\
           --input-size 96 --batch-size 64 --lr 3e-4 --warmup-steps 200 --patience 0 --keep last \\
           --ema-decay 0.999 --precision bf16 --save-dtype float16 --tile-size 256 --gsd 10 \\
           --name geosam-default-eurosat-rgb --reflectance-to-display eurosat-l1c \\
           --init-from /tmp/default_v1 --out /tmp/default_v3

Each stage ends with ``geosam calibrate``'s temperature and domain statistics, fitted on the same
validation split (docs/calibration.md).

Stage 2 was run from the v1 bundle and stopped after 4 of its 20 epochs (about 35 min each on 2 busy
cores): its validation accuracy (0.946, 0.942, 0.937, 0.940 after epochs 1-4) had not moved above
v1's 0.944, and the short-run comparison (pipelines/compare_recipes.py, docs/training.md) showed no
transfer gain from its augmentations. v1 stayed packaged until stage 3 reached 0.963.

Every stage needs the real EuroSAT RGB chips (../shared/data/eurosat_rgb, not part of the repository)
and runs on CPU: stage 1 took 2.7 h on 2 cores (an AVX2 CPU, fp32), stage 3 49 min (AVX-512 BF16).
Progress and per-epoch metrics go to the log; ``--resume`` continues an interrupted stage from
``<out>.work/last.pt``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from geosam.preprocess import EUROSAT_RGB_FROM_L1C
from geosam.train.config import TrainConfig
from geosam.train.data import ChipData, load_folder_chips
from geosam.train.engine import train

ROOT = Path(__file__).resolve().parents[1]
DATASET = (
    "EuroSAT RGB (Helber et al. 2019), Sentinel-2, 64x64 px at 10 m, MIT licence; "
    "25,000 of the 27,000 chips (../shared/data/eurosat_rgb)"
)


def stage_config(stage: int, out: Path, cache: Path, init: Path | None, threads: int | None) -> TrainConfig:
    """The training configuration of ``stage`` (1: v1 from scratch; 2: v2 and 3: v3 from ``init``)."""
    common = {
        "backbone": "small",
        "mode": "full",
        "batch_size": 64,
        "weight_decay": 0.05,
        "warmup_steps": 500,
        "label_smoothing": 0.1,
        "augment": True,
        "val_fraction": 0.1,
        "seed": 0,
        "save_dtype": "float16",
        "tile_size": 256,
        "name": "geosam-default-eurosat-rgb",
        "out": out,
        "cache_dir": cache,
        "threads": threads,
    }
    if stage == 1:
        return TrainConfig(**common, epochs=12, lr=1e-3, patience=6)
    if init is None:
        raise SystemExit(f"stage {stage} starts from stage 1's bundle: pass --init BUNDLE")
    if stage == 3:
        return TrainConfig(
            **{**common, "warmup_steps": 200},
            input_size=96,
            epochs=6,
            lr=3e-4,
            patience=0,
            keep="last",
            ema_decay=0.999,
            precision="bf16",
            init_from=init,
        )
    return TrainConfig(
        **common,
        epochs=20,
        lr=5e-4,
        patience=0,
        keep="last",
        ema_decay=0.999,
        ema_warmup=False,  # the packaged v2 ran with a constant-decay EMA (before ema_warmup existed)
        augment_scale=0.3,
        augment_radiometry=0.3,
        augment_blur=0.2,
        init_from=init,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", type=int, choices=(1, 2, 3), default=3)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/eurosat_rgb/2750")
    ap.add_argument("--out", type=Path, default=ROOT / "geosam/data/default_model")
    ap.add_argument("--init", type=Path, help="stages 2 and 3: the stage-1 (v1) bundle to start from")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    ap.add_argument("--threads", type=int, help="torch CPU threads (speed only; default: all cores)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = load_folder_chips(
        args.data, cache_dir=args.cache_dir, progress=False, reflectance_to_display=EUROSAT_RGB_FROM_L1C
    )
    data = ChipData(**{**data.__dict__, "gsd_m": 10.0, "provenance": {**data.provenance, "dataset": DATASET}})
    cfg = stage_config(args.stage, args.out, args.cache_dir, args.init, args.threads)
    cfg = cfg.model_copy(update={"resume": args.resume})
    result = train(cfg, data)
    logging.info(
        "done: %s val OA %.4f macro-F1 %.4f in %.0f s",
        result.bundle,
        result.metrics["overall_accuracy"],
        result.metrics["macro_f1"],
        result.seconds,
    )


if __name__ == "__main__":
    main()
