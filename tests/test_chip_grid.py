"""The chip grid: encoder chips anchored to the scene grid, halos and tiles in whole chips, chip regions.

A training chip laid on the scene grid at the model's GSD must be exactly one encoder chip, whatever the
tile size, halo, scene size or resolution matching; the properties are checked over generated plans
(hypothesis) and on the encoder inputs of a real run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geosam.chip_grid import chip_regions, plan_chip_grid
from geosam.config import RunConfig, TilingConfig
from geosam.errors import ConfigError
from geosam.tiling import plan_tiles
from geosam.types import SceneInfo


def info(h: int, w: int, gsd: float = 10.0) -> SceneInfo:
    from rasterio.crs import CRS

    return SceneInfo(
        path="x.tif",
        width=w,
        height=h,
        count=3,
        dtype="uint8",
        crs=CRS.from_epsg(32633).to_wkt(),
        transform=(gsd, 0.0, 500000.0, 0.0, -gsd, 5000000.0),
        nodata=(None, None, None),
        band_names=(None, None, None),
    )


@settings(max_examples=120, deadline=None)
@given(
    model_chip=st.sampled_from([16, 32, 64, 224]),
    per_tile=st.integers(1, 16),
    scene_gsd=st.sampled_from([None, 0.05, 0.5, 3.0, 9.8, 10.0, 10.4, 20.0, 28.5, 60.0, 1000.0]),
    tile=st.one_of(st.none(), st.integers(32, 2048)),
    halo=st.one_of(st.none(), st.integers(0, 400)),
    h=st.integers(1, 3000),
    w=st.integers(1, 3000),
    match=st.booleans(),
)
def test_tiles_and_halos_are_whole_chips_on_the_scene_grid(
    model_chip, per_tile, scene_gsd, tile, halo, h, w, match
):
    cfg = TilingConfig.model_construct(tile_size=tile, halo=halo, skip_empty=False)
    try:
        g = plan_chip_grid(
            model_chip=model_chip,
            model_tile=model_chip * per_tile,
            input_size=model_chip,
            model_gsd=10.0,
            scene_gsd=scene_gsd,
            tiling=cfg,
            match_resolution=match,
            scene_shape=(h, w),
        )
    except ConfigError as err:  # a chip larger than a tile may be: refused in one line
        assert "--no-match-resolution" in str(err) and "\n" not in str(err)
        assert round(model_chip * 10 / scene_gsd) > 8192
        return
    assert g.tile % g.chip == 0 and g.halo % g.chip == 0 and 0 <= g.halo * 4 < g.tile and 32 <= g.tile <= 8192
    if match and scene_gsd and abs(scene_gsd - 10) / 10 >= 0.05:
        assert g.chip == max(4, round(model_chip * 10 / scene_gsd))
    else:
        assert g.chip == model_chip
    if halo is not None and g.tile * 2 <= 8192:  # the context asked for, unless one tile holds the scene
        assert g.halo >= halo or (g.halo == 0 and g.tile >= max(h, w) and tile is None)
    plan = plan_tiles(info(h, w), g.tiling(TilingConfig(skip_empty=False)))
    for spec in plan.tiles:  # every read window starts on the chip grid: chips never straddle two inputs
        assert spec.window.col_off % g.chip == 0 and spec.window.row_off % g.chip == 0
        assert spec.window.width % g.chip == 0 and spec.window.height % g.chip == 0


def test_small_scenes_are_one_tile_of_whole_chips_without_halo():
    g = plan_chip_grid(
        model_chip=64, model_tile=256, input_size=64, model_gsd=10.0, scene_gsd=10.0,
        tiling=TilingConfig(), match_resolution=True, scene_shape=(64, 64),
    )  # fmt: skip
    assert (g.chip, g.tile, g.halo) == (64, 64, 0)
    g = plan_chip_grid(
        model_chip=64, model_tile=256, input_size=64, model_gsd=10.0, scene_gsd=10.0,
        tiling=TilingConfig(), match_resolution=True, scene_shape=(512, 500),
    )  # fmt: skip
    assert (g.tile, g.halo) == (512, 0)
    g = plan_chip_grid(
        model_chip=64, model_tile=256, input_size=64, model_gsd=10.0, scene_gsd=10.0,
        tiling=TilingConfig(), match_resolution=True, scene_shape=(2000, 513),
    )  # fmt: skip
    assert (g.tile, g.halo) == (512, 64)  # 8 chips with a one-chip halo


def test_chip_regions_label_each_chip_and_skip_invalid_pixels():
    valid = np.ones((128, 192), bool)
    valid[:64, :64] = False  # first chip empty
    valid[64:, 100] = False  # one column of a chip
    lab = chip_regions(valid, 64, (-64, 128))
    assert lab.max() == 5 and (lab[:64, :64] == 0).all()
    for r in range(2):
        for c in range(3):
            block = lab[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64]
            ids = set(np.unique(block[valid[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64]]))
            assert len(ids) <= 1  # one region per chip
    with pytest.raises(ValueError, match="chip grid"):
        chip_regions(valid, 64, (-32, 0))


def test_run_encodes_every_training_chip_as_one_encoder_chip(tmp_path):
    """A mosaic of distinct chips: the run's encoder inputs are exactly those chips, whatever the tiling."""
    from geosam.predict import predict_scene
    from geosam.runtime import load_models
    from geosam.stretch import Stretch, unit_values
    from geosam.testing_chips import write_mosaic
    from geosam.testing_models import make_tiny_bundle

    bundle = make_tiny_bundle(
        tmp_path / "b", classes=("a", "b", "c"), input_size=32, tile_size=128, gsd_m=10.0
    )
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 256, (3, 32, 32)).astype("uint8") for _ in range(35)]
    scene, _ = write_mosaic(tmp_path / "m.tif", chips, 7, rgb=True)  # 224 x 160 px, 10 m
    seen = []
    for tiling in ({}, {"tile_size": 96, "halo": 10}, {"tile_size": 200, "halo": 40}):
        cfg = RunConfig.model_validate({"tiling": tiling, "segment": {"source": "chips"}})
        models = load_models(bundle, None, cfg)
        inputs: list = []
        hook = models.bundle.model.encoder.register_forward_hook(
            lambda m, i, o, acc=inputs: acc.append(i[0].clone())
        )
        res = predict_scene(scene, tmp_path / "out", models, cfg)
        hook.remove()
        rec = json.loads(res.outputs["record"].read_text())
        x = torch_cat(inputs)  # normalised by the model: undo it to compare with the chips
        mean = models.bundle.model.mean.numpy()
        std = models.bundle.model.std.numpy()
        unit = x * std + mean
        stretch = Stretch.from_dict(rec["preprocessing"]["stretch"])
        found = 0
        for c in chips:
            want = unit_values(c, stretch)
            d = np.abs(unit - want[None]).reshape(len(unit), -1).max(axis=1)
            found += int((d < 1e-5).any())
        assert found == len(chips), (tiling, rec["tiling"])
        seen.append(rec["tiling"]["halo"] % 32 == 0)
    assert all(seen)


def torch_cat(inputs):
    import torch

    return torch.cat(inputs).numpy()
