"""The resumable checkpoint of a chip training run (``<out>.work/last.pt``), written after every epoch.

It holds the model, optimiser, schedule, weight average and random generator states and the loop's
bookkeeping (epoch, history, best score and weights, epochs without improvement); it is loaded with
``weights_only=True``, so a tampered file cannot run code.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["resume_checkpoint", "save_checkpoint"]

log = logging.getLogger("geosam.train.engine")


def resume_checkpoint(
    last: Path, model: nn.Module, opt: Any, sched: Any, ema: Any, rng: np.random.Generator
) -> dict[str, Any]:
    """Load the checkpoint into the model, optimiser, schedule, average and ``rng``; return its loop state.

    Raises:
        CheckpointError: Corrupt, another configuration's, or not one geosam wrote (``weights_only``:
            pickled code never runs).
    """
    try:
        ck = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        state = {k: ck[k] for k in ("epoch", "history", "best_score", "best_state", "stale")}
        rng.bit_generator.state = json.loads(ck["rng"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
    except Exception as err:  # corrupt, another configuration's, or pickled code (never run)
        from geosam.errors import CheckpointError

        raise CheckpointError(
            f"cannot resume from this checkpoint ({type(err).__name__}): it is corrupt, from another "
            "model configuration, or not one geosam wrote; delete it to start over",
            last,
        ) from None
    log.info("resumed from %s at epoch %d", last, state["epoch"])
    return state


def save_checkpoint(checkpoint: dict[str, Any], last: Path) -> None:
    """Write ``last`` atomically (a temporary file renamed into place)."""
    last.parent.mkdir(parents=True, exist_ok=True)
    tmp = last.with_name(last.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, last)
