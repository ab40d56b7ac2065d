"""Batch runs: input discovery (folders, globs, lists, archives), safe names, the batch report,
skipping finished scenes, STAC output and the `geosam batch` CLI. Runs in this process (workers=0) or
on an in-process LocalCluster; multi-process runs and worker loss are in test_distributed.py."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geosam.batch import (
    ExecutorSpec,
    SceneRef,
    discover_scenes,
    extract_archive,
    plan_tasks,
    run_batch,
    safe_name,
    scene_dir,
)
from geosam.config import RunConfig
from geosam.errors import ConfigError, OutputError
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle

CFG = {"tiling": {"tile_size": 128, "halo": 16}, "segment": {"min_region_area": 16}, "device": "cpu"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", input_size=32, tile_size=128)


@pytest.fixture(scope="module")
def cfg():
    return RunConfig.model_validate(CFG)


def scene(path, w=90, h=90, seed=0, **kw):
    """A small random 3-band scene (one 128-px tile when <= 96 px)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_raster(path, w, h, count=3, dtype="uint16", fill="random", seed=seed, **kw)


def no_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".geosam-tmp-") or ".work-" in p.name]


# -- discovery ------------------------------------------------------------------------------------


def test_discovery_folders_globs_lists_and_vrt_sources(tmp_path):
    d = tmp_path / "in"
    a = scene(d / "a.tif")
    b = scene(d / "sub" / "deeper" / "B.TIFF")
    scene(d / ".hidden" / "h.tif")
    (d / ".dot.tif").write_bytes(b"x")
    (d / "notes.txt").write_text("x")
    src = scene(d / "parts" / "band1.tif")
    vrt = d / "parts" / "stack.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="90" rasterYSize="90"><VRTRasterBand dataType="UInt16" band="1">'
        '<SimpleSource><SourceFilename relativeToVRT="1">band1.tif</SourceFilename></SimpleSource>'
        "</VRTRasterBand></VRTDataset>"
    )
    out = d / "out"
    scene(out / "a" / "a_classes.tif")  # earlier outputs inside the input folder: never scenes
    found = [Path(r.path) for r in discover_scenes([d], exclude=[out])]
    assert found == [a, vrt, b.absolute()]  # sorted walk; VRT source dropped; hidden and out skipped
    assert src not in found

    lst = tmp_path / "list.txt"
    lst.write_text(f"# scenes\n\nin/a.tif\n{b}\n{d}/parts/*.tif\nmissing.tif\n")
    refs = discover_scenes([lst])
    assert [Path(r.path).name for r in refs] == ["a.tif", "B.TIFF", "band1.tif", "missing.tif"]
    assert refs[0].path == str(a) and refs[0].source == str(tmp_path / "in/a.tif")
    # duplicates (the same file through a glob and by name) are listed once
    assert len(discover_scenes([a, str(d / "*.tif")])) == 1


