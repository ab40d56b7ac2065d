"""The batch package's inner modules, stac and ingest import one way (no cycles at all:
tests/test_architecture.py), and geosam.ingest imports where fcntl does not exist (Windows)."""

from __future__ import annotations

from pathlib import Path

from geosam._devtools.imports import import_graph


def test_batch_stac_ingest_import_one_way():
    g = import_graph()
    batch = {m for m in g if m == "geosam.batch" or m.startswith("geosam.batch.")}
    inner = ("tasks", "run", "dask_backend", "inputs", "executor")
    assert batch >= {f"geosam.batch.{m}" for m in inner}
    assert not g["geosam.stac"] & batch and {"geosam.outputs"} <= g["geosam.stac"]
    assert not g["geosam.batch.tasks"] & (batch - {"geosam.batch.tasks"})
    assert not g["geosam.batch.inputs"] & (batch - {"geosam.batch.inputs"})
    assert "geosam.ingest" not in {t for m in batch for t in g[m]}


def test_ingest_imports_without_fcntl():
    """fcntl does not exist on Windows: the ingest lock is filelock's, imported when a run locks."""
    import subprocess
    import sys

    code = "import sys; sys.modules['fcntl'] = None; import geosam.ingest, geosam.batch, geosam.manifest"
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert res.returncode == 0, res.stderr
