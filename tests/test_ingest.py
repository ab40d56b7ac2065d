"""Scheduled ingestion: exactly-once processing of new and changed scenes, failures with reasons,
recovery after a killed run, the exclusive lock, the manifest, and the `geosam ingest` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
import yaml

import geosam.predict
from geosam.errors import ConfigError, LockedError
from geosam.ingest import ingest_lock, load_ingest_config, run_ingest
from geosam.manifest import Manifest
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle

RUN = {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}, "device": "cpu"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", input_size=32, tile_size=128)


def scene(path, seed=0, w=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_raster(path, w, w, count=3, dtype="uint16", fill="random", seed=seed)


def write_config(d: Path, bundle: Path, **extra) -> Path:
    data = {
        "inbox": "inbox",  # relative to the config file
        "out": "out",
        "model": str(bundle),
        "min_age_s": 0,
        "workers": 0,
        "run": RUN,
        **extra,
    }
    p = d / "ingest.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.fixture
def counting(monkeypatch):
    """Record which scenes predict_scene runs for (and still run it)."""
    calls: list[str] = []
    real = geosam.predict.predict_scene

    def wrapper(scene, *a, **k):
        calls.append(Path(scene).name)
        return real(scene, *a, **k)

    monkeypatch.setattr(geosam.predict, "predict_scene", wrapper)
    return calls


def rows(cfg):
    with Manifest.open(cfg.db_path, readonly=True) as m:
        return {r.key: r for r in m.rows()}


def leftovers(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.name.startswith((".geosam-tmp-", ".geosam-txn-")) or ".work-" in p.name
    ]


def test_config_is_strict_and_resolves_paths(tmp_path, bundle):
    cfg = load_ingest_config(write_config(tmp_path, bundle, stac=True))
    assert cfg.inbox == tmp_path / "inbox" and cfg.db_path == tmp_path / "out" / "geosam-ingest.sqlite"
    assert cfg.lock_path.name == "geosam-ingest.sqlite.lock"
    run_cfg = cfg.run_config_obj()
    assert run_cfg.tiling.tile_size == 128 and run_cfg.output.overwrite is True
    with pytest.raises(ConfigError, match="unknown key 'inboxx'"):
        load_ingest_config(write_config(tmp_path, bundle, inboxx="x"))
    with pytest.raises(ConfigError, match="exactly one"):
        load_ingest_config(write_config(tmp_path, bundle, scene_list="list.txt"))
    with pytest.raises(ConfigError, match="halo"):
        load_ingest_config(write_config(tmp_path, bundle, run={"tiling": {"tile_size": 128, "halo": 64}}))


def test_exactly_once_new_and_changed_scenes(tmp_path, bundle, counting, monkeypatch):
    scene(tmp_path / "inbox" / "a.tif", 1)
    scene(tmp_path / "inbox" / "2024" / "06" / "b.tif", 2)
    cfg = load_ingest_config(write_config(tmp_path, bundle))
    r1 = run_ingest(cfg)
    assert (r1.new, r1.done, r1.failed, r1.exit_code) == (2, 2, 0, 0)
    assert sorted(counting) == ["a.tif", "b.tif"]
    before = rows(cfg)
    assert set(before) == {"a.tif", "2024/06/b.tif"}
    b = before["2024/06/b.tif"]
    assert b.status == "done" and b.scene_id == "2024__06__b" and b.attempts == 1
    assert Path(b.out_dir) == tmp_path / "out" / "2024__06__b"
    rec = json.loads(Path(b.record_path).read_text())
    assert rec["scene"]["sha256"] == b.sha256 and b.n_regions == rec["results"]["regions"]
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*_classes.tif")}

    # (b) a second run does no work and changes nothing
    counting.clear()
    r2 = run_ingest(cfg)
    assert counting == [] and r2.outcomes == [] and (r2.new, r2.changed) == (0, 0)
    assert rows(cfg) == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # (c) a scene added later is picked up; a scene with new content is reprocessed; a touch is not
    scene(tmp_path / "inbox" / "c.tif", 3)
    os.utime(tmp_path / "inbox" / "a.tif")  # same content, new mtime: rehashed, not reprocessed
    r3 = run_ingest(cfg)
    assert counting == ["c.tif"] and (r3.new, r3.changed, r3.done) == (1, 0, 1)
    counting.clear()
    scene(tmp_path / "inbox" / "2024" / "06" / "b.tif", 99)
    r4 = run_ingest(cfg)
    assert counting == ["b.tif"] and r4.changed == 1
    after = rows(cfg)["2024/06/b.tif"]
    assert after.sha256 != b.sha256 and after.attempts == 1 and after.status == "done"
    assert json.loads(Path(after.record_path).read_text())["scene"]["sha256"] == after.sha256
    assert rows(cfg)["a.tif"].updated != before["a.tif"].updated  # the new stat was remembered
    # a vanished file is flagged, not processed
    os.remove(tmp_path / "inbox" / "c.tif")
    counting.clear()
    run_ingest(cfg)
    assert counting == [] and rows(cfg)["c.tif"].present == 0 and rows(cfg)["c.tif"].status == "done"


def test_bad_scenes_fail_with_reason_and_retries(tmp_path, bundle, counting, monkeypatch):
    good = scene(tmp_path / "inbox" / "good.tif", 1)
    data = good.read_bytes()
    (tmp_path / "inbox" / "truncated.tif").write_bytes(data[: len(data) // 3])
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "inbox" / "photo.tif", format="JPEG")
    cfg = load_ingest_config(write_config(tmp_path, bundle, max_attempts=2))
    report = run_ingest(cfg)
    assert report.done == 1 and report.failed == 2 and report.exit_code == 1
    m = rows(cfg)
    assert m["good.tif"].status == "done"
    for key in ("truncated.tif", "photo.tif"):
        assert m[key].status == "failed" and m[key].retryable == 0, key
        assert m[key].error_type in ("NotARasterError", "TileReadError") and m[key].error_message
        assert not Path(m[key].out_dir).exists()  # no half outputs for failed scenes
    assert "JPEG" in m["photo.tif"].error_message or "jpeg" in m["photo.tif"].error_message.lower()
    # input errors wait for a new version of the file
    counting.clear()
    assert run_ingest(cfg).outcomes == [] and counting == []
    scene(tmp_path / "inbox" / "truncated.tif", 5)  # fixed upstream
    assert run_ingest(cfg).done == 1 and rows(cfg)["truncated.tif"].status == "done"
    # a done scene replaced by a broken file: failed, and its outputs of the old content are gone
    good_dir = Path(rows(cfg)["good.tif"].out_dir)
    assert (good_dir / "good_classes.tif").exists()
    good.write_bytes(data[:500])
    assert run_ingest(cfg).failed == 1 and rows(cfg)["good.tif"].status == "failed"
    assert not good_dir.exists() or not any(good_dir.iterdir())

    # other errors are retried by later runs, up to max_attempts
    from geosam.errors import OutputError

    def flaky(*a, **k):
        raise OutputError("disk full (simulated)", "/x")

    monkeypatch.setattr(geosam.predict, "predict_scene", flaky)
    scene(tmp_path / "inbox" / "later.tif", 6)
    assert run_ingest(cfg).failed == 1
    assert rows(cfg)["later.tif"].retryable == 1 and rows(cfg)["later.tif"].attempts == 1
    assert run_ingest(cfg).failed == 1 and rows(cfg)["later.tif"].attempts == 2
    assert run_ingest(cfg).outcomes == []  # max_attempts reached: left alone
    assert rows(cfg)["later.tif"].error_message == "/x: disk full (simulated)"


CRASH_SCRIPT = r"""
import os, signal, sys
import geosam.io.scene_writer as sw
from geosam.ingest import load_ingest_config, run_ingest

