"""Classify a folder of chips (JPEG, PNG, GeoTIFF; no georeferencing needed) with a model bundle.

This is the validation path of training, run on any chips: each chip goes through the bundle's
preprocessing (:mod:`geosam.preprocess`, resolved once per folder with the same rules ``geosam run``
applies to a scene: :func:`geosam.scene_preprocessing.resolve_preprocessing`), the nodata fill, the chip
resampling to the encoder input (:func:`geosam.preprocess.resample_chips`), and the model's forward pass
(encoder, mean pooling, head). Each chip is one model chip: chips of another size than the model's are
resampled to its input as they are (their GSD is taken as the model's times the size ratio).

With a class-per-subfolder layout (``root/<class>/*.jpg``, EuroSAT's) the sub-folder names are the true
classes and :meth:`ChipPredictions.summary` reports the accuracy (overall, kappa, per class) over the
chips whose folder names a model class.

    geosam classify CHIPS_DIR --model M --out predictions.csv
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geosam.config import NormalizeConfig
from geosam.errors import DataError

__all__ = ["ChipPredictions", "classify_chips"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChipPredictions:
    """Class probabilities of chips.

    Attributes:
        files: The chip files, sorted.
        truth: Each chip's folder class (``None`` for chips directly in the folder).
        classes: The model's class names.
        probs: ``(N, K)`` float32 probabilities (softmax of the head's logits).
        applied: How the model's preprocessing was applied.
        overrides: User overrides of the model's preprocessing (empty: none).
    """

    files: tuple[Path, ...]
    truth: tuple[str | None, ...]
    classes: tuple[str, ...]
    probs: np.ndarray
    applied: tuple[str, ...] = ()
    overrides: tuple[str, ...] = field(default=())

    @property
    def predicted(self) -> np.ndarray:
        """``(N,)`` index of the most probable class."""
        out: np.ndarray = np.argmax(self.probs, axis=1)
        return out

    def labelled(self) -> tuple[np.ndarray, np.ndarray]:
        """``(chip index, true class index)`` of the chips whose folder names a model class."""
        pos = {c: i for i, c in enumerate(self.classes)}
        idx = [i for i, t in enumerate(self.truth) if t is not None and t in pos]
        return np.asarray(idx, np.int64), np.asarray([pos[str(self.truth[i])] for i in idx], np.int64)

    def summary(self) -> dict[str, Any] | None:
        """Accuracy over the labelled chips (``None`` when none is labelled with a model class).

        Overall accuracy, kappa, macro-F1, per-class producer's/user's accuracy and the confusion matrix
        (:func:`geosam.train.metrics.summarize`), plus the folder names that are not model classes.
        """
        from geosam.train.metrics import confusion_matrix, summarize

        idx, y = self.labelled()
        unknown = sorted({t for t in self.truth if t is not None and t not in self.classes})
        if not len(idx):
            return None
        cm = confusion_matrix(y, self.predicted[idx], len(self.classes))
        out = summarize(cm, self.classes)
        out["chips"] = len(idx)
        out["folders_not_model_classes"] = unknown
        return out

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """``file, true_class, predicted_class, probability, p_<class>...`` per chip (written atomically)."""
        from geosam.io.atomic import atomic_path

        dest = Path(path)
        pred = self.predicted
        with atomic_path(dest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(
                ["file", "true_class", "predicted_class", "probability", *[f"p_{c}" for c in self.classes]]
            )
            for i, p in enumerate(self.files):
                w.writerow(
                    [
                        str(p),
                        self.truth[i] or "",
                        self.classes[int(pred[i])],
                        f"{float(self.probs[i, pred[i]]):.6f}",
                        *[f"{float(v):.6f}" for v in self.probs[i]],
                    ]
                )
        return dest


def classify_chips(
    chips: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    model: str | os.PathLike[str] | None = None,
    *,
    normalize: NormalizeConfig | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    sam_checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> ChipPredictions:
    """Classify chip files with a bundle through its own preprocessing (see the module docstring).

    Args:
        chips: A folder (flat, or class-per-subfolder) or a list of chip files.
        model: Bundle folder; ``None`` for the packaged default model.
        normalize: Radiometry option and stretch override (default ``auto``: the model's preprocessing).
        batch_size: Chips per forward pass.
        device: Torch device.
        sam_checkpoint: The SAM checkpoint of a bundle whose encoder is a frozen checkpoint.
        progress: Show a progress bar.

    Returns:
        The :class:`ChipPredictions`.

    Raises:
        DataError: No chips, unreadable chips, or chips whose band count is not the model's.
        ModelError: The bundle cannot be loaded.
        ConfigError: An option that does not fit the chips or the model.
    """
    import torch

    from geosam.chips import list_chip_folder, read_chip
    from geosam.models.bundle import load_bundle
    from geosam.preprocess import PercentileScaling, model_preprocessing, resample_chips
    from geosam.progress import progress_iter
    from geosam.radiometry import BandScaling
    from geosam.scene_preprocessing import resolve_preprocessing
    from geosam.stretch import stretch_from_sample, unit_values

    if isinstance(chips, (str, os.PathLike)):
        files, truth = list_chip_folder(chips)
        where = os.fspath(chips)
    else:
        files, truth = [Path(c) for c in chips], [None] * len(chips)
        where = os.fspath(files[0].parent) if files else "chips"
    if not files:
        raise DataError("no chips to classify", where)
    bundle = load_bundle(model, sam_checkpoint=sam_checkpoint, device=device)
    meta = bundle.meta
    pre = model_preprocessing(meta)
    n_bands = len(meta.bands)
    images = [read_chip(f) for f in progress_iter(files, "reading chips", enabled=progress)]
    for f, im in zip(files, images, strict=True):
        if im.data.shape[0] != n_bands:
            raise DataError(
                f"chip has {im.data.shape[0]} band(s) but the model takes {n_bands} "
                f"({', '.join(meta.bands)})",
                f,
            )
    dtypes = Counter(im.meta.dtype for im in images)
    if len(dtypes) > 1:
        raise DataError(f"chips of mixed storage types {dict(dtypes)}: classify each kind separately", where)
    first = images[0].meta
    head = BandScaling(first.dtype, first.scale, first.offset, first.nbits, tuple(first.names))
    sizes = Counter(im.data.shape[1:] for im in images)
    chip = meta.chip_size or meta.input_size
    if any(s != (chip, chip) for s in sizes):
        log.info(
            "%s: chips of %s px are resampled to the model's %d px input (bilinear); the model was "
            "trained on %d px chips",
            where,
            ", ".join(f"{h}x{w}" for h, w in sizes),
            meta.input_size,
            chip,
        )
    cfg = normalize or NormalizeConfig()
    mean = np.asarray(meta.mean, np.float32)
    # one resolution for the folder, from a sample of its chips (as training decides for its folder)
    shared = resolve_preprocessing(pre, head, _sample(images), mean, cfg, where=where, log_to=log)
    pct = None
    if shared.stretch.method == "percentile":  # per-scene statistics: each chip is its own "scene"
        own = cfg.method == "auto" and isinstance(pre.scaling, PercentileScaling) and not shared.fallback
        lo, hi = (pre.scaling.low, pre.scaling.high) if own else (cfg.low, cfg.high)  # type: ignore[union-attr]
        pct = NormalizeConfig(method="percentile", low=lo, high=hi)
    fill = np.asarray(shared.fill, np.float32)[:, None, None]
    probs = np.zeros((len(files), len(meta.class_scheme)), np.float32)
    net = bundle.model
    dev = next(net.parameters()).device
    with torch.inference_mode():
        for s in progress_iter(range(0, len(files), batch_size), "classifying chips", enabled=progress):
            batch = []
            for i in range(s, min(s + batch_size, len(files))):
                im = images[i]
                stretch = shared.stretch
                if pct is not None:
                    stretch = stretch_from_sample(
                        head, _sample([im]), pct, radiometry=shared.radiometry, where=str(files[i])
                    )
                x = unit_values(im.data, stretch)
                bad = np.isnan(x).any(axis=0)
                if im.valid is not None:
                    bad |= ~im.valid
                if bad.any():
                    x = np.where(bad[None], fill, x)
                t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None].to(dev)
                batch.append(resample_chips(t, meta.input_size, pre.resampling))
            logits = net(torch.cat(batch))
            probs[s : s + len(batch)] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return ChipPredictions(
        tuple(files),
        tuple(truth),
        tuple(meta.class_scheme.names),
        probs,
        (shared.applied,),
        shared.overrides,
    )


def _sample(images: Sequence[Any], limit: int = 256) -> np.ndarray:
    """Valid stored values ``(bands, n)`` float64 of up to ``limit`` chips (evenly spaced)."""
    step = max(1, len(images) // limit)
    parts = []
    for im in images[::step]:
        d = np.asarray(im.data, np.float64).reshape(im.data.shape[0], -1)
        ok = np.ones(d.shape[1], bool) if im.valid is None else im.valid.reshape(-1)
        parts.append(d[:, ok & ~np.isnan(d).any(axis=0)])
    return np.concatenate(parts, axis=1)
