"""Training speed in fp32 and bf16 autocast (``TrainConfig.precision``), side by side in one run.

Each row is one epoch of :func:`geosam.train.engine.train` (the ``geosam train`` loop: chip
preprocessing, dihedral augmentation, forward, backward, AdamW step, and the epoch's validation of
10 % of the chips, in fp32 for both) on the same synthetic 64 x 64 RGB chips (speed does not depend
on their content), with the default model's architecture (the ``small`` SAM ViT) at input size 64
(the v1 default model) and 96 (the v3 one). fp32 and bf16 epochs alternate, ``--rounds`` times;
medians are reported, and the ratio fp32 / bf16 per input size (of whole epochs, so a little below
the ratio of the steps alone). bf16 is fast only where the CPU has native bf16 (AVX-512 BF16 or AMX;
the header's ``cpu_flags`` say); elsewhere it is emulated and slower.

    python benchmarks/bench_train_precision.py [--rounds 2] [--size smoke|full]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import _harness as harness
import numpy as np


def chips(n: int, size: int) -> Any:
    """``n`` synthetic uint8 RGB chips of ``size`` px in 10 classes (a :class:`ChipData`)."""
    from geosam.train.data import ChipData

    rng = np.random.default_rng(0)
    return ChipData(
        rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8),
        np.arange(n) % 10,
        tuple(f"class{i}" for i in range(10)),
        ("red", "green", "blue"),
        np.zeros(3),
        np.full(3, 255.0),
        provenance={"source": "synthetic"},
    )


def epoch_seconds(backbone: str, input_size: int, precision: str, data: Any, batch: int, work: Path) -> float:
    """Seconds of one training epoch (with its validation) with these settings."""
    from geosam.train.config import TrainConfig
    from geosam.train.engine import train

    cfg = TrainConfig(
        backbone=backbone,
        input_size=input_size,
        epochs=1,
        batch_size=batch,
        warmup_steps=1,
        patience=0,
        val_fraction=0.1,
        calibrate=False,
        precision=precision,  # type: ignore[arg-type]
        gsd_m=10.0,
        out=work / f"{backbone}_{input_size}_{precision}",
    )
    seen: list[float] = []

    def on_epoch(rec: dict[str, Any]) -> None:
        seen.append(float(rec["seconds"]))

    train(cfg, data, on_epoch=on_epoch)
    return seen[0]


def run(size: str, results: str | None, work: str | None, rounds: int) -> dict[str, Any]:
    """Measure and write ``train_precision[_smoke].json``."""
    header = harness.start("train_precision", size)
    smoke = size == "smoke"
    backbone, sizes, n, batch = ("tiny", [32, 64], 40, 8) if smoke else ("small", [64, 96], 1000, 64)
    data = chips(n, 64)
    base = Path(work) if work else Path(tempfile.gettempdir()) / "geosam-bench"
    base.mkdir(parents=True, exist_ok=True)
    rows, summary = [], []
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        for input_size in sizes:
            secs: dict[str, list[float]] = {"fp32": [], "bf16": []}
            for r in range(1 if smoke else rounds):
                for prec in ("fp32", "bf16"):
                    s = epoch_seconds(backbone, input_size, prec, data, batch, Path(tmp) / str(r))
                    secs[prec].append(s)
                    rows.append({"input_size": input_size, "precision": prec, "round": r + 1, "epoch_s": s})
                    print(f"input {input_size} {prec} round {r + 1}: {s:.2f} s per epoch", flush=True)
            steps = int(n * 0.9) // batch
            f32, b16 = statistics.median(secs["fp32"]), statistics.median(secs["bf16"])
            summary.append(
                {
                    "backbone": backbone,
                    "input_size": input_size,
                    "steps_per_epoch": steps,
                    "batch": batch,
                    "fp32_s_per_step": f32 / steps,
                    "bf16_s_per_step": b16 / steps,
                    "x_faster_bf16": f32 / b16,
                }
            )
    harness.table(
        summary, ["backbone", "input_size", "batch", "fp32_s_per_step", "bf16_s_per_step", "x_faster_bf16"]
    )
    harness.finish(header)
    data_out = {**header, "rows": rows, "summary": summary}
    harness.write_result("train_precision", data_out, results)
    return data_out


def main(argv: list[str] | None = None) -> None:
    harness.ensure_allocator_env()
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="fp32/bf16 epoch pairs per input size")
    a = ap.parse_args(argv)
    run(a.size, a.results, a.work, a.rounds)


if __name__ == "__main__":
    main(sys.argv[1:])
