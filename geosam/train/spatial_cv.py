"""Spatially grouped K-fold cross-validation: folds made of whole groups (polygons or spatial blocks).

Neighbouring pixels of one polygon are nearly copies of each other, so a random pixel (or chip) split
measures how well a model remembers a polygon, not how well it maps a place it has not seen. Here every
group (a reference polygon, or a block of a label raster) lies in exactly one fold, and each fold is in
turn the test set while the others train (Roberts et al. 2017, "Cross-validation strategies for data
with temporal, spatial, hierarchical, or phylogenetic structure", Ecography 40: 913-929; Ploton et al.
2020, Nature Communications 11: 4540).

Assignment ("stratified where possible", seeded): groups take the class of most of their samples; the
classes are visited in a seeded random order and, within a class, its groups from largest to smallest
(seeded random order among groups of equal size); each group goes to the fold that holds the fewest
samples *of that class* so far, then the fewest samples overall, then a seeded random fold order. So
every class with at least K groups is in every fold's test set, class shares per fold are as even as
whole groups allow, and a class with fewer than K groups (the Raleigh scene has one agriculture
polygon) is in the test set of as many folds as it has groups: those folds test a class the training
folds never saw, which is what leaving that polygon out means.

Why not scikit-learn: ``StratifiedGroupKFold(shuffle=True)`` only shuffles groups whose class
distributions are identical, so with polygons of one class each (distinct sizes) every seed gives
the same folds, and scikit-learn is a development dependency only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geosam.errors import DataError

__all__ = ["GroupFolds", "grouped_folds"]


@dataclass(frozen=True)
class GroupFolds:
    """K folds of whole groups.

    Attributes:
        groups: ``(G,)`` the distinct group ids, sorted.
        fold: ``(G,)`` fold index (``0..k-1``) of each group.
        k: Number of folds.
        seed: Seed of the assignment.
    """

    groups: np.ndarray
    fold: np.ndarray
    k: int
    seed: int

    def test_groups(self, i: int) -> np.ndarray:
        """Group ids held out in fold ``i``."""
        return np.asarray(self.groups[self.fold == i])

    def train_groups(self, i: int) -> np.ndarray:
        """Group ids trained on in fold ``i`` (every group not held out)."""
        return np.asarray(self.groups[self.fold != i])

    def of(self, group_ids: np.ndarray) -> np.ndarray:
        """Fold index of each sample given its group id (``-1`` for unknown ids)."""
        ids = np.asarray(group_ids)
        pos = np.clip(np.searchsorted(self.groups, ids), 0, len(self.groups) - 1)
        out: np.ndarray = np.where(self.groups[pos] == ids, self.fold[pos], -1)
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form: ``{"k", "seed", "folds": [[group ids of fold 0], ...]}``."""
        return {
            "k": self.k,
            "seed": self.seed,
            "folds": [[_plain(g) for g in self.test_groups(i)] for i in range(self.k)],
        }


def _plain(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def grouped_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> GroupFolds:
    """Assign whole groups to ``k`` folds, stratified by class where possible (rules in the module doc).

    Args:
        labels: ``(N,)`` class index of each sample (pixel or chip), ``>= 0``.
        groups: ``(N,)`` group id of each sample (polygon index, block id); any sortable dtype.
        k: Number of folds, ``>= 2``.
        seed: Seed of the random orders.

    Returns:
        The folds; every group is in exactly one fold and every fold holds at least one group (a fold
        with no samples is always the first choice of the next group, because it has the fewest of
        every class and the fewest overall).

    Raises:
        DataError: ``k < 2``, mismatched lengths, or fewer groups than folds.
    """
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(groups)
    if k < 2:
        raise DataError(f"cross-validation needs at least 2 folds, not {k}")
    if labels.shape != groups.shape or labels.ndim != 1:
        raise DataError("labels and groups must be 1-D arrays of the same length")
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < k:
        raise DataError(
            f"{k}-fold cross-validation needs at least {k} groups (polygons or blocks), "
            f"but the labels have {len(uniq)}; use --cv {max(2, len(uniq))} or fewer"
        )
    if len(labels) and labels.min() < 0:
        raise DataError("class labels must be >= 0")
    n_classes = int(labels.max()) + 1 if len(labels) else 1
    counts = np.zeros((len(uniq), n_classes), np.int64)
    np.add.at(counts, (inverse, labels), 1)
    cls = counts.argmax(axis=1)
    size = counts.sum(axis=1)
    rng = np.random.default_rng(seed)
    tie = rng.permutation(k)
    per_class = np.zeros((n_classes, k), np.int64)
    total = np.zeros(k, np.int64)
    n_groups = np.zeros(k, np.int64)
    fold = np.full(len(uniq), -1, np.int64)
    for c in rng.permutation(n_classes):
        members = np.flatnonzero(cls == c)
        members = members[rng.permutation(len(members))]
        members = members[np.argsort(-size[members], kind="stable")]
        for g in members:
            # fewest of this class, then fewest samples, then fewest groups, then the seeded order
            f = int(np.lexsort((tie, n_groups, total, per_class[c]))[0])
            fold[g] = f
            per_class[c, f] += size[g]
            total[f] += size[g]
            n_groups[f] += 1
    return GroupFolds(groups=uniq, fold=fold, k=k, seed=seed)
