"""Issue 11 items 9 and 10: band identity. Unnamed bands are never taken silently; every hint runs.

Kinds:

* ambiguous identity: bands without names or colour interpretation say nothing about what they hold.
  geosam's decision (docs/configuration.md, geosam/bands.py): as many unnamed bands as the model takes
  are read in file order *with a warning on every run* that names the assumed order and the
  ``--bands`` that fixes or confirms it; any other count is refused with a ``--bands`` hint.
* hints: every ``--bands`` an error suggests selects as many bands as the model takes, all present,
  so it runs as written (tested by running it, for 1..6-band rasters against 1..4-band models);
* README and ``run --help`` agree on the band counts geosam takes.

Generated variants: band count, names (none, descriptions, colour interpretation, alpha), model
bands, selections (hypothesis).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers_field import blocky, one_error_line, run_geosam, tiny_bundle_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosam.bands import canonical_band_name, example_bands, resolve_bands
from geosam.errors import BandError
from geosam.testing import make_raster
from geosam.types import SceneInfo

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["red", "green", "blue", "nir", "swir1", "coastal"]
BAND_LABEL = st.sampled_from([None, None, None, "alpha", *NAMES, "B04", "Band 1", "lsat7_2000_40"])


def scene(labels: list[str | None]) -> SceneInfo:
    n = len(labels)
    return SceneInfo("/data/s.tif", 10, 10, n, "uint8", "", (1, 0, 0, 0, -1, 0), (None,) * n, tuple(labels))


def hinted_bands(message: str) -> list[int]:
    m = re.search(r"--bands (\d+(?:,\d+)*)", message)
    assert m, f"no --bands hint in: {message}"
    return [int(v) for v in m.group(1).split(",")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    labels=st.lists(BAND_LABEL, min_size=1, max_size=6),
    wanted=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True),
)
def test_bands_are_found_by_name_or_warned_or_refused_with_a_hint_that_works(labels, wanted, caplog):
    info = scene(labels)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geosam.bands"):
        try:
            chosen = resolve_bands(info, None, wanted)
        except BandError as err:
            msg = str(err)
            assert "\n" not in msg and msg.startswith("/data/s.tif: ")
            m = re.search(r"--bands ((?:\d+|<\w+>)(?:,(?:\d+|<\w+>))*)", msg)
            assert m, f"no --bands hint in: {msg}"
            tokens = m.group(1).split(",")
            assert len(tokens) == len(wanted)
            canon = [canonical_band_name(n) if n else None for n in labels]
            if any(t.startswith("<") for t in tokens):
                # bands missing by name: the matched ones by index, a placeholder naming each missing
                # one, never another band copied into its place
                assert any(w in canon for w in wanted)  # only when some band did match by name
                for w, t in zip(wanted, tokens, strict=True):
                    if t.startswith("<"):
                        assert t == f"<{w}>" and "cannot find" in msg and w in msg
                    else:
                        assert canon[int(t) - 1] == w
                return
            hint = [int(t) for t in tokens]
            assert all(1 <= b <= info.count for b in hint)
            assert resolve_bands(info, hint, wanted) == tuple(hint)  # the hint runs as written
            return
    assert len(chosen) == len(wanted)
    canon = [canonical_band_name(n) if n else None for n in labels]
    if all(w in canon for w in wanted):  # found by name: nothing to warn about
        assert chosen == tuple(canon.index(w) + 1 for w in wanted)
        assert not caplog.records
    else:  # unnamed bands taken in file order: said loudly, with the --bands that settles it
        assert chosen == tuple(i for i, c in enumerate(canon, start=1) if c != "alpha")
        if len(wanted) > 1:  # a single band has no order to get wrong
            assert "no names" in caplog.text and f"--bands {','.join(map(str, chosen))}" in caplog.text
    # an explicit selection never warns
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geosam.bands"):
        resolve_bands(info, list(chosen), wanted)
    assert not caplog.records


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 8), n=st.integers(1, 6), picked=st.integers(1, 6))
def test_a_wrong_number_of_selected_bands_gets_a_hint_that_works(count, n, picked):
    info = scene([None] * count)
    wanted = NAMES[:n]
    sel = [min(i, count) for i in range(1, picked + 1)]
    if picked == n:
        assert resolve_bands(info, sel, wanted) == tuple(sel)
        return
    with pytest.raises(BandError) as err:
        resolve_bands(info, sel, wanted)
    hint = hinted_bands(str(err.value))
    assert resolve_bands(info, hint, wanted) == tuple(hint)


def test_example_bands():
    assert [example_bands(c, 3) for c in (1, 2, 3, 7)] == ["1,1,1", "1,2,2", "1,2,3", "1,2,3"]


# -- end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle_at(tmp_path_factory.mktemp("bands") / "bundle", gsd_m=None)


def _scene(path, count, **kw):
    data = blocky(64, 64, count=count, seed=11, block=8)
    return make_raster(path, 64, 64, count=count, dtype="uint8", fill=data, **kw)


@pytest.mark.parametrize("count", [1, 2])
def test_one_and_two_band_rasters_get_a_hint_that_runs(count, bundle, tmp_path, capsys, caplog):
    path = _scene(tmp_path / f"b{count}.tif", count)
    out = tmp_path / "out"
    args = ["run", str(path), "--model", str(bundle), "--out", str(out)]
    rc, _, err, _ = run_geosam(args, capsys, caplog)
    line = one_error_line(err)
    assert rc == 3 and str(path) in line and f"only {count}" in line
    hint = hinted_bands(line)
    rc, _, err, _ = run_geosam([*args, "--bands", ",".join(map(str, hint))], capsys, caplog)
    assert rc == 0, err  # the hint, run as written
    # and a selection of the wrong size gets a hint that runs too
    rc, _, err, _ = run_geosam([*args, "--bands", "1"], capsys, caplog)
    line = one_error_line(err)
    assert rc == 3
    rc, _, err, _ = run_geosam([*args, "--bands", ",".join(map(str, hinted_bands(line)))], capsys, caplog)
    assert rc == 0, err


def test_unnamed_bgr_scene_warns_and_the_remedies_work(bundle, tmp_path, capsys, caplog):
    rgb_data = blocky(64, 64, count=3, seed=12, block=8)
    rgb = make_raster(
        tmp_path / "rgb.tif",
        64,
        64,
        count=3,
        dtype="uint8",
        fill=rgb_data,
        colorinterp=["red", "green", "blue"],
    )
    # no colour interpretation (GDAL would stamp 3-band bytes as RGB by default: that is a name)
    none = ["gray", "undefined", "undefined"]
    bgr = make_raster(
        tmp_path / "bgr.tif", 64, 64, count=3, dtype="uint8", fill=rgb_data[::-1].copy(), colorinterp=none
    )

    def run(path, *extra):
        out = tmp_path / f"out_{path.stem}_{len(extra)}"
        rc, _, err, records = run_geosam(
            ["run", str(path), "--model", str(bundle), "--out", str(out), *extra], capsys, caplog
        )
        assert rc == 0, err
        with rasterio.open(out / f"{path.stem}_classes.tif") as ds:
            return ds.read(1), [r for r in records if r.levelno >= logging.WARNING]

    want, warned = run(rgb)
    assert not [r for r in warned if r.name == "geosam.bands"]
    _, warned = run(bgr)
    msgs = [r.getMessage() for r in warned if r.name == "geosam.bands"]
    assert len(msgs) == 1 and "--bands 3,2,1" in msgs[0] and "no names" in msgs[0]
    fixed, warned = run(bgr, "--bands", "3,2,1")  # the remedy the warning names
    assert np.array_equal(fixed, want) and not [r for r in warned if r.name == "geosam.bands"]
    # the other remedy: record the order in the file with the command the warning gives
    command = msgs[0][msgs[0].index("rio edit-info") :].split()
    rio = Path(sys.executable).with_name("rio")
    if not rio.exists():
        pytest.skip("rasterio's rio command is not installed next to this python")
    stored = tmp_path / "stored_rgb.tif"
    stored.write_bytes(rgb.read_bytes())
    with rasterio.open(stored, "r+") as ds:
        ds.colorinterp = [rasterio.enums.ColorInterp.undefined] * 3
    subprocess.run([str(rio), *command[1:-1], str(stored)], check=True, capture_output=True)
    again, warned = run(stored)
    assert np.array_equal(again, want) and not [r for r in warned if r.name == "geosam.bands"]


def test_readme_and_run_help_agree_on_band_counts():
    from click.testing import CliRunner

    from geosam.cli.main import cli

    help_text = CliRunner().invoke(cli, ["run", "--help"]).output
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pattern = r"(\d+)\s*(?:to|-)\s*(\d+)\+?\s*bands"
    in_help = {m.groups() for m in re.finditer(pattern, help_text)}
    in_readme = {m.groups() for m in re.finditer(pattern, readme)}
    assert in_help and in_help == in_readme == {("1", "13")}, (in_help, in_readme)
