"""Stitch per-tile regions into scene regions: seam matching, unique ids, merged attributes (numpy only).

Rules (see docs/architecture.md):

* **Ownership.** Every scene pixel belongs to exactly one tile: the tile whose *core* contains it.
  A tile's regions are written only over its core, so no two tiles ever claim the same pixel and
  there are no duplicated or overlapping polygons.
* **Seams.** Neighbouring tiles overlap by ``2 * halo`` pixels around their common core edge (each
  tile's halo is its neighbour's core). In that band both tiles segmented the same pixels; region ``a``
  of tile A and region ``b`` of tile B are the *same object* when the pixels they share in the band are
  at least ``match_fraction`` of the smaller of the two (within the band). Such pieces are merged
  (union-find), so an object cut by a core edge becomes one region again; two different objects that
  merely touch at the core edge are not merged, because neither extends into the other's side.
* **Ids.** Each tile's regions get provisional ids ``offset + 1 .. offset + R`` (offsets are unique
  per scene); after all tiles, merged regions are renumbered ``1..M`` in order of their smallest
  provisional id, so ids are unique and deterministic per scene.
* **Attributes** of a merged region are the pixel-area-weighted means of its pieces' class
  probabilities and SAM scores; its class is the arg-max; its tile is the tile whose core holds its
  centroid (or, if the centroid falls outside the region's own tiles, the tile of its largest piece).
  Merged regions smaller than ``min_area`` pixels are dropped (their pixels fall back to the tile label).

Memory: a tile keeps only the rings of width ``2 * halo`` along its window edges, and only until all
its neighbours have been processed, so stitching holds O(scene width) data, not O(scene area).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geosam.types import PixelWindow, TileSpec

__all__ = ["RegionTable", "SceneStitcher", "TileRing", "UnionFind", "overlap_matches"]


class UnionFind:
    """Disjoint sets over non-negative integer ids (path halving, union by smaller root id)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        """Root of ``x``'s set (``x`` itself when never merged)."""
        p = self.parent
        while p.get(x, x) != x:
            p[x] = p.get(p[x], p[x])
            x = p[x]
        return x

    def union(self, a: int, b: int) -> None:
        """Merge the sets of ``a`` and ``b``; the smaller root id becomes the root."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo


@dataclass
class TileRing:
    """The labels a tile assigned near its window edges (provisional global ids; 0 = none).

    Only the rings of width ``band`` pixels along each edge of the read window are kept; that is
    exactly where the tile's window can overlap a neighbour's window.
    """

    window: PixelWindow
    band: int
    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray

    @classmethod
    def from_labels(cls, window: PixelWindow, labels: np.ndarray, band: int) -> TileRing:
        """Keep the edge rings of a ``(H, W)`` label image covering ``window``."""
        b = max(1, min(band, labels.shape[0], labels.shape[1]))
        return cls(
            window, b, labels[:b].copy(), labels[-b:].copy(), labels[:, :b].copy(), labels[:, -b:].copy()
        )

    def crop(self, win: PixelWindow) -> np.ndarray | None:
        """Labels inside ``win`` (which must lie within one ring), or ``None`` if not stored."""
        r0, c0 = win.row_off - self.window.row_off, win.col_off - self.window.col_off
        r1, c1 = r0 + win.height, c0 + win.width
        h, w = self.window.height, self.window.width
        if r1 <= self.band:
            return self.top[r0:r1, c0:c1]
        if r0 >= h - self.band:
            return self.bottom[r0 - (h - self.band) : r1 - (h - self.band), c0:c1]
        if c1 <= self.band:
            return self.left[r0:r1, c0:c1]
        if c0 >= w - self.band:
            return self.right[r0:r1, c0 - (w - self.band) : c1 - (w - self.band)]
        return None


def overlap_matches(a: np.ndarray, b: np.ndarray, match_fraction: float) -> list[tuple[int, int]]:
    """Pairs ``(id_a, id_b)`` of the same object seen by two tiles over the same pixels.

    ``a`` and ``b`` are label images of the same window (0 = none). A pair matches when the pixels
    they share are at least ``match_fraction`` of the smaller of the two regions' pixel counts in
    the window.
    """
    both = (a > 0) & (b > 0)
    if not both.any():
        return []
    pa, pb = a[both].astype(np.int64), b[both].astype(np.int64)
    pairs, n_ab = np.unique(np.stack([pa, pb]), axis=1, return_counts=True)
    ids_a, cnt_a = np.unique(a[a > 0], return_counts=True)
    ids_b, cnt_b = np.unique(b[b > 0], return_counts=True)
    size_a = dict(zip(ids_a.tolist(), cnt_a.tolist(), strict=True))
    size_b = dict(zip(ids_b.tolist(), cnt_b.tolist(), strict=True))
    out = []
    for (ia, ib), n in zip(pairs.T.tolist(), n_ab.tolist(), strict=True):
        if n >= match_fraction * min(size_a[ia], size_b[ib]):
            out.append((int(ia), int(ib)))
    return out


@dataclass
class _Pieces:
    """Per provisional id statistics, kept as one small array per tile (grown as tiles arrive).

    Piece ``p`` (provisional id ``p + 1``) is row ``p`` of the concatenation of a field's arrays, in
    the order tiles were added. Arrays, not a Python object per piece: a piece costs ``8 * (K + 6)``
    bytes (it used to be about 400 as floats and a ``(K,)`` array each).
    """

    area: list[np.ndarray] = field(default_factory=list)  # (n,) float64 core pixels
    sum_r: list[np.ndarray] = field(default_factory=list)  # (n,) float64 sums of pixel-centre rows
    sum_c: list[np.ndarray] = field(default_factory=list)  # (n,) float64 sums of pixel-centre cols
    tile: list[np.ndarray] = field(default_factory=list)  # (n,) int64 tile index
    probs: list[np.ndarray] = field(default_factory=list)  # (n, K) float64 class probabilities
    iou: list[np.ndarray] = field(default_factory=list)  # (n,) float64 SAM predicted IoU
    stab: list[np.ndarray] = field(default_factory=list)  # (n,) float64 SAM stability score

    def add(
        self,
        area: np.ndarray,
        sum_r: np.ndarray,
        sum_c: np.ndarray,
        tile: int,
        probs: np.ndarray,
        iou: np.ndarray,
        stab: np.ndarray,
    ) -> None:
        """Append one tile's ``n`` pieces (``probs`` ``(n, K)``; the others ``(n,)``)."""
        n = int(area.shape[0])
        self.area.append(np.asarray(area, np.float64).copy())
        self.sum_r.append(np.asarray(sum_r, np.float64).copy())
        self.sum_c.append(np.asarray(sum_c, np.float64).copy())
        self.tile.append(np.full(n, tile, np.int64))
        self.probs.append(np.array(probs, np.float64, ndmin=2))
        self.iou.append(np.asarray(iou, np.float64).reshape(n).copy())
        self.stab.append(np.asarray(stab, np.float64).reshape(n).copy())

    @staticmethod
    def joined(parts: list[np.ndarray], dtype: type, width: int | None = None) -> np.ndarray:
        """The concatenation of ``parts`` (empty ``(0,)`` or ``(0, width)`` when there are none)."""
        if parts:
            return np.concatenate(parts)
        return np.zeros((0,) if width is None else (0, width), dtype)


