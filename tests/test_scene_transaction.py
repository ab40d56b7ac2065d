"""A scene's outputs are one transaction: after a failed or killed rerun the folder holds the complete
earlier set or the complete new set, never a mix, and no scratch (issue 16 item 1, issue 11 item 6)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from geosam.batch import ExecutorSpec, run_batch
from geosam.config import RunConfig
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle

CFG = {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}, "device": "cpu"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", input_size=32, tile_size=128)


def scene(path, w=90, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_raster(path, w, w, count=3, dtype="uint16", fill="random", seed=seed)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones included), by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_failed_overwrite_rerun_keeps_the_stac_item_and_its_assets(tmp_path, bundle, monkeypatch):
    """Batch with STAC, then a rerun that fails after its class map landed: the collection must list
    only items whose assets exist, and the scene keeps its earlier complete set (item included)."""
    import geosam.io.scene_writer as sw

    scene(tmp_path / "in" / "s.tif")
    cfg = RunConfig.model_validate(CFG)
    run = {"model": bundle, "cfg": cfg, "executor": ExecutorSpec(workers=0), "stac": True}
    first = run_batch([tmp_path / "in"], tmp_path / "out", **run)
    assert first.counts()["done"] == 1
    folder = tmp_path / "out" / "s"
    before = snapshot(folder)
    assert "s_stac_item.json" in before and "s_run.json" in before

    def fail(*a, **k):
        raise RuntimeError("simulated crash after the class map landed")

    monkeypatch.setattr(sw, "write_tiles_layer", fail)
    scene(tmp_path / "in" / "s.tif", seed=1)  # new content: a real rerun
    again = run_batch([tmp_path / "in"], tmp_path / "out", **run)
    assert again.scenes[0].status == "failed" and "simulated crash" in again.scenes[0].error_message

    collection = json.loads((tmp_path / "out" / "collection.json").read_text())
    items = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert items, "the scene's earlier item must still be listed"
    for href in items:
        item_file = (tmp_path / "out" / href).resolve()
        item = json.loads(item_file.read_text())
        for key, asset in item["assets"].items():
            assert (item_file.parent / asset["href"]).is_file(), f"{href}: asset {key} is gone"
    assert snapshot(folder) == before, "the earlier complete set must be left as it was"


# -- a child `geosam run` killed at each step -------------------------------------------------------------

CHILD = r"""
import signal, sys, time
from pathlib import Path

# a background job of a non-interactive shell (`pytest ... &`) starts with SIGINT ignored, and Python
# then installs no KeyboardInterrupt handler: this test is about geosam's handling of a Ctrl-C it gets
signal.signal(signal.SIGINT, signal.default_int_handler)

import geosam.io.region_stream as rs
import geosam.io.scene_writer as sw
from geosam.cli.main import main
from geosam.io.transaction import SceneTransaction

point, marks, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]


