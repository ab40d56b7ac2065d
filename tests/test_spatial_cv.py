"""Spatially grouped folds (geosam.train.spatial_cv), reference pixels and the CV driver (geosam.train.cv)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import box

from geosam.errors import DataError
from geosam.train.cv import cross_validate_polygons
from geosam.train.reference import LabelPolygons, reference_pixels, score_classes
from geosam.train.spatial_cv import grouped_folds
from geosam.types import SceneInfo


@st.composite
def grouped_samples(draw):
    """Samples in groups (polygons): each group has one class or a mix, sizes 1..40."""
    n_groups = draw(st.integers(2, 25))
    n_classes = draw(st.integers(1, 6))
    labels, groups = [], []
    ids = draw(st.lists(st.integers(0, 10_000), min_size=n_groups, max_size=n_groups, unique=True))
    for g in ids:
        size = draw(st.integers(1, 40))
        mixed = draw(st.booleans())
        cls = draw(st.integers(0, n_classes - 1))
        for _ in range(size):
            labels.append(draw(st.integers(0, n_classes - 1)) if mixed else cls)
            groups.append(g)
    k = draw(st.integers(2, n_groups))
    return np.array(labels), np.array(groups), k, draw(st.integers(0, 2**16))


@settings(max_examples=150, deadline=None)
@given(grouped_samples())
def test_folds_never_split_a_group(case):
    labels, groups, k, seed = case
    folds = grouped_folds(labels, groups, k, seed)
    fold_of_sample = folds.of(groups)
    # every group is in exactly one fold: all its samples share the fold
    for g in np.unique(groups):
        assert len(np.unique(fold_of_sample[groups == g])) == 1
    # every fold tests something, and the folds partition the groups
    assert all(len(folds.test_groups(i)) > 0 for i in range(k))
    listed = np.concatenate([folds.test_groups(i) for i in range(k)])
    assert sorted(listed.tolist()) == sorted(np.unique(groups).tolist())
    for i in range(k):
        assert not set(folds.test_groups(i)) & set(folds.train_groups(i))


@settings(max_examples=60, deadline=None)
@given(grouped_samples())
def test_folds_are_deterministic_per_seed(case):
    labels, groups, k, seed = case
    a = grouped_folds(labels, groups, k, seed)
    b = grouped_folds(labels, groups, k, seed)
    assert a.to_dict() == b.to_dict()


def test_folds_stratify_classes_with_enough_groups():
    # 3 classes x 10 single-class groups of equal size, 5 folds: each fold holds 2 groups of each class
    labels = np.repeat(np.arange(3), 100)
    groups = np.repeat(np.arange(30), 10)
    folds = grouped_folds(labels, groups, 5, seed=3)
    for i in range(5):
        held = folds.test_groups(i)
        classes = labels[np.isin(groups, held)]
        assert np.bincount(classes, minlength=3).tolist() == [20, 20, 20]


def test_different_seeds_give_different_folds():
    rng = np.random.default_rng(0)
    sizes = rng.integers(5, 50, size=34)
    groups = np.repeat(np.arange(34), sizes)
    labels = np.repeat(rng.integers(0, 7, size=34), sizes)
    seen = {str(grouped_folds(labels, groups, 5, s).to_dict()["folds"]) for s in range(5)}
    assert len(seen) > 1


def test_fewer_groups_than_folds_is_an_error():
    with pytest.raises(DataError, match="at least 5 groups"):
        grouped_folds(np.zeros(4, int), np.arange(4), 5)


# ------------------------------------------------------------------------------------- reference pixels

_INFO = SceneInfo(
    path="mem",
    width=20,
    height=10,
    count=1,
    dtype="float32",
    crs="EPSG:32633",
    transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4000100.0),
    nodata=(None,),
    band_names=(None,),
)


def _polys(geoms, classes):
    frame = gpd.GeoDataFrame({"label": classes, "_class": classes}, geometry=geoms, crs="EPSG:32633")
    names = tuple(sorted(set(classes)))
    return LabelPolygons(frame, np.array([names.index(c) for c in classes]), names, None, "label", None)


def _px(col0, row0, col1, row1):
    """Box over scene pixels [col0, col1) x [row0, row1) in scene coordinates."""
    return box(500000 + col0 * 10, 4000100 - row1 * 10, 500000 + col1 * 10, 4000100 - row0 * 10)


def test_reference_pixels_are_pixel_centres_inside():
    polys = _polys([_px(0, 0, 3, 2), _px(5.4, 5.4, 7.6, 7.6)], ["a", "b"])
    ref = reference_pixels(polys, _INFO)
    a = ref.label == 0
    assert sorted(zip(ref.rows[a].tolist(), ref.cols[a].tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
    ]
    # 5.4..7.6 holds the centres 5.5, 6.5 and 7.5: pixels 5, 6, 7 -> 9 pixels
    assert int((ref.label == 1).sum()) == 9


def test_reference_pixels_drop_pixels_of_two_classes():
    polys = _polys([_px(0, 0, 4, 4), _px(2, 2, 6, 6), _px(3, 3, 5, 5)], ["a", "b", "b"])
    ref = reference_pixels(polys, _INFO)
    flat = ref.rows * 20 + ref.cols
    assert len(np.unique(flat)) == len(flat)  # a pixel is counted once
    assert ref.ambiguous == 4  # rows/cols 2..3 are in "a" and "b"
    assert int((ref.label == 0).sum()) == 12 and int((ref.label == 1).sum()) == 12


def test_score_classes_by_name_and_unclassified():
    polys = _polys([_px(0, 0, 2, 1), _px(4, 0, 6, 1)], ["water", "forest"])
    ref = reference_pixels(polys, _INFO)  # classes sorted: forest, water
    pred_names = ("water", "forest")  # a model with the other order
    pred = np.where(ref.label == 0, 1, 0)  # all right
    pred[0] = 255  # one pixel unclassified (nodata)
    m = score_classes(pred, ref, pred_names)
    assert m["overall_accuracy"] == 1.0 and m["n"] == 3 and m["unclassified"] == 1
    assert m["miou"] == 1.0


def test_cross_validate_scores_each_pixel_once_with_held_out_models():
    geoms = [_px(i * 2, 0, i * 2 + 2, 2) for i in range(10)]
    classes = ["a", "b"] * 5
    polys = _polys(geoms, classes)
    seen = []

    def workflow(train_polys, test, workdir):
        # a "model" that knows its training polygons' ids: it must never be asked about them
        assert not set(train_polys.index) & set(test.polygon.tolist())
        seen.extend(zip(test.rows.tolist(), test.cols.tolist(), strict=True))
        names = ("b", "a")
        return np.where(test.label == 0, 1, 0), names  # perfect

    res = cross_validate_polygons(_INFO, polys, workflow, k=5, seed=1)
    assert len(seen) == len(set(seen)) == res.n_pixels == 40
    assert res.pooled["overall_accuracy"] == 1.0 and res.mean["kappa"] == 1.0
    assert sorted(g for f in res.folds.to_dict()["folds"] for g in f) == list(range(10))
