"""`geosam ingest --dry-run` writes nothing (the whole tree, with mtimes, is unchanged), says why each
found scene is or is not processed, and a misconfiguration is reported by --status too."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from geosam.cli.main import main
from geosam.ingest import check_ingest_config, load_ingest_config, run_ingest
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle

RUN = {"tiling": {"tile_size": 128, "halo": 16}, "device": "cpu"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", input_size=32, tile_size=128)


def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` (and ``root`` itself) with its mode, size and mtime in ns."""
    out = {}
    for p in [root, *sorted(root.rglob("*"))]:
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def write_config(d: Path, bundle: Path, name: str = "ingest.yaml", **extra) -> Path:
    data = {"inbox": "inbox", "out": "out", "model": str(bundle), "min_age_s": 0, "workers": 0, "run": RUN,
            **extra}  # fmt: skip
    p = d / name
    p.write_text(yaml.safe_dump(data))
    return p


def old(path: Path, seconds: float = 3600) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def test_dry_run_with_a_missing_inbox_writes_nothing_and_status_says_why(tmp_path, bundle, capsys):
    conf = write_config(tmp_path, bundle)
    before = listing(tmp_path)
    capsys.readouterr()
    assert main(["ingest", "--config", str(conf), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    inbox = tmp_path / "inbox"
    assert err == (
        f"geosam: error: {inbox}: the inbox folder does not exist (create it, or fix 'inbox' in the "
        "configuration)"
    )
    assert main(["ingest", "--config", str(conf)]) == 2  # a real run refuses before writing, too
    assert listing(tmp_path) == before  # no out/, no manifest, no lock file
    capsys.readouterr()
    assert main(["ingest", "--config", str(conf), "--status"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"configuration problem: {inbox}: the inbox folder does not exist (create it, or fix 'inbox' in "
        "the configuration)"
    )
    assert (
        out[1]
        == f"manifest {tmp_path / 'out' / 'geosam-ingest.sqlite'}: none yet (no run has scanned the inbox)"
    )
    assert listing(tmp_path) == before


def test_check_ingest_config_lists_every_problem(tmp_path, bundle):
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    conf = write_config(tmp_path, bundle, out="blocker/out", model=str(tmp_path / "nomodel"),
                        sam_checkpoint=str(tmp_path / "sam.pth"))  # fmt: skip
    problems = check_ingest_config(load_ingest_config(conf))
    assert [p.split(": ", 1)[0] for p in problems] == [
        str(tmp_path / "inbox"),
        str(tmp_path / "nomodel"),
        str(tmp_path / "sam.pth"),
        str(tmp_path / "blocker" / "out"),
        str(tmp_path / "blocker" / "out" / "geosam-ingest.sqlite"),
        str(tmp_path / "blocker" / "out" / "geosam-ingest.sqlite.lock"),
    ]
    assert problems[3].endswith(f"the output folder cannot be created ({tmp_path / 'blocker'} is a file)")


def test_dry_run_says_why_each_found_scene_is_not_processed_and_changes_nothing(tmp_path, bundle, capsys):
    inbox = tmp_path / "inbox"
    (inbox / "2024").mkdir(parents=True)
    old(make_raster(inbox / "a.tif", 90, 90, count=3, dtype="uint8", fill="random"))
    bad = inbox / "bad.tif"
    bad.write_text("not a raster")
    old(bad)
    conf = write_config(tmp_path, bundle)
    report = run_ingest(load_ingest_config(conf))
    assert (report.done, report.failed) == (1, 1)
    # files just copied in, read with the default min_age_s wait of a real config
    make_raster(inbox / "fresh.tif", 90, 90, count=3, dtype="uint8", fill="random", seed=1)
    old(make_raster(inbox / "2024" / "new.tif", 90, 90, count=3, dtype="uint8", fill="random", seed=2))
    conf120 = write_config(tmp_path, bundle, "ingest120.yaml", min_age_s=120)
    before = listing(tmp_path)
    capsys.readouterr()
    assert main(["-q", "ingest", "--config", str(conf120), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_key = {ln.split(": ", 2)[1].split(" (")[0]: ln for ln in lines[:-1]}
    assert by_key["2024/new.tif"] == "would process: 2024/new.tif (new)"
    assert by_key["a.tif"].startswith("skip: a.tif: done, unchanged since 20")
    assert by_key["bad.tif"].startswith("skip: bad.tif: failed with an input error (NotARasterError: ")
    assert by_key["bad.tif"].endswith("waits for a new version of the file")
    fresh = by_key["fresh.tif"]
    assert fresh.startswith("skip: fresh.tif: modified 0 s ago; files younger than min_age_s (120 s) may ")
    assert "wait for a run from " in fresh and fresh.endswith(" UTC on")
    assert (
        lines[-1]
        == "dry run: 4 scenes found, 1 would be processed, 3 would not (reasons above); nothing was written"
    )
    assert len(lines) == 5
    # the manifest, its WAL files, the lock, the outputs: all as they were, and --status too reads only
    assert main(["-q", "ingest", "--config", str(conf120), "--status"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].endswith("geosam-ingest.sqlite: 0 pending, 0 running, 1 done, 1 failed")
    assert listing(tmp_path) == before


def test_dry_run_and_retry_failed_are_exclusive(tmp_path, bundle, capsys):
    (tmp_path / "inbox").mkdir()
    conf = write_config(tmp_path, bundle)
    assert main(["ingest", "--config", str(conf), "--dry-run", "--retry-failed"]) == 2
    assert "--retry-failed changes the manifest" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_manifest_snapshot_reads_a_live_wal_without_touching_files(tmp_path):
    from geosam.manifest import Manifest

    db = tmp_path / "m.sqlite"
    with Manifest.open(db) as writer:  # an active run: -wal and -shm exist, a row is committed in the WAL
        writer.add("a.tif", "/x/a.tif", "a", "/out/a", "0" * 64, 1, 2)
        assert (tmp_path / "m.sqlite-wal").is_file()
        before = listing(tmp_path)
        with Manifest.snapshot(db) as snap:
            assert [r.key for r in snap.rows()] == ["a.tif"]
            snap.add("b.tif", "/x/b.tif", "b", "/out/b", "1" * 64, 1, 2)  # stays in memory
        assert listing(tmp_path) == before
        assert [r.key for r in writer.rows()] == ["a.tif"]
    with Manifest.snapshot(tmp_path / "none.sqlite") as empty:
        assert empty.counts() == {"pending": 0, "running": 0, "done": 0, "failed": 0}
    assert not (tmp_path / "none.sqlite").exists()


def test_executor_settings_are_one_nested_section_and_flat_keys_still_load(tmp_path, bundle):
    """Schema 1 had the executor keys at the top level; schema 2 nests them as `executor:`."""
    from geosam.batch import ExecutorSpec
    from geosam.errors import ConfigError

    (tmp_path / "inbox").mkdir()
    old_style = load_ingest_config(write_config(tmp_path, bundle, "v1.yaml", torch_threads=2, gpu=False))
    data = {"schema_version": 2, "inbox": "inbox", "out": "out", "model": str(bundle),
            "executor": {"workers": 0, "torch_threads": 2}}  # fmt: skip
    (tmp_path / "v2.yaml").write_text(yaml.safe_dump(data))
    new_style = load_ingest_config(tmp_path / "v2.yaml")
    assert old_style.executor == new_style.executor == ExecutorSpec(workers=0, torch_threads=2)
    assert old_style.schema_version == 2
    # CLI overrides of executor keys land in the section
    assert load_ingest_config(tmp_path / "v2.yaml", workers=3).executor.workers == 3
    with pytest.raises(ConfigError, match="workers given both at the top level and under 'executor'"):
        (tmp_path / "both.yaml").write_text(yaml.safe_dump({**data, "workers": 1}))
        load_ingest_config(tmp_path / "both.yaml")
    with pytest.raises(ConfigError, match=r"unknown key 'executor\.worker'"):
        (tmp_path / "typo.yaml").write_text(yaml.safe_dump({**data, "executor": {"worker": 1}}))
        load_ingest_config(tmp_path / "typo.yaml")
    with pytest.raises(ConfigError, match="schema_version 3 is not supported"):
        (tmp_path / "future.yaml").write_text(yaml.safe_dump({**data, "schema_version": 3}))
        load_ingest_config(tmp_path / "future.yaml")
