"""Train geosam's default model (the one shipped in geosam/data/default_model) on EuroSAT RGB.

This is the exact recipe of the packaged model; the equivalent command line is

    geosam train folder ../shared/data/eurosat_rgb/2750 --backbone small --mode full --epochs 12 \
        --batch-size 64 --lr 1e-3 --patience 6 --save-dtype float16 --tile-size 256 \
        --name geosam-default-eurosat-rgb --reflectance-to-display eurosat-l1c \
        --out geosam/data/default_model

The JPEG chips are display levels (stored / 255); ``EUROSAT_RGB_FROM_L1C`` (fitted by
benchmarks/fit_eurosat_display.py) is recorded in the bundle so that Sentinel-2 reflectance scenes reach
the model as these chips did (docs/preprocessing.md).

It needs the real EuroSAT RGB chips (../shared/data/eurosat_rgb, not part of the repository) and runs on
CPU (2-3 hours on 2 otherwise idle cores). Progress and per-epoch metrics go to the log.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from geosam.preprocess import EUROSAT_RGB_FROM_L1C
from geosam.train.config import TrainConfig
from geosam.train.data import load_folder_chips
from geosam.train.engine import train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/eurosat_rgb/2750")
    ap.add_argument("--out", type=Path, default=ROOT / "geosam/data/default_model")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = load_folder_chips(
        args.data, cache_dir=ROOT / ".cache", progress=False, reflectance_to_display=EUROSAT_RGB_FROM_L1C
    )
    data = type(data)(
        **{
            **data.__dict__,
            "gsd_m": 10.0,
            "provenance": {
                **data.provenance,
                "dataset": "EuroSAT RGB (Helber et al. 2019), "
                "Sentinel-2, 64x64 px at 10 m, MIT licence; "
                "25,000 of the 27,000 chips (../shared/data/eurosat_rgb)",
            },
        }
    )
    cfg = TrainConfig(
        backbone="small",
        mode="full",
        epochs=args.epochs,
        batch_size=64,
        lr=1e-3,
        weight_decay=0.05,
        warmup_steps=500,
        label_smoothing=0.1,
        augment=True,
        val_fraction=0.1,
        seed=0,
        patience=6,
        save_dtype="float16",
        tile_size=256,
        name="geosam-default-eurosat-rgb",
        out=args.out,
        cache_dir=ROOT / ".cache",
        resume=args.resume,
    )
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
