"""One configuration drives `geosam train` (issue 16 item 6): the options are generated from TrainConfig,
the YAML file holds the same fields (the chip-sampling options under `sampling:`), a run's recorded
configuration replays it, and bad files or values are one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml
from pydantic import ValidationError

from geosam.cli import train as train_cli
from geosam.cli.config_options import leaf_fields
from geosam.cli.main import main
from geosam.config import RunConfig
from geosam.config_io import field_descriptions, format_validation_error
from geosam.errors import ConfigError
from geosam.train.config import (
    SCHEMA_VERSION,
    DenseOptions,
    SamplingConfig,
    TrainConfig,
    load_train_config,
    replay_yaml,
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("geosam: error: ")
    return err


def _commands() -> dict[str, click.Command]:
    return dict(train_cli.train.commands)


def _flags(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in (*getattr(p, "opts", []), *getattr(p, "secondary_opts", []))}


# -- generated options -------------------------------------------------------------------------------


def test_generated_options_cover_every_train_config_field() -> None:
    """Every field of TrainConfig (nested dense/sampling fields too) is an option of some source command,
    with its docstring description as help."""
    fields = set(leaf_fields(TrainConfig, skip=("schema_version",)))
    assert "dense.patch_size" in fields and "sampling.chip_size" in fields and "epochs" in fields
    groups = (
        train_cli.TRAIN_OPTIONS,
        train_cli._FOLDER_OPTIONS,
        train_cli._SCENE_OPTIONS,
        train_cli._POLYGON_OPTIONS,
        train_cli._RASTER_OPTIONS,
    )
    covered = {o.path for g in groups for o in g}
    assert covered == fields
    for g in groups:
        for o in g:
            assert len(o.attrs["help"]) > 20, o.path
    # each training field is an option of every source; scene options of polygons and raster
    commands = _commands()
    for name in ("folder", "polygons", "raster", "torchgeo"):
        assert {o.flags[0] for o in train_cli.TRAIN_OPTIONS} <= _flags(commands[name]), name
    for name in ("polygons", "raster"):
        assert {o.flags[0] for o in train_cli._SCENE_OPTIONS} <= _flags(commands[name]), name


def test_every_model_field_is_documented() -> None:
    for model in (TrainConfig, SamplingConfig, DenseOptions):
        assert set(field_descriptions(model)) == set(model.model_fields), model.__name__


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("folder", "--reflectance-to-display --radiometry --dn-offset"),
        ("polygons", "--field --class-column --layer --max-per-polygon --cv --chip-size --bands --spacing "
         "--max-nodata --radiometry --dn-offset"),
        ("raster", "--classes --label-rule --label-nodata --block-chips --cv --chip-size --bands --spacing "
         "--max-nodata --radiometry --dn-offset"),
        ("torchgeo", "--root --split"),
    ],
)  # fmt: skip
def test_the_flags_of_before_are_still_accepted(command: str, flags: str) -> None:
    common = (
        "--out --backbone --head --mode --last-n --feature-level --input-size --epochs --batch-size --lr "
        "--patience --val-fraction --seed --band-names --max-per-class --cache-dir --resume --no-resume "
        "--save-dtype --tile-size --gsd --name --threads --device --config"
    )
    assert set(f"{common} {flags}".split()) <= _flags(_commands()[command])


def test_help_shows_descriptions_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "raster", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Chip edge in scene pixels" in text and "[default: 64]" in text
    assert "--label-rule [majority|centre]" in text and "--dense-patch-size INTEGER" in text
    assert "--gsd METRES" in text and "--augment / --no-augment" in text
    assert "[default: chip; dense for polygons]" in text and "``" not in text


# -- precedence, schema version, errors -------------------------------------------------------------


def test_command_line_wins_over_yaml_which_wins_over_defaults(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("epochs: 5\nname: from-yaml\nsampling:\n  chip_size: 32\n  spacing: 8\n")
    cfg = load_train_config(p, {"name": "from-flag", "sampling.chip_size": 16, "lr": None})
    assert (cfg.epochs, cfg.name, cfg.lr) == (5, "from-flag", TrainConfig().lr)
    assert (cfg.sampling.chip_size, cfg.sampling.spacing, cfg.sampling.max_nodata) == (16, 8, 0.5)
    assert "head" not in cfg.model_fields_set and "name" in cfg.model_fields_set  # what the user set


def test_yaml_without_schema_version_still_loads(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("backbone: small\nepochs: 40\ndense: {steps: 6}\n")  # a version-1 file
    cfg = load_train_config(old)
    assert cfg.schema_version == SCHEMA_VERSION and cfg.epochs == 40 and cfg.dense.steps == 6
    one = tmp_path / "one.yaml"
    one.write_text("schema_version: 1\nepochs: 3\n")
    assert load_train_config(one).epochs == 3


@pytest.mark.parametrize(
    ("value", "remedy"), [("3", "upgrade geosam"), ("true", "whole number 1..2"), ("'2'", "whole number")]
)
def test_unsupported_schema_version_is_one_line_naming_the_file_and_remedy(
    value: str, remedy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "future.yaml"
    p.write_text(f"schema_version: {value}\nepochs: 2\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(p)
    assert str(err.value).startswith(f"{p}: schema_version ") and remedy in str(err.value)
    assert "\n" not in str(err.value)
    assert main(["train", "folder", str(tmp_path), "--config", str(p)]) == 2
    line = _error_line(capsys)
    assert str(p) in line and remedy in line


def test_validation_errors_are_one_line_naming_file_and_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("epochs: 2\nsampling:\n  chip_size: 0\n  label_rule: middle\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(p)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"invalid training configuration in {p}: ")
    assert "'sampling.chip_size': Input should be greater than or equal to 1" in msg
    assert "'sampling.label_rule'" in msg
    # a value from the command line names the option, not the file
    with pytest.raises(ConfigError) as err:
        load_train_config(None, {"sampling.chip_size": 0}, flags={"sampling.chip_size": "--chip-size"})
    assert str(err.value) == (
        "invalid training configuration: --chip-size: Input should be greater than or equal to 1"
    )
    # an unknown key lists the known ones, and the nested key it may have meant
    p.write_text("chip_size: 16\n")
    with pytest.raises(ConfigError, match=r"unknown key 'chip_size' \(known keys: schema_version, .*"
                       r"did you mean 'sampling\.chip_size'\?\)"):  # fmt: skip
        load_train_config(p)


def test_the_formatter_is_shared_by_every_configuration() -> None:
    with pytest.raises(ValidationError) as err:
        RunConfig.model_validate({"tiling": {"tile_size": "big"}, "colour": 1})
    line = format_validation_error(err.value, "run.yaml", model=RunConfig)
    assert line.startswith("invalid configuration in run.yaml: ") and "\n" not in line
    assert "'tiling.tile_size': Input should be a valid integer" in line
    assert "unknown key 'colour' (known keys: schema_version, " in line
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate({"epochs": 0})
    assert format_validation_error(err.value, flags={"epochs": "--epochs"}) == (
        "invalid configuration: --epochs: Input should be greater than or equal to 1"
    )


def test_field_descriptions_read_google_attributes() -> None:
    from pydantic import BaseModel, Field

    class M(BaseModel):
        """Summary.

        Attributes:
            a: First line
                continued.
            b (int): Second.

        Note:
            Not an attribute.
        """

        a: int = 1
        b: int = 2
        c: int = Field(3, description="From the field.")

    assert field_descriptions(M) == {"a": "First line continued.", "b": "Second.", "c": "From the field."}


def test_missing_class_column_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "polygons", "scene.tif", "labels.gpkg"]) == 2
    assert "pass --field COLUMN" in _error_line(capsys)


# -- a run replays from its recorded configuration ----------------------------------------------------


def test_config_round_trips_through_the_replay_yaml(tmp_path: Path) -> None:
    cfg = TrainConfig(
        backbone="tiny",
        epochs=3,
        init_from=tmp_path / "m0",
        keep="last",
        dense={"context": "3,5", "decoder": "fpn"},
        sampling={"classes": "1=water,2=forest", "bands": "3,2,1", "label_nodata": 0, "radiometry": "dn"},
    )
    p = tmp_path / "replay.yaml"
    p.write_text(replay_yaml(cfg))
    assert load_train_config(p) == cfg
    assert yaml.safe_load(p.read_text())["sampling"]["classes"] == {1: "water", 2: "forest"}


def test_a_training_run_replays_from_its_bundle(
    scene_and_polygons: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--config <bundle>/report/train_config.yaml` alone (no other option but --out) reruns the run:
    the same configuration, sampling options included, and the same chips."""
    from geosam.models.bundle import read_bundle_meta

    scene, labels = scene_and_polygons
    first = tmp_path / "first.yaml"
    first.write_text("epochs: 1\nbatch_size: 8\nsampling:\n  spacing: 4\n  max_per_polygon: 20\n")
    rc = main(
        ["train", "polygons", str(scene), str(labels), "--config", str(first), "--field", "lc", "--head",
         "chip", "--chip-size", "16", "--backbone", "tiny", "--threads", "1", "--val-fraction", "0.3",
         "--device", "cpu", "--no-calibrate", "--out", str(tmp_path / "a")]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    meta = read_bundle_meta(tmp_path / "a")
    recorded = TrainConfig.model_validate(meta.training["config"])
    s = recorded.sampling
    assert (s.class_column, s.chip_size, s.spacing, s.max_per_polygon) == ("lc", 16, 4, 20)
    assert (recorded.epochs, recorded.head, recorded.calibrate) == (1, "chip", False)
    replay = tmp_path / "a" / "report" / "train_config.yaml"
    assert load_train_config(replay) == recorded

    rc = main(
        ["train", "polygons", str(scene), str(labels), "--config", str(replay), "--out", str(tmp_path / "b")]
    )
    assert rc == 0, capsys.readouterr().err
    again = read_bundle_meta(tmp_path / "b")
    assert TrainConfig.model_validate(again.training["config"]) == recorded.model_copy(
        update={"out": tmp_path / "b"}
    )
    assert again.data["chips"] == meta.data["chips"] and again.data["per_class"] == meta.data["per_class"]
    assert again.training["n_train"] == meta.training["n_train"]
