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
