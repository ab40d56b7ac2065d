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


class _PerPieceReference:
    """The stitcher's bookkeeping before it kept arrays per tile: Python floats and a ``(K,)`` array per
    piece, and its ``finish`` verbatim (the reference the array version must reproduce bit for bit)."""

    def __init__(self, st: SceneStitcher) -> None:
        self.st = st
        self.area: list[float] = []
        self.sum_r: list[float] = []
        self.sum_c: list[float] = []
        self.tile: list[int] = []
        self.probs: list[np.ndarray] = []
        self.iou: list[float] = []
        self.stab: list[float] = []

    def add(self, area, sum_r, sum_c, tile, probs, iou, stab) -> None:
        for i in range(len(area)):
            self.area.append(float(area[i]))
            self.sum_r.append(float(sum_r[i]))
            self.sum_c.append(float(sum_c[i]))
            self.tile.append(tile)
            self.probs.append(np.asarray(probs[i], np.float64))
            self.iou.append(float(iou[i]))
            self.stab.append(float(stab[i]))

    def finish(self, min_area: int) -> dict[str, np.ndarray]:
        st = self.st
        n = st.next_id - 1
        area = np.asarray(self.area, np.float64)
        groups: dict[int, list[int]] = {}
        for pid in range(1, n + 1):
            if area[pid - 1] > 0:
                groups.setdefault(st.uf.find(pid), []).append(pid)
        lookup = np.zeros(n + 1, np.int32)
        rows = []
        for root in sorted(groups):
            members = groups[root]
            a = area[[m - 1 for m in members]]
            total = float(a.sum())
            if total < max(1, min_area):
                continue
            w = a / total
            probs = sum(wi * self.probs[m - 1] for wi, m in zip(w, members, strict=True))
            iou = float(np.sum(w * np.array([self.iou[m - 1] for m in members])))
            stab = float(np.sum(w * np.array([self.stab[m - 1] for m in members])))
            cr = sum(self.sum_r[m - 1] for m in members) / total
            cc = sum(self.sum_c[m - 1] for m in members) / total
            tiles = {self.tile[mm - 1] for mm in members}
            tile = next(
                (
                    t
                    for t in tiles
                    if st.tiles[t].core.row_off <= cr < st.tiles[t].core.row_end
                    and st.tiles[t].core.col_off <= cc < st.tiles[t].core.col_end
                ),
                self.tile[members[int(np.argmax(a))] - 1],
            )
            rows.append((members, probs, total, iou, stab, tile, cr, cc))
        m = len(rows)
        out_probs = np.zeros((m, st.k), np.float32)
        for fid, (members, probs, *_rest) in enumerate(rows, start=1):
            lookup[members] = fid
            out_probs[fid - 1] = probs
        return {
            "lookup": lookup,
            "probs": out_probs,
            "area_px": np.array([r[2] for r in rows], np.float64),
            "predicted_iou": np.array([r[3] for r in rows], np.float32),
            "stability_score": np.array([r[4] for r in rows], np.float32),
            "tile_index": np.array([r[5] for r in rows], np.int32),
            "centroid_rc": np.array([[r[6], r[7]] for r in rows], np.float64).reshape(m, 2),
            "pieces": np.array([len(r[0]) for r in rows], np.int32),
            "piece_tiles": np.array([-1, *self.tile], np.int64),
        }


@pytest.mark.parametrize("min_area", [0, 40])
def test_region_table_is_identical_to_the_per_piece_bookkeeping(min_area):
    """Multi-tile scene of irregular regions (some cut by seams, some tiny, tiles with none): the
    per-tile arrays give exactly the region table (ids, probabilities, areas, scores, owners,
    centroids) and piece tiles of the per-piece bookkeeping they replaced."""
    from scipy import ndimage

    h, w, k = 230, 250, 5
    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.normal(size=(h, w)), 4)
    gt = cc_label(np.digitize(field, np.quantile(field, [0.3, 0.55, 0.8])) + 1, connectivity=1)
    gt[150:200, 180:240] = 0  # a patch without regions: tiles with no pieces
    plan = plan_tiles(scene_info(h, w), TilingConfig(tile_size=64, halo=6, skip_empty=False))
    st = SceneStitcher(list(plan.tiles), (h, w), plan.halo, num_classes=k, match_fraction=0.5)
    ref = _PerPieceReference(st)
    real_add = st.p.add

    def both(*args):
        ref.add(*args)
        real_add(*args)

    st.p.add = both  # type: ignore[method-assign]
    for t in plan.tiles:
        lab = perfect_tile_labels(gt, t.window)
        lab[rng.random(lab.shape) < 0.02] = 0  # noise: pieces differ across seams
        lab = cc_label(lab, background=0, connectivity=1)  # ids 1..n, some tiny
        n = int(lab.max())
        probs = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
        st.add_tile(t, lab, probs, rng.random(n).astype(np.float32), rng.random(n).astype(np.float32))
    assert st.matches > 0 and st.next_id > 100
    table = st.finish(min_area)
    expected = ref.finish(min_area)
    assert table.count == len(expected["area_px"]) > 10
    assert (table.pieces > 1).any()  # regions merged across seams
    for name, want in expected.items():
        got = st.piece_tiles() if name == "piece_tiles" else getattr(table, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want, equal_nan=True), name