@dataclass(frozen=True)
class RegionTable:
    """Final scene regions after merging.

    Attributes:
        lookup: ``(P + 1,)`` int32 map from provisional id to final region id (0 = no region).
        probs: ``(M, K)`` class probabilities of final regions ``1..M`` (row ``i`` = id ``i + 1``).
        area_px: ``(M,)`` pixel counts.
        predicted_iou: ``(M,)`` area-weighted SAM predicted IoU (NaN if not SAM).
        stability_score: ``(M,)`` area-weighted SAM stability score (NaN if not SAM).
        tile_index: ``(M,)`` index of the owning tile in the plan.
        centroid_rc: ``(M, 2)`` centroid in scene pixel coordinates (row, col) of pixel centres.
        pieces: ``(M,)`` number of tile pieces merged into each region.
    """

    lookup: np.ndarray
    probs: np.ndarray
    area_px: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    tile_index: np.ndarray
    centroid_rc: np.ndarray
    pieces: np.ndarray

    @property
    def count(self) -> int:
        """Number of final regions ``M``."""
        return int(self.area_px.shape[0])

    @property
    def class_id(self) -> np.ndarray:
        """``(M,)`` arg-max class of each region."""
        return self.probs.argmax(axis=1).astype(np.int32) if self.count else np.zeros(0, np.int32)


