"""geosam's single encoder pass per tile vs the usual two-step way, on the same scenes and weights.

Three ways to get SAM regions with classes, each run end to end through ``predict_scene`` (same scene
reading, stitching, class map, confidence, vectorizing and writing; only the per-tile compute differs):

``one_pass`` (geosam)
    The tile is encoded once; SAM's mask decoder (``SamAutomaticMaskGenerator`` on the precomputed
    embedding) and the classifier (mask pooling + head) both use that embedding.
``two_pass`` (the common way)
    ``SamAutomaticMaskGenerator(sam).generate(image)`` on the tile as a separate step (it encodes the
    image itself), then the classifier encodes the tile again and pools the masks.
``two_pass_norle`` (control)
    ``two_pass`` with geosam's RLE-free mask generation (:func:`geosam.segment.generate_single_crop`,
    same masks as ``generate``): the difference to ``one_pass`` is the second encoder pass alone, the
    difference to ``two_pass`` is segment-anything's RLE round trip alone.
``crop`` (also common)
    ``generate(image)`` as above, then every mask's bounding box is cropped from the tile, resized to
    ``crop_size`` (224, as CLIP-style region classifiers take) and encoded by the same encoder
    weights; the mask is pooled on the crop's features. The tile's class is the area-weighted mean of
    its regions' probabilities (no third pass).

All three use the same weights (a separately loaded SAM for the two-step variants, as users of the two
steps do), the same thresholds, the same precision (the encoder under the same autocast; the mask
decoder in float32 in all three), and the same tiles.
"""

from __future__ import annotations

import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _harness as harness
import numpy as np
import torch
from _fixtures import bench_scenes, sam_setup, scene_tiles, work_dir
from torch import nn

METHODS = ("one_pass", "two_pass", "two_pass_norle", "crop")


