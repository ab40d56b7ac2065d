"""`geosam run` on the bad-input corpus (tests/data/make_bad_inputs.py) and under output-side faults.

For every case the CLI must print exactly one line, ``geosam: error: <file>: <problem>``, with no
traceback and no warning, exit with the error class's code, and leave no file in the output directory
(no temp files, no scratch folder, no half set of outputs). Odd but valid scenes (16-bit with nodata,
float with NaN/inf, a single pixel) must succeed instead. The 20,000 x 20,000 VRT shows that planning
and reading are streamed.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from geosam.cli.main import main

DATA = Path(__file__).resolve().parent / "data"
TINY = ["--tile-size", "128", "--halo", "16"]


def corpus_module():
    name = "make_bad_inputs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DATA / "make_bad_inputs.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return corpus_module().cached_corpus(tmp_path_factory.getbasetemp())


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `geosam ARGS` in-process; returns (exit code, stdout, stderr). Fails on any warning."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(args)
    out, err = capsys.readouterr()
    assert not [str(w.message) for w in caught], "a warning would be printed on stderr"
    return rc, out, err


def error_line(err: str) -> str:
    """The one stderr line, checked for form."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("geosam: error: "), err
    assert "Traceback" not in err
    return lines[0]


def files_under(d: Path) -> list[str]:
    """Every file (hidden ones included) under ``d``; [] when ``d`` does not exist."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


def assert_fails(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    *,
    code: int,
    names: Path | str,
    says: str,
    out_dir: Path | None,
) -> str:
    rc, _, err = run_cli(args, capsys)
    line = error_line(err)
    assert rc == code, (rc, line)
    assert f"geosam: error: {names}" in line, line  # names the file first
    assert says in line, line
    if out_dir is not None:
        assert files_under(out_dir) == [], "partial outputs left behind"
    return line


# -- rasters ------------------------------------------------------------------------------------------

RASTER_CASES = {
    # case: (exit code, words the message must contain)
    "truncated.tif": (3, "may be corrupt or truncated"),
    "corrupt_tiles.tif": (3, "may be corrupt or truncated"),
    "garbage.tif": (3, "not a raster GDAL can read"),
    "empty.tif": (3, "not a raster GDAL can read"),
    "jpeg_as.tif": (3, "the file is a JPEG image, not a GeoTIFF"),
    "text_as.tif": (3, "not a raster GDAL can read"),
    "html_as.tif": (3, "not a raster GDAL can read"),
    "no_crs.tif": (3, "no coordinate reference system"),
    "no_transform.tif": (3, "no geotransform"),
    "all_nodata.tif": (3, "all nodata"),
    "all_nan.tif": (3, "all nodata"),
    "zero_size.vrt": (3, "no pixels or no bands"),
    "zero_bands.vrt": (3, "no pixels or no bands"),
    "complex.tif": (3, "complex is not supported"),
    "two_bands.tif": (3, "the raster has only 2"),
    "missing.tif": (3, "file not found"),
    "a_directory.tif": (3, "is a directory"),
    # issue 11 field cases
    "one_band.tif": (3, "--bands 1,1,1"),
    "paletted_two_bands.tif": (3, "gdal_translate -b 1 -expand rgb"),
    "missing_source.vrt": (3, ".gone_source.tif is missing"),
}


@pytest.mark.parametrize("case", sorted(RASTER_CASES))
def test_bad_raster_is_one_line_and_leaves_nothing(case, corpus, tmp_path, capsys):
    code, says = RASTER_CASES[case]
    out = tmp_path / "out"
    args = ["run", str(corpus[case]), "--model", str(corpus["bundle"]), "--out", str(out), *TINY]
    assert_fails(args, capsys, code=code, names=corpus[case], says=says, out_dir=out)


def test_implausible_ground_resolution_is_one_line_and_its_remedy_runs(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(corpus["tiny_pixels.tif"]), "--model", str(corpus["bundle_10m"]), "--out", str(out)]
    line = assert_fails(
        [*args, *TINY], capsys, code=4, names=corpus["tiny_pixels.tif"], says="on the ground", out_dir=out
    )
    assert "--no-match-resolution" in line
    rc, _, err = run_cli([*args, *TINY, "--no-match-resolution"], capsys)
    assert rc == 0, err


@pytest.mark.parametrize(
    "case", ["paletted.tif", "coarse_300m.tif", "webmerc_60n.tif", "strip_column.tif", "unnamed_bgr.tif"]
)
def test_field_cases_that_must_run(case, corpus, tmp_path, capsys):
    """Inputs real users have (issue 11) that geosam must classify, with outputs that hold."""
    import json

    import geopandas as gpd
    from rio_cogeo.cogeo import cog_validate
    from shapely.geometry import shape

    out = tmp_path / "out"
    args = ["run", str(corpus[case]), "--model", str(corpus["bundle_10m"]), "--out", str(out), *TINY]
    rc, _, err = run_cli(args, capsys)
    assert rc == 0, err
    stem = Path(case).stem
    for kind in ("classes", "confidence"):
        assert cog_validate(out / f"{stem}_{kind}.tif", quiet=True)[0], kind
    rec = json.loads((out / f"{stem}_run.json").read_text())
    with rasterio.open(corpus[case]) as src, rasterio.open(out / f"{stem}_classes.tif") as cls:
        assert (cls.width, cls.height, cls.crs) == (src.width, src.height, src.crs)
        classes = cls.read(1)
    if case == "paletted.tif":  # the palette's nodata index stays nodata; colours were classified
        with rasterio.open(corpus[case]) as src:
            idx = src.read(1)
        assert (classes[idx == src.nodata] == 255).all() and (classes[idx != src.nodata] < 255).all()
        assert rec["scene"]["bands_used"] == [1, 2, 3]
    if case == "webmerc_60n.tif":  # 10 Mercator metres are 5 m on the ground
        assert rec["tiling"]["scene_gsd_m"] == pytest.approx(5.0, rel=0.01)
        gdf = gpd.read_file(out / f"{stem}_regions.gpkg")
        assert (gdf["area_px"] * 100 / gdf["area_m2"]).between(3.9, 4.1).all()
    doc = json.loads((out / f"{stem}_regions.geojson").read_text())
    for f in doc["features"]:
        g = shape(f["geometry"])
        assert g.geom_type in ("Polygon", "MultiPolygon") and g.is_valid


@pytest.mark.parametrize("case", ["corrupt_tiles.tif", "truncated.tif"])
def test_corruption_found_mid_run_leaves_nothing(case, corpus, tmp_path, capsys):
    """With --stretch dtype nothing reads the scene before the tile loop: tiles are classified and
    stitched into the scratch raster before the bad tile is reached; all of it must go."""
    out = tmp_path / "out"
    args = [
        "run",
        str(corpus[case]),
        "--model",
        str(corpus["bundle"]),
        "--out",
        str(out),
        "--stretch",
        "dtype",
    ]
    line = assert_fails(
        [*args, *TINY], capsys, code=3, names=corpus[case], says="reading pixels", out_dir=out
    )
    assert "may be corrupt or truncated" in line


@pytest.mark.parametrize("case", ["int16.tif", "float_nan.tif", "one_pixel.tif"])
def test_odd_but_valid_scenes_succeed(case, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = run_cli(
        ["run", str(corpus[case]), "--model", str(corpus["bundle"]), "--out", str(out), *TINY], capsys
    )
    assert rc == 0, err
    assert "error" not in err
    stem = Path(case).stem
    assert (out / f"{stem}_run.json").is_file() and stem in stdout
    assert not [f for f in files_under(out) if f.startswith(".")], "temp files left"
    with rasterio.open(corpus[case]) as src, rasterio.open(out / f"{stem}_classes.tif") as cls:
        assert (cls.width, cls.height, cls.crs) == (src.width, src.height, src.crs)
        classes = cls.read(1)
        if case == "float_nan.tif":  # NaN holes and inf pixels are nodata in the class map
            assert (classes[10:20, 10:30] == cls.nodata).all()
            assert classes[40, 40] == classes[41, 41] == cls.nodata
            assert (classes[30:40, 0:10] != cls.nodata).all()
        if case == "int16.tif":
            assert (classes[:8, :8] == cls.nodata).all() and (classes[8:, 8:] != cls.nodata).all()


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("scène 'x' $(touch pwned) & ü.tif", "scène 'x' $(touch pwned) & ü"),
        ("a;b!c|d\te.tif", "a_b_c_d_e"),  # GDAL/pyogrio read ; and ! as URI syntax, QGIS | as separator
    ],
)
def test_odd_file_names_write_inside_out(name, stem, corpus, tmp_path, capsys, monkeypatch):
    """Output names come from the scene's stem only: an upward relative path or odd characters
    (quotes, shell syntax, unicode, URI syntax) still write inside --out, under a usable name."""
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    odd = tmp_path / name
    odd.write_bytes(corpus["good.tif"].read_bytes())
    monkeypatch.chdir(deep)
    rc, _, err = run_cli(
        ["run", "../../" + odd.name, "--model", str(corpus["bundle"]), "--out", "out", *TINY], capsys
    )
    assert rc == 0, err
    out = deep / "out"
    assert {f for f in files_under(out) if f.startswith(stem)} == {
        f"{stem}{suffix}"
        for suffix in (
            ".qgs", "_classes.qml", "_classes.tif", "_classes.tif.aux.xml", "_confidence.qml",
            "_confidence.tif", "_regions.geojson", "_regions.gpkg", "_regions.qml", "_run.json",
            "_tiles.gpkg", "_tiles.qml",
        )
    }  # fmt: skip
    assert len(files_under(out)) == 12, files_under(out)
    outside = {p.name for p in tmp_path.iterdir()} - {"a", odd.name}
    assert outside == set(), f"files written outside --out: {outside}"
    assert not (deep / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_overlong_scene_name_is_shortened(corpus, tmp_path, capsys):
    """A 240-byte stem fits the file system, but "<stem>_confidence.tif" and temp names would not."""
    from geosam.predict import output_stem

    scene = tmp_path / ("s" * 240 + ".tif")
    scene.write_bytes(corpus["good.tif"].read_bytes())
    out = tmp_path / "out"
    rc, _, err = run_cli(
        ["run", str(scene), "--model", str(corpus["bundle"]), "--out", str(out), *TINY], capsys
    )
    assert rc == 0, err
    stem = output_stem(scene)
    assert len(stem) == 160 and stem.startswith("s" * 150)
    assert (out / f"{stem}_run.json").is_file() and (out / f"{stem}_classes.tif").is_file()


# -- model files ----------------------------------------------------------------------------------------

BUNDLE_CASES = {
    # case: (exit code, path the message starts with (relative to the bundle), words)
    "bundle_no_meta": (4, "", "model bundle not found"),
    "bundle_bad_json": (4, "model.json", "not valid JSON"),
    "bundle_not_bundle": (4, "model.json", "not a geosam model bundle"),
    "bundle_missing_key": (4, "model.json", "'bands': Field required"),
    "bundle_unknown_key": (4, "model.json", "unknown key 'preprocess_script'"),
    "bundle_bad_meta": (4, "model.json", "2 class names but the head has 3 outputs"),
    "bundle_no_weights": (4, "", "missing weights.safetensors"),
    "bundle_tampered_weights": (4, "", "does not match the sha256"),
    "bundle_truncated_weights": (4, "", "does not match the sha256"),
    "bundle_pickle_weights": (4, "", "cannot read weights"),
}


@pytest.mark.parametrize("case", sorted(BUNDLE_CASES))
def test_bad_bundle_is_one_line(case, corpus, tmp_path, capsys):
    code, rel, says = BUNDLE_CASES[case]
    bundle = corpus[case]
    out = tmp_path / "out"
    args = ["run", str(corpus["good.tif"]), "--model", str(bundle), "--out", str(out), *TINY]
    assert_fails(args, capsys, code=code, names=bundle / rel if rel else bundle, says=says, out_dir=out)
    assert not (bundle / corpus_module().PAYLOAD_MARKER).exists()


CHECKPOINT_CASES = {
    "evil.pth": "pickled reference to 'exec'",
    "evil_legacy.pth": "pickled reference to 'exec'",
    "evil_plain_pickle.pth": "would run code when unpickled",
    "not_a_checkpoint.pth": "not a checkpoint geosam can load safely",
    "no_decoder.pth": "no mask decoder",
    "missing.pth": "SAM checkpoint not found",
    "good.tif": "not a checkpoint geosam can load safely",
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_bad_sam_checkpoint_is_one_line(case, corpus, tmp_path, capsys):
    ckpt = corpus.get(case, corpus["good.tif"].parent / case)
    out = tmp_path / "out"
    args = ["run", str(corpus["good.tif"]), "--model", str(corpus["bundle"]), "--sam-checkpoint", str(ckpt)]
    assert_fails(
        [*args, "--out", str(out), *TINY],
        capsys,
        code=4,
        names=ckpt,
        says=CHECKPOINT_CASES[case],
        out_dir=out,
    )
    assert not (ckpt.parent / corpus_module().PAYLOAD_MARKER).exists()


@pytest.mark.parametrize(("kind", "says"), [("empty", "the file is empty"), ("directory", "not found")])
def test_empty_or_directory_checkpoint_is_one_line(kind, says, corpus, tmp_path, capsys):
    ckpt = tmp_path / "ckpt.pth"
    ckpt.mkdir() if kind == "directory" else ckpt.write_bytes(b"")
    args = ["run", str(corpus["good.tif"]), "--model", str(corpus["bundle"]), "--sam-checkpoint", str(ckpt)]
    assert_fails(
        [*args, "--out", str(tmp_path / "o"), *TINY], capsys, code=4, names=ckpt, says=says, out_dir=None
    )


# -- configuration ----------------------------------------------------------------------------------------

CONFIG_CASES = {
    "config_unknown_key.yaml": "unknown key 'tiling.tile_sise'",
    "config_wrong_type.yaml": "'tiling.tile_size': Input should be a valid integer",
    "config_bad_yaml.yaml": "not a valid YAML/JSON file",
    "config_not_mapping.yaml": "must be a mapping, not list",
    "config_future.yaml": "schema_version 99 is not supported",
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_is_one_line(case, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(corpus["good.tif"]), "--model", str(corpus["bundle"]), "--config", str(corpus[case])]
    assert_fails(
        [*args, "--out", str(out)], capsys, code=2, names=corpus[case], says=CONFIG_CASES[case], out_dir=out
    )


def test_bad_option_value_is_one_line(corpus, tmp_path, capsys):
    args = ["run", str(corpus["good.tif"]), "--model", str(corpus["bundle"]), "--tile-size", "128"]
    rc, _, err = run_cli([*args, "--halo", "64", "--out", str(tmp_path / "o")], capsys)
    line = error_line(err)
    assert rc == 2 and "halo (64) must be less than tile_size/4" in line


# -- output directory -----------------------------------------------------------------------------------


def good_args(corpus: dict[str, Path], out: Path) -> list[str]:
    return ["run", str(corpus["good.tif"]), "--model", str(corpus["bundle"]), "--out", str(out), *TINY]


def test_output_under_a_regular_file(corpus, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "out"
    assert_fails(good_args(corpus, out), capsys, code=6, names=out, says="Not a directory", out_dir=None)
    assert_fails(
        good_args(corpus, blocker), capsys, code=6, names=blocker, says="cannot create", out_dir=None
    )
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(
    ("code", "says"),
    [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")],
)
def test_read_only_output_directory(code, says, corpus, tmp_path, capsys, monkeypatch):
    """Tests run as root, which ignores permissions: the file system's refusal is simulated at the
    first thing a run creates in --out (its scratch folder)."""
    out = tmp_path / "out"
    out.mkdir()
    real_mkdir = os.mkdir

    def refuse(path, *a, **kw):
        if str(path).startswith(str(out)):
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *a, **kw)

    monkeypatch.setattr(os, "mkdir", refuse)
    assert_fails(good_args(corpus, out), capsys, code=6, names=out, says=says, out_dir=out)


def test_directory_turning_unwritable_mid_run(corpus, tmp_path, capsys, monkeypatch):
    """The scratch raster is written, then creating the first output fails: scratch goes too."""
    out = tmp_path / "out"
    real_open = os.open

    def refuse(path, flags, *a, **kw):
        if flags & os.O_CREAT and os.path.basename(str(path)).startswith(".geosam-tmp-"):
            raise OSError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", refuse)
    assert_fails(good_args(corpus, out), capsys, code=6, names=out, says="permission denied", out_dir=out)


def _full_statvfs(real):
    def statvfs(path):
        st = real(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 0, 0, *tuple(st)[5:]))

    return statvfs


def test_disk_full_in_the_scratch_raster(corpus, tmp_path, capsys, monkeypatch):
    """GDAL reports ENOSPC as "Write failed" (the errno goes to stderr): geosam asks the file system."""
    from rasterio.errors import RasterioIOError
    from rasterio.io import DatasetWriter

    out = tmp_path / "out"
    real_write = DatasetWriter.write

    def write(self, *a, **kw):
        if self.name.endswith("regions_provisional.tif"):
            raise RasterioIOError("Write failed. See previous exception for details.")
        return real_write(self, *a, **kw)

    monkeypatch.setattr(DatasetWriter, "write", write)
    monkeypatch.setattr(os, "statvfs", _full_statvfs(os.statvfs))
    assert_fails(good_args(corpus, out), capsys, code=6, names=out, says="no space left", out_dir=out)


def test_disk_full_in_a_vector_output(corpus, tmp_path, capsys, monkeypatch):
    """What a real full disk gave for GeoPackages (pyogrio: "Failed to commit transaction"), after the
    class map and confidence COGs were already in place: those must go too."""
    import pyogrio
    from pyogrio.errors import DataSourceError

    out = tmp_path / "out"

    def write_dataframe(*a, **kw):
        monkeypatch.setattr(os, "statvfs", _full_statvfs(os.statvfs))
        raise DataSourceError("Failed to commit transaction")

    monkeypatch.setattr(pyogrio, "write_dataframe", write_dataframe)
    line = assert_fails(good_args(corpus, out), capsys, code=6, names=out, says="no space left", out_dir=out)
    assert "good_regions.gpkg" in line


def test_disk_full_at_the_run_record_after_a_complete_earlier_run(corpus, tmp_path, capsys, monkeypatch):
    """A rerun that fails at its last step must not leave new outputs beside the old run record (which
    would mark the scene complete): the earlier complete set stays exactly as it was."""
    import hashlib

    from geosam.outputs import SceneOutputs
    from geosam.record import verify_outputs

    out = tmp_path / "out"
    rc, _, err = run_cli(good_args(corpus, out), capsys)
    assert rc == 0 and (out / "good_run.json").is_file(), err
    earlier = {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in files_under(out)}
    real_write_text = Path.write_text

    def write_text(self, *a, **kw):
        if self.name.endswith("_run.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_text(self, *a, **kw)

    (out / "notes.txt").write_bytes(b"mine")  # not geosam's: must survive
    (out / "good.qml").write_bytes(b"mine too")
    monkeypatch.setattr(Path, "write_text", write_text)
    line = assert_fails(good_args(corpus, out), capsys, code=6, names=out, says="no space left", out_dir=None)
    assert "good_run.json" in line
    assert sorted(files_under(out)) == sorted([*earlier, "good.qml", "notes.txt"])  # nothing else, no scratch
    assert {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in earlier} == earlier
    assert (out / "notes.txt").read_bytes() == b"mine" and (out / "good.qml").read_bytes() == b"mine too"
    verify_outputs(SceneOutputs(out, "good"))  # the earlier record and every file it lists agree


def test_no_overwrite_keeps_existing_outputs(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(good_args(corpus, out), capsys)[0] == 0
    before = {f: (out / f).stat().st_mtime_ns for f in files_under(out)}
    cfg = tmp_path / "keep.yaml"
    cfg.write_text("output:\n  overwrite: false\n")
    rc, _, err = run_cli([*good_args(corpus, out), "--config", str(cfg)], capsys)
    assert rc == 6 and "already exists" in error_line(err)
    assert {f: (out / f).stat().st_mtime_ns for f in files_under(out)} == before


# -- a 20,000 x 20,000 scene: streamed, never whole ---------------------------------------------------------


def test_large_scene_is_planned_and_read_in_bounded_time_and_memory(corpus, capsys):
    from geosam.config import RunConfig, TilingConfig
    from geosam.io.read import open_scene, read_tile
    from geosam.predict import process_tile
    from geosam.preprocess import model_preprocessing
    from geosam.runtime import load_models
    from geosam.scene_preprocessing import scene_preprocessing
    from geosam.tiling import plan_tiles

    vrt = corpus["large.vrt"]
    t0 = time.perf_counter()
    info = open_scene(vrt)
    plan = plan_tiles(info, TilingConfig(tile_size=1024, halo=64))
    assert (info.width, info.height) == (20_000, 20_000)
    assert len(plan.tiles) == 23 * 23
    assert time.perf_counter() - t0 < 10, "planning must not read the scene"

    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    tile = read_tile(vrt, plan.tiles[len(plan.tiles) // 2])
    assert tile.data.shape == (3, 1024, 1024) and tile.valid.all()

    cfg = RunConfig.model_validate({"tiling": {"tile_size": 128, "halo": 16}})
    models = load_models(corpus["bundle"], None, cfg)
    meta = models.bundle.meta  # the model's preprocessing, resolved from a decimated read (the overview)
    prep = scene_preprocessing(vrt, (1, 2, 3), model_preprocessing(meta), meta.mean, cfg.normalize)
    small = plan_tiles(info, cfg.tiling.resolved(128))
    assert len(small.tiles) > 40_000
    for spec in small.tiles[:: len(small.tiles) // 3][:3]:
        t = read_tile(vrt, spec)
        res = process_tile(models, prep.apply(t.data, t.valid), t.valid, spec, cfg)
        assert res.labels.shape == (128, 128) and np.isfinite(res.tile_probs).all()
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak0
    whole_scene_mib = 3 * 20_000 * 20_000 * 4 / 2**20  # 4.5 GiB as float32
    assert growth < 400 < whole_scene_mib / 10, f"peak memory grew by {growth:.0f} MiB"
    assert time.perf_counter() - t0 < 60

    # info shows run's plan (here without resolution matching, which would ask for tiles over 8192 px)
    rc, stdout, err = run_cli(["info", str(vrt), "--tile-size", "1024", "--no-match-resolution"], capsys)
    assert rc == 0, err
    # the default model's 64 px chips: the halo is one chip (geosam.chip_grid), stride 1024 - 2 x 64 = 896
    assert "20000 x 20000 px" in stdout and "529 to process; 1024 px tiles (halo 64," in stdout


@settings(max_examples=60, deadline=None)
@given(
    payload=st.one_of(
        st.binary(min_size=1, max_size=64),
        st.text(min_size=1, max_size=40).map(str.encode),
    )
)
def test_any_bytes_as_a_checkpoint_give_a_checkpoint_error(payload):
    """Text or random bytes as a SAM checkpoint: always CheckpointError (one CLI line), never a traceback."""
    import tempfile

    from geosam.errors import CheckpointError
    from geosam.models.sam import load_state_dict
    from geosam.models.sam_family import identify_sam_checkpoint

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ckpt.pt"
        path.write_bytes(payload)
        with pytest.raises(CheckpointError) as err:
            load_state_dict(path)
        assert "\n" not in str(err.value)
        with pytest.raises(CheckpointError):
            identify_sam_checkpoint(path)
