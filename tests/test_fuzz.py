"""Bounded fuzzing of what geosam reads from users: rasters, run configurations, bundle metadata.

Whatever the bytes, the readers and parsers may only fail with geosam's own errors (which the CLI
prints as one line): random bytes and mutated GeoTIFFs through ``open_scene``/``read_window``/
``read_tile`` raise only :class:`GeosamError`; random mappings and YAML through ``parse_config``/
``load_config`` raise only :class:`ConfigError`; mutated ``model.json`` files raise only
:class:`BundleError` or :class:`WeightsNotFoundError`.

Runs are deterministic (``derandomize=True``, no example database) and bounded by ``max_examples``;
the whole module takes about 20 s on one core.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosam.config import RunConfig, load_config, parse_config
from geosam.errors import BundleError, ConfigError, GeosamError, WeightsNotFoundError
from geosam.testing import make_raster
from geosam.types import PixelWindow

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Read at most this many pixels from a fuzzed header (a mutated header may claim any size).
MAX_READ = 64


def _read_everything_bounded(path: Path) -> None:
    """open_scene, then a bounded boundless window and a tile: each may only raise GeosamError."""
    from geosam.config import TilingConfig
    from geosam.io.read import open_scene, read_tile, read_window
    from geosam.tiling import plan_tiles

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GDAL's complaints about odd TIFF tags are not errors
        info = open_scene(path)
        read_window(path, PixelWindow(-3, -3, min(info.width, MAX_READ) + 6, min(info.height, MAX_READ) + 6))
        if info.width * info.height <= 256 * 256:
            plan = plan_tiles(info, TilingConfig(tile_size=64, halo=8, skip_empty=False))
            read_tile(path, plan.tiles[-1], [1])


def _must_only_raise(exc_types: tuple[type[BaseException], ...], fn: Any, *args: Any) -> None:
    with contextlib.suppress(*exc_types):  # anything else propagates and fails the test
        fn(*args)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Small valid rasters whose bytes are mutated: GeoTIFF (deflate, tiled), GeoTIFF (strips, raw,
    with nodata and a mask), float32, and a COG with an overview."""
    import rasterio.shutil

    d = tmp_path_factory.mktemp("fuzz_seeds")
    out = {
        "tiled": make_raster(d / "tiled.tif", 48, 40, count=3, dtype="uint16", blocksize=16, fill="random"),
        "strips": make_raster(
            d / "strips.tif",
            40,
            33,
            count=2,
            dtype="uint8",
            tiled=False,
            compress=None,
            nodata=0,
            mask=np.tri(33, 40, dtype=bool),
        ),
        "float": make_raster(
            d / "float.tif", 32, 32, count=1, dtype="float32", fill="random", compress="lzw"
        ),
    }
    src = make_raster(d / "src.tif", 64, 64, count=3, dtype="uint8", fill="random", overviews=(2,))
    rasterio.shutil.copy(src, d / "cog.tif", driver="COG", blocksize=32)
    out["cog"] = d / "cog.tif"
    return {k: Path(v).read_bytes() for k, v in out.items()}


@settings(FUZZ, max_examples=60)
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".tif", ".vrt", ".jp2", ".img", ""]))
def test_random_bytes_raise_only_geosam_errors(tmp_path, data, suffix):
    path = tmp_path / f"scene{suffix}"
    path.write_bytes(data)
    _must_only_raise((GeosamError,), _read_everything_bounded, path)


@st.composite
def mutated(draw: st.DrawFn, seeds: dict[str, bytes]) -> bytes:
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    n = len(data)
    header = draw(st.booleans())  # most of the interesting structure is in the first few hundred bytes
    for _ in range(draw(st.integers(1, 8))):
        hi = min(n - 1, 512) if header else n - 1
        i = draw(st.integers(0, hi))
        op = draw(st.sampled_from(["set", "flip", "zero", "ff"]))
        if op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        else:
            data[i] = 0 if op == "zero" else 0xFF
    if draw(st.booleans()):
        cut = draw(st.integers(8, n))
        data = data[:cut]
    return bytes(data)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_mutated_geotiffs_raise_only_geosam_errors(tmp_path, seeds, data):
    path = tmp_path / "mutated.tif"
    path.write_bytes(data.draw(mutated(seeds)))
    _must_only_raise((GeosamError,), _read_everything_bounded, path)


def test_seeds_themselves_read(tmp_path, seeds):
    """The control: unmutated seeds read without error (else the fuzzing proves little)."""
    for name, data in seeds.items():
        path = tmp_path / f"{name}.tif"
        path.write_bytes(data)
        _read_everything_bounded(path)


# -- configuration ---------------------------------------------------------------------------------------

