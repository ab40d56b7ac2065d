"""Classification metrics from a confusion matrix (numpy only).

Convention: ``cm[i, j]`` counts samples of true class ``i`` predicted as class ``j``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["confusion_matrix", "summarize"]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Return the ``(K, K)`` int64 confusion matrix (rows = truth, columns = prediction)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError("y_true and y_pred must have the same shape")
    idx = y_true * num_classes + y_pred
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarize(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Overall accuracy, macro-F1, Cohen's kappa and per-class precision/recall/F1/support.

    Classes absent from both truth and prediction are left out of the macro average.
    """
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support + predicted) > 0
    oa = float(tp.sum() / total) if total else 0.0
    pe = float((support * predicted).sum() / (total * total)) if total else 0.0
    kappa = (oa - pe) / (1 - pe) if pe < 1 else 0.0
    return {
        "overall_accuracy": oa,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "kappa": float(kappa),
        "n": int(total),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "classes": list(class_names),
    }