class AutocastEncoder(nn.Module):
    """Run an image encoder under the run's autocast and return float32 (what geosam's encode does)."""

    def __init__(self, encoder: nn.Module, device: torch.device, precision: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.img_size = encoder.img_size  # read by SamPredictor / Sam.preprocess
        self.device_, self.precision = device, precision
        self.seconds = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from geosam.encode import autocast_context

        t0 = time.perf_counter()
        with autocast_context(self.device_, self.precision):
            out = self.encoder(x).float()
        self.seconds += time.perf_counter() - t0
        return out


def sam_image(tile_data: np.ndarray, valid: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB image a user hands to SAM: the stretched tile, nodata at the mean."""
    from geosam.encode import fill_invalid

    x = fill_invalid(tile_data[:3], valid, mean[:3])
    return np.ascontiguousarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0))


class TwoStep:
    """The two-step per-tile compute (``two_pass`` or ``crop``), a drop-in for ``process_tile``."""

    def __init__(self, models: Any, checkpoint: Path, method: str, crop_size: int, crop_batch: int) -> None:
        from geosam.models.classifier import LandCoverModel
        from geosam.models.sam import load_sam

        self.models, self.method = models, method
        sam, _ = load_sam(checkpoint, img_size=models.tile_size)  # SAM loaded on its own, as users do
        self.encoder = AutocastEncoder(sam.image_encoder, models.device, models.precision)
        sam.image_encoder = self.encoder
        self.sam = sam.to(models.device).eval()
        model = models.bundle.model
        self.mean = model.mean.detach().cpu().numpy().reshape(-1)
        self.crop_size, self.crop_batch = crop_size, crop_batch
        self.crop_model = None
        if method == "crop":
            enc, _ = load_sam(checkpoint, img_size=crop_size, encoder_only=True)
            self.crop_model = LandCoverModel(
                enc, model.head, self.mean.tolist(), model.std.reshape(-1).tolist()
            )
            self.crop_model.to(models.device).eval()

    def generator(self, cfg: Any) -> Any:
        from geosam.segment import mask_generator

        return mask_generator(self.sam, cfg.segment)

    def __call__(
        self,
        models: Any,
        tile_data: np.ndarray,
        valid: np.ndarray,
        spec: Any,
        cfg: Any,
        *,
        chip_size: int | None = None,
    ) -> Any:
        from geosam.classify import classify_tile
        from geosam.encode import EncoderPlan, encode_tiles, fill_invalid
        from geosam.inference import TileResult
        from geosam.segment import Regions, paint_masks

        secs: dict[str, float] = {}
        model = models.bundle.model
        t0 = time.perf_counter()
        enc0 = self.encoder.seconds
        if valid.any() and self.method == "two_pass_norle":
            from geosam.segment import generate_single_crop

            gen = self.generator(cfg)
            with torch.inference_mode():
                gen.predictor.set_image(sam_image(tile_data, valid, self.mean))  # SAM's own encoder pass
                masks, scores = generate_single_crop(gen, *valid.shape)
            regions = paint_masks(masks, scores, valid, cfg.segment.min_region_area, "sam")
        elif valid.any():
            anns = self.generator(cfg).generate(sam_image(tile_data, valid, self.mean))
            masks = [a["segmentation"] for a in anns]
            scores = [(float(a["predicted_iou"]), float(a["stability_score"])) for a in anns]
            regions = paint_masks(masks, scores, valid, cfg.segment.min_region_area, "sam")
        else:
            regions = Regions.empty(valid.shape)
        t1 = time.perf_counter()
        secs["segment"] = t1 - t0  # includes SAM's own encoder pass
        secs["sam_encoder"] = self.encoder.seconds - enc0
        if self.method in ("two_pass", "two_pass_norle"):
            x = torch.from_numpy(fill_invalid(tile_data, valid, self.mean))[None].to(models.device)
            grid = models.input_size // int(model.encoder.patch_embed.proj.kernel_size[0])
            plan = EncoderPlan(tile_data.shape[-1], chip_size or models.chip_size, models.input_size, grid)
            feats = encode_tiles(
                model, x, plan, precision=models.precision, chip_batch=max(1, cfg.batch_size) * 16
            )
            t2 = time.perf_counter()
            secs["encode"] = t2 - t1
            classes = classify_tile(model, feats[0], valid, regions.labels, regions.count)
            tile_probs, region_probs = classes.tile, classes.regions
            secs["classify"] = time.perf_counter() - t2
        else:
            region_probs, tile_probs, enc_s = self.classify_crops(tile_data, valid, regions)
            secs["encode"] = enc_s
            secs["classify"] = time.perf_counter() - t1 - enc_s
        return TileResult(
            spec,
            regions.labels,
            valid,
            region_probs,
            regions.predicted_iou,
            regions.stability_score,
            tile_probs,
            secs,
        )

    @torch.inference_mode()
    def classify_crops(
        self, tile_data: np.ndarray, valid: np.ndarray, regions: Any
    ) -> tuple[Any, Any, float]:
        """Crop, resize and encode each region's bounding box; pool its mask. Returns probs and encoder s."""
        import torch.nn.functional as F

        from geosam.encode import autocast_context, fill_invalid

        assert self.crop_model is not None
        k = self.models.bundle.meta.head.num_classes
        if regions.count == 0:
            return np.zeros((0, k), np.float32), np.full(k, 1.0 / k, np.float32), 0.0
        dev = self.models.device
        x = torch.from_numpy(fill_invalid(tile_data, valid, self.mean))
        labels = regions.labels
        crops, masks = [], []
        for r in range(1, regions.count + 1):
            rows, cols = np.nonzero(labels == r)
            r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            crops.append(
                F.interpolate(
                    x[None, :, r0:r1, c0:c1],
                    size=(self.crop_size, self.crop_size),
                    mode="bilinear",
                    align_corners=False,
                )[0]
            )
            masks.append(torch.from_numpy(labels[r0:r1, c0:c1] == r))
        enc_s = 0.0
        logits = []
        for s in range(0, len(crops), self.crop_batch):
            batch = torch.stack(crops[s : s + self.crop_batch]).to(dev)
            t0 = time.perf_counter()
            with autocast_context(dev, self.models.precision):
                feats = self.crop_model.features(batch).float()
            enc_s += time.perf_counter() - t0
            for i, f in enumerate(feats):
                logits.append(self.crop_model.classify_regions(f, masks[s + i][None].to(dev))[0])
        probs = torch.softmax(torch.stack(logits).float(), dim=-1).cpu().numpy().astype(np.float32)
        area = np.bincount(labels.ravel(), minlength=regions.count + 1)[1:].astype(np.float64)
        tile = (probs * area[:, None]).sum(0) / max(area.sum(), 1.0)
        return probs, tile.astype(np.float32), enc_s


@contextmanager
def tile_compute(fn: Any, cfg: Any) -> Any:
    """Make ``predict_scene`` use ``fn`` as its per-tile compute instead of geosam's (restored on exit).

    ``predict_scene`` builds its tile inference once per scene with ``geosam.predict.tile_inference``;
    the replacement factory returns ``fn`` bound to the scene's models, configuration and chip size.
    """
    import geosam.predict as P

    original = P.tile_inference

    def factory(models: Any, encoder: Any, segment: Any, *, batch_size: int = 1) -> Any:
        def infer(tile_data: np.ndarray, valid: np.ndarray, spec: Any) -> Any:
            return fn(models, tile_data, valid, spec, cfg, chip_size=encoder.chip_size)

        return infer

    P.tile_inference = factory
    try:
        yield
    finally:
        P.tile_inference = original


def run_method(
    method: str, scene: Path, bands: list[int] | None, models: Any, cfg: Any, twostep: Any, out: Path
) -> dict[str, Any]:
    """One ``predict_scene`` run; returns its timings and counts."""
    from geosam.predict import predict_scene

    run_cfg = cfg.with_overrides(bands=bands) if bands else cfg
    out.mkdir(parents=True, exist_ok=True)
    fn = twostep[method] if method != "one_pass" else None
    t0 = time.perf_counter()
    if fn is None:
        res = predict_scene(scene, out, models, run_cfg)
    else:
        with tile_compute(fn, run_cfg):
            res = predict_scene(scene, out, models, run_cfg)
    wall = time.perf_counter() - t0
    t = res.record.timings_s
    tiles = res.n_tiles
    per_tile = {k: t.get(k, 0.0) for k in ("encode", "segment", "sam_encoder", "classify")}
    compute = per_tile["encode"] + per_tile["segment"] + per_tile["classify"]
    return {
        "method": method,
        "scene": scene.name,
        "tiles": tiles,
        "regions": res.n_regions,
        "wall_s": wall,
        "total_s": t["total"],
        "tile_compute_s": compute,
        "encoder_s": per_tile["encode"] + per_tile["sam_encoder"],
        "segment_s": per_tile["segment"],
        "sam_encoder_s": per_tile["sam_encoder"],
        "classify_s": per_tile["classify"],
        "read_s": t.get("read", 0.0),
        "stitch_s": t.get("stitch", 0.0),
        "finish_s": t.get("finish", 0.0),
        "timings_s": t,
    }


def warm_up(models: Any, twostep: dict[str, Any], scene: Path, bands: list[int] | None, cfg: Any) -> None:
    """One tile through each method (first-call costs: oneDNN kernels, allocator growth).

    With a 2 x 2 point grid: the code paths and buffer sizes are the same, the decoder work is not.
    """
    from geosam.predict import process_tile

    cfg = cfg.model_copy(update={"segment": cfg.segment.model_copy(update={"points_per_side": 2})})
    run_cfg = cfg.with_overrides(bands=bands) if bands else cfg
    spec, data, valid = scene_tiles(scene, bands, models, cfg, limit=1)[0]
    with torch.no_grad():
        process_tile(models, data, valid, spec, run_cfg)
        for fn in twostep.values():
            fn(models, data, valid, spec, run_cfg)


def run(
    size: str = "full",
    results: str | None = None,
    work: str | None = None,
    precisions: tuple[str, ...] = ("auto",),
    repeats: int = 1,
    crop: bool = True,
    device: str = "auto",
    max_scenes: int = 1,
) -> dict[str, Any]:
    header = harness.start("single_vs_two_pass", size)
    wd = work_dir(work)
    setup = sam_setup(size, wd)
    scenes = bench_scenes(size, wd)[:max_scenes]
    crop_size = 32 if size == "smoke" else 224
    methods = METHODS if crop else METHODS[:3]
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for prec in precisions:
        models = setup.load(precision=prec, device=device)
        twostep = {
            m: TwoStep(models, setup.sam_checkpoint, m, crop_size, 8) for m in methods if m != "one_pass"
        }  # type: ignore[arg-type]
        warm_up(models, twostep, scenes[0][0], scenes[0][1], setup.cfg)
        with tempfile.TemporaryDirectory(prefix="geosam-bench-") as tmp:
            for rep in range(repeats):
                for scene, bands in scenes:
                    for m in methods:
                        r = run_method(m, scene, bands, models, setup.cfg, twostep, Path(tmp) / f"{m}-{rep}")
                        r.update(precision=models.precision, repeat=rep)
                        rows.append(r)
                        print(
                            f"  {models.precision} {scene.name} {m}: {r['total_s']:.2f} s "
                            f"({r['tiles']} tiles, {r['regions']} regions)",
                            flush=True,
                        )
        for m in methods:
            mine = [r for r in rows if r["precision"] == models.precision and r["method"] == m]
            tiles = sum(r["tiles"] for r in mine)
            summary.append(
                {
                    "precision": models.precision,
                    "method": m,
                    "tiles": tiles,
                    "regions": sum(r["regions"] for r in mine),
                    "total_s": sum(r["total_s"] for r in mine),
                    "s_per_tile": sum(r["total_s"] for r in mine) / tiles,
                    "tile_compute_s": sum(r["tile_compute_s"] for r in mine),
                    "encoder_s": sum(r["encoder_s"] for r in mine),
                    "decoder+post_s": sum(r["segment_s"] - r["sam_encoder_s"] for r in mine),
                    "classify_s": sum(r["classify_s"] for r in mine),
                    "other_s": sum(r["total_s"] - r["tile_compute_s"] for r in mine),
                }
            )
        base = {s["precision"]: s for s in summary if s["method"] == "one_pass"}
        for s in summary:
            b = base[s["precision"]]
            s["x_slower_end_to_end"] = s["total_s"] / b["total_s"]
            s["x_slower_tile_compute"] = s["tile_compute_s"] / b["tile_compute_s"]
        del models, twostep
    harness.table(
        summary,
        [
            "precision",
            "method",
            "tiles",
            "regions",
            "total_s",
            "s_per_tile",
            "encoder_s",
            "decoder+post_s",
            "classify_s",
            "other_s",
            "x_slower_end_to_end",
            "x_slower_tile_compute",
        ],
        title="end to end (predict_scene), summed over scenes and repeats; x_slower = time / one_pass time",
    )
    harness.finish(header)
    data = {
        **header,
        "setup": setup.describe(),
        "scenes": [str(s) for s, _ in scenes],
        "crop_size": crop_size,
        "summary": summary,
        "runs": rows,
    }
    harness.write_result("single_vs_two_pass", data, results)
    return data


def main(argv: list[str] | None = None) -> None:
    harness.ensure_allocator_env()
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--precision", nargs="+", default=["auto"], help="auto (the default), fp32, bf16")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-crop", action="store_true", help="skip the crop-and-classify variant")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--scenes", type=int, default=1, help="how many of the real scenes (RGB.byte.tif first, then NAIP)"
    )
    a = ap.parse_args(argv)
    run(a.size, a.results, a.work, tuple(a.precision), a.repeats, not a.no_crop, a.device, a.scenes)


if __name__ == "__main__":
    main(sys.argv[1:])
