"""Classification metrics from a confusion matrix (numpy only).

Convention: ``cm[i, j]`` counts samples of true class ``i`` predicted as class ``j``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from geosam.accuracy.estimators import agreement

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

    Classes absent from both truth and prediction are left out of the macro average. Undefined values
    (precision of a class never predicted, kappa of a single-class matrix) are reported as 0. The
    numbers come from :func:`geosam.accuracy.estimators.agreement`.
    """
    cm = np.asarray(cm, dtype=np.float64)
    # geosam.accuracy's matrices have the map (prediction) in rows: transpose this truth-by-row one.
    agr = agreement(cm.T)
    precision = np.nan_to_num(agr.users_accuracy)
    recall = np.nan_to_num(agr.producers_accuracy)
    f1 = np.nan_to_num(agr.f1)
    support = cm.sum(axis=1)
    return {
        "overall_accuracy": float(np.nan_to_num(agr.overall_accuracy)),
        "macro_f1": float(np.nan_to_num(agr.macro_f1)),
        "kappa": float(np.nan_to_num(agr.kappa)),
        "n": agr.n,
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
