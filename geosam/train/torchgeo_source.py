"""TorchGeo's own datasets as training sources (``geosam train torchgeo NAME --root DIR``).

Only data already on disk in TorchGeo's expected layout is read: every dataset is built with
``download=False`` (and ``checksum=False``), so a missing dataset is a one-line error naming the
folder, never a download.

Supported:

=============== ============================ =========================================================
name            TorchGeo class               task, what geosam trains
=============== ============================ =========================================================
``eurosat``     ``datasets.EuroSAT``         classification (13-band Sentinel-2 chips, 10 classes):
                                             the chip classifier (:func:`classification_chips`)
``eurosat100``  ``datasets.EuroSAT100``      same, the 100-image subset
``landcoverai`` ``datasets.LandCoverAI``     semantic segmentation (RGB 512 px aerial chips, 5 classes):
                                             the dense head (:func:`segmentation_patches`)
=============== ============================ =========================================================

Pixel scaling to 0..1: uint8 imagery (LandCover.ai's JPEGs) by /255 (``dtype``); EuroSAT's uint16
digital numbers by the 2nd-98th percentiles per band over a sample of chips (as ``geosam train folder``
does for non-uint8 chips). Recorded in the bundle as ``preprocessing``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geosam.errors import DataError

__all__ = ["DATASETS", "TorchGeoSource", "classification_chips", "open_dataset", "segmentation_patches"]


@dataclass(frozen=True)
class TorchGeoSource:
    """A supported TorchGeo dataset: class name, task and band names."""

    cls: str
    task: str
    bands: tuple[str, ...]


DATASETS: dict[str, TorchGeoSource] = {
    "eurosat": TorchGeoSource(
        "EuroSAT",
        "classification",
        ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"),
    ),
    "eurosat100": TorchGeoSource(
        "EuroSAT100",
        "classification",
        ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"),
    ),
    "landcoverai": TorchGeoSource("LandCoverAI", "segmentation", ("red", "green", "blue")),
}


def open_dataset(name: str, root: str | os.PathLike[str], split: str = "train") -> Any:
    """Build TorchGeo dataset ``name`` from ``root`` without downloading.

    Raises:
        DataError: Unknown name or split, or the data is not at ``root`` in TorchGeo's layout.
    """
    import torchgeo.datasets as tgd
    from torchgeo.datasets import DatasetNotFoundError

    key = name.lower()
    if key not in DATASETS:
        raise DataError(f"unknown TorchGeo dataset {name!r}; supported: {', '.join(DATASETS)}")
    if split not in ("train", "val", "test"):
        raise DataError(f"split must be train, val or test, not {split!r}")
    cls = getattr(tgd, DATASETS[key].cls)
    if not Path(root).is_dir():
        raise DataError(f"no folder here; put the {DATASETS[key].cls} data there in TorchGeo's layout", root)
    try:
        return cls(root=str(root), split=split, download=False, checksum=False)
    except DatasetNotFoundError:
        raise DataError(
            f"{DATASETS[key].cls} ({split}) not found in TorchGeo's layout here (geosam never downloads it); "
            f"see the torchgeo.datasets.{DATASETS[key].cls} documentation for the files it expects",
            root,
        ) from None


def classification_chips(
    name: str,
    root: str | os.PathLike[str],
    *,
    split: str = "train",
    max_per_class: int | None = None,
    seed: int = 0,
) -> Any:
    """Chips and labels of a TorchGeo classification dataset as a :class:`~geosam.train.data.ChipData`.

    Raises:
        DataError: See :func:`open_dataset`; a segmentation dataset.
    """
    from geosam.train.data import ChipData

    src = DATASETS.get(name.lower())
    if src is None or src.task != "classification":
        raise DataError(f"{name!r} is not a supported classification dataset (try eurosat)")
    ds = open_dataset(name, root, split)
    labels = np.array([int(t) for _, t in ds.samples], np.int64)
    idx = _cap(labels, max_per_class, seed)
    # EuroSAT holds uint16 digital numbers: stored as such (a quarter of float32's memory)
    images = np.stack([ds[int(i)]["image"].numpy().astype(np.uint16) for i in idx])
    low, high = _percentile_range(images, seed=seed)
    return ChipData(
        images=images,
        labels=labels[idx],
        classes=tuple(ds.classes),
        bands=src.bands,
        low=low,
        high=high,
        provenance={
            "source": "torchgeo",
            "dataset": src.cls,
            "root": os.path.abspath(root),
            "split": split,
            "chips": len(idx),
            "scaling": {"method": "percentile", "low": low.tolist(), "high": high.tolist()},
        },
        gsd_m=10.0,
    )


def segmentation_patches(
    name: str,
    root: str | os.PathLike[str],
    *,
    patch: int,
    per_image: int = 4,
    max_images: int | None = None,
    split: str = "train",
    seed: int = 0,
) -> tuple[Any, tuple[str, ...], tuple[str, ...], Any]:
    """Random ``patch``-pixel crops of a TorchGeo segmentation dataset, for ``fit_dense``.

    Returns ``(patches, classes, bands, preprocessing)``; every mask pixel is a target (dense labels).

    Raises:
        DataError: See :func:`open_dataset`; images smaller than ``patch``; a classification dataset.
    """
    import torch

    from geosam.preprocess import FixedScaling, InputRecord, Preprocessing
    from geosam.train.dense import Patches

    src = DATASETS.get(name.lower())
    if src is None or src.task != "segmentation":
        raise DataError(f"{name!r} is not a supported segmentation dataset (try landcoverai)")
    ds = open_dataset(name, root, split)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))[: max_images or len(ds)]
    xs, ys = [], []
    for i in order:
        s = ds[int(i)]
        img, mask = s["image"], s["mask"].long()
        h, w = img.shape[-2:]
        if h < patch or w < patch:
            raise DataError(f"{src.cls} images are {w} x {h} px, smaller than the {patch} px patch", root)
        for _ in range(per_image):
            r, c = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
            xs.append((img[:, r : r + patch, c : c + patch] / 255.0).clamp(0, 1).half())
            ys.append(mask[r : r + patch, c : c + patch])
    x = torch.stack(xs)
    y = torch.stack(ys)
    valid = torch.ones(y.shape, dtype=torch.bool)
    c = len(src.bands)
    prep = Preprocessing(  # uint8 images / 255, as geosam reads uint8 scenes (display values)
        space="display",
        scaling=FixedScaling(low=(0.0,) * c, high=(1.0,) * c),
        input=InputRecord(dtype="uint8", scale=(1 / 255,) * c, offset=(0.0,) * c, rule="stored / 255"),
    )
    return Patches(x, valid, y, None), tuple(ds.classes), src.bands, prep


def _percentile_range(
    images: np.ndarray, low: float = 2.0, high: float = 98.0, sample: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band percentiles over a random sample of chips (uint8 data: the full 0..255 range)."""
    if images.dtype == np.uint8:
        c = images.shape[1]
        return np.zeros(c, np.float64), np.full(c, 255.0)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), size=min(sample, len(images)), replace=False))
    x = np.asarray(images[idx], dtype=np.float64).transpose(1, 0, 2, 3).reshape(images.shape[1], -1)
    lo = np.nanpercentile(x, low, axis=1)
    hi = np.nanpercentile(x, high, axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return lo, hi


def _cap(labels: np.ndarray, max_per_class: int | None, seed: int) -> np.ndarray:
    if max_per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = [np.sort(rng.permutation(np.flatnonzero(labels == c))[:max_per_class]) for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))
