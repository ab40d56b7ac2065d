"""Shared by the SAM 2 run tests: count encoder passes with forward hooks during a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def count_calls(module: torch.nn.Module) -> tuple[list[int], Any]:
    """``(batch sizes of every forward call, the hook handle)`` of ``module``."""
    calls: list[int] = []
    return calls, module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))


def run_counting_encoders(
    bundle: Path, checkpoint: Path, scene: Path, out: Path, cfg: Any
) -> tuple[Any, Any, list, list]:
    """Run ``scene`` with SAM 2 own-pass regions: ``(models, result, Hiera calls, classifier calls)``."""
    from geosam.predict import predict_scene
    from geosam.runtime import load_models

    models = load_models(bundle, checkpoint, cfg)
    hiera, h1 = count_calls(models.sam.model.image_encoder.trunk)
    clf, h2 = count_calls(models.bundle.model.encoder)
    try:
        res = predict_scene(scene, out, models, cfg)
    finally:
        h1.remove()
        h2.remove()
    return models, res, hiera, clf