victim = sys.argv[2]
real = sw.write_project

def crash(outputs, crs, cfg, **kw):
    if outputs.classes.name == victim + "_classes.tif":  # half of the scene's outputs are written
        os.kill(os.getpid(), signal.SIGKILL)
    return real(outputs, crs, cfg)

sw.write_project = crash
run_ingest(load_ingest_config(sys.argv[1]))
"""


def test_killed_run_resumes_without_duplicates(tmp_path, bundle, counting):
    import geosam.io.scene_writer

    assert hasattr(geosam.io.scene_writer, "write_project")
    for i, name in enumerate("abc"):
        scene(tmp_path / "inbox" / f"{name}.tif", i)
    conf = write_config(tmp_path, bundle)
    env = {**os.environ, "GEOSAM_NO_REEXEC": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(conf), "b"], env=env, capture_output=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    cfg = load_ingest_config(conf)
    m = rows(cfg)
    assert (m["a.tif"].status, m["b.tif"].status, m["c.tif"].status) == ("done", "running", "pending")
    b_dir = tmp_path / "out" / "b"
    # the killed run's half set is staged out of sight: nothing of it is visible, only hidden staging
    assert leftovers(b_dir) and not (b_dir / "b_classes.tif").exists() and not (b_dir / "b_run.json").exists()
    assert [p.name for p in b_dir.iterdir() if not p.name.startswith(".geosam-txn-")] == []

    report = run_ingest(cfg)  # the kernel released the dead run's lock
    assert report.recovered == 1 and sorted(counting) == ["b.tif", "c.tif"]
    m = rows(cfg)
    assert all(r.status == "done" for r in m.values())
    assert (m["a.tif"].attempts, m["b.tif"].attempts, m["c.tif"].attempts) == (1, 2, 1)
    assert leftovers(tmp_path / "out") == []
    for key, r in m.items():
        rec = json.loads(Path(r.record_path).read_text())
        assert rec["scene"]["sha256"] == r.sha256, key
        with rasterio.open(r.output_paths["classes"]) as ds:
            assert ds.read(1).shape == (90, 90)
    with Manifest.open(cfg.db_path, readonly=True) as man:
        assert [run["status"] for run in man.last_runs(2)] == ["finished", "crashed"]
    counting.clear()
    assert run_ingest(cfg).outcomes == [] and counting == []  # exactly once


def test_second_concurrent_run_is_refused(tmp_path, bundle, capsys):
    from geosam.cli.main import main

    scene(tmp_path / "inbox" / "a.tif")
    conf = write_config(tmp_path, bundle)
    cfg = load_ingest_config(conf)
    with ingest_lock(cfg.lock_path):
        with pytest.raises(LockedError, match="another geosam ingest is running") as info:
            run_ingest(cfg)
        assert info.value.exit_code == 75 and f"pid {os.getpid()}" in str(info.value)
        assert main(["ingest", "--config", str(conf)]) == 75
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("geosam: error: ") and "lock" in err
    assert not (tmp_path / "out" / "a").exists()  # the refused runs did nothing
    assert run_ingest(cfg, dry_run=True).todo == ["a.tif"]  # released


def test_scene_list_names_stay_inside_out(tmp_path, bundle):
    scene(tmp_path / "elsewhere" / "x y (1).tif", 1)
    scene(tmp_path / "elsewhere" / "..weird.tif", 2)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "scenes.txt").write_text("../elsewhere/x y (1).tif\n../elsewhere/..weird.tif\n# c\n")
    data = {"scene_list": "scenes.txt", "out": "../out", "model": str(bundle), "min_age_s": 0, "workers": 0,
            "run": RUN}  # fmt: skip
    (tmp_path / "cfg" / "ingest.yaml").write_text(yaml.safe_dump(data))
    cfg = load_ingest_config(tmp_path / "cfg" / "ingest.yaml")
    assert run_ingest(cfg).done == 2
    out = (tmp_path / "out").resolve()
    for r in rows(cfg).values():
        assert Path(r.out_dir).resolve().parent == out and not r.scene_id.startswith(".")
        assert Path(r.record_path).resolve().parent == Path(r.out_dir).resolve()


def test_cli_ingest(tmp_path, bundle, capsys):
    from geosam.cli.main import main

    scene(tmp_path / "inbox" / "a.tif")
    conf = write_config(tmp_path, bundle)
    assert main(["-q", "ingest", "--config", str(conf), "--dry-run"]) == 0
    assert "would process: a.tif" in capsys.readouterr().out
    assert main(["-q", "ingest", "--config", str(conf), "--stac"]) == 0
    out = capsys.readouterr().out
    assert "1 scenes found (1 new" in out and "1 done" in out
    assert (tmp_path / "out" / "collection.json").is_file() and (
        tmp_path / "out" / "a" / "a_stac_item.json"
    ).is_file()
    assert main(["-q", "ingest", "--config", str(conf), "--status"]) == 0
    assert "1 done" in capsys.readouterr().out
    assert main(["ingest", "--config", str(tmp_path / "nope.yaml")]) == 2


def test_shipped_configs_and_script(tmp_path, bundle, capsys):
    import runpy

    root = Path(__file__).resolve().parents[1] / "pipelines"
    for name in ("ingest.yaml", "ingest-cluster.yaml"):
        cfg = load_ingest_config(root / "configs" / name)
        assert cfg.out.is_absolute() and cfg.max_attempts == 3
    assert load_ingest_config(root / "configs" / "ingest-cluster.yaml").executor.gpu
    script = runpy.run_path(str(root / "ingest.py"), run_name="pipelines_ingest")
    scene(tmp_path / "inbox" / "a.tif")
    conf = write_config(tmp_path, bundle)
    assert script["main"](["--config", str(conf)]) == 0
    assert "1 done" in capsys.readouterr().out
    assert script["main"](["--config", str(tmp_path / "missing.yaml")]) == 2