def test_archive_extraction_is_safe(tmp_path):
    good = tmp_path / "good.zip"
    raster = scene(tmp_path / "src.tif").read_bytes()
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("delivery/x.tif", raster)
        zf.writestr("delivery/readme.txt", "hello")
        zf.writestr("__MACOSX/delivery/._x.tif", "junk")
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("ok.tif", raster)
        zf.writestr("../../escaped.tif", raster)
    tgz = tmp_path / "t.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        info = tarfile.TarInfo("y.tif")
        info.size = len(raster)
        tf.addfile(info, io.BytesIO(raster))
        link = tarfile.TarInfo("link.tif")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    work = tmp_path / "work"
    refs = discover_scenes([good, bad, tgz], work_dir=work)
    by_name = {Path(r.source.split("!")[0]).name: r for r in refs}
    assert (
        by_name["good.zip"].source.endswith("good.zip!delivery/x.tif") and by_name["good.zip"].error is None
    )
    assert Path(by_name["good.zip"].path).read_bytes() == raster
    assert by_name["evil.zip"].error_type == "ConfigError" and "outside" in by_name["evil.zip"].error
    assert by_name["t.tar.gz"].error is None and Path(by_name["t.tar.gz"].path).name == "y.tif"
    assert not (tmp_path / "escaped.tif").exists() and not list(work.rglob("escaped.tif"))
    assert not list(work.rglob("link.tif")) and not list(work.rglob("._x.tif"))
    with pytest.raises(ConfigError, match="cannot read the archive"):
        (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
        extract_archive(tmp_path / "broken.zip", work / "broken")


def test_names_never_escape_the_output_folder(tmp_path):
    assert safe_name("..") == "scene" and safe_name("../../x") == "x" and safe_name(".hidden") == "hidden"
    assert len(safe_name("a" * 500)) == 100
    with pytest.raises(OutputError):
        scene_dir(tmp_path, "../x")
    os.symlink("/tmp", tmp_path / "escape")
    with pytest.raises(OutputError, match="outside"):
        scene_dir(tmp_path, "escape")
    refs = [SceneRef(str(tmp_path / "x" / "s.tif"), ""), SceneRef(str(tmp_path / "y" / "s.tif"), "")]
    tasks = plan_tasks(refs, tmp_path / "out")
    assert len({t.scene_id for t in tasks}) == 2 and all(t.scene_id.startswith("s-") for t in tasks)
    assert all(Path(t.out_dir).parent == tmp_path / "out" for t in tasks)
    with pytest.raises(ConfigError, match="stem"):
        plan_tasks(refs, tmp_path / "out", "flat")


# -- runs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stac_run(tmp_path_factory, bundle, cfg):
    d = tmp_path_factory.mktemp("stac")
    scene(d / "in" / "a.tif", 150, 150, seed=1)
    with rasterio.open(scene(d / "in" / "b.tif", seed=2), "r+") as ds:
        ds.update_tags(ACQUISITION_DATE="2021-06-01T10:30:00Z")
    (d / "in" / "bad.tif").write_bytes(b"\xff\xd8\xff\xe0 a jpeg renamed .tif")
    events = []
    report = run_batch(
        [d / "in"],
        d / "out",
        model=bundle,
        cfg=cfg,
        executor=ExecutorSpec(workers=0),
        stac=True,
        on_event=events.append,
    )
    return d, report, events


def test_report_records_every_scene_and_the_failure(stac_run):
    d, report, events = stac_run
    data = json.loads((d / "out" / "batch_report.json").read_text())
    by_id = {s["scene_id"]: s for s in data["scenes"]}
    assert data["totals"]["done"] == 2 and data["totals"]["failed"] == 1 and report.exit_code == 1
    assert by_id["bad"]["status"] == "failed" and by_id["bad"]["error"]["type"] == "NotARasterError"
    assert "bad.tif" in by_id["bad"]["error"]["message"] and not (d / "out" / "bad").exists()
    a = by_id["a"]
    assert a["status"] == "done" and a["n_tiles"] == 4 and a["n_regions"] > 0 and a["seconds"] > 0
    rec = json.loads(Path(a["record"]).read_text())
    assert rec["results"]["regions"] == a["n_regions"] and rec["tiling"]["tiles"] == 4
    assert Path(a["outputs"]["classes"]).parent == d / "out" / "a"
    tiles = [e for e in events if e["kind"] == "tile" and e["scene_id"] == "a"]
    assert [e["done"] for e in tiles] == [1, 2, 3, 4] and tiles[-1]["total"] == 4
    assert not no_temp_files(d / "out") and not (d / "out" / ".geosam-work").exists()


def test_stac_items_and_collection(stac_run):
    import pystac
    from pyproj import Transformer
    from shapely.geometry import Point, shape

    d, report, _ = stac_run
    coll = pystac.Collection.from_file(str(d / "out" / "collection.json"))
    assert report.stac_collection == str(d / "out" / "collection.json")
    items = {i.id: i for i in coll.get_items()}
    assert set(items) == {"a", "b"}
    to_wgs = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    for sid, w in (("a", 150), ("b", 90)):
        item = items[sid]
        assert item.get_self_href() == str(d / "out" / sid / f"{sid}_stac_item.json")
        # the footprint holds the scene centre and its corners, in lon/lat
        geom = shape(item.geometry)
        cx, cy = to_wgs.transform(500000 + w * 5, 5000000 - w * 5)
        assert geom.contains(Point(cx, cy)) and geom.geom_type == "Polygon"
        x0, y0 = to_wgs.transform(500000, 5000000)
        x1, y1 = to_wgs.transform(500000 + w * 10, 5000000 - w * 10)
        assert item.bbox == pytest.approx([x0, y1, x1, y0], abs=1e-4)
        assert item.properties["proj:code"] == "EPSG:32633" and item.properties["proj:shape"] == [w, w]
        assert (
            item.properties["geosam:n_regions"]
            == report.scenes[[s.scene_id for s in report.scenes].index(sid)].n_regions
        )
        for key, asset in item.assets.items():
            assert Path(asset.get_absolute_href()).is_file(), key
        assert {"classes", "confidence", "regions_geojson", "regions_gpkg", "tiles_gpkg", "qgis_project",
                "record", "classes_aux"} <= set(item.assets)  # fmt: skip
        # the class names' GDAL sidecar, listed in the run record too (a copy of the .tif alone loses it)
        aux = item.assets["classes_aux"]
        assert aux.href == f"./{sid}_classes.tif.aux.xml" and aux.media_type == "application/xml"
        assert "<Category>water</Category>" in Path(aux.get_absolute_href()).read_text()
        record = json.loads((d / "out" / sid / f"{sid}_run.json").read_text())
        assert record["outputs"]["classes_aux"] == f"{sid}_classes.tif.aux.xml"
        assert (
            item.assets["classes"].roles == ["data"]
            and "cloud-optimized" in item.assets["classes"].media_type
        )
        classes = item.assets["classes"].extra_fields["classification:classes"]
        assert [c["description"] for c in classes[:3]] == ["water", "forest", "field"]
        assert (
            coll.extent.spatial.bboxes[0][0] <= item.bbox[0]
            and coll.extent.spatial.bboxes[0][2] >= item.bbox[2]
        )
        assert item.get_collection().id == coll.id
    assert items["b"].datetime.isoformat() == "2021-06-01T10:30:00+00:00"
    assert items["b"].properties["geosam:datetime_source"] == "ACQUISITION_DATE"
    assert items["a"].properties["geosam:datetime_source"] == "processing"
    d_item = json.loads((d / "out" / "a" / "a_stac_item.json").read_text())
    assert d_item["type"] == "Feature" and d_item["stac_version"] == pystac.get_stac_version()
    assert all(not link["href"].startswith("/") for link in d_item["links"])  # relative: movable


def test_skip_existing_does_no_work(tmp_path, bundle, cfg, monkeypatch):
    scene(tmp_path / "in" / "s.tif")
    first = run_batch(
        [tmp_path / "in"], tmp_path / "out", model=bundle, cfg=cfg, executor=ExecutorSpec(workers=0)
    )
    assert first.counts()["done"] == 1
    import geosam.predict

    def boom(*a, **k):
        raise AssertionError("predict_scene must not run")

    monkeypatch.setattr(geosam.predict, "predict_scene", boom)
    again = run_batch(
        [tmp_path / "in"], tmp_path / "out", model=bundle, cfg=cfg, executor=ExecutorSpec(workers=0),
        skip_existing=True,
    )  # fmt: skip
    assert [s.status for s in again.scenes] == ["skipped"] and again.exit_code == 0
    assert again.scenes[0].n_regions == first.scenes[0].n_regions
    scene(tmp_path / "in" / "s.tif", seed=9)  # new content: not skipped
    changed = run_batch(
        [tmp_path / "in"], tmp_path / "out", model=bundle, cfg=cfg, executor=ExecutorSpec(workers=0),
        skip_existing=True,
    )  # fmt: skip
    assert changed.scenes[0].status == "failed" and "must not run" in changed.scenes[0].error_message


def test_flat_layout_and_local_threads_cluster(tmp_path, bundle, cfg):
    scene(tmp_path / "in" / "p.tif", seed=3)
    scene(tmp_path / "in" / "q.tif", seed=4)
    rep = run_batch(
        [str(tmp_path / "in" / "*.tif")],
        tmp_path / "out",
        model=bundle,
        cfg=cfg,
        executor=ExecutorSpec(workers=2, processes=False),
        layout="flat",
    )
    assert rep.counts()["done"] == 2 and rep.executor == "local dask cluster, 2 worker threads"
    assert (tmp_path / "out" / "p_classes.tif").is_file() and (tmp_path / "out" / "q_run.json").is_file()
    assert all(s.worker and s.worker.startswith("inproc://") for s in rep.scenes)  # dask workers


def test_missing_model_fails_before_any_work(tmp_path, cfg):
    from geosam.errors import WeightsNotFoundError

    scene(tmp_path / "in" / "s.tif")
    with pytest.raises(WeightsNotFoundError):
        run_batch([tmp_path / "in"], tmp_path / "out", model=tmp_path / "nope", cfg=cfg)
    with pytest.raises(ConfigError, match="no scenes found"):
        run_batch([tmp_path / "empty*"], tmp_path / "out", cfg=cfg)


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_batch(tmp_path, bundle, capsys):
    from geosam.cli.main import main

    assert main(["batch", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--scheduler" in help_text and "--gpu" in help_text and "archives" in help_text
    scene(tmp_path / "in" / "one.tif", seed=5)
    (tmp_path / "scenes.txt").write_text("in/one.tif\nin/missing.tif\n")
    conf = tmp_path / "run.yaml"
    conf.write_text(json.dumps(CFG))
    code = main(["-q", "batch", str(tmp_path / "scenes.txt"), "--out", str(tmp_path / "out"),
                 "--model", str(bundle), "--config", str(conf), "--workers", "0", "--stac"])  # fmt: skip
    cap = capsys.readouterr()
    assert code == 1  # the missing scene failed; the other went on
    assert "2 scenes: 1 done, 1 failed" in cap.out and "missing.tif" in cap.err
    with rasterio.open(tmp_path / "out" / "one" / "one_classes.tif") as ds:
        c = ds.read(1)
        assert ds.crs.to_epsg() == 32633 and set(np.unique(c)) <= {0, 1, 2}
    assert (tmp_path / "out" / "collection.json").is_file()
    code = main(["-q", "batch", str(tmp_path / "in"), "--out", str(tmp_path / "out2"),
                 "--model", str(bundle), "--config", str(conf), "--workers", "0"])  # fmt: skip
    assert code == 0


def test_imports_stay_light():
    import subprocess
    import sys

    code = (
        "import sys, geosam, geosam.batch, geosam.ingest, geosam.manifest, geosam.stac, geosam.cli.batch; "
        "print(sorted(m for m in ('torch', 'dask', 'distributed', 'rasterio', 'pystac') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
