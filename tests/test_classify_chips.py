"""``geosam classify``: a folder of chips through the bundle's preprocessing (CLI and library)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import rasterio
from PIL import Image

from geosam.classify_chips import classify_chips
from geosam.cli.main import main
from geosam.errors import DataError
from geosam.testing_models import make_tiny_bundle

CLASSES = ("water", "forest", "field")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "m", classes=CLASSES, input_size=32, tile_size=64)


def _png(path, value, size=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def test_class_folders_give_csv_and_accuracy(bundle, tmp_path, capsys):
    for i, c in enumerate(("water", "forest", "clouds")):  # "clouds" is not a model class
        for k in range(3):
            _png(tmp_path / "chips" / c / f"{k}.png", 40 * i + 10 * k)
    _png(tmp_path / "chips" / "loose.png", 200, size=48)  # not in a class folder, another size
    rc = main(["classify", str(tmp_path / "chips"), "-m", str(bundle), "--out", str(tmp_path / "p.csv")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "accuracy over 6 labelled chips" in out and "not model classes (not scored): clouds" in out
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    assert list(rows[0]) == [
        "file",
        "true_class",
        "predicted_class",
        "probability",
        "p_water",
        "p_forest",
        "p_field",
    ]
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert all(r["predicted_class"] in CLASSES for r in rows)
    # the library gives the same numbers
    res = classify_chips(tmp_path / "chips", bundle)
    np.testing.assert_allclose(res.probs, probs, atol=1e-6)
    assert res.summary()["chips"] == 6


def test_chips_the_model_cannot_take_are_one_line_errors(bundle, tmp_path, capsys):
    _png(tmp_path / "mixed" / "a.png", 10)
    with rasterio.open(
        tmp_path / "mixed" / "b.tif", "w", driver="GTiff", width=32, height=32, count=3, dtype="uint16"
    ) as ds:
        ds.write(np.ones((3, 32, 32), "uint16"))
    with pytest.raises(DataError, match="mixed storage types"):
        classify_chips(tmp_path / "mixed", bundle)
    (tmp_path / "two").mkdir()
    with rasterio.open(
        tmp_path / "two" / "b.tif", "w", driver="GTiff", width=32, height=32, count=2, dtype="uint8"
    ) as ds:
        ds.write(np.ones((2, 32, 32), "uint8"))
    rc = main(["classify", str(tmp_path / "two"), "-m", str(bundle), "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.count("\n") == 0 and "2 band(s) but the model takes 3" in err
    assert not (tmp_path / "x.csv").exists()
    rc = main(["classify", str(tmp_path / "none"), "-m", str(bundle)])
    assert rc != 0 and "chip folder not found" in capsys.readouterr().err
