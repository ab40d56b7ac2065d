"""Atomic writes, the streaming COG writer, class-scheme round trips and QML generation."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from geosam.errors import OutputError, RasterError, RasterNotFoundError
from geosam.io import atomic
from geosam.io.atomic import TEMP_PREFIX, AtomicGroup, atomic_path, atomic_paths, remove_stale_temps
from geosam.io.cog import (
    CLASS_SCHEME_TAG,
    RasterWriter,
    class_map_writer,
    cog_options,
    confidence_writer,
    encode_confidence,
    read_class_scheme,
    write_array_cog,
)
from geosam.io.style import (
    categorized_fill_qml,
    confidence_qml,
    outline_labels_qml,
    paletted_qml,
    pseudocolor_qml,
    qml_path,
)
from geosam.types import ClassScheme, PixelWindow

# A real projected grid: 10 m pixels in UTM 33N; 1100 x 900 px so the COG gets two overview levels.
TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
CRS = "EPSG:32633"
W, H = 1100, 900
SCHEME = ClassScheme(("water", "forest", "urban"), colors=((31, 120, 180), (51, 160, 44), (227, 26, 28)))


def grid(**kw):
    return {"width": W, "height": H, "transform": TRANSFORM, "crs": CRS, **kw}


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def assert_no_temps(directory: Path) -> None:
    leftovers = [n for n in os.listdir(directory) if n.startswith(TEMP_PREFIX)]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


# -- atomic ----------------------------------------------------------------------------------------------


def test_atomic_path_publishes_on_success_only(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(TEMP_PREFIX) and tmp.suffix == ".txt"
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert listing(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_path_exception_keeps_old_file_and_removes_temps(tmp_path, exc):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(type(exc)), atomic_path(target) as tmp:
        tmp.write_text("half")
        Path(f"{tmp}.aux.xml").write_text("sidecar a library made")  # also cleaned up
        raise exc
    assert target.read_text() == "old"
    assert listing(tmp_path) == ["a.txt"]


def test_atomic_group_appears_together_primary_last(tmp_path, monkeypatch):
    finals = [tmp_path / "x.tif", tmp_path / "x.tif.aux.xml", tmp_path / "x.qml"]
    order = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (order.append(Path(b).name), real_replace(a, b)))
    with atomic_paths(finals) as temps:
        for t in temps:
            t.write_text(t.name)
    assert order == ["x.tif.aux.xml", "x.qml", "x.tif"]
    assert listing(tmp_path) == ["x.qml", "x.tif", "x.tif.aux.xml"]


def test_atomic_group_failed_rename_leaves_nothing(tmp_path, monkeypatch):
    finals = [tmp_path / "x.tif", tmp_path / "x.tif.aux.xml", tmp_path / "x.qml"]
    real_replace = os.replace
    calls = []

    def flaky(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(a, b)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OutputError, match="no space left") as info, atomic_paths(finals) as temps:
        for t in temps:
            t.write_text("x")
    assert info.value.path == str(tmp_path)
    assert listing(tmp_path) == []


def test_atomic_group_missing_member_is_an_error(tmp_path):
    with (
        pytest.raises(OutputError, match=r"x\.qml was not written"),
        atomic_paths([tmp_path / "x.tif", tmp_path / "x.qml"]) as temps,
    ):
        temps[0].write_text("only the tif")
    assert listing(tmp_path) == []


def test_overwrite_false_refuses_existing(tmp_path):
    (tmp_path / "a.txt").write_text("keep")
    with pytest.raises(OutputError, match="already exists"):
        AtomicGroup([tmp_path / "a.txt"], overwrite=False)
    assert (tmp_path / "a.txt").read_text() == "keep"


def test_stale_sidecars_removed_on_commit(tmp_path):
    (tmp_path / "x.tif.ovr").write_text("old overviews")
    with atomic_paths([tmp_path / "x.tif"], stale=[tmp_path / "x.tif.ovr"]) as (tmp,):
        tmp.write_text("new")
        assert (tmp_path / "x.tif.ovr").exists()  # still there until the commit
    assert listing(tmp_path) == ["x.tif"]


def test_directory_under_a_file_is_output_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    with pytest.raises(OutputError, match="not a directory") as info:
        AtomicGroup([blocker / "out.tif"])
    assert info.value.path == str(blocker)
    with pytest.raises(OutputError, match="does not exist"):
        AtomicGroup([tmp_path / "missing" / "out.tif"])


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.ENOSPC, "no space left"),
    ],
)
def test_unwritable_directory_is_output_error(tmp_path, monkeypatch, code, reason):
    # Tests run as root, where chmod cannot make a directory read-only: simulate the kernel's answer.
    real_open = os.open

    def refuse(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(atomic.os, "open", refuse)
    with pytest.raises(OutputError, match=reason) as info:
        class_map_writer(tmp_path / "x.tif", scheme=SCHEME, **grid())
    assert info.value.path == str(tmp_path)
    assert isinstance(info.value, OSError)
    monkeypatch.undo()
    assert listing(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_chmod_readonly_directory_is_output_error(tmp_path):  # pragma: no cover - runs as non-root only
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            atomic_path(ro / "x.txt").__enter__()
    finally:
        ro.chmod(0o755)


def test_disk_full_during_write_is_output_error_and_leaves_nothing(tmp_path):
    with pytest.raises(OutputError, match="no space left") as info, atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.path == str(tmp_path)
    assert listing(tmp_path) == []


def test_input_errors_inside_the_block_are_not_disguised(tmp_path):
    # A missing *input* read inside the block must stay a FileNotFoundError, not an OutputError.
    with pytest.raises(FileNotFoundError) as info, atomic_path(tmp_path / "x.txt"):
        open(tmp_path / "no_such_input")  # noqa: SIM115
    assert not isinstance(info.value, OutputError)


def test_remove_stale_temps_only_old_geosam_files(tmp_path):
    old = tmp_path / f"{TEMP_PREFIX}abc-x.tif"
    fresh = tmp_path / f"{TEMP_PREFIX}def-y.tif"
    other = tmp_path / "x.tif"
    for p in (old, fresh, other):
        p.write_text("")
    os.utime(old, (0, 0))
    assert remove_stale_temps(tmp_path, older_than_s=3600) == [old]
    assert listing(tmp_path) == sorted([fresh.name, other.name])


# -- COG writer ------------------------------------------------------------------------------------------


def class_truth() -> np.ndarray:
    """A class map whose 2x2 blocks are mostly one class: [[c, c], [c, 0]] (MODE != NEAREST)."""
    rows, cols = np.indices((H, W))
    base = ((rows // 200 + cols // 300) % 2 + 1).astype(np.uint8)  # classes 1 and 2 in big blocks
    out = base.copy()
    out[1::2, 1::2] = 0  # bottom-right pixel of every 2x2 block is "water"
    out[:10, :10] = SCHEME.nodata
    return out


def test_class_map_windows_out_of_order_assemble_into_valid_cog(tmp_path):
    truth = class_truth()
    path = tmp_path / "s1_classes.tif"
    windows = [  # reverse order, unaligned with the 512 blocks, one overhanging the scene's edge
        PixelWindow(700, 600, 400, 300),
        PixelWindow(0, 600, 700, 300),
        PixelWindow(350, 0, 900, 600),  # reaches 150 px past the right edge
        PixelWindow(0, 0, 350, 600),
    ]
    with class_map_writer(path, scheme=SCHEME, compress="zstd", **grid()) as writer:
        for win in windows:
            padded = np.full((win.height, win.width), 99, dtype=np.int64)  # ints of any width are fine
            inside = win.intersection(PixelWindow(0, 0, W, H))
            rs, cs = inside.relative_to(win)
            padded[rs, cs] = truth[inside.row_off : inside.row_end, inside.col_off : inside.col_end]
            padded[padded == 99] = SCHEME.nodata
            writer.write(win, padded)
        assert listing(tmp_path) == [n for n in listing(tmp_path) if n.startswith(TEMP_PREFIX)]
    assert listing(tmp_path) == ["s1_classes.qml", "s1_classes.tif", "s1_classes.tif.aux.xml"]

    valid, errors, warnings = cog_validate(str(path))
    assert valid and errors == [] and warnings == []
    with rasterio.open(path) as ds:
        assert ds.dtypes == ("uint8",) and ds.nodata == SCHEME.nodata
        assert ds.crs.to_epsg() == 32633 and ds.transform == TRANSFORM
        assert ds.block_shapes == [(512, 512)] and ds.compression.name == "zstd"
        assert ds.overviews(1) == [2, 4]
        assert ds.descriptions == ("class",)
        np.testing.assert_array_equal(ds.read(1), truth)
        # MODE overviews: each 2x2 block [[c, c], [c, 0]] becomes c (NEAREST would give the 0).
        ov = ds.read(1, out_shape=(H // 2, W // 2))
        np.testing.assert_array_equal(ov[10:, 10:], truth[::2, ::2][10:, 10:])
        cmap = ds.colormap(1)
        assert [cmap[i] for i in range(3)] == [(*c, 255) for c in SCHEME.colors]
        assert cmap[SCHEME.nodata][3] == 0  # nodata transparent (TIFF palettes store no other alpha)
        assert CLASS_SCHEME_TAG in ds.tags()
    assert read_class_scheme(path) == SCHEME


def test_categories_and_rat_in_pam_sidecar(tmp_path):
    path = write_array_cog(
        tmp_path / "c.tif",
        np.array([[0, 1], [2, 255]]),
        transform=TRANSFORM,
        crs=CRS,
        kind="classes",
        scheme=SCHEME,
    )
    band = ET.parse(f"{path}.aux.xml").getroot().find("PAMRasterBand")
    assert [c.text for c in band.find("CategoryNames")] == list(SCHEME.names)
    rows = band.find("GDALRasterAttributeTable").findall("Row")
    assert [[f.text for f in r] for r in rows][1] == ["1", "forest", "51", "160", "44", "255"]
    # A damaged tag is reported, not silently replaced.
    with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(**{CLASS_SCHEME_TAG: "{not json"})
    with pytest.raises(RasterError, match="corrupt"):
        read_class_scheme(path)


def test_categories_visible_to_gdalinfo(tmp_path):
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo is None:
        pytest.skip("gdalinfo not installed")
    path = write_array_cog(
        tmp_path / "c.tif",
        np.zeros((64, 64), np.uint8),
        transform=TRANSFORM,
        crs=CRS,
        kind="classes",
        scheme=SCHEME,
    )
    out = subprocess.run([gdalinfo, str(path)], capture_output=True, text=True, check=True).stdout
    assert "Categories:" in out
    for i, name in enumerate(SCHEME.names):
        assert f"{i}: {name}" in out
    assert "NoData Value=255" in out and "Color Table" in out


def test_read_class_scheme_fallback_and_errors(tmp_path):
    with pytest.raises(RasterNotFoundError):
        read_class_scheme(tmp_path / "missing.tif")
    plain = write_array_cog(tmp_path / "p.tif", np.zeros((8, 8), np.float32), transform=TRANSFORM, crs=CRS)
    with pytest.raises(RasterError, match="no class names"):
        read_class_scheme(plain)
    # A class map from elsewhere: colour table + GDAL categories in the sidecar, no geosam tag.
    source = write_array_cog(
        tmp_path / "g.tif",
        np.zeros((8, 8), np.uint8),
        transform=TRANSFORM,
        crs=CRS,
        kind="classes",
        scheme=SCHEME,
    )
    with rasterio.open(source) as src:
        profile, cmap = src.profile, src.colormap(1)
    foreign = tmp_path / "foreign.tif"
    with rasterio.open(foreign, "w", **profile) as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
        dst.write_colormap(1, cmap)
    shutil.copy(f"{source}.aux.xml", f"{foreign}.aux.xml")
    with rasterio.open(foreign) as ds:
        assert CLASS_SCHEME_TAG not in ds.tags()
    assert read_class_scheme(foreign) == SCHEME


@pytest.mark.parametrize(
    ("dtype", "nodata", "units"), [("float32", -1.0, "probability"), ("uint8", 255, "percent")]
)
def test_confidence_cog(tmp_path, dtype, nodata, units):
    rows, cols = np.indices((H, W))
    prob = ((rows + cols) % 2).astype(np.float64)  # checkerboard 0/1: AVERAGE overview = 0.5 everywhere
    prob[:4, :4] = np.nan
    path = tmp_path / f"conf_{dtype}.tif"
    with confidence_writer(path, dtype=dtype, **grid()) as writer:
        for row in range(0, H, 300):  # row strips, bottom first
            win = PixelWindow(0, H - 300 - row, W, 300)
            writer.write(win, encode_confidence(prob[win.row_off : win.row_end], dtype))
    assert listing(tmp_path) == [f"conf_{dtype}.qml", f"conf_{dtype}.tif"]
    valid, errors, warnings = cog_validate(str(path))
    assert valid and not errors and not warnings
    with rasterio.open(path) as ds:
        assert ds.dtypes == (dtype,) and ds.nodata == nodata
        assert ds.overviews(1) == [2, 4] and ds.descriptions == ("confidence",)
        assert ds.tags()["GEOSAM_CONFIDENCE_UNITS"] == units
        data = ds.read(1)
        scale = 1.0 if dtype == "float32" else 100.0
        assert data[0, 0] == nodata and data[5, 5] == 0 and data[5, 6] == scale
        ov = ds.read(1, out_shape=(H // 2, W // 2))
        np.testing.assert_allclose(ov[10:, 10:], 0.5 * scale, atol=0.5)  # averaged, not sampled
    assert 'classificationMax="1"' in (tmp_path / f"conf_{dtype}.qml").read_text() or dtype == "uint8"


def test_unwritten_pixels_are_nodata(tmp_path):
    path = tmp_path / "sparse.tif"
    with confidence_writer(path, **grid()) as writer:
        writer.write(PixelWindow(100, 100, 10, 10), np.full((10, 10), 0.25))
    with rasterio.open(path) as ds:
        data = ds.read(1)
    assert (data[100:110, 100:110] == 0.25).all()
    assert (data == -1).sum() == W * H - 100


def test_masked_arrays_write_nodata(tmp_path):
    labels = np.ma.masked_array([[0, 1], [2, 0]], mask=[[False, True], [False, False]])
    path = write_array_cog(
        tmp_path / "m.tif", labels, transform=TRANSFORM, crs=CRS, kind="classes", scheme=SCHEME
    )
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), [[0, 255], [2, 0]])


@pytest.mark.parametrize("exc", [RuntimeError("model crashed"), KeyboardInterrupt()])
def test_exception_mid_write_leaves_no_files(tmp_path, exc):
    with pytest.raises(type(exc)), class_map_writer(tmp_path / "x.tif", scheme=SCHEME, **grid()) as writer:
        writer.write(PixelWindow(0, 0, 512, 512), np.ones((512, 512), np.uint8))
        raise exc
    assert listing(tmp_path) == []


def test_abort_keeps_previous_output(tmp_path):
    path = write_array_cog(tmp_path / "x.tif", np.ones((16, 16), np.float32), transform=TRANSFORM, crs=CRS)
    before = path.read_bytes()
    writer = RasterWriter(path, **grid(), dtype="float32", nodata=-1)
    writer.write(PixelWindow(0, 0, 4, 4), np.zeros((4, 4)))
    writer.abort()
    assert path.read_bytes() == before and listing(tmp_path) == ["x.tif"]
    writer.abort()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(PixelWindow(0, 0, 4, 4), np.zeros((4, 4)))


def test_dropped_writer_cleans_up(tmp_path):
    writer = class_map_writer(tmp_path / "x.tif", scheme=SCHEME, **grid())
    writer.write(PixelWindow(0, 0, 8, 8), np.zeros((8, 8), np.uint8))
    del writer
    import gc

    gc.collect()
    assert listing(tmp_path) == []


def test_continuous_rewrite_removes_stale_categories(tmp_path):
    path = tmp_path / "x.tif"
    write_array_cog(
        path, np.zeros((8, 8), np.uint8), transform=TRANSFORM, crs=CRS, kind="classes", scheme=SCHEME
    )
    assert Path(f"{path}.aux.xml").exists()
    write_array_cog(path, np.zeros((8, 8), np.float32), transform=TRANSFORM, crs=CRS, qml=None)
    assert not Path(f"{path}.aux.xml").exists()  # old categories must not attach to the new raster


def test_write_validation(tmp_path):
    with class_map_writer(tmp_path / "x.tif", scheme=SCHEME, **grid()) as writer:
        with pytest.raises(ValueError, match="does not match window"):
            writer.write(PixelWindow(0, 0, 4, 4), np.zeros((4, 5), np.uint8))
        with pytest.raises(ValueError, match="outside"):
            writer.write(PixelWindow(W, 0, 4, 4), np.zeros((4, 4), np.uint8))
        with pytest.raises(ValueError, match=r"class ids must be 0\.\.2 or nodata 255; got \[3, 7\]"):
            writer.write(PixelWindow(0, 0, 2, 2), np.array([[0, 3], [7, 255]]))
        with pytest.raises(ValueError, match="class ids"):
            writer.write(PixelWindow(0, 0, 1, 1), np.array([[-1]]))
        with pytest.raises(TypeError, match="float64 values into a uint8"):
            writer.write(PixelWindow(0, 0, 2, 2), np.zeros((2, 2)))
        writer.write(PixelWindow(0, 0, 2, 2), np.zeros((2, 2), bool))  # the writer is still usable
    with (
        confidence_writer(tmp_path / "c.tif", dtype="uint8", **grid()) as writer,
        pytest.raises(ValueError, match="do not fit"),
    ):
        writer.write(PixelWindow(0, 0, 1, 1), np.array([[300]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "classes", "dtype": "uint8"}, "needs a ClassScheme"),
        ({"kind": "classes", "dtype": "uint16", "scheme": SCHEME}, "one uint8 band"),
        ({"kind": "classes", "dtype": "uint8", "scheme": SCHEME, "nodata": 0}, "differs"),
        ({"dtype": "uint8", "nodata": -1}, "cannot be stored"),
        ({"dtype": "float32", "crs": None}, "needs a CRS"),
        ({"dtype": "float32", "compress": "jpeg"}, "compress must be"),
        ({"dtype": "float32", "count": 2, "band_descriptions": ["a"]}, "2 bands"),
    ],
)
def test_writer_argument_errors(tmp_path, kwargs, match):
    args = {**grid(), **kwargs}
    with pytest.raises(ValueError, match=match):
        RasterWriter(tmp_path / "x.tif", **args)
    assert listing(tmp_path) == []


def test_write_array_cog_small_multiband(tmp_path):
    arr = np.stack([np.full((20, 30), 0.5, np.float32), np.full((20, 30), np.nan, np.float32)])
    path = write_array_cog(
        tmp_path / "m.tif", arr, transform=TRANSFORM, crs=CRS, nodata=-1, band_descriptions=["p", "q"]
    )
    assert cog_validate(str(path))[0]
    with rasterio.open(path) as ds:
        assert ds.count == 2 and ds.descriptions == ("p", "q") and ds.overviews(1) == []
        assert (ds.read(2) == -1).all()  # NaN -> nodata
    assert listing(tmp_path) == ["m.tif"]  # continuous, no range given: no style


def test_cog_options_are_data():
    assert cog_options("classes", "lzw") == {
        "BLOCKSIZE": "512",
        "OVERVIEWS": "AUTO",
        "BIGTIFF": "IF_SAFER",
        "COMPRESS": "LZW",
        "PREDICTOR": "NO",
        "OVERVIEW_RESAMPLING": "MODE",
    }
    assert cog_options("continuous")["OVERVIEW_RESAMPLING"] == "AVERAGE"


def test_encode_confidence():
    p = np.array([0.0, 0.5, 1.0 + 1e-9, np.nan, 0.333])
    np.testing.assert_array_equal(encode_confidence(p, "uint8"), [0, 50, 100, 255, 33])
    np.testing.assert_allclose(encode_confidence(p, "float32"), [0, 0.5, 1, -1, 0.333], rtol=1e-6)
    assert encode_confidence(p, "float32").dtype == np.float32
    np.testing.assert_array_equal(encode_confidence([0.2, 0.4], "uint8", mask=[True, False]), [255, 40])
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        encode_confidence([0.5, 12.0], "uint8")


# -- styles ----------------------------------------------------------------------------------------------


def test_qml_path_follows_qgis_rule():
    assert qml_path("/d/x.tif") == Path("/d/x.qml")
    assert qml_path("/d/x.v2.gpkg") == Path("/d/x.v2.qml")
    assert qml_path("/d/x") == Path("/d/x.qml")


def test_qml_documents_are_qgis_styles():
    for text in (
        paletted_qml(SCHEME),
        confidence_qml("float32"),
        confidence_qml("uint8"),
        categorized_fill_qml(SCHEME),
        outline_labels_qml(),
    ):
        assert text.startswith("<!DOCTYPE qgis")
        assert ET.fromstring(text).tag == "qgis"
    pal = ET.fromstring(paletted_qml(SCHEME))
    entries = pal.findall("pipe/rasterrenderer/colorPalette/paletteEntry")
    assert [(e.get("value"), e.get("label"), e.get("color")) for e in entries] == [
        ("0", "water", "#1f78b4"),
        ("1", "forest", "#33a02c"),
        ("2", "urban", "#e31a1c"),
    ]
    cat = ET.fromstring(categorized_fill_qml(SCHEME, fill_opacity=0.5))
    assert cat.find("renderer-v2").get("attr") == "class_name"
    color = cat.find("renderer-v2/symbols/symbol/layer/Option/Option[@name='color']").get("value")
    assert color == "31,120,180,128"
    with pytest.raises(ValueError):
        pseudocolor_qml(1, 1)
    with pytest.raises(ValueError):
        confidence_qml("int16")  # type: ignore[arg-type]


def test_import_stays_light():
    modules = "geosam.io.atomic, geosam.io.cog, geosam.io.vector, geosam.io.style, geosam.io.qgis_project"
    code = (
        f"import sys, {modules};"
        "heavy = [m for m in ('rasterio', 'torch', 'geopandas', 'pyogrio', 'pyproj') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