class SceneStitcher:
    """Collects tiles (in any order) and resolves regions across seams.

    Usage: for each finished tile call :meth:`add_tile` with its labels (tile-local ids ``1..R`` over
    the read window, 0 = none) and per-region attributes; it returns the labels with provisional
    scene ids, to be written over the tile's core. After the last tile call :meth:`finish`.

    Args:
        tiles: All tiles of the plan (to know neighbours).
        scene_hw: ``(height, width)`` of the scene.
        halo: The plan's halo in pixels.
        num_classes: Number of classes ``K``.
        match_fraction: Seam matching threshold (see :func:`overlap_matches`).
    """

    def __init__(
        self,
        tiles: list[TileSpec],
        scene_hw: tuple[int, int],
        halo: int,
        num_classes: int,
        match_fraction: float = 0.5,
    ) -> None:
        self.tiles = {t.index: t for t in tiles}
        self.by_grid = {(t.row, t.col): t.index for t in tiles}
        self.scene = PixelWindow(0, 0, scene_hw[1], scene_hw[0])
        self.halo = halo
        self.k = num_classes
        self.match_fraction = match_fraction
        self.next_id = 1
        self.rings: dict[int, TileRing] = {}
        self.done: set[int] = set()
        self.uf = UnionFind()
        self.p = _Pieces()
        self.matches = 0

    def _neighbours(self, t: TileSpec) -> list[int]:
        out = []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if dr or dc:
                    j = self.by_grid.get((t.row + dr, t.col + dc))
                    if j is not None:
                        out.append(j)
        return out

    def add_tile(
        self,
        spec: TileSpec,
        labels: np.ndarray,
        probs: np.ndarray,
        predicted_iou: np.ndarray,
        stability_score: np.ndarray,
    ) -> np.ndarray:
        """Register one tile; return its ``(H, W)`` labels as provisional scene ids (0 = none)."""
        n = int(probs.shape[0])
        offset = self.next_id - 1
        self.next_id += n
        scene_labels = np.where(labels > 0, labels.astype(np.int64) + offset, 0).astype(np.int32)
        # statistics of each piece over the tile's core only (what will be written)
        rs, cs = spec.core_slices
        core = scene_labels[rs, cs]
        flat = core.ravel().astype(np.int64) - offset
        inside = flat > 0
        idx = flat[inside]
        rr, cc = np.indices(core.shape)
        area = np.bincount(idx, minlength=n + 1)[1:].astype(np.float64)
        sum_r = np.bincount(idx, weights=(rr.ravel()[inside] + spec.core.row_off + 0.5), minlength=n + 1)[1:]
        sum_c = np.bincount(idx, weights=(cc.ravel()[inside] + spec.core.col_off + 0.5), minlength=n + 1)[1:]
        self.p.add(area, sum_r, sum_c, spec.index, probs, predicted_iou, stability_score)
        # seam matching with finished neighbours over the doubly covered windows
        clipped = spec.window.intersection(self.scene)
        ring = TileRing.from_labels(spec.window, scene_labels, 2 * self.halo) if self.halo > 0 else None
        if ring is not None and clipped is not None:
            for j in self._neighbours(spec):
                other = self.rings.get(j)
                if other is None:
                    continue
                ov = spec.window.intersection(other.window)
                ov = ov.intersection(self.scene) if ov is not None else None
                if ov is None:
                    continue
                mine = ring.crop(ov)
                theirs = other.crop(ov)
                if mine is None or theirs is None:
                    continue
                for a, b in overlap_matches(mine, theirs, self.match_fraction):
                    self.uf.union(a, b)
                    self.matches += 1
            self.rings[spec.index] = ring
        self.done.add(spec.index)
        # free rings whose neighbours are all done
        for j in [spec.index, *self._neighbours(spec)]:
            if (
                j in self.rings
                and all(nb in self.done for nb in self._neighbours(self.tiles[j]))
                and j in self.done
            ):
                del self.rings[j]
        return scene_labels

    @property
    def pending_rings(self) -> int:
        """Tiles whose rings are still held (bounded by about two tile rows)."""
        return len(self.rings)

    def finish(self, min_area: int = 0) -> RegionTable:
        """Merge matched pieces and compute final ids and attributes."""
        n = self.next_id - 1
        area = _Pieces.joined(self.p.area, np.float64)
        piece_probs = _Pieces.joined(self.p.probs, np.float64, self.k)
        piece_iou = _Pieces.joined(self.p.iou, np.float64)
        piece_stab = _Pieces.joined(self.p.stab, np.float64)
        # Python floats, summed in the same order as before the statistics were arrays (same centroids)
        sum_r = _Pieces.joined(self.p.sum_r, np.float64).tolist()
        sum_c = _Pieces.joined(self.p.sum_c, np.float64).tolist()
        piece_tile = self.piece_tiles()
        groups: dict[int, list[int]] = {}
        for pid in range(1, n + 1):
            if area[pid - 1] > 0:
                groups.setdefault(self.uf.find(pid), []).append(pid)
        lookup = np.zeros(n + 1, np.int32)
        rows = []
        for root in sorted(groups):
            members = groups[root]
            rows_of = [m - 1 for m in members]
            a = area[rows_of]
            total = float(a.sum())
            if total < max(1, min_area):
                continue
            w = a / total
            probs = sum(wi * piece_probs[m - 1] for wi, m in zip(w, members, strict=True))
            iou = float(np.sum(w * piece_iou[rows_of]))
            stab = float(np.sum(w * piece_stab[rows_of]))
            cr = sum(sum_r[m - 1] for m in members) / total
            cc = sum(sum_c[m - 1] for m in members) / total
            tile = self._owner(cr, cc, members, a, piece_tile)
            rows.append((members, probs, total, iou, stab, tile, cr, cc))
        m = len(rows)
        out_probs = np.zeros((m, self.k), np.float32)
        for fid, (members, probs, *_rest) in enumerate(rows, start=1):
            lookup[members] = fid
            out_probs[fid - 1] = probs
        return RegionTable(
            lookup=lookup,
            probs=out_probs,
            area_px=np.array([r[2] for r in rows], np.float64),
            predicted_iou=np.array([r[3] for r in rows], np.float32),
            stability_score=np.array([r[4] for r in rows], np.float32),
            tile_index=np.array([r[5] for r in rows], np.int32),
            centroid_rc=np.array([[r[6], r[7]] for r in rows], np.float64).reshape(m, 2),
            pieces=np.array([len(r[0]) for r in rows], np.int32),
        )

    def piece_tiles(self) -> np.ndarray:
        """``(P + 1,)`` int64: the tile index each provisional id came from (entry 0: -1).

        A provisional id is written only over its own tile's core, so a final region lies in the
        cores of its pieces' tiles (what :func:`geosam.io.region_stream.completion_positions` needs).
        """
        out = np.full(self.next_id, -1, np.int64)
        out[1:] = _Pieces.joined(self.p.tile, np.int64)
        return out

    def _owner(
        self, r: float, c: float, members: list[int], areas: np.ndarray, piece_tile: np.ndarray
    ) -> int:
        """The tile whose core holds ``(r, c)`` among the members' tiles, else the largest piece's.

        ``piece_tile``: :meth:`piece_tiles` (indexed by provisional id).
        """
        tiles = {int(piece_tile[mm]) for mm in members}
        for t in tiles:
            core = self.tiles[t].core
            if core.row_off <= r < core.row_end and core.col_off <= c < core.col_end:
                return t
        return int(piece_tile[members[int(np.argmax(areas))]])
