"""dask's own log lines (~25 per local-cluster run, among them a WARNING about killing workers on a
successful run) are hidden by default and shown with -v, in `geosam batch` and `geosam ingest`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from geosam.cli.main import configure_logging
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def real_logging() -> Iterator[None]:
    """An empty root logger, as in a fresh process; restored afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    yield
    root.handlers[:] = saved
    root.setLevel(level)


def test_dask_records_hidden_by_default_shown_with_v(real_logging, capsys):
    import distributed  # noqa: F401  (importing it resets the `distributed` logger to INFO)

    logging.getLogger().handlers.clear()  # pytest's capture handlers, added for the call phase
    configure_logging(0, quiet=False)
    nanny = logging.getLogger("distributed.nanny")
    nanny.warning("Worker process still alive after 4.0 seconds, killing")
    logging.getLogger("distributed.scheduler").info("State start")
    logging.getLogger("geosam.batch").info("a: 4 tiles")
    err = capsys.readouterr().err
    assert "geosam.batch: a: 4 tiles" in err and "distributed" not in err
    nanny.error("a real problem")  # errors always show
    assert "distributed.nanny: a real problem" in capsys.readouterr().err

    configure_logging(1, quiet=False)  # -v (also after the subcommand: the same handler is re-levelled)
    nanny.warning("killing")
    logging.getLogger("distributed.scheduler").info("State start")
    err = capsys.readouterr().err
    assert "WARNING distributed.nanny: killing" in err and "INFO    distributed.scheduler: State start" in err
    assert len(logging.getLogger().handlers) == 1


def test_batch_on_a_local_cluster_prints_no_dask_lines(tmp_path):
    make_tiny_bundle(tmp_path / "bundle", input_size=32, tile_size=128)
    (tmp_path / "scenes").mkdir()
    make_raster(tmp_path / "scenes" / "a.tif", 100, 100, count=3, dtype="uint8", fill="random")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GEOSAM_NO_REEXEC": "1", "MALLOC_ARENA_MAX": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "geosam", "batch", "scenes", "--out", "out", "--model", "bundle",
         "--workers", "1", "--tile-size", "128"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "1 scenes: 1 done, 0 failed" in res.stdout
    assert "local dask cluster, 1 worker process" in res.stderr  # the run did use dask
    noise = [ln for ln in res.stderr.splitlines() if "distributed" in ln or "dask." in ln]
    assert noise == []
