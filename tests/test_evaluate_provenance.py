"""``geosam evaluate`` warns when the reference is the map's own training labels."""

import json
import logging
import shutil

import geopandas as gpd
import numpy as np
from shapely.geometry import box

from geosam.accuracy.provenance import training_reference
from geosam.testing import make_raster


def _run_folder(tmp_path):
    labels = tmp_path / "labels.gpkg"
    gpd.GeoDataFrame(
        {"label": ["0", "1"]}, geometry=[box(0, 0, 5, 5), box(5, 0, 10, 5)], crs="EPSG:32633"
    ).to_file(labels)
    bundle = tmp_path / "model"
    bundle.mkdir()
    (bundle / "model.json").write_text(json.dumps({"data": {"source": "polygons", "labels": str(labels)}}))
    out = tmp_path / "out"
    out.mkdir()
    classes = out / "s_classes.tif"
    classes.write_bytes(b"")  # only its name and its run record matter here
    (out / "s_run.json").write_text(json.dumps({"model": {"path": str(bundle)}}))
    return labels, bundle, classes


def test_training_labels_are_recognised_by_path_or_content(tmp_path):
    labels, bundle, classes = _run_folder(tmp_path)
    assert training_reference(classes, labels) == bundle
    copy = tmp_path / "elsewhere" / "copy.gpkg"
    copy.parent.mkdir()
    shutil.copy(labels, copy)
    assert training_reference(classes, copy) == bundle  # the same bytes under another name
    other = tmp_path / "held_out.gpkg"
    gpd.GeoDataFrame({"label": ["a"]}, geometry=[box(0, 5, 5, 10)], crs="EPSG:32633").to_file(other)
    assert training_reference(classes, other) is None
    # not a geosam map name, or no run record beside it: not checked
    renamed = classes.with_name("s_map.tif")
    shutil.copy(classes, renamed)
    assert training_reference(renamed, labels) is None
    (classes.parent / "s_run.json").unlink()
    assert training_reference(classes, labels) is None


def test_evaluate_warns_on_training_labels(tmp_path, caplog):
    from geosam.accuracy.config import EvaluateConfig
    from geosam.accuracy.evaluate import evaluate

    labels, bundle, classes = _run_folder(tmp_path)
    data = np.zeros((10, 10), np.uint8)
    data[:, 5:] = 1
    make_raster(
        classes,
        10,
        10,
        count=1,
        dtype="uint8",
        fill=data[None],
        crs="EPSG:32633",
        transform=(1, 0, 0, 0, -1, 10),
    )
    with caplog.at_level(logging.WARNING, logger="geosam.accuracy.evaluate"):
        evaluate(classes, labels, EvaluateConfig(field="label"))
    assert "was trained on" in caplog.text and str(bundle) in caplog.text