def pause(name):
    # stop at `point`: say so, then wait for the parent (which signals this process meanwhile)
    if name != point:
        return
    (marks / "reached").write_text(name)
    deadline = time.monotonic() + 120
    while not (marks / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def after(fn, name):
    def wrapped(*a, **k):
        out = fn(*a, **k)
        pause(name)  # this output has landed (in the staging folder)
        return out
    return wrapped


for name in ("write_maps", "write_regions", "write_tiles_layer", "write_project"):
    setattr(sw, name, after(getattr(sw, name), name))
# region layers are streamed: they land when the stream closes (write_regions only writes empty layers)
rs.RegionLayerStream.close = after(rs.RegionLayerStream.close, "write_regions")
SceneTransaction._checkpoint = staticmethod(pause)
sys.exit(main(args))
"""

#: where the child stops -> which complete set the folder must end up with
BEFORE_DECISION = ["write_maps", "write_regions", "write_tiles_layer", "write_project", "staged"]
AFTER_DECISION = ["journal", "record-removed", "moved:s_classes.tif", "moved:s_tiles.qml", "committed"]
KILLS = (
    [("SIGKILL", p) for p in BEFORE_DECISION + AFTER_DECISION]
    + [("SIGTERM", p) for p in ("write_maps", "write_project", "journal", "moved:s_classes.tif", "committed")]
    + [("SIGINT", p) for p in ("write_tiles_layer", "moved:s_regions.gpkg")]
)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, bundle):
    """A folder holding a complete earlier run of scene ``s`` (content A), and content B for reruns."""
    from geosam.cli.main import main

    d = tmp_path_factory.mktemp("earlier")
    a, b = scene(d / "a" / "s.tif", seed=3), scene(d / "b" / "s.tif", seed=4)
    out = d / "out"
    assert main(["-q", "run", str(a), "--model", str(bundle), "--out", str(out), *TINY]) == 0
    return out, b


TINY = ["--tile-size", "128", "--halo", "16"]


def scratch(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith((".geosam-txn-", ".geosam-tmp-"))]


def complete_set(folder: Path) -> dict[str, str] | None:
    """The folder's files when they are exactly one complete, verified set of scene ``s``, else None."""
    from geosam.outputs import SceneOutputs
    from geosam.record import verify_outputs

    try:
        record = verify_outputs(SceneOutputs(folder, "s"))
    except OSError:
        return None
    visible = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    if visible != {*record.files, "s_run.json"}:
        return None  # a stray file of another run beside a complete set is a mix too
    return visible_snapshot(folder)


def visible_snapshot(folder: Path) -> dict[str, str]:
    return {k: v for k, v in snapshot(folder).items() if not k.startswith(".")}


@pytest.mark.parametrize(("sig", "point"), KILLS, ids=[f"{s}-{p}" for s, p in KILLS])
def test_killed_rerun_leaves_the_old_or_the_new_complete_set(sig, point, earlier, bundle, tmp_path):
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from geosam.hashing import sha256_file
    from geosam.io.transaction import recover
    from geosam.record import read_run_record

    out_a, scene_b = earlier
    folder = tmp_path / "out"
    shutil.copytree(out_a, folder)
    old = visible_snapshot(folder)
    assert complete_set(folder) == old
    marks = tmp_path / "marks"
    marks.mkdir()
    args = ["run", str(scene_b), "--model", str(bundle), "--out", str(folder), *TINY]
    env = {**os.environ, "GEOSAM_NO_REEXEC": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, point, str(marks), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not (marks / "reached").exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached " + point
            time.sleep(0.02)
        child.send_signal(getattr(signal, sig))
        (marks / "go").write_text("")  # a signal held during the commit is acted on after it
        code = child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    stderr = child.stderr.read().decode()
    expect_new = point in AFTER_DECISION or (sig != "SIGKILL" and point.startswith(("moved:", "journal")))
    expect_new = expect_new or (sig != "SIGKILL" and point == "committed")
    if sig == "SIGKILL":
        assert code == -signal.SIGKILL
        # what a reader sees before any recovery: never a run record beside files it does not list
        seen = complete_set(folder)
        record_present = (folder / "s_run.json").exists()
        assert seen is not None or not record_present, "a run record claims an incomplete set"
        if point in BEFORE_DECISION:
            assert seen == old  # the earlier set was never touched
        recover(folder)  # what the next geosam process touching the folder does first
    else:
        assert code == {"SIGTERM": 143, "SIGINT": 130}[sig], stderr[-2000:]
        assert stderr.strip().splitlines()[-1] in ("geosam: terminated (SIGTERM)", "geosam: interrupted")
        assert scratch(folder) == [], "a stopped run must clean its staging folder itself"
    final = complete_set(folder)
    assert final is not None, sorted(p.name for p in folder.iterdir())
    assert scratch(folder) == []
    if expect_new:
        assert read_run_record(folder / "s_run.json").scene.sha256 == sha256_file(scene_b)
        assert final != old
    else:
        assert final == old


# -- failures inside a process ------------------------------------------------------------------------------


@pytest.fixture
def rerun(earlier, bundle, tmp_path):
    """A copy of the earlier folder and a function rerunning scene ``s`` (content B) into it."""
    import shutil

    from geosam.predict import predict_scene
    from geosam.runtime import load_models

    out_a, scene_b = earlier
    folder = tmp_path / "out"
    shutil.copytree(out_a, folder)
    cfg = RunConfig.model_validate(CFG)
    models = load_models(bundle, None, cfg)
    return folder, lambda: predict_scene(scene_b, folder, models, cfg)


@pytest.mark.parametrize("where", ["write_maps", "write_regions", "write_tiles_layer", "write_project"])
def test_failed_rerun_leaves_the_old_complete_set(where, rerun, monkeypatch):
    import geosam.io.region_stream as rs
    import geosam.io.scene_writer as sw

    folder, run = rerun
    old = complete_set(folder)
    assert old is not None
    # region layers are streamed: they land when the stream closes
    owner, attr = (rs.RegionLayerStream, "close") if where == "write_regions" else (sw, where)
    real = getattr(owner, attr)

    def fail(*a, **k):
        real(*a, **k)  # the output lands (staged), then the run fails
        raise RuntimeError(f"simulated failure after {where}")

    monkeypatch.setattr(owner, attr, fail)
    with pytest.raises(RuntimeError, match="simulated failure"):
        run()
    assert complete_set(folder) == old and scratch(folder) == []


def test_a_commit_that_fails_part_way_is_finished_by_the_next_process(rerun, monkeypatch):
    """An I/O error between two renames of the commit: the process reports it, the folder claims no
    complete set, and the next geosam process (recover) finishes the commit from the journal."""
    import errno
    import os

    import geosam.io.transaction as tx
    from geosam.errors import OutputError

    folder, run = rerun
    old = complete_set(folder)
    real_apply, real_replace = tx._apply, os.replace

    def flaky_apply(folder_, txn, journal):
        calls = []

        def replace(a, b):
            calls.append(b)
            if len(calls) == 3:
                raise OSError(errno.EIO, "Input/output error", str(b))
            return real_replace(a, b)

        monkeypatch.setattr(os, "replace", replace)
        try:
            real_apply(folder_, txn, journal)
        finally:
            monkeypatch.setattr(os, "replace", real_replace)

    monkeypatch.setattr(tx, "_apply", flaky_apply)
    with pytest.raises(OutputError, match="run geosam again on this folder"):
        run()
    assert not (folder / "s_run.json").exists() and complete_set(folder) is None
    assert len(scratch(folder)) == 1  # the staging folder and its journal, for the next process
    monkeypatch.setattr(tx, "_apply", real_apply)
    assert len(tx.recover(folder)) == 1
    new = complete_set(folder)
    assert new is not None and new != old and scratch(folder) == []


def test_a_live_run_is_never_recovered(rerun):
    """Another process's (here: this process's) open transaction is left alone by recovery."""
    from geosam.io.transaction import SceneTransaction, recover
    from geosam.outputs import SceneOutputs

    folder, _ = rerun
    old = complete_set(folder)
    with (
        pytest.raises(RuntimeError, match="without commit"),
        SceneTransaction(SceneOutputs(folder, "s")) as txn,
    ):
        (txn.staged.directory / "s_classes.tif").write_bytes(b"half")
        assert recover(folder) == [] and txn.txn.is_dir()
    assert scratch(folder) == [] and complete_set(folder) == old


def test_skip_existing_verifies_the_record_and_every_hash(tmp_path, bundle, monkeypatch):
    """A folder whose files do not all match its run record is not "done": the scene runs again."""
    import geosam.predict

    scene(tmp_path / "in" / "s.tif")
    cfg = RunConfig.model_validate(CFG)
    run = {"model": bundle, "cfg": cfg, "executor": ExecutorSpec(workers=0)}
    assert run_batch([tmp_path / "in"], tmp_path / "out", **run).counts()["done"] == 1
    folder = tmp_path / "out" / "s"
    calls = []
    real = geosam.predict.predict_scene

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(geosam.predict, "predict_scene", counting)

    def status() -> str:
        return run_batch([tmp_path / "in"], tmp_path / "out", skip_existing=True, **run).scenes[0].status

    assert status() == "skipped" and calls == []
    with open(folder / "s_regions.geojson", "a") as f:
        f.write(" ")  # changed after the run
    assert status() == "done" and len(calls) == 1
    (folder / "s_tiles.qml").unlink()  # a sidecar is missing
    assert status() == "done" and len(calls) == 2
    record = json.loads((folder / "s_run.json").read_text())
    del record["files"]  # a record without hashes cannot prove completeness
    record["record_version"] = 1
    (folder / "s_run.json").write_text(json.dumps(record))
    assert status() == "done" and len(calls) == 3
    assert status() == "skipped" and len(calls) == 3


def test_signals_are_held_during_a_commit_and_acted_on_after():
    import os
    import signal

    from geosam._signals import Terminated, signals_held, sigterm_raises

    done = []
    # Python's Ctrl-C handler, also when pytest runs as a background job (which starts with SIGINT ignored)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            with signals_held():  # reentrant: the inner block records into the outer one
                os.kill(os.getpid(), signal.SIGINT)
            done.append("the block ran to its end")
    finally:
        signal.signal(signal.SIGINT, before)
    assert done == ["the block ran to its end"]
    with sigterm_raises(), pytest.raises(Terminated), signals_held():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("again")
    assert done[-1] == "again" and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
