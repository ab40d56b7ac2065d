"""``geosam evaluate`` warns when the reference is the map's own training labels."""

import json
import logging
import shutil

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from geosam.accuracy.provenance import training_reference
from geosam.testing import DEFAULT_TRANSFORM, make_raster
from geosam.testing_models import make_tiny_bundle


def _polygons(path, classes, boxes):
    a, _, c, _, e, f = DEFAULT_TRANSFORM

    def px(c0, r0, c1, r1):
        return box(c + c0 * a, f + r1 * e, c + c1 * a, f + r0 * e)

    gpd.GeoDataFrame({"label": classes}, geometry=[px(*b) for b in boxes], crs="EPSG:32633").to_file(path)
    return path


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A real run of a tiny bundle whose model.json names ``labels.gpkg`` as its training labels."""
    from geosam.config import RunConfig
    from geosam.predict import predict_scene
    from geosam.runtime import load_models

    tmp = tmp_path_factory.mktemp("provenance")
    labels = _polygons(tmp / "labels.gpkg", ["water", "field"], [(2, 2, 30, 60), (34, 2, 62, 60)])
    bundle = make_tiny_bundle(tmp / "model")
    meta = json.loads((bundle / "model.json").read_text())
    meta["data"] = {"source": "polygons", "labels": str(labels.resolve())}  # as train polygons records it
    (bundle / "model.json").write_text(json.dumps(meta))
    scene = make_raster(
        tmp / "s.tif", 64, 64, count=3, dtype="uint8", fill=np.full((3, 64, 64), 90, np.uint8)
    )
    cfg = RunConfig.model_validate({"output": {"regions": False}})
    out = predict_scene(scene, tmp / "out", load_models(bundle, None, cfg), cfg)
    return tmp, labels, bundle, out.outputs["classes"]


def test_training_labels_are_recognised_by_path_or_content(run_folder):
    tmp, labels, bundle, classes = run_folder
    assert training_reference(classes, labels) == bundle
    copy = tmp / "elsewhere" / "copy.gpkg"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(labels, copy)
    assert training_reference(classes, copy) == bundle  # the same bytes under another name
    other = _polygons(tmp / "held_out.gpkg", ["water"], [(2, 62, 30, 64)])
    assert training_reference(classes, other) is None
    # not a geosam map name, or no run record beside it: not checked
    renamed = classes.with_name("s_map.tif")
    shutil.copy(classes, renamed)
    assert training_reference(renamed, labels) is None
    lone = tmp / "lone" / classes.name
    lone.parent.mkdir(exist_ok=True)
    shutil.copy(classes, lone)
    assert training_reference(lone, labels) is None


def test_evaluate_warns_on_training_labels(run_folder, caplog):
    from geosam.accuracy.config import EvaluateConfig
    from geosam.accuracy.evaluate import evaluate

    _, labels, bundle, classes = run_folder
    with caplog.at_level(logging.WARNING, logger="geosam.accuracy.evaluate"):
        evaluate(classes, labels, EvaluateConfig(field="label"))
    assert "was trained on" in caplog.text and str(bundle) in caplog.text
