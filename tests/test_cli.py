"""The CLI shell: help that teaches by example, --version, -v/-q logging levels, one-line errors,
and docs/cli.md generated from the commands themselves."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import geosam
from geosam.cli.main import COMMANDS, cli, main

ROOT = Path(__file__).resolve().parents[1]


def available_commands() -> list[tuple[str, ...]]:
    """Every command path a user can type, subcommands of groups included (absent modules skipped)."""
    ctx = click.Context(cli, info_name="geosam")
    out: list[tuple[str, ...]] = []

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        out.append(path)
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, (*path, name))

    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        if cmd is not None:
            walk(cmd, (name,))
    return out


def test_core_commands_are_available():
    names = {p[0] for p in available_commands()}
    assert {"run", "info"} <= names


def test_top_level_help_teaches_by_example(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and "geosam run scene.tif" in out
    assert "-v, --verbose" in out and "-q, --quiet" in out and "--version" in out
    for name in {p[0] for p in available_commands()}:
        assert f"  {name} " in out  # listed with its one-line summary


@pytest.mark.parametrize("path", available_commands(), ids=" ".join)
def test_every_command_help_has_examples(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: geosam {' '.join(path)} ")
    assert "Examples:" in out, f"`geosam {' '.join(path)} --help` has no Examples section"
    examples = out[out.index("Examples:") :]
    assert f"geosam {path[0]}" in examples  # the examples are command lines for this command
    assert main([*path, "-h"]) == 0 and capsys.readouterr().out == out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"geosam, version {geosam.__version__}"


@pytest.fixture
def real_logging() -> Iterator[None]:
    """Let `geosam`'s own logging.basicConfig run, as in a real process (pytest installs handlers on
    the root logger, which would make basicConfig a no-op); restore everything afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in ("rasterio", "fiona", "pyogrio", "PIL")}
    root.handlers.clear()
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)


def _stderr_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    root = logging.getLogger()
    for h in root.handlers[:]:  # each call configures logging afresh, on the captured stderr
        root.removeHandler(h)
    capsys.readouterr()
    rc = main(args)
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_bad_inputs import corpus_module

    return corpus_module().cached_corpus(tmp_path_factory.getbasetemp())["bundle"]


def test_logging_levels(bundle, tmp_path, real_logging, capsys):
    """`run` logs (INFO) that regions will be superpixels before failing on the missing scene:
    shown by default, hidden by -q, which keeps the error; -v keeps INFO; -vv adds DEBUG."""
    missing = tmp_path / "missing.tif"
    args = ["run", str(missing), "--model", str(bundle), "--out", str(tmp_path / "o")]

    rc, lines = _stderr_of(args, capsys)
    assert rc == 3
    assert any(" INFO " in ln and "Felzenszwalb" in ln for ln in lines), lines
    assert lines[-1] == f"geosam: error: {missing}: file not found"

    rc, lines = _stderr_of(["-q", *args], capsys)
    assert rc == 3 and lines == [f"geosam: error: {missing}: file not found"]
    assert logging.getLogger().level == logging.WARNING

    rc, lines = _stderr_of(["-v", *args], capsys)
    assert rc == 3 and any(" INFO " in ln for ln in lines) and logging.getLogger().level == logging.INFO

    root = logging.getLogger()
    for h in root.handlers[:]:
        root.removeHandler(h)
    with pytest.raises(geosam.errors.RasterNotFoundError):  # -vv: the traceback, for bug reports
        main(["-vv", *args])
    assert logging.getLogger().level == logging.DEBUG
    # noisy libraries stay at WARNING even with -vv
    assert logging.getLogger("rasterio").level == logging.WARNING


def test_errors_are_one_line_without_traceback(bundle, tmp_path, capsys):
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    cases = [
        (["info", str(text)], 3, f"geosam: error: {text}: not a raster GDAL can read"),
        (["run", str(text), "--model", str(bundle)], 3, f"geosam: error: {text}: not a raster"),
        (
            ["run", str(text), "--model", str(tmp_path / "nope")],
            4,
            f"geosam: error: {tmp_path / 'nope'}: model",
        ),
        (
            ["run", str(text), "--config", str(tmp_path / "c.yaml")],
            2,
            f"geosam: error: {tmp_path / 'c.yaml'}: ",
        ),
        (["run", str(text), "--tile-size", "100", "--halo", "50"], 2, "geosam: error: invalid configuration"),
    ]
    for args, code, start in cases:
        capsys.readouterr()
        rc = main([*args, "--out", str(tmp_path / "o")] if args[0] == "run" else args)
        err = capsys.readouterr().err
        assert rc == code, (args, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith(start), (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_missing_default_model_says_so(tmp_path, capsys):
    from geosam.models.bundle import default_bundle_path

    if (default_bundle_path() / "model.json").is_file():
        pytest.skip("the packaged default model is installed")
    scene = tmp_path / "scene.tif"
    rc = main(["run", str(scene), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 4 and len(err.strip().splitlines()) == 1
    assert f"geosam: error: {default_bundle_path()}: the packaged default model is not installed" in err


def test_usage_errors_exit_2_without_traceback(capsys):
    for args in (["nope"], ["run"], ["run", "x.tif", "--regions", "magic"], ["--nope"]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "Error:" in err and "Traceback" not in err


def test_a_multi_scene_run_reports_each_failure_on_one_line(bundle, tmp_path, capsys):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    args = ["run", str(a), str(b), "--model", str(bundle), "--out", str(tmp_path / "o")]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err == [
        f"geosam: error: {a}: file not found (skipped)",
        f"geosam: error: {b}: file not found (skipped)",
    ]


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "docs" / "gen_cli_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_cli_reference"] = module
    spec.loader.exec_module(module)
    return module


def test_cli_reference_regenerates_and_covers_every_command(tmp_path):
    """docs/cli.md is generated from the commands; it must regenerate and name every command. (Run
    `python docs/gen_cli_reference.py --check` in CI for an exact comparison.)"""
    gen = _gen_module()
    text = gen.render()
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for path in available_commands():
        heading = f"## geosam {' '.join(path)}\n"
        assert heading in text
        assert heading in committed, f"docs/cli.md lacks `geosam {' '.join(path)}`: regenerate it"
    assert gen.main(["--out", str(tmp_path / "cli.md")]) == 0
    assert gen.main(["--check", "--out", str(tmp_path / "cli.md")]) == 0
    (tmp_path / "cli.md").write_text(text + "stale\n")
    assert gen.main(["--check", "--out", str(tmp_path / "cli.md")]) == 1
