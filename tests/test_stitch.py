"""Seam logic: objects crossing tile edges become one region; touching objects stay apart; ids unique."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as cc_label

from geosam.config import TilingConfig
from geosam.stitch import SceneStitcher, TileRing, UnionFind, overlap_matches
from geosam.tiling import plan_tiles
from geosam.types import PixelWindow, SceneInfo


def scene_info(h: int, w: int) -> SceneInfo:
    return SceneInfo(
        path="mem.tif",
        width=w,
        height=h,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0),
        nodata=(None,),
        band_names=(None,),
    )


def ground_truth(h: int, w: int) -> np.ndarray:
    """Objects with ids > 0: seam crossers, a corner crosser, two fields touching at a core edge."""
    gt = np.zeros((h, w), np.int32)
    gt[10:40, 30:90] = 1  # crosses the vertical core edge at x=56 (tile 64, halo 4 -> stride 56)
    gt[45:70, 45:70] = 2  # crosses the corner at (56, 56)
    gt[80:100, 20:56] = 3  # ends exactly at the core edge x = 56 ...
    gt[80:100, 56:100] = 4  # ... where a different field starts: must stay separate
    gt[5:8, 0:160] = 5  # a long thin road through three tiles
    gt[120:150, 120:150] = 6  # inside one core
    return gt


def perfect_tile_labels(gt: np.ndarray, win: PixelWindow) -> np.ndarray:
    """What an ideal segmenter sees in a tile window: connected parts of each object (0 outside)."""
    out = np.zeros((win.height, win.width), np.int32)
    r0, c0 = max(win.row_off, 0), max(win.col_off, 0)
    r1, c1 = min(win.row_end, gt.shape[0]), min(win.col_end, gt.shape[1])
    crop = gt[r0:r1, c0:c1]
    lab = np.zeros_like(crop)
    n = 0
    for v in np.unique(crop[crop > 0]):
        cc, k = cc_label(crop == v, return_num=True, connectivity=1)
        lab[cc > 0] = cc[cc > 0] + n
        n += k
    out[r0 - win.row_off : r1 - win.row_off, c0 - win.col_off : c1 - win.col_off] = lab
    return out


@pytest.mark.parametrize("order", ["row_major", "reversed", "shuffled"])
def test_perfect_segmentation_is_stitched_into_objects(order):
    h, w = 160, 170
    gt = ground_truth(h, w)
    plan = plan_tiles(scene_info(h, w), TilingConfig(tile_size=64, halo=4, skip_empty=False))
    tiles = list(plan.tiles)
    if order == "reversed":
        tiles = tiles[::-1]
    elif order == "shuffled":
        tiles = [tiles[i] for i in np.random.default_rng(0).permutation(len(tiles))]
    st = SceneStitcher(list(plan.tiles), (h, w), plan.halo, num_classes=7)
    prov = np.zeros((h, w), np.int32)
    max_pending = 0
    for t in tiles:
        lab = perfect_tile_labels(gt, t.window)
        n = int(lab.max())
        # each region's "class" = its gt object id (so classes are consistent across tiles)
        probs = np.zeros((n, 7), np.float32)
        for i in range(1, n + 1):
            probs[i - 1, np.bincount(gt_crop_ids(gt, t.window, lab == i)).argmax()] = 1
        scene_lab = st.add_tile(t, lab, probs, np.full(n, 0.9, np.float32), np.full(n, 0.95, np.float32))
        rs, cs = t.core_slices
        c = t.core
        prov[c.row_off : c.row_end, c.col_off : c.col_end] = scene_lab[rs, cs]
        max_pending = max(max_pending, st.pending_rings)
    table = st.finish()
    final = table.lookup[prov]
    # every gt object is exactly one final region and vice versa
    for obj in range(1, 7):
        ids = np.unique(final[gt == obj])
        assert len(ids) == 1 and ids[0] > 0, (obj, ids)
    for fid in range(1, table.count + 1):
        assert len(np.unique(gt[final == fid])) == 1
    assert table.count == 6
    assert set(np.unique(final)) == set(range(0, 7))  # ids 1..M, unique per scene
    assert (final[gt == 0] == 0).all()
    # merged attributes: class = the object, area = its pixels, centroid inside its bounding box
    for fid in range(1, table.count + 1):
        obj = int(np.unique(gt[final == fid])[0])
        assert table.class_id[fid - 1] == obj
        assert table.area_px[fid - 1] == (gt == obj).sum()
    road = table.lookup[prov[6, 100]] - 1
    assert table.pieces[road] == 3  # three tiles' pieces merged
    if order == "row_major":
        assert max_pending <= 2 * 3 + 2  # about two tile rows, not the whole scene


def gt_crop_ids(gt, win, mask):
    full = np.zeros((win.height, win.width), np.int32)
    r0, c0 = max(win.row_off, 0), max(win.col_off, 0)
    r1, c1 = min(win.row_end, gt.shape[0]), min(win.col_end, gt.shape[1])
    full[r0 - win.row_off : r1 - win.row_off, c0 - win.col_off : c1 - win.col_off] = gt[r0:r1, c0:c1]
    return full[mask]


def test_owner_tile_holds_the_centroid():
    h, w = 160, 170
    gt = ground_truth(h, w)
    plan = plan_tiles(scene_info(h, w), TilingConfig(tile_size=64, halo=4, skip_empty=False))
    st = SceneStitcher(list(plan.tiles), (h, w), plan.halo, num_classes=2)
    for t in plan.tiles:
        lab = perfect_tile_labels(gt, t.window)
        n = int(lab.max())
        st.add_tile(
            t, lab, np.full((n, 2), 0.5, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
        )
    table = st.finish()
    specs = {t.index: t for t in plan.tiles}
    for i in range(table.count):
        r, c = table.centroid_rc[i]
        core = specs[int(table.tile_index[i])].core
        if gt[int(r), int(c)] > 0:  # convex objects: centroid inside
            assert core.row_off <= r < core.row_end and core.col_off <= c < core.col_end


def test_min_area_drops_small_regions():
    plan = plan_tiles(scene_info(50, 50), TilingConfig(tile_size=64, halo=4, skip_empty=False))
    st = SceneStitcher(list(plan.tiles), (50, 50), 4, 2)
    lab = np.zeros((64, 64), np.int32)
    lab[10:12, 10:12] = 1  # 4 px
    lab[20:40, 20:40] = 2
    st.add_tile(plan.tiles[0], lab, np.array([[1, 0], [0, 1]], np.float32), np.zeros(2), np.zeros(2))
    table = st.finish(min_area=10)
    assert table.count == 1 and table.area_px[0] == 400 and table.class_id[0] == 1


def test_overlap_matches_requires_shared_pixels():
    a = np.array([[1, 1, 2, 2]] * 4)
    b = np.array([[7, 7, 8, 8]] * 4)
    assert sorted(overlap_matches(a, b, 0.5)) == [(1, 7), (2, 8)]
    b2 = np.array([[7, 8, 8, 8]] * 4)
    # 1 shares half of itself with 7 (all of 7): match; 1 and 8 share 1/2 of 1 -> match as well
    assert (1, 7) in overlap_matches(a, b2, 0.5)
    assert overlap_matches(a, np.zeros_like(a), 0.5) == []


def test_union_find_and_ring():
    uf = UnionFind()
    uf.union(5, 3)
    uf.union(3, 9)
    assert uf.find(9) == 3 and uf.find(5) == 3 and uf.find(4) == 4
    win = PixelWindow(-4, -4, 20, 20)
    lab = np.arange(400).reshape(20, 20)
    ring = TileRing.from_labels(win, lab, 4)
    assert np.array_equal(ring.crop(PixelWindow(-4, 12, 20, 4)), lab[16:20])
    assert np.array_equal(ring.crop(PixelWindow(12, -4, 4, 20)), lab[:, 16:20])
    assert ring.crop(PixelWindow(2, 2, 4, 4)) is None
