"""Which SAM 2 (Hiera) feature level should the classifier pool? What can be measured without real weights.

No pretrained SAM 2 weights can be used on this machine, and a probe trained on random-init features
measures nothing about the real ones. So the choice rests on three measurements that do not depend on
the weights, plus the command that settles it with real weights:

1. **Architecture** (from sam2's packaged configs): how many Hiera blocks, and how many of its
   global-attention blocks, have processed each map before the classifier sees it; whether the FPN
   adds top-down (coarser, deeper) information to it.
2. **Region pooling dilution** (geometry, exact for geosam's pooling): geosam pools a region as the
   area-weighted mean of the feature cells it covers (:func:`geosam.classify.label_weights`). If a
   cell's feature were the area-weighted mix of the contents of the regions inside it, the share of a
   region's pooled feature that comes from its own pixels is ``sum_c a_rc^2 / sum_c a_rc`` (``a_rc``:
   fraction of cell ``c`` covered by region ``r``). Measured at strides 4, 8, 16 and 32 on real region
   maps: Felzenszwalb regions (geosam's default settings) of a NAIP tile (1 m) and of a Landsat tile
   (``RGB.byte.tif``), and the Raleigh land-cover polygons (Landsat-7). A learnt feature mixes more than
   its cell (receptive field), so these shares are upper bounds.
3. **Pooling cost** per 1024 px tile for 300 regions at each stride (seconds, MB).

With real weights and labels, compare levels directly: ``geosam train folder <chips> --backbone
sam2.1_hiera_small.pt --mode probe --feature-level fpn16`` (then ``fpn8``, ``fpn16+trunk32``...), and
read ``val_macro_f1`` in each bundle's ``report/metrics.json``.

Usage::

    python benchmarks/measure_hiera_levels.py [--results DIR]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _harness as harness
import numpy as np
from _fixtures import SHARED

NAME = "hiera_levels"
STRIDES = (4, 8, 16, 32)


def architecture() -> list[dict[str, Any]]:
    """Per SAM 2.1 size and level: channels, Hiera blocks and global-attention blocks before it, top-down."""
    from geosam.models.sam2 import packaged_config
    from geosam.models.sam_family import SAM2_VARIANTS

    rows = []
    for name in ("sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large"):
        v = SAM2_VARIANTS[name]
        cfg = packaged_config(v)
        trunk = cfg["model"]["image_encoder"]["trunk"]  # type: ignore[index,call-overload]
        neck = cfg["model"]["image_encoder"]["neck"]  # type: ignore[index,call-overload]
        stages = list(trunk.get("stages", (2, 3, 16, 3)))
        global_blocks = set(trunk.get("global_att_blocks", (12, 16, 20)))  # Hiera's defaults (b+)
        top_down = set(neck.get("fpn_top_down_levels") or range(4))
        ends = np.cumsum(stages)
        for i, stride in enumerate(STRIDES):
            depth = int(ends[i])
            rows.append(
                {
                    "model": name,
                    "level": f"trunk{stride}",
                    "channels": v.stage_channels[i],
                    "blocks_before": depth,
                    "global_blocks_before": sum(1 for b in global_blocks if b < depth),
                    "fpn_top_down": "-",
                }
            )
            if stride < 32:  # scalp 1: the stride-32 FPN level is dropped
                td = i in top_down
                rows.append(
                    {
                        "model": name,
                        "level": f"fpn{stride}",
                        "channels": 256,
                        "blocks_before": int(ends[-1]) if td else depth,
                        "global_blocks_before": len(global_blocks)
                        if td
                        else sum(1 for b in global_blocks if b < depth),
                        "fpn_top_down": "yes (from stride 32)" if td else "no (lateral 1x1 only)",
                    }
                )
    return rows


def own_share(labels: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Per region: share of its pooled feature from its own pixels at ``stride``, and its area in pixels."""
    h, w = labels.shape
    gh, gw = -(-h // stride), -(-w // stride)
    cell = ((np.arange(h) // stride)[:, None] * gw + (np.arange(w) // stride)[None, :]).ravel()
    lab = labels.ravel().astype(np.int64)
    n = int(lab.max())
    per_cell = np.bincount(cell, minlength=gh * gw).astype(np.float64)
    counts = np.bincount(lab * (gh * gw) + cell, minlength=(n + 1) * gh * gw).reshape(n + 1, gh * gw)[1:]
    a = counts / per_cell[None, :]
    area = counts.sum(axis=1)
    keep = area > 0
    share = (a**2).sum(axis=1)[keep] / a.sum(axis=1)[keep]
    return share, area[keep]


def _stretch(data: np.ndarray) -> np.ndarray:
    out = np.empty(data.shape, np.float32)
    for b in range(data.shape[0]):
        lo, hi = np.percentile(data[b], (2, 98))
        out[b] = np.clip((data[b] - lo) / max(hi - lo, 1e-6), 0, 1)
    return out


def region_sets() -> dict[str, np.ndarray]:
    """Real region maps: Felzenszwalb regions of NAIP and Landsat tiles, and the Raleigh polygons."""
    import geopandas as gpd
    import rasterio
    from rasterio.features import rasterize
    from rasterio.windows import Window

    from geosam.config import SegmentConfig
    from geosam.segment import felzenszwalb_regions

    sets: dict[str, np.ndarray] = {}
    seg = SegmentConfig()
    for name, path, bands in (
        ("felzenszwalb NAIP 1 m (1024 px)", SHARED / "scenes/naip/m_4709963_se_14_1_20190904.tif", [1, 2, 3]),
        ("felzenszwalb Landsat 30 m (1024 px)", SHARED / "scenes/rasterio/RGB.byte.tif", [1, 2, 3]),
    ):
        if not path.is_file():
            continue
        with rasterio.open(path) as ds:
            win = Window(0, 0, min(1024, ds.width), min(1024, ds.height))
            data = ds.read(bands, window=win).astype(np.float32)
            valid = ds.read_masks(1, window=win) > 0
        sets[name] = felzenszwalb_regions(_stretch(data), valid, seg).labels
    poly = SHARED / "scenes/raleigh/landsat96_polygons.shp"
    scene = SHARED / "scenes/raleigh/landsat_multiband.tif"
    if poly.is_file() and scene.is_file():
        with rasterio.open(scene) as ds:
            gdf = gpd.read_file(poly).to_crs(ds.crs)
            sets["Raleigh land-cover polygons (Landsat-7)"] = rasterize(
                ((g, i + 1) for i, g in enumerate(gdf.geometry)),
                out_shape=ds.shape,
                transform=ds.transform,
                dtype="int32",
            )
    return sets


def dilution(sets: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Own-pixel share of pooled region features per region set and stride (medians, small regions)."""
    rows = []
    for name, labels in sets.items():
        for s in STRIDES:
            share, area = own_share(labels, s)
            small = area < 1024
            rows.append(
                {
                    "regions": name,
                    "n": len(share),
                    "median_area_px": float(np.median(area)),
                    "stride": s,
                    "median_own_share": float(np.median(share)),
                    "area_weighted_own_share": float((share * area).sum() / area.sum()),
                    "small_regions_median_own_share": float(np.median(share[small])) if small.any() else None,
                    "pct_regions_below_0.5": float(100 * (share < 0.5).mean()),
                }
            )
    return rows


def pooling_cost(n_regions: int = 300, tile: int = 1024) -> list[dict[str, Any]]:
    """Seconds and MB of geosam's region pooling on a 1024 px tile at each stride (random partition)."""
    import torch

    from geosam.classify import label_weights
    from geosam.models.pooling import pool_regions

    rng = np.random.default_rng(0)
    seeds = rng.integers(1, n_regions + 1, (tile // 16, tile // 16)).astype(np.int32)
    labels = np.kron(seeds, np.ones((16, 16), np.int32))
    rows = []
    for s, ch in zip(STRIDES, (256, 256, 256, 768), strict=True):
        g = tile // s
        feats = torch.randn(ch, g, g)
        t0 = time.perf_counter()
        w = label_weights(labels, n_regions, (g, g))
        pool_regions(feats, torch.from_numpy(w))
        rows.append(
            {
                "stride": s,
                "grid": f"{g}x{g}",
                "channels": ch,
                "seconds": time.perf_counter() - t0,
                "weights_mb": w.nbytes / 2**20,
            }
        )
    return rows


def run(results: str | None = None) -> dict[str, Any]:
    """Measure, print and write ``benchmarks/results/hiera_levels.json``."""
    header = harness.start(NAME, "full")
    arch = architecture()
    harness.table(arch, title="what each level has seen (sam2 packaged configs)")
    sets = region_sets()
    dil = dilution(sets)
    harness.table(
        dil,
        ["regions", "n", "median_area_px", "stride", "median_own_share", "area_weighted_own_share",
         "small_regions_median_own_share", "pct_regions_below_0.5"],
        title="share of a region's pooled feature that comes from its own pixels (1 = no dilution)",
    )  # fmt: skip
    cost = pooling_cost()
    harness.table(cost, title="region pooling cost per 1024 px tile, 300 regions")
    harness.finish(header)
    data = {**header, "architecture": arch, "dilution": dil, "pooling_cost": cost}
    harness.write_result(NAME, data, results)
    return data


def main(argv: list[str] | None = None) -> int:
    ap = harness.base_parser(__doc__.splitlines()[0])
    a = ap.parse_args(argv)
    run(a.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
