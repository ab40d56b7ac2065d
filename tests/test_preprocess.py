"""The bundle's preprocessing record: format-2 schema, the format-1 upgrader, what training writes.

Existing bundles (format 1, the first packaged model included) must still load and mean what they
meant; a bundle trained now records what its training applied, and a run resolves it to those inputs.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geosam.config import NormalizeConfig
from geosam.errors import BundleError
from geosam.models.bundle import BundleMeta, default_bundle_path, load_bundle, read_bundle_meta
from geosam.preprocess import EUROSAT_RGB_FROM_L1C, FixedScaling, PercentileScaling, Preprocessing, upgrade_v1
from geosam.scene_preprocessing import scene_preprocessing

#: The first packaged model's record (format 1), as it was shipped.
V1_DEFAULT = {"method": "dtype", "low": [0.0, 0.0, 0.0], "high": [255.0, 255.0, 255.0]}


def as_format_1(src, dst, preprocessing):
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    meta["format_version"] = 1
    meta["preprocessing"] = preprocessing
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


def test_the_first_packaged_model_still_loads_and_means_jpeg_over_255(tmp_path):
    old = as_format_1(default_bundle_path(), tmp_path / "v1", V1_DEFAULT)
    meta = read_bundle_meta(old)
    pre = meta.preprocessing
    assert meta.format_version == 2 and pre.space == "display" and pre.nodata_fill == "mean"
    assert pre.scaling == FixedScaling(low=(0.0,) * 3, high=(1.0,) * 3)
    assert pre.input.dtype == "uint8" and pre.input.scale == (1 / 255,) * 3
    bundle = load_bundle(old)  # weights verified as before: model.json is not part of the hash
    assert bundle.meta.name == read_bundle_meta(default_bundle_path()).name
    # and it means the same thing as the format-2 packaged model (which adds the reflectance mapping)
    # (``input.rule`` and ``note`` are descriptions; the packaged bundle's say how its chips were read)
    new = read_bundle_meta(default_bundle_path()).preprocessing
    unnamed = {"input": new.input.model_copy(update={"rule": ""}), "note": ""}
    assert new.model_copy(update={**unnamed, "reflectance_to_display": None}) == pre.model_copy(
        update={"input": pre.input.model_copy(update={"rule": ""}), "note": ""}
    )
    assert new.reflectance_to_display == EUROSAT_RGB_FROM_L1C


@pytest.mark.parametrize(
    "record, space, scaling, fill",
    [
        (V1_DEFAULT, "display", FixedScaling(low=(0.0,) * 3, high=(1.0,) * 3), "mean"),
        (
            {
                "method": "percentile 2-98 over a sample",
                "low": [10.0, 20.0, 30.0],
                "high": [900.0, 800.0, 700.0],
            },
            "raw",
            FixedScaling(low=(10.0, 20.0, 30.0), high=(900.0, 800.0, 700.0)),
            "mean",
        ),
        (
            {
                "method": "scene_stretch",
                "normalize": {"method": "percentile", "low": 1.0, "high": 99.0, "sample_size": 512},
                "scene_stretch": {"method": "percentile", "low": [1, 2, 3], "high": [4, 5, 6]},
                "low": [0.0] * 3,
                "high": [1.0] * 3,
            },
            "raw",
            PercentileScaling(low=1.0, high=99.0, sample_size=512),
            "zero",
        ),
        ({}, "raw", PercentileScaling(), "mean"),
    ],
)
def test_format_1_records_upgrade_to_what_they_meant(record, space, scaling, fill):
    pre = Preprocessing.model_validate(upgrade_v1(record, 3))
    assert (pre.space, pre.scaling, pre.nodata_fill) == (space, scaling, fill)
    assert "format 1" in pre.note


def test_format_1_style_dicts_in_code_are_upgraded_too():
    """Code written for format 1 (other helpers, old scripts) builds BundleMeta with a plain dict."""
    data = json.loads((default_bundle_path() / "model.json").read_text())
    data["preprocessing"] = V1_DEFAULT
    meta = BundleMeta.model_validate(data)
    assert meta.preprocessing.space == "display"


def test_newer_formats_and_inconsistent_records_are_refused(tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(default_bundle_path(), newer)
    meta = json.loads((newer / "model.json").read_text())
    meta["format_version"] = 3
    (newer / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="upgrade geosam"):
        read_bundle_meta(newer)
    meta["format_version"] = 2
    meta["preprocessing"]["scaling"]["low"] = [0.0, 0.0]  # 2 bounds for 3 bands
    (newer / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="preprocessing"):
        read_bundle_meta(newer)
    meta["preprocessing"]["scaling"]["low"] = [0.0, 0.0, 0.0]
    meta["preprocessing"]["shine"] = 1  # unknown key
    (newer / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="shine"):
        read_bundle_meta(newer)


def test_a_trained_bundle_records_what_training_applied_and_runs_apply_it(tmp_path, caplog):
    """Train on uint16 Sentinel-2 DN chip folders; the bundle says so; a run of a like scene agrees."""
    from geosam.train.config import TrainConfig
    from geosam.train.data import load_folder_chips
    from geosam.train.engine import train

    rng = np.random.default_rng(0)
    for c, level in (("dark", 400), ("bright", 2500)):
        (tmp_path / "chips" / c).mkdir(parents=True)
        for i in range(12):
            chip = rng.normal(level, 150, (3, 16, 16)).clip(1, 9000).astype("uint16")
            with rasterio.open(
                tmp_path / "chips" / c / f"{i}.tif", "w", driver="GTiff", width=16, height=16, count=3,
                dtype="uint16",
            ) as ds:  # fmt: skip
                ds.write(chip)
    with caplog.at_level(logging.WARNING):
        data = load_folder_chips(tmp_path / "chips", band_names=["B04", "B03", "B02"])
    assert data.record.space == "reflectance" and data.record.input.dn_offset == 0.0
    lo, hi = np.percentile(
        data.images.astype(float).transpose(1, 0, 2, 3).reshape(3, -1) / 1e4, [2, 98], axis=1
    )
    assert data.record.scaling.low == pytest.approx(tuple(lo), rel=0.05)  # in reflectance
    assert data.record.scaling.high == pytest.approx(tuple(hi), rel=0.05)
    res = train(
        TrainConfig(backbone="tiny", epochs=1, batch_size=8, warmup_steps=1, threads=1, out=tmp_path / "m"),
        data,
    )
    meta = read_bundle_meta(tmp_path / "m")
    assert meta.preprocessing == data.record == res.meta.preprocessing
    # a uint16 scene without metadata is read as the training data was, with the same bounds
    scene = tmp_path / "scene.tif"
    with rasterio.open(
        scene, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 10, 10),
    ) as ds:  # fmt: skip
        ds.write(np.full((3, 32, 32), 1500, "uint16"))
    sp = scene_preprocessing(scene, (1, 2, 3), meta.preprocessing, meta.mean, NormalizeConfig())
    assert "training data" in sp.radiometry.rule and not sp.fallback
    assert sp.stretch.low == pytest.approx(meta.preprocessing.scaling.low)
    want = (0.15 - np.array(sp.stretch.low)) / (np.array(sp.stretch.high) - np.array(sp.stretch.low))
    x = sp.apply(np.full((3, 4, 4), 1500, np.float32), None)
    np.testing.assert_allclose(x[:, 0, 0], np.clip(want, 0, 1), atol=1e-6)


def test_run_record_says_what_was_applied_and_what_was_overridden(tmp_path, caplog):
    from geosam.config import RunConfig
    from geosam.predict import predict_scene
    from geosam.runtime import load_models
    from geosam.testing_chips import write_chip_scene

    scene = write_chip_scene(
        tmp_path / "s.tif", np.random.default_rng(0).integers(0, 255, (3, 64, 64)).astype("uint8"), rgb=True
    )
    cfg = RunConfig.model_validate({"segment": {"source": "tiles"}})
    models = load_models(None, None, cfg)
    rec = predict_scene(scene, tmp_path / "a", models, cfg).record.preprocessing
    assert rec is not None and rec["overrides"] == [] and not rec["fallback"]
    assert rec["radiometry"]["kind"] == "display" and rec["stretch"]["method"] == "fixed"
    assert rec["model"]["reflectance_to_display"]["gain"] == list(EUROSAT_RGB_FROM_L1C.gain)
    with caplog.at_level(logging.WARNING):
        over = cfg.model_copy(update={"normalize": NormalizeConfig(method="percentile")})
        rec = predict_scene(scene, tmp_path / "b", models, over).record.preprocessing
    assert rec is not None and rec["overrides"] and "--stretch percentile" in rec["overrides"][0]
    assert any("--stretch percentile instead of the model's" in r.getMessage() for r in caplog.records)
