"""What reaches the model from every kind of stored value: dtypes x GDAL scale/offset x nodata x stretch.

Issue 11 item 7: GDAL scale/offset is applied wherever pixel values are interpreted (every stretch
method, training, the model's own preprocessing); an option that cannot fit the data is a one-line
error. The generated rasters hold a known reflectance field; each variant asserts the 0..1 values the
model receives, pixel by pixel, not an exit code.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from geosam.config import NormalizeConfig
from geosam.errors import ConfigError
from geosam.io.read import read_window
from geosam.models.bundle import read_bundle_meta
from geosam.preprocess import EUROSAT_RGB_FROM_L1C, FixedScaling, InputRecord, Preprocessing
from geosam.radiometry import BandScaling, decide_radiometry
from geosam.scene_preprocessing import scene_preprocessing
from geosam.types import PixelWindow

SIZE = 24
#: (dtype, GDAL scale, GDAL offset): how a reflectance is stored
STORAGE = [
    ("float32", None, None),  # reflectance as floats
    ("uint16", None, None),  # Sentinel-2 DN (reflectance * 10000), named B04/B03/B02
    ("uint16", 1e-4, -0.1),  # Sentinel-2 L2A COG style (processing baseline >= 04.00)
    ("int16", 1e-4, -0.1),  # issue 11 item 7
    ("int16", 2e-5, 0.0),
    ("uint16", 2.75e-5, -0.2),  # Landsat Collection 2 surface reflectance
    ("float32", 0.5, 0.0),  # floats with a scale too
]
NODATA = {"float32": -9999.0, "uint16": 65535, "int16": -32768}


def default_pre() -> Preprocessing:
    return read_bundle_meta(None or _default()).preprocessing


def _default():
    from geosam.models.bundle import default_bundle_path

    return default_bundle_path()


def write_reflectance(path, refl, dtype, scale, offset, nodata_where=None, names=("B04", "B03", "B02")):
    """Store a reflectance field ``(3, H, W)``; returns the stored array and the reflectance it decodes to.

    Reflectances the storage cannot hold (above ``dtype max * scale + offset``) are clipped to it first.
    """
    if scale is not None and np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        refl = np.clip(refl, info.min * scale + offset, (info.max - 1) * scale + offset)
    if scale is None and np.dtype(dtype).kind in "ui":
        stored = np.rint(refl * 10000).astype(dtype)  # Sentinel-2 DN
        decoded = stored / 10000.0
    elif scale is None:
        stored = refl.astype(dtype)
        decoded = stored.astype(np.float64)
    else:
        raw = (refl - offset) / scale
        stored = (np.rint(raw) if np.dtype(dtype).kind in "ui" else raw).astype(dtype)
        decoded = stored.astype(np.float64) * scale + offset
    nodata = NODATA[dtype] if nodata_where is not None else None
    if nodata_where is not None:
        stored[:, nodata_where] = nodata
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=SIZE,
        height=SIZE,
        count=3,
        dtype=dtype,
        crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 10, 10),
        nodata=nodata,
    ) as ds:
        ds.write(stored)
        if scale is not None:
            ds.scales = (scale,) * 3
            ds.offsets = (offset,) * 3
        for i, n in enumerate(names):
            ds.set_band_description(i + 1, n)
    return stored, decoded


def reaching_model(path, pre, cfg=None, mean=(0.3, 0.4, 0.5)):
    sp = scene_preprocessing(path, (1, 2, 3), pre, mean, cfg or NormalizeConfig())
    data, valid = read_window(path, PixelWindow(0, 0, SIZE, SIZE), (1, 2, 3))
    return sp, sp.apply(data, valid), valid


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    storage=st.sampled_from(STORAGE),
    seed=st.integers(0, 2**16),
    with_nodata=st.booleans(),
    top=st.floats(0.1, 0.6),
)
def test_default_model_receives_its_jpeg_levels_from_any_reflectance_storage(
    tmp_path_factory, storage, seed, with_nodata, top
):
    dtype, scale, offset = storage
    rng = np.random.default_rng(seed)
    refl = rng.uniform(0.005, top, (3, SIZE, SIZE))
    where = rng.random((SIZE, SIZE)) < 0.1 if with_nodata else None
    path = tmp_path_factory.mktemp("r") / "s.tif"
    _, decoded = write_reflectance(path, refl, dtype, scale, offset, where)
    sp, x, valid = reaching_model(path, default_pre())
    assert sp.radiometry.kind == "reflectance" and not sp.fallback and not sp.overrides
    m = EUROSAT_RGB_FROM_L1C
    want = np.clip(np.asarray(m.gain)[:, None, None] * decoded + np.asarray(m.bias)[:, None, None], 0, 1)
    if where is not None:
        want[:, where] = np.array([0.3, 0.4, 0.5])[:, None]  # nodata gets the model mean
        assert not valid[where].any()
    np.testing.assert_allclose(x, want, atol=2e-6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    storage=st.sampled_from([s for s in STORAGE if s[1] is not None or s[0] == "float32"]),
    seed=st.integers(0, 999),
)
def test_stretch_none_applies_scale_offset(tmp_path_factory, storage, seed):
    dtype, scale, offset = storage
    refl = np.random.default_rng(seed).uniform(0.0, 0.9, (3, SIZE, SIZE))
    path = tmp_path_factory.mktemp("n") / "s.tif"
    _, decoded = write_reflectance(path, refl, dtype, scale, offset)
    sp, x, _ = reaching_model(path, default_pre(), NormalizeConfig(method="none"))
    assert sp.overrides and "--stretch none" in sp.overrides[0]
    np.testing.assert_allclose(x, np.clip(decoded, 0, 1), atol=2e-6)  # reflectance, not clipped DNs


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(storage=st.sampled_from([s for s in STORAGE if s[0] != "float32"]), seed=st.integers(0, 999))
def test_stretch_dtype_and_percentile_apply_scale_offset(tmp_path_factory, storage, seed):
    dtype, scale, offset = storage
    refl = np.random.default_rng(seed).uniform(0.01, 0.5, (3, SIZE, SIZE))
    path = tmp_path_factory.mktemp("d") / "s.tif"
    stored, decoded = write_reflectance(path, refl, dtype, scale, offset)
    _, x, _ = reaching_model(path, default_pre(), NormalizeConfig(method="dtype"))
    full = np.iinfo(dtype).max
    np.testing.assert_allclose(x, np.clip(stored / full, 0, 1), atol=2e-6)  # stored 0..full -> 0..1
    sp, x, _ = reaching_model(path, default_pre(), NormalizeConfig(method="percentile", low=2, high=98))
    lo, hi = np.percentile(decoded.reshape(3, -1), [2, 98], axis=1)
    np.testing.assert_allclose(sp.stretch.low, lo, rtol=1e-6)
    want = np.clip((decoded - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1)
    np.testing.assert_allclose(x, want, atol=2e-5)


def test_issue11_item7_int16_scaled_dn_with_stretch_none(tmp_path):
    """int16 S2-style DN, scale 0.0001, offset -0.1, nodata -32768, bands B04,B03,B02, ``--stretch none``."""
    rng = np.random.default_rng(7)
    refl = rng.uniform(0.0, 0.35, (3, SIZE, SIZE))
    where = np.zeros((SIZE, SIZE), bool)
    where[:4] = True
    path = tmp_path / "s2_int16.tif"
    stored, decoded = write_reflectance(path, refl, "int16", 1e-4, -0.1, where)
    assert stored[:, ~where].max() > 1000  # raw DNs, which used to be clipped to 1
    sp, x, valid = reaching_model(path, default_pre(), NormalizeConfig(method="none"))
    np.testing.assert_allclose(x[:, valid], decoded[:, valid], atol=2e-6)
    assert x[:, valid].max() < 0.5  # not saturated
    # and the default (auto) gives the model its EuroSAT JPEG levels of that reflectance
    sp, x, valid = reaching_model(path, default_pre())
    assert "GDAL scale/offset" in sp.radiometry.rule
    g, b = np.asarray(EUROSAT_RGB_FROM_L1C.gain), np.asarray(EUROSAT_RGB_FROM_L1C.bias)
    np.testing.assert_allclose(
        x[:, valid], np.clip(g[:, None] * decoded[:, valid] + b[:, None], 0, 1), atol=2e-6
    )


def test_stretch_none_on_values_not_in_0_1_is_a_one_line_error(tmp_path):
    # Sentinel-2 DN (named bands) become reflectance, so `none` fits them ...
    dn = tmp_path / "dn.tif"
    write_reflectance(dn, np.full((3, SIZE, SIZE), 0.2), "uint16", None, None)
    _, x, _ = reaching_model(dn, default_pre(), NormalizeConfig(method="none"))
    np.testing.assert_allclose(x, 0.2, atol=1e-6)
    # ... but values of unknown meaning far outside 0..1 cannot be fed as they are
    path = tmp_path / "raw.tif"
    write_reflectance(path, np.full((3, SIZE, SIZE), 4.0), "uint16", None, None, names=("a", "b", "c"))
    with pytest.raises(ConfigError) as err:
        reaching_model(path, default_pre(), NormalizeConfig(method="none"))
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg and "--stretch none" in msg and "4e+04" in msg


@pytest.mark.parametrize("nbits", [None, 12])
def test_stretch_dtype_on_12_bit_data_warns_unless_nbits_says_so(tmp_path, caplog, nbits):
    data = np.random.default_rng(0).integers(0, 4096, (3, SIZE, SIZE)).astype("uint16")
    path = tmp_path / "u12.tif"
    opts = {"nbits": nbits} if nbits else {}
    with rasterio.open(
        path, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 10, 10), **opts,
    ) as ds:  # fmt: skip
        ds.write(data)
    with caplog.at_level(logging.WARNING):
        _, x, _ = reaching_model(path, default_pre(), NormalizeConfig(method="dtype"))
    full = 4095 if nbits else 65535
    np.testing.assert_allclose(x, data / full, atol=2e-6)
    warned = [r.getMessage() for r in caplog.records if "reach only" in r.getMessage()]
    if nbits:
        assert not warned
    else:
        assert len(warned) == 1 and "1/16" in warned[0] and "12-bit" in warned[0]


def test_explicit_options_that_cannot_fit_the_data_fail_in_one_line(tmp_path):
    dn = tmp_path / "dn.tif"
    write_reflectance(dn, np.full((3, SIZE, SIZE), 0.2), "uint16", None, None)
    scaled = tmp_path / "scaled.tif"
    write_reflectance(scaled, np.full((3, SIZE, SIZE), 0.2), "int16", 1e-4, -0.1)
    cases = [
        (dn, NormalizeConfig(radiometry="reflectance"), "without GDAL scale/offset"),
        (scaled, NormalizeConfig(radiometry="dn"), "already define"),
        (scaled, NormalizeConfig(radiometry="display"), "physical"),
        (scaled, NormalizeConfig(dn_offset=-1000), "--dn-offset"),
    ]
    for path, cfg, words in cases:
        with pytest.raises(ConfigError) as err:
            reaching_model(path, default_pre(), cfg)
        assert str(err.value).startswith(str(path)) and words in str(err.value) and "\n" not in str(err.value)


def test_dn_offset_of_processing_baseline_4(tmp_path, caplog):
    refl = np.random.default_rng(3).uniform(0.01, 0.3, (3, SIZE, SIZE))
    path = tmp_path / "pb04.tif"
    stored = np.rint(refl * 10000 + 1000).astype("uint16")  # baseline >= 04.00: DN = 10000 * refl + 1000
    with rasterio.open(
        path, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 10, 10),
    ) as ds:  # fmt: skip
        ds.write(stored)
        for i, n in enumerate(("B04", "B03", "B02")):
            ds.set_band_description(i + 1, n)
    with caplog.at_level(logging.WARNING):
        reaching_model(path, default_pre())
    assert any("--dn-offset -1000" in r.getMessage() for r in caplog.records)  # told, loudly
    sp, x, _ = reaching_model(path, default_pre(), NormalizeConfig(dn_offset=-1000))
    g, b = np.asarray(EUROSAT_RGB_FROM_L1C.gain), np.asarray(EUROSAT_RGB_FROM_L1C.bias)
    decoded = (stored.astype(np.float64) - 1000) / 10000
    np.testing.assert_allclose(x, np.clip(g[:, None, None] * decoded + b[:, None, None], 0, 1), atol=2e-6)
    assert sp.radiometry.dn_offset == -1000


def test_uint8_scene_reaches_the_default_model_exactly_like_jpeg_chips(tmp_path):
    levels = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE)).astype("uint8")
    path = tmp_path / "u8.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 10, 10),
    ) as ds:  # fmt: skip
        ds.write(levels)
    sp, x, _ = reaching_model(path, default_pre())
    assert sp.radiometry.kind == "display" and "training data" in sp.radiometry.rule
    # the training path: ChipData.to_unit of the same levels as uint8 chips -> bit-identical
    from geosam.train.data import ChipData

    pre = default_pre()
    chips = ChipData(
        levels[None], np.zeros(1, np.int64), ("a", "b"), ("red", "green", "blue"), np.zeros(3), np.ones(3),
        scale=pre.input.scale, offset=pre.input.offset, preprocessing=pre,
    )  # fmt: skip
    np.testing.assert_array_equal(x, chips.to_unit(np.array([0]))[0])
    np.testing.assert_allclose(x, levels / 255.0, atol=1e-7)


def test_float_8bit_levels_and_unknown_values_are_told(tmp_path, caplog):
    """Raleigh-style float32 holding 8-bit levels is display; values of no known kind fall back loudly."""
    meta = BandScaling("float32", (1.0,) * 3, (0.0,) * 3)
    levels = np.random.default_rng(2).integers(0, 256, (3, 500)).astype(np.float64)
    r = decide_radiometry(meta, levels)
    assert r.kind == "display" and r.scale == (1 / 255,) * 3 and r.guessed
    with caplog.at_level(logging.WARNING):
        r = decide_radiometry(meta, levels * 1000 - 5e5)
    assert r.kind == "raw" and any("unknown meaning" in x.getMessage() for x in caplog.records)


def test_reflectance_model_refuses_display_values_only_when_told_so(tmp_path, caplog):
    pre = Preprocessing(
        space="reflectance",
        scaling=FixedScaling(low=(0.0,) * 3, high=(0.3,) * 3),
        input=InputRecord(dtype="uint16", scale=(1e-4,) * 3, offset=(0.0,) * 3, dn_offset=0.0),
    )
    path = tmp_path / "u8.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 10, 10),
    ) as ds:  # fmt: skip
        ds.write(np.full((3, SIZE, SIZE), 90, "uint8"))
    with caplog.at_level(logging.WARNING):
        sp, _, _ = reaching_model(path, pre)
    assert sp.fallback and "FALLBACK" in sp.applied
    assert any("percentile stretch instead" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="no mapping"):
        reaching_model(path, pre, NormalizeConfig(radiometry="display"))
