"""SAM 3 concept prompts: concept lists, overlap resolution by score, 'unclassified', one vision pass per
tile shared by all prompts, and the zero-shot and hybrid runs through geosam's outputs (stand-in with
Sam3Processor's interface; a slow test uses the real sam3 classes when they are installed)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from helpers_sam3 import Sam3ProcessorStandIn, patch_sam3
from hypothesis import given
from hypothesis import strategies as st
from rio_cogeo.cogeo import cog_validate

from geosam.cli.main import main
from geosam.config import RunConfig
from geosam.errors import ConfigError
from geosam.io.cog import read_class_scheme
from geosam.predict import output_paths, predict_scene
from geosam.runtime import load_models
from geosam.testing import make_raster
from geosam.zeroshot import (
    Concept,
    ConceptMasks,
    concept_scheme,
    label_concepts,
    parse_concepts,
)

CONCEPTS = "water=water|lake,forest,building"


def test_parse_concepts():
    got = parse_concepts(" water = water | lake|river , forest,Built=building")
    assert got == (
        Concept("water", ("water", "lake", "river")),
        Concept("forest", ("forest",)),
        Concept("Built", ("building",)),
    )
    assert parse_concepts(["forest", "water=lake"]) == (
        Concept("forest", ("forest",)),
        Concept("water", ("lake",)),
    )
    for bad, msg in (
        ("forest,,water", "empty concept"),
        ("forest,Forest", "given twice"),
        ("unclassified", "class of pixels"),
        ("water=", "invalid concept"),
        ("=lake", "invalid concept"),
        ("water=lake||river", "invalid concept"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_concepts(bad)
    with pytest.raises(ConfigError, match="at most 254"):
        parse_concepts(",".join(f"c{i}" for i in range(255)))


@given(st.lists(st.from_regex(r"[a-z][a-z ]{0,8}[a-z]", fullmatch=True), min_size=1, max_size=6, unique=True))
def test_parse_concepts_round_trip(names):
    spec = ",".join(f"{n}={n}|{n} area" for n in names)
    got = parse_concepts(spec)
    assert [c.name for c in got] == names and all(c.prompts == (c.name, f"{c.name} area") for c in got)


def test_concept_scheme():
    scheme = concept_scheme(parse_concepts("water,forest,quarry"))
    assert scheme.names == ("unclassified", "water", "forest", "quarry")
    assert scheme.colors[0] == (128, 128, 128) and scheme.colors[1] == (30, 90, 200)
    assert scheme.colors[2] == (34, 120, 50) and len(set(scheme.colors)) == 4


def _box(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_overlaps_resolved_by_score_and_unclassified():
    shape = (20, 20)
    masks = np.stack(
        [
            _box(shape, 0, 10, 0, 10),  # water 0.6
            _box(shape, 5, 15, 5, 15),  # forest 0.9: wins the overlap
            _box(shape, 0, 20, 16, 20),  # building 0.4: rejected -> unclassified with prob 0.6
            _box(shape, 18, 20, 0, 2),  # water 0.95 but 4 px < min_area: dropped
        ]
    )
    props = ConceptMasks(masks, np.array([0.6, 0.9, 0.4, 0.95], np.float32), np.array([0, 1, 2, 0]))
    valid = np.ones(shape, bool)
    valid[19, 19] = False
    out = label_concepts(props, valid, 3, threshold=0.5, min_area=5)
    lab, probs = out.regions.labels, out.region_probs
    cls = np.concatenate([[0], probs.argmax(1)])[lab]
    assert (cls[5:15, 5:15] == 2).all()  # forest (class 2) over water where they overlap
    assert (cls[0:5, 0:10] == 1).all() and (cls[0:10, 0:5] == 1).all()  # water
    assert out.regions.source == "sam3" and lab[19, 19] == 0
    assert (lab[valid] > 0).all()  # every valid pixel is in a region
    assert (cls[valid & ~_box(shape, 0, 15, 0, 15)] == 0).all()  # the rest: unclassified
    # confidence: mask score for concepts; 1 - best rejected score for unclassified
    conf = np.concatenate([[np.nan], probs.max(1)])[lab]
    assert conf[7, 7] == pytest.approx(0.9) and conf[2, 2] == pytest.approx(0.6)
    under_building = _box(shape, 0, 20, 16, 20) & valid
    rid = np.unique(lab[under_building])
    assert len(rid) == 1  # one connected unclassified piece (with the strip at rows 15-20)
    piece = lab == rid[0]
    expect = (0.6 * (under_building & piece).sum() + 1.0 * (piece & ~under_building).sum()) / piece.sum()
    assert probs[rid[0] - 1, 0] == pytest.approx(expect, rel=1e-5)
    # tile vector: shares of valid pixels per class
    assert out.tile_probs.sum() == pytest.approx(1.0)
    assert out.tile_probs[2] == pytest.approx(100 / valid.sum())
    hybrid = label_concepts(props, valid, 3, threshold=0.5, min_area=5, unclassified_regions=False)
    assert hybrid.regions.count == 2 and (hybrid.regions.labels[cls == 0] == 0).all()


def test_no_proposals_is_all_unclassified():
    valid = np.ones((8, 8), bool)
    out = label_concepts(ConceptMasks.empty((8, 8)), valid, 2)
    assert out.regions.count == 1 and out.region_probs.tolist() == [[1.0, 0.0, 0.0]]
    assert out.tile_probs.tolist() == [1.0, 0.0, 0.0]


def _scene(path, h=120, w=140):
    """Blue lake, green forest, red roofs on grey; 10 m UTM pixels."""
    img = np.full((3, h, w), 120, np.uint8)
    img[:, 10:50, 10:70] = np.array([20, 40, 200])[:, None, None]
    img[:, 60:110, 30:120] = np.array([30, 180, 40])[:, None, None]
    img[:, 15:35, 90:130] = np.array([210, 60, 50])[:, None, None]
    return make_raster(path, w, h, count=3, dtype="uint8", fill=img)


def test_segmenter_shares_one_vision_pass_across_prompts():
    from geosam.models.sam3 import ConceptSegmenter

    proc = Sam3ProcessorStandIn()
    seg = ConceptSegmenter(proc, parse_concepts(CONCEPTS), proposal_floor=0.1)
    rgb = np.zeros((3, 16, 16), np.uint8)
    rgb[2, :8] = 200
    out = seg(rgb)
    assert proc.vision_passes == 1 and proc.prompts == ["water", "lake", "forest", "building"]
    assert proc.confidence_threshold == 0.1
    assert out.masks.shape[1:] == (16, 16) and out.masks.dtype == bool
    assert sorted(set(out.concept.tolist())) == [0, 1, 2]
    assert set(np.round(out.scores.astype(float), 2).tolist()) == {0.9, 0.8, 0.85, 0.75, 0.3}


@pytest.fixture
def zero_shot_run(tmp_path, monkeypatch):
    proc = patch_sam3(monkeypatch)
    ckpt = tmp_path / "sam3.pt"
    ckpt.write_bytes(b"stand-in weights")
    scene = _scene(tmp_path / "scene.tif")
    cfg = RunConfig.model_validate(
        {"tiling": {"tile_size": 64, "halo": 8}, "segment": {"concepts": CONCEPTS}}
    )
    models = load_models(None, None, cfg, sam3_checkpoint=ckpt)
    res = predict_scene(scene, tmp_path / "out", models, cfg)
    return scene, res, proc, models


def test_zero_shot_outputs(zero_shot_run):
    _scene, res, proc, _models = zero_shot_run
    assert proc.vision_passes == res.n_tiles  # one SAM 3 vision pass per tile ...
    assert len(proc.prompts) == res.n_tiles * 4  # ... shared by its 4 prompts
    scheme = read_class_scheme(res.outputs["classes"])
    assert scheme.names == ("unclassified", "water", "forest", "building")
    for kind in ("classes", "confidence"):
        valid, errors, _ = cog_validate(str(res.outputs[kind]))
        assert valid and not errors
    with rasterio.open(res.outputs["classes"]) as cls, rasterio.open(res.outputs["confidence"]) as conf:
        c, p = cls.read(1), conf.read(1)
        assert cls.tags()["GEOSAM_REGION_SOURCE"] == "sam3"
    assert (c[20:40, 20:60] == 1).all() and (c[70:100, 40:110] == 2).all() and (c[20:30, 95:125] == 3).all()
    assert (c[112:, :] == 0).all()  # grey background: unclassified
    assert np.allclose(p[20:40, 20:60], 0.9) and np.allclose(p[70:100, 40:110], 0.85)
    # the stretched grey leans to one colour, so a rejected loose proposal (0.3) covers it: 1 - 0.3
    assert np.allclose(p[115:, :5], 0.7)
    gdf = gpd.read_file(res.outputs["regions_gpkg"])
    assert set(gdf["class_name"]) == {"unclassified", "water", "forest", "building"}
    assert gdf["region_source"].eq("sam3").all()
    assert gdf.geometry.area.sum() == pytest.approx(gdf.geometry.union_all().area, rel=1e-9)
    rec = json.loads(res.outputs["record"].read_text())
    assert rec["region_source"] == "sam3" and rec["sam"]["mode"] == "zero-shot concepts"
    assert rec["sam"]["concepts"] == {
        "water": ["water", "lake"],
        "forest": ["forest"],
        "building": ["building"],
    }
    assert rec["model"]["name"] == "sam3-concepts" and rec["model"]["classes"][0] == "unclassified"
    assert rec["sam"]["checkpoint_sha256"] == rec["model"]["weights_sha256"]
    qgs = res.outputs["qgis_project"].read_text()
    assert res.outputs["classes"].name in qgs


def test_hybrid_concept_regions_classified_by_a_bundle(tmp_path, monkeypatch):
    from geosam.testing_models import make_tiny_bundle

    proc = patch_sam3(monkeypatch)
    ckpt = tmp_path / "sam3.pt"
    ckpt.write_bytes(b"stand-in weights")
    bundle = make_tiny_bundle(tmp_path / "b", classes=("a", "b", "c"), input_size=32, tile_size=64)
    scene = _scene(tmp_path / "scene.tif")
    cfg = RunConfig.model_validate(
        {"tiling": {"tile_size": 64, "halo": 8}, "segment": {"concepts": CONCEPTS, "source": "sam3"}}
    )
    models = load_models(bundle, None, cfg, sam3_checkpoint=ckpt)
    res = predict_scene(scene, tmp_path / "out", models, cfg)
    assert proc.vision_passes == res.n_tiles
    assert read_class_scheme(res.outputs["classes"]).names == ("a", "b", "c")
    gdf = gpd.read_file(res.outputs["regions_gpkg"])
    assert (
        len(gdf) > 0 and gdf["region_source"].eq("sam3").all() and set(gdf["class_name"]) <= {"a", "b", "c"}
    )
    rec = json.loads(res.outputs["record"].read_text())
    assert rec["sam"]["mode"].startswith("hybrid") and rec["model"]["name"] == "tiny-test-model"
    with pytest.raises(ConfigError, match="--regions sam3"):
        load_models(bundle, None, cfg.with_overrides(**{"segment.source": "auto"}), sam3_checkpoint=ckpt)


def test_cli_zero_shot_and_one_line_errors(tmp_path, monkeypatch, capsys):
    patch_sam3(monkeypatch)
    ckpt = tmp_path / "sam3.pt"
    ckpt.write_bytes(b"stand-in weights")
    scene = _scene(tmp_path / "scene.tif")
    out = tmp_path / "out"
    rc = main(["run", str(scene), "--sam3-checkpoint", str(ckpt), "--concepts", CONCEPTS, "--tile-size", "64",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    for kind, p in output_paths(scene, out).items():
        if kind != "probabilities":  # written by dense models only
            assert p.is_file(), kind
    capsys.readouterr()
    assert main(["run", str(scene), "--sam3-checkpoint", str(ckpt), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--concepts" in err
    assert (
        main(["run", str(scene), "--sam3-checkpoint", str(ckpt), "--concepts", "a,,b", "--out", str(out)])
        != 0
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "empty concept" in err


def test_not_a_sam3_checkpoint(tmp_path):
    import torch

    from geosam.errors import CheckpointError
    from geosam.models.sam3 import load_sam3

    p = tmp_path / "x.pt"
    torch.save({"model": {"image_encoder.trunk.x": torch.zeros(1)}}, p)
    with pytest.raises(CheckpointError, match="not a SAM 3 checkpoint"):
        load_sam3(p)
