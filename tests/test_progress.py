"""Progress of long work: rich bars on a terminal, INFO log lines when stderr is not one (cron, CI,
`!geosam` in Jupyter), nothing with -q; the same for `run`, `train` and `batch`."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geosam.progress import (
    BatchProgress,
    Progress,
    ProgressSettings,
    current_settings,
    format_duration,
    progress_iter,
    progress_settings,
)
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "geosam.progress"]


def test_log_mode_writes_a_line_every_interval_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="geosam.progress")
    clock = Clock()
    p = Progress("s: tiles", 40, unit="tiles", settings=ProgressSettings("log", 10.0), clock=clock)
    for _ in range(4):  # 4 tiles in 8 s: no line yet (interval 10 s)
        clock.t += 2.0
        p.advance()
    assert messages(caplog) == []
    clock.t += 2.0
    p.advance()  # 5 tiles in 10 s
    assert messages(caplog) == ["s: tiles: 5/40 (12%), 2.0 s/tile, elapsed 0:10, ETA 1:10"]
    clock.t += 5.0
    p.update(15)  # 15 in 15 s: 1 tile/s; 5 s since the last line: none
    assert len(messages(caplog)) == 1
    clock.t += 5.0
    p.update(30)  # 30 in 20 s
    assert messages(caplog)[-1] == "s: tiles: 30/40 (75%), 1.50 tiles/s, elapsed 0:20, ETA 0:07"
    p.close()
    assert messages(caplog)[-1] == "s: tiles: 30/40 (75%), 1.50 tiles/s, elapsed 0:20, ETA 0:07 (finished)"
    p.close()
    assert len(messages(caplog)) == 3  # closing twice logs once


def test_short_loops_stay_silent_and_disabled_or_off_never_log(caplog):
    caplog.set_level(logging.INFO, logger="geosam.progress")
    clock = Clock()
    with Progress("quick", 3, settings=ProgressSettings("log", 30.0), clock=clock) as p:
        for _ in range(3):
            clock.t += 1
            p.advance()
    for kwargs in ({"enabled": False}, {"settings": ProgressSettings("off", 0.0)}):
        with Progress("x", 3, clock=clock, **kwargs) as p:  # type: ignore[arg-type]
            clock.t += 100
            p.advance()
            assert p.mode == "off"
    assert messages(caplog) == []


def test_progress_iter_yields_everything_and_logs_with_scoped_settings(caplog):
    caplog.set_level(logging.INFO, logger="geosam.progress")
    assert current_settings().mode == "auto"
    with progress_settings(mode="log", interval_s=0):
        assert list(progress_iter(range(3), "epoch 1/1", unit="batches")) == [0, 1, 2]
        assert list(progress_iter(iter([7]), "gen", total=None)) == [7]
    assert current_settings() == ProgressSettings()  # restored
    lines = messages(caplog)
    assert [ln.split(",")[0] for ln in lines[:3]] == ["epoch 1/1: 1/3 (33%)", "epoch 1/1: 2/3 (67%)",
                                                      "epoch 1/1: 3/3 (100%)"]  # fmt: skip
    assert lines[3].startswith("epoch 1/1: 3/3 (100%)") and lines[3].endswith("(finished)")
    assert lines[4].startswith("gen: 1 steps, ")  # unknown total: count and rate, no ETA
    assert list(progress_iter(range(2), "off", enabled=False)) == [0, 1]


def test_auto_mode_is_log_without_a_terminal(monkeypatch):
    class NotATerminal:
        def isatty(self) -> bool:
            return False

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", NotATerminal())
    assert ProgressSettings().resolved_mode() == "log"
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert ProgressSettings().resolved_mode() == "bar"
    assert ProgressSettings("off").resolved_mode() == "off"


def test_batch_progress_line_counts_scenes_and_tiles_of_started_scenes(caplog):
    caplog.set_level(logging.INFO, logger="geosam.progress")
    clock = Clock()
    with BatchProgress(10, settings=ProgressSettings("log", 60.0), clock=clock) as bar:
        bar.advance(2, failed=1)  # skipped / unreadable scenes counted up front
        bar.event({"kind": "start", "scene_id": "a", "worker": "w"})
        for done in range(1, 41):
            clock.t += 1.0
            bar.event({"kind": "tile", "scene_id": "a", "done": done, "total": 40})
        clock.t += 20.0
        bar.event({"kind": "tile", "scene_id": "b", "done": 20, "total": 80})
    lines = messages(caplog)
    assert lines[0] == (
        "batch: 2/10 scenes (1 failed), tiles 60/120 of 2 started scene(s), 1.00 tiles/s, "
        "ETA of the started scenes 1:00, elapsed 1:00"
    )
    assert lines[-1].endswith("(finished)") and len(lines) == 2


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 61, 3600, 7322)] == ["0:00", "0:59", "1:01", "1:00:00",
                                                                       "2:02:02"]  # fmt: skip
    assert format_duration(float("inf")) == "?"


# -- the CLI without a terminal (stderr is a pipe, as under cron, nohup, CI or `!geosam` in Jupyter) --


def _geosam(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GEOSAM_NO_REEXEC": "1", "MALLOC_ARENA_MAX": "1"}
    return subprocess.run(
        [sys.executable, "-m", "geosam", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    bundle = make_tiny_bundle(d / "bundle", input_size=32, tile_size=128)
    scene = make_raster(d / "scene.tif", 200, 200, count=3, dtype="uint8", fill="random")
    return d, bundle, scene


def test_run_logs_tile_progress_when_stderr_is_not_a_terminal(tiny):
    d, bundle, scene = tiny
    base = ["run", str(scene), "--model", str(bundle), "--tile-size", "128", "--halo", "16"]
    res = _geosam("--progress-interval", "0", *base, "--out", str(d / "o1"), cwd=d)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if " geosam.progress: " in ln]
    assert all(" INFO " in ln and "ETA" in ln for ln in lines)
    # 200 px, stride 128 - 2*16 = 96: 3 x 3 tiles; one line per tile at interval 0, plus the closing line,
    # for the tile loop and for the finishing pass that writes the class map window by window
    for stage in ("tiles", "writing"):
        mine = [ln for ln in lines if f"scene: {stage}: " in ln]
        counts = [re.search(rf"scene: {stage}: (\d+)/9 \(", ln).group(1) for ln in mine]  # type: ignore[union-attr]
        assert counts == [str(i) for i in range(1, 10)] + ["9"], res.stderr
        assert mine[-1].endswith("(finished)")
    assert "9 tiles" in res.stdout

    # global options after the subcommand: -q silences progress (and INFO), the run still works
    res = _geosam(*base, "--out", str(d / "o2"), "-q", "--progress-interval", "0", cwd=d)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and "9 tiles" in res.stdout


def test_train_logs_epoch_progress_when_stderr_is_not_a_terminal(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "chips" / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / "chips" / cls / f"{i}.png"
            )
    args = ["train", "folder", "chips", "--backbone", "tiny", "--epochs", "2", "--batch-size", "4",
            "--val-fraction", "0.25", "--out", "m", "--progress-interval", "0"]  # fmt: skip
    res = _geosam(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [ln.split("geosam.progress: ")[1] for ln in res.stderr.splitlines() if "geosam.progress: " in ln]
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    # 12 training chips / batch 4 = 3 batches per epoch, a line per batch and a closing line per epoch
    assert [ln.split(",")[0] for ln in epochs] == [
        *(f"epoch 1/2: {i}/3 ({round(100 * i / 3)}%)" for i in (1, 2, 3, 3)),
        *(f"epoch 2/2: {i}/3 ({round(100 * i / 3)}%)" for i in (1, 2, 3, 3)),
    ]
    assert any(ln.startswith("decoding chips: 16/16 (100%)") for ln in lines)
