"""Zero-shot land cover from SAM 3 concept prompts: concepts, their class scheme, and one tile's labels.

A concept list names the classes and the text prompts of each (``"water=water|lake|river,forest"``:
class ``water`` prompted with three synonyms, class ``forest`` with its own name). The class scheme is
``unclassified`` (class 0) followed by the concepts in the order given.

Per tile, SAM 3 returns instance masks and scores for every prompt (one vision-backbone pass shared
by all prompts; :mod:`geosam.models.sam3`). :func:`label_concepts` turns them into regions:

* a mask is **accepted** when its score (SAM 3's detection probability: query probability times the
  prompt's presence probability) is at least ``threshold`` (0.5, ``Sam3Processor``'s default);
* overlaps are resolved by **score**: accepted masks are painted lowest score first, so each pixel
  takes the concept of the highest-scoring accepted mask covering it; a mask left with fewer than
  ``min_area`` visible pixels is dropped;
* pixels no accepted mask covers are **unclassified**: each connected piece is a region of class
  ``unclassified`` whose probability is ``1 - s`` averaged over its pixels, ``s`` being the highest
  score of any rejected proposal (score below ``threshold``) covering the pixel (0 where none).

A concept region's probability vector holds its mask score at its concept (other entries 0); an
unclassified region's holds its probability at class 0: each region's confidence is the probability
of the label it carries. The tile's vector is the share of its valid pixels in each class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geosam.errors import ConfigError
from geosam.segment import Regions, paint_in_order
from geosam.types import ClassScheme

__all__ = [
    "UNCLASSIFIED",
    "Concept",
    "ConceptLabels",
    "ConceptMasks",
    "concept_scheme",
    "label_concepts",
    "parse_concepts",
]

UNCLASSIFIED = "unclassified"
_PROMPT = re.compile(r"^[^\x00-\x1f=|,]+$")


@dataclass(frozen=True)
class Concept:
    """One class of a zero-shot run.

    Attributes:
        name: Class name (as written in the outputs).
        prompts: Text prompts whose masks count for this class (synonyms), at least one.
    """

    name: str
    prompts: tuple[str, ...]


def parse_concepts(text: str | Sequence[str]) -> tuple[Concept, ...]:
    """Parse ``"forest,water=water|lake|river,building"`` (or a list of such items) into concepts.

    Each item is ``name`` (prompted with itself) or ``name=prompt|prompt|...``. Names are unique
    (case-insensitive), not ``unclassified``, and at most 254 (class ids are uint8 with nodata 255).

    Raises:
        ConfigError: Empty items, duplicate names, a reserved name, or too many classes; the message
            shows the expected form.
    """
    items = [p for chunk in ([text] if isinstance(text, str) else text) for p in chunk.split(",")]
    form = "expected e.g. --concepts 'forest,water=water|lake|river,building'"
    concepts: list[Concept] = []
    seen: set[str] = set()
    for raw in items:
        item = raw.strip()
        if not item:
            raise ConfigError(f"empty concept in {text!r}; {form}")
        name, sep, rest = item.partition("=")
        name = name.strip()
        prompts = tuple(p.strip() for p in rest.split("|")) if sep else (name,)
        if not name or not all(prompts) or not all(_PROMPT.match(p) for p in (name, *prompts)):
            raise ConfigError(f"invalid concept {item!r}; {form}")
        if name.lower() == UNCLASSIFIED:
            raise ConfigError(f"{UNCLASSIFIED!r} is the class of pixels no concept covers; pick another name")
        if name.lower() in seen:
            raise ConfigError(f"concept {name!r} is given twice; list its synonyms as {name}=a|b|c")
        seen.add(name.lower())
        concepts.append(Concept(name, tuple(dict.fromkeys(prompts))))
    if not concepts:
        raise ConfigError(f"no concepts given; {form}")
    if len(concepts) > 254:
        raise ConfigError(f"{len(concepts)} concepts: at most 254 fit a uint8 class map")
    return tuple(concepts)


def concept_scheme(concepts: Sequence[Concept]) -> ClassScheme:
    """The class scheme of a zero-shot run: ``unclassified`` (class 0, grey), then the concepts.

    Well-known land-cover names get their usual colours (water blue, forest green...), others a
    distinct palette colour.
    """
    names = (UNCLASSIFIED, *(c.name for c in concepts))
    palette = ClassScheme(names).colors
    colors = [(128, 128, 128)] + [_known_color(n) or palette[i] for i, n in enumerate(names) if i > 0]
    return ClassScheme(names, tuple(colors))


def _known_color(name: str) -> tuple[int, int, int] | None:
    from geosam.train.colors import KNOWN_COLORS

    return KNOWN_COLORS.get("".join(ch for ch in name.lower() if ch.isalnum()))


@dataclass(frozen=True)
class ConceptMasks:
    """SAM 3's proposals for one tile, over all prompts.

    Attributes:
        masks: ``(M, H, W)`` bool masks at tile size.
        scores: ``(M,)`` float scores in 0..1.
        concept: ``(M,)`` int index of each proposal's concept (into the concept list, from 0).
    """

    masks: np.ndarray
    scores: np.ndarray
    concept: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> ConceptMasks:
        """No proposals."""
        return cls(np.zeros((0, *shape), bool), np.zeros(0, np.float32), np.zeros(0, np.int64))


@dataclass(frozen=True)
class ConceptLabels:
    """One tile's zero-shot result.

    Attributes:
        regions: The partition (labels ``1..R``; 0 only for invalid pixels), source ``sam3``.
        region_probs: ``(R, K + 1)`` probability of each region's label at that label's class.
        tile_probs: ``(K + 1,)`` share of the tile's valid pixels per class.
    """

    regions: Regions
    region_probs: np.ndarray
    tile_probs: np.ndarray


def label_concepts(
    proposals: ConceptMasks,
    valid: np.ndarray,
    n_concepts: int,
    *,
    threshold: float = 0.5,
    min_area: int = 0,
    unclassified_regions: bool = True,
) -> ConceptLabels:
    """Resolve one tile's concept proposals into labelled regions (see the module docstring).

    Args:
        proposals: Masks, scores and concept index of every proposal of every prompt.
        valid: ``(H, W)`` valid pixels; invalid pixels get no region.
        n_concepts: Number of concepts ``K`` (classes are ``unclassified`` + ``K``).
        threshold: Score at which a mask is accepted.
        min_area: Accepted masks with fewer visible valid pixels are dropped (their pixels are then
            unclassified, or another mask's).
        unclassified_regions: Make the uncovered pieces regions of class ``unclassified``; ``False``
            leaves them without a region (label 0), for a classifier to label (the hybrid).

    Returns:
        :class:`ConceptLabels`.
    """
    from scipy import ndimage

    k1 = n_concepts + 1
    scores = np.asarray(proposals.scores, np.float32)
    accepted = np.flatnonzero(scores >= threshold)
    order = accepted[np.argsort(scores[accepted], kind="stable")]  # lowest first: the highest wins
    labels, kept = paint_in_order(proposals.masks, order, valid, min_area)
    probs = np.zeros((len(kept), k1), np.float32)
    for j, i in enumerate(kept):
        probs[j, 1 + int(proposals.concept[i])] = scores[i]
    # unclassified: connected pieces of the valid pixels no accepted mask covers
    rest = valid & (labels == 0)
    pieces, n_pieces = ndimage.label(rest, structure=np.ones((3, 3), bool))
    if not unclassified_regions:
        n_pieces = 0
    if n_pieces:
        near = np.zeros(valid.shape, np.float32)  # best rejected score per pixel
        for r in np.flatnonzero(scores < threshold):
            np.maximum(near, np.where(proposals.masks[r], scores[r], 0.0), out=near)
        sums = ndimage.sum_labels(1.0 - near, pieces, index=np.arange(1, n_pieces + 1))
        sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)[1:]
        unc = np.zeros((n_pieces, k1), np.float32)
        unc[:, 0] = sums / np.maximum(sizes, 1)
        labels = np.where(pieces > 0, pieces + len(kept), labels).astype(np.int32)
        probs = np.concatenate([probs, unc])
    n = len(probs)
    nan = np.full(n, np.nan, np.float32)
    regions = Regions(labels, nan, nan.copy(), "sam3")
    cls = np.zeros(n + 1, np.int64)
    cls[1:] = probs.argmax(axis=1) if n else []
    per_class = np.bincount(cls[labels[valid]], minlength=k1).astype(np.float64)  # uncovered: class 0
    total = per_class.sum()
    tile = (per_class / total).astype(np.float32) if total else np.eye(k1, dtype=np.float32)[0]
    return ConceptLabels(regions, probs, tile)
