"""`geosam info` with a SAM 2.x checkpoint shows the plan `geosam run` uses: SAM 2 regions from their
own encoder pass, the classifier's chips matched to its training resolution
(geosam.scene_plan.own_pass_encoding)."""

from __future__ import annotations

import pytest

from geosam.config import RunConfig, SegmentConfig, TilingConfig
from geosam.io.read import open_scene
from geosam.predict import plan_scene
from geosam.runtime import load_models
from geosam.scene_plan import describe_run, own_pass_encoding
from geosam.testing import make_raster
from geosam.testing_models import make_tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("info_sam2") / "b", input_size=32, gsd_m=20.0)


@pytest.mark.parametrize(
    ("pixel_m", "tile_size", "match"),
    [(10.0, None, True), (20.5, None, True), (28.5, 512, True), (5.0, 256, False), (60.0, None, True)],
)
def test_info_plan_is_the_run_plan(tmp_path, bundle, sam2_tiny_checkpoint, pixel_m, tile_size, match):
    transform = (pixel_m, 0, 500000, 0, -pixel_m, 0)
    scene = make_raster(tmp_path / "s.tif", 300, 200, dtype="uint8", fill="random", transform=transform)
    cfg = RunConfig(
        segment=SegmentConfig(source="sam"),
        tiling=TilingConfig(tile_size=tile_size),
        match_resolution=match,
    )
    desc = describe_run(open_scene(str(scene)), bundle, sam2_tiny_checkpoint, cfg)
    assert desc.problem is None and desc.own_pass and desc.sam_label == "SAM 2.1 Hiera-T"
    plan = plan_scene(scene, load_models(bundle, sam2_tiny_checkpoint, cfg), cfg)
    enc = desc.encoding
    assert (enc.chip_size, enc.tile_size) == (plan.encoder.chip_size, plan.encoder.tile_size)
    assert (desc.plan.tile_size, desc.plan.halo) == (plan.tiles.tile_size, plan.tiles.halo)
    assert desc.plan.n_grid == len(plan.tiles.tiles)
    # the rule, by hand: 32 px training chips at 20 m cover round(32 * 20 / pixel_m) scene pixels
    differs = abs(pixel_m - 20.0) / 20.0 >= 0.05
    chip = max(4, round(32 * 20.0 / pixel_m)) if match and differs else 32
    assert plan.encoder.chip_size == chip
    assert plan.encoder.tile_size == chip * max(1, round((tile_size or 1024) / chip))
    lines = dict(desc.lines())
    assert lines["regions"].startswith("SAM 2.1 Hiera-T masks") and "own encoder pass" in lines["regions"]
    assert lines["encoder"].startswith(f"{chip} px chips at 32 px input")


def test_own_pass_encoding_rule():
    assert own_pass_encoding(64, 1024, 10.0, 28.5, match_resolution=True).chip_size == 22
    enc = own_pass_encoding(64, 1024, 10.0, 10.2, match_resolution=True)  # within 5 %: not matched
    assert (enc.chip_size, enc.tile_size, enc.matched) == (64, 1024, False)
    assert own_pass_encoding(64, 1024, None, 28.5, match_resolution=True).chip_size == 64
    assert own_pass_encoding(64, 1024, 10.0, 1000.0, match_resolution=True).chip_size == 4  # floor
    assert own_pass_encoding(64, 100, 10.0, 28.5, match_resolution=True).tile_size == 110  # 5 chips of 22


def test_info_refuses_a_sam1_checkpoint_the_bundle_was_not_trained_on(tmp_path, monkeypatch, capsys):
    """As `geosam run` does: SAM 1 masks share the classifier's encoder (the default model is no ViT-B)."""
    from geosam.cli.main import main
    from geosam.models import sam_family

    monkeypatch.setattr(
        sam_family, "identify_sam_checkpoint", lambda p, named=None: sam_family.SamModelId("sam", "vit_b")
    )
    scene = make_raster(tmp_path / "s.tif", 64, 64, dtype="uint8", fill="random")
    ckpt = tmp_path / "sam_vit_b_01ec64.pth"
    ckpt.write_bytes(b"identified by the patched function")
    desc = describe_run(open_scene(str(scene)), None, ckpt, RunConfig())
    assert desc.problem is not None and "is not the SAM checkpoint's (vit_b)" in desc.problem
    assert main(["info", str(scene), "--sam-checkpoint", str(ckpt)]) == 0
    plan = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("plan")]
    assert plan and "`geosam run` would stop" in plan[0] and "--backbone <checkpoint>" in plan[0]