SECTIONS: dict[str, list[str]] = {
    name: list(model.model_fields)
    for name, model in (
        ("tiling", RunConfig.model_fields["tiling"].annotation),
        ("normalize", RunConfig.model_fields["normalize"].annotation),
        ("segment", RunConfig.model_fields["segment"].annotation),
        ("output", RunConfig.model_fields["output"].annotation),
    )
}
TOP_KEYS = [k for k in RunConfig.model_fields if k not in SECTIONS]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["auto", "cpu", "cuda:0", "sam", "percentile", "uint8", "1", "1e3", "-1", "null"])
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def config_like(draw: st.DrawFn) -> Any:
    """Mostly well-shaped configs with wrong values (to reach the validators), sometimes anything."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_like)
    cfg: dict[Any, Any] = {}
    for key in draw(st.lists(st.sampled_from(TOP_KEYS), max_size=4, unique=True)):
        cfg[key] = draw(scalars | st.lists(st.integers(-2, 20) | st.text(max_size=4), max_size=4))
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            cfg[section] = draw(json_like)
            continue
        keys = draw(st.lists(st.sampled_from(SECTIONS[section]), max_size=5, unique=True))
        cfg[section] = {k: draw(scalars) for k in keys}
        if draw(st.integers(0, 6)) == 0:
            cfg[section][draw(st.text(max_size=6))] = draw(scalars)  # unknown key
    if draw(st.integers(0, 8)) == 0:
        cfg[draw(st.integers() | st.none() | st.booleans())] = 1  # non-string key (YAML allows them)
    return cfg


@settings(FUZZ, max_examples=200)
@given(data=config_like())
def test_parse_config_raises_only_config_error(data):
    try:
        cfg = parse_config(data)
    except ConfigError:
        return
    assert isinstance(cfg, RunConfig)
    assert parse_config(cfg.to_json_dict()) == cfg  # what is accepted round-trips


@settings(FUZZ, max_examples=100)
@given(
    text=st.one_of(
        st.text(max_size=200),
        config_like().map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.sampled_from(
            [
                "a: &x [1]\nb: *x\n",
                "!!python/object/apply:os.system ['echo pwned']\n",
                "tiling: !!python/name:os.system\n",
                "---\n- 1\n---\n- 2\n",
                "[" * 5000,
                "{a: " * 2000,
                "\ufeffdevice: cpu\n",
                "tiling:\n  tile_size: 1e400\n",
            ]
        ),
    ),
    raw=st.booleans(),
)
def test_load_config_raises_only_config_error(tmp_path, text, raw):
    path = tmp_path / "run.yaml"
    if raw:
        path.write_bytes(text.encode("utf-8", "surrogatepass")[:4000] + b"\xff\xfe")
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        cfg = load_config(path)
    except ConfigError as err:
        assert err.path == str(path)
        return
    assert isinstance(cfg, RunConfig)


# -- bundle metadata --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle of the bad-input corpus (shared with the other test modules)."""
    from test_bad_inputs import corpus_module

    return corpus_module().cached_corpus(tmp_path_factory.getbasetemp())["bundle"]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


small_values = (
    st.none()
    | st.booleans()
    | st.integers(-3, 300)
    | st.sampled_from([0, 1, 3, 8, 16, 32, 64, 128, 2**31, 10**12])
    | st.floats(-10, 1e6, allow_nan=True)
    | st.text(max_size=10)
    | st.lists(st.integers(0, 8), max_size=4)
    | st.dictionaries(st.text(max_size=5), st.integers(0, 3), max_size=2)
)


@st.composite
def meta_mutation(draw: st.DrawFn, meta: dict[str, Any]) -> tuple[str, bytes]:
    """(how, new model.json bytes): edit/delete values anywhere in the tree, or mangle the text."""
    m = json.loads(json.dumps(meta))
    if draw(st.integers(0, 5)) == 0:
        text = bytearray(json.dumps(m).encode())
        for _ in range(draw(st.integers(1, 4))):
            text[draw(st.integers(0, len(text) - 1))] = draw(st.integers(0, 255))
        return "bytes", bytes(text)
    paths = _paths(m)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent = m
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.integers(0, 3)) == 0 and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(small_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed this branch
    return "edit", json.dumps(m, allow_nan=True).encode()


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_mutated_bundle_metadata_raises_only_bundle_errors(tmp_path, bundle, data):
    from geosam.models.bundle import load_bundle, read_bundle_meta

    meta = json.loads((bundle / "model.json").read_text())
    _how, text = data.draw(meta_mutation(meta))
    case = tmp_path / "b"
    if case.exists():
        shutil.rmtree(case)
    shutil.copytree(bundle, case)
    (case / "model.json").write_bytes(text)
    try:
        read_bundle_meta(case)
    except (BundleError, WeightsNotFoundError):
        return
    try:
        loaded = load_bundle(case)  # the weights are intact: metadata must match them or be refused
    except (BundleError, WeightsNotFoundError):
        return
    assert loaded.meta.head.num_classes == len(loaded.classes)
