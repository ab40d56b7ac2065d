"""Training reports: metrics JSON, confusion matrix and learning curve as PNG (matplotlib, Agg)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["confusion_matrix_png", "learning_curve_png", "report_files"]


def _fig_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def confusion_matrix_png(
    cm: np.ndarray,
    classes: Sequence[str],
    title: str = "Confusion matrix",
    *,
    xlabel: str = "predicted",
    ylabel: str = "true",
) -> bytes:
    """Row-normalised confusion matrix with counts, as PNG bytes.

    Args:
        cm: ``(K, K)`` counts; rows are normalised (row ``i`` = class ``i`` of the ``ylabel`` axis).
        classes: Class names of both axes.
        title: Figure title.
        xlabel: Label of the column axis.
        ylabel: Label of the row axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * k, 0.8 + 0.55 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    return _fig_bytes(fig)


def learning_curve_png(history: Sequence[dict[str, Any]]) -> bytes:
    """Loss and validation accuracy / macro-F1 per epoch, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(ep, [h["train_loss"] for h in history], label="train loss")
    a1.plot(ep, [h["val_loss"] for h in history], label="validation loss")
    a1.set_xlabel("epoch")
    a1.legend()
    a2.plot(ep, [h["val_accuracy"] for h in history], label="validation accuracy")
    a2.plot(ep, [h["val_macro_f1"] for h in history], label="validation macro-F1")
    if "train_accuracy" in history[0]:
        a2.plot(ep, [h["train_accuracy"] for h in history], label="train accuracy", alpha=0.6)
    a2.set_xlabel("epoch")
    a2.set_ylim(0, 1)
    a2.grid(alpha=0.3)
    a2.legend(loc="lower right")
    return _fig_bytes(fig)


def report_files(metrics: dict[str, Any], history: Sequence[dict[str, Any]]) -> dict[str, bytes]:
    """Files of a training report, keyed by relative path (written inside the bundle's ``report/``)."""
    files = {
        "report/metrics.json": json.dumps(metrics, indent=2).encode(),
        "report/confusion_matrix.json": json.dumps(
            {"classes": metrics["classes"], "matrix": metrics["confusion_matrix"]}, indent=2
        ).encode(),
        "report/history.json": json.dumps(list(history), indent=2).encode(),
        "report/confusion_matrix.png": confusion_matrix_png(
            np.array(metrics["confusion_matrix"]), metrics["classes"]
        ),
    }
    if history:
        files["report/learning_curve.png"] = learning_curve_png(history)
    return files
