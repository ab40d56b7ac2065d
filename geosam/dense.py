"""Dense (per-pixel) classification of a tile and the object-based refinement of its regions.

For a model with a dense head (:mod:`geosam.models.dense_head`), a tile's class probabilities come
from the tile's encoder features (the one encoder pass that also feeds SAM's mask decoder) and its
pixels, for every pixel (:func:`dense_probabilities`). Regions (SAM masks or superpixels) and the tile
then take the *mean of the pixel probabilities inside them* (:func:`mean_probabilities`): the
object-based refinement of per-pixel maps used in object-based image analysis (Blaschke 2010,
"Object based image analysis for remote sensing", ISPRS J. 65: 2-16), where averaging over a
homogeneous segment removes the salt-and-pepper noise of per-pixel classifiers.

Which one the class map shows is :class:`geosam.config.DenseConfig` ``refine``: ``regions`` (a pixel in a
region gets the region's class and probability; a pixel in no region keeps its own) or ``none`` (every
pixel its own class, the regions layer still carries the region means).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from geosam.classify import TileClasses
    from geosam.config import DenseConfig

__all__ = ["classes_from", "dense_probabilities", "dense_tile_classes", "mean_probabilities", "pixel_classes"]


def dense_probabilities(model: Any, features: Any, tile: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-pixel class probabilities of one tile: ``(K, H, W)`` float32, 0 where the tile is invalid.

    Args:
        model: A ``LandCoverModel`` with a dense head.
        features: ``(1, C, h, w)`` torch encoder features of the tile (``geosam.encode.encode_tiles``),
            the list of levels a multi-level head reads (Hiera's four trunk maps of the tile,
            :func:`geosam.models.sam2_encoder.multiscale_features`), or ``None`` for a head that reads
            the pixels alone (``use_encoder: false``).
        tile: ``(N, H, W)`` stretched 0..1 pixels, invalid pixels filled (model mean).
        valid: ``(H, W)`` valid pixels.
    """
    import torch

    with torch.inference_mode():
        if features is None:
            device = model.mean.device
        elif isinstance(features, torch.Tensor):
            device = features.device
        else:
            device = features[0].device
        x = torch.from_numpy(np.ascontiguousarray(tile, dtype=np.float32))[None].to(device)
        logits = model.dense_logits(features, x)
        probs = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
    probs[:, ~valid] = 0.0
    return probs.astype(np.float32, copy=False)


def dense_tile_classes(
    model: Any, features: Any, tile: np.ndarray, valid: np.ndarray, labels: np.ndarray, n_regions: int
) -> tuple[np.ndarray, TileClasses]:
    """A dense model's pixel probabilities of one tile and the classes of the tile and its regions.

    The tile and each region take the mean probabilities of their pixels (:func:`mean_probabilities`);
    what every tile inference of a dense model returns (SAM 1, superpixels, SAM 2 and SAM 3 regions).

    Args:
        model: A ``LandCoverModel`` with a dense head.
        features: As for :func:`dense_probabilities` (one map, a list of levels, or ``None``).
        tile: ``(N, H, W)`` stretched 0..1 pixels, invalid pixels filled.
        valid: ``(H, W)`` valid pixels.
        labels: ``(H, W)`` int32 region labels (0 = none, ``1..n_regions``).
        n_regions: Number of regions ``R``.

    Returns:
        ``(probs, classes)``: ``(K, H, W)`` float32 pixel probabilities (0 on invalid pixels) and the
        :class:`~geosam.classify.TileClasses` (``(K,)`` tile, ``(R, K)`` regions).
    """
    from geosam.classify import TileClasses

    probs = dense_probabilities(model, features, tile, valid)
    tile_probs = mean_probabilities(probs, valid.astype(np.int32), 1)[0]
    return probs, TileClasses(tile_probs, mean_probabilities(probs, labels, n_regions))


def mean_probabilities(probs: np.ndarray, labels: np.ndarray, n_regions: int) -> np.ndarray:
    """Mean of ``(K, H, W)`` probabilities over each region of an ``(H, W)`` label image: ``(R, K)``.

    Region ``i`` is label ``i + 1`` (0 = no region); a region with no pixel gets zeros.
    """
    k = probs.shape[0]
    lab = labels.ravel().astype(np.int64)
    inside = lab > 0
    idx = lab[inside] - 1
    counts = np.bincount(idx, minlength=n_regions).astype(np.float64)
    out = np.zeros((n_regions, k), np.float64)
    flat = probs.reshape(k, -1)[:, inside]
    for c in range(k):
        out[:, c] = np.bincount(idx, weights=flat[c], minlength=n_regions)
    return (out / np.maximum(counts, 1)[:, None]).astype(np.float32)


def pixel_classes(
    probs: np.ndarray,
    regions: np.ndarray,
    region_class: np.ndarray,
    region_prob: np.ndarray,
    invalid: np.ndarray,
    *,
    refine: bool,
    nodata: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Class and confidence of each pixel of a window from its probabilities and its region.

    Args:
        probs: ``(K, H, W)`` pixel probabilities (any float dtype, 0..1).
        regions: ``(H, W)`` final region ids (0 = none; id ``i`` indexes ``region_class[i - 1]``).
        region_class: ``(M,)`` class of each region.
        region_prob: ``(M,)`` probability of that class.
        invalid: ``(H, W)`` nodata pixels.
        refine: Pixels in a region take the region's class and probability.
        nodata: Class-map nodata value.

    Returns:
        ``(classes uint8, confidence float32)``; invalid pixels are ``nodata`` / NaN.
    """
    cls = probs.argmax(axis=0).astype(np.uint8)
    conf = probs.max(axis=0).astype(np.float32)
    if refine and len(region_class):
        has = regions > 0
        cls[has] = region_class[regions[has] - 1]
        conf[has] = region_prob[regions[has] - 1]
    cls[invalid] = nodata
    conf[invalid] = np.nan
    return cls, conf


def classes_from(dense: bool, cfg: DenseConfig) -> dict[str, str]:
    """Which head produced which output of a run (the run record's ``classes_from``).

    Args:
        dense: The model has a dense head.
        cfg: The run's dense settings (``refine``, ``probabilities``).
    """
    if not dense:
        return {
            "head": "chip",
            "class_map": "region class (classifier on the encoder features pooled over the region); "
            "the tile's class where no region",
            "regions": "classifier on the encoder features pooled over the region",
        }
    return {
        "head": "dense",
        "class_map": "region class (arg-max of the mean pixel probabilities of the dense head inside the "
        "region); the pixel's own class where no region"
        if cfg.refine == "regions"
        else "the dense head's class of each pixel",
        "regions": "arg-max of the mean pixel probabilities of the dense head inside the region",
        "probabilities": "dense head, per pixel" if cfg.probabilities else "not written",
    }
