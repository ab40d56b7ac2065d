"""Run configuration schema 2: segment.mask_threshold (read by nothing) is gone; version-1 files and
files without a schema_version still load, with a warning when they set the dead key."""

from __future__ import annotations

import logging

import pytest

from geosam.config import SCHEMA_VERSION, RunConfig, parse_config
from geosam.errors import ConfigError


def test_version_1_files_load_and_lose_the_dead_key(caplog):
    v1 = {"schema_version": 1, "segment": {"mask_threshold": 0.0, "points_per_side": 8}}
    cfg = parse_config(v1)
    assert cfg.schema_version == SCHEMA_VERSION == 2 and cfg.segment.points_per_side == 8
    assert "mask_threshold" not in cfg.to_json_dict()["segment"]
    assert not caplog.records  # the default value: nothing to say
    with caplog.at_level(logging.WARNING, logger="geosam.config"):
        parse_config({"segment": {"mask_threshold": 0.5}}, "old.yaml")  # no version: read as 1
    assert [r.getMessage() for r in caplog.records] == [
        "old.yaml: segment.mask_threshold (0.5) is no longer a setting: it never had an effect (SAM's mask "
        "decoder thresholds its logits at 0.0); removed"
    ]
    assert parse_config({}) == RunConfig()


def test_version_2_refuses_the_key_and_future_versions():
    with pytest.raises(ConfigError, match=r"unknown key 'segment\.mask_threshold'"):
        parse_config({"schema_version": 2, "segment": {"mask_threshold": 0.0}})
    with pytest.raises(ConfigError, match="schema_version 3 is not supported by this geosam"):
        parse_config({"schema_version": 3})
    with pytest.raises(ConfigError, match="schema_version True is not supported"):
        parse_config({"schema_version": True})
    # a saved configuration round-trips
    cfg = RunConfig.model_validate({"segment": {"points_per_side": 4}})
    assert parse_config(cfg.to_json_dict()) == cfg
