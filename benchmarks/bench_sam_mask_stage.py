"""Where a SAM tile's time goes on CPU: encoder vs mask decoder vs post-processing, SAM 1 vs SAM 2.1.

The per-tile table of ``bench_sam_backbones.py`` shows Hiera-S about 2x faster than ViT-B per 1024 px
tile, not the 3x aimed for. This benchmark splits one tile's work into its stages, measured side by
side in one process with random weights in the official architectures (segment-anything's
``sam_model_registry["vit_b"]`` and sam2's ``build_sam2`` with the packaged ``sam2.1_hiera_s.yaml``):

* ``encoder``: ``set_image`` on a 1024 x 1024 uint8 tile (the image encoder, what Hiera makes cheap);
* ``decoder``: prompt encoder + mask decoder for the automatic generator's point grid (8 x 8 = 64
  prompts, 3 masks each: ``points_per_side`` 8 as in the per-tile benchmark), low-resolution logits;
* ``upsample``: the low-resolution logits to 1024 x 1024 (``postprocess_masks``);
* ``filters``: stability score, thresholding and boxes (``segment_anything.utils.amg`` /
  ``sam2.utils.amg``), as the generator does them.

Each stage in float32 and, on CPUs with native bf16 (AVX512-BF16 or AMX; emulated bf16 is many times
slower and is skipped), under bf16 autocast. Median of ``--repeats`` calls after one warm-up.
The mask decoder's cost depends on the number of prompts, not on the weights, and is about the same
for both families, so it bounds how much a cheaper encoder can save per tile.

    python benchmarks/bench_sam_mask_stage.py [--repeats 3] [--points-per-side 8] [--size smoke]

Results: ``benchmarks/results/sam_mask_stage.json``; docs/sam_models.md discusses them.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness as harness  # noqa: E402

SIZE = 1024


def _autocast(precision: str) -> Any:
    import torch

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _time_stages(
    encoder: Any, decoder: Any, upsample: Any, amg: Any, threshold: float, repeats: int
) -> dict[str, Any]:
    """Time the four stages of one tile: ``encoder()``, ``decoder()`` -> low-resolution logits,
    ``upsample(low)`` -> tile-size logits, and the generator's filters (``amg``: the family's
    ``utils.amg``; ``threshold``: its mask threshold)."""
    import torch

    out = {"encoder": harness.repeat(encoder, repeats), "decoder": harness.repeat(decoder, repeats)}
    low = decoder()

    def upsampled() -> Any:
        with torch.inference_mode():
            return upsample(low)

    out["upsample"] = harness.repeat(upsampled, repeats)
    logits = upsampled().flatten(0, 1)

    def filters() -> None:
        with torch.inference_mode():
            amg.calculate_stability_score(logits, threshold, 1.0)
            amg.batched_mask_to_box(logits > threshold)

    out["filters"] = harness.repeat(filters, repeats)
    return out


def sam1_stages(image: np.ndarray, points_per_side: int, precision: str, repeats: int) -> dict[str, Any]:
    """Stage times of SAM 1 ViT-B (random weights) on one tile."""
    import torch
    from segment_anything import SamPredictor, sam_model_registry
    from segment_anything.utils import amg

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]().eval()
    pred = SamPredictor(sam)
    grid = amg.build_all_layer_point_grids(points_per_side, 0, 1)[0] * SIZE
    pts = torch.as_tensor(pred.transform.apply_coords(grid, (SIZE, SIZE)), dtype=torch.float32)[:, None]
    labels = torch.ones(pts.shape[0], 1, dtype=torch.int)

    def encoder() -> None:
        with torch.inference_mode(), _autocast(precision):
            pred.set_image(image)
        pred.features = pred.features.float()

    def decoder() -> Any:
        with torch.inference_mode(), _autocast(precision):
            sparse, dense = sam.prompt_encoder(points=(pts, labels), boxes=None, masks=None)
            low, _iou = sam.mask_decoder(
                image_embeddings=pred.features,
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
        return low.float()

    def upsample(low: Any) -> Any:
        return sam.postprocess_masks(low, pred.input_size, pred.original_size)

    return _time_stages(encoder, decoder, upsample, amg, sam.mask_threshold, repeats)


def sam2_stages(image: np.ndarray, points_per_side: int, precision: str, repeats: int) -> dict[str, Any]:
    """Stage times of SAM 2.1 Hiera-S (random weights) on one tile."""
    import torch
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    from sam2.utils import amg

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_s.yaml", None, device="cpu")
    pred = SAM2ImagePredictor(model)
    grid = amg.build_all_layer_point_grids(points_per_side, 0, 1)[0] * SIZE
    pts = pred._transforms.transform_coords(
        torch.as_tensor(grid, dtype=torch.float32), normalize=True, orig_hw=(SIZE, SIZE)
    )[:, None]
    labels = torch.ones(pts.shape[0], 1, dtype=torch.int)

    def encoder() -> None:
        with torch.inference_mode(), _autocast(precision):
            pred.set_image(image)
        feats = pred._features
        pred._features = {
            "image_embed": feats["image_embed"].float(),
            "high_res_feats": [f.float() for f in feats["high_res_feats"]],
        }

    def decoder() -> Any:
        feats = pred._features
        with torch.inference_mode(), _autocast(precision):
            sparse, dense = model.sam_prompt_encoder(points=(pts, labels), boxes=None, masks=None)
            low, _iou, _tok, _obj = model.sam_mask_decoder(
                image_embeddings=feats["image_embed"],
                image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
                repeat_image=True,
                high_res_features=feats["high_res_feats"],
            )
        return low.float()

    def upsample(low: Any) -> Any:
        return pred._transforms.postprocess_masks(low, (SIZE, SIZE))

    return _time_stages(encoder, decoder, upsample, amg, 0.0, repeats)


def run(
    size: str = "full", results: str | None = None, repeats: int = 3, points_per_side: int = 8
) -> dict[str, Any]:
    """Measure both families in every usable precision; write ``sam_mask_stage[_smoke].json``.

    ``size="smoke"``: one repeat of 2 x 2 prompts in float32 only (the same models: ~1 min).
    """
    import sam2  # noqa: F401  (initialises Hydra's config search path before build_sam2)
    import torch

    harness.ensure_allocator_env()
    header = harness.start("sam_mask_stage", size)
    precisions = ["fp32"] + ([] if harness.emulated_bf16(torch.device("cpu")) else ["bf16"])
    if size == "smoke":
        repeats, points_per_side, precisions = 1, 2, ["fp32"]
    image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    rows: list[dict[str, Any]] = []
    for precision in precisions:
        for name, fn in (("sam1_vit_b", sam1_stages), ("sam2.1_hiera_small", sam2_stages)):
            stages = fn(image, points_per_side, precision, repeats)
            med = {k: v["median_s"] for k, v in stages.items()}
            rows.append(
                {
                    "setup": name,
                    "precision": precision,
                    **{f"{k}_s": v for k, v in med.items()},
                    "tile_s": sum(med.values()),
                    "decoder_share": med["decoder"] / sum(med.values()),
                    "stages": stages,
                }
            )
    for precision in precisions:
        vit, hiera = (
            next(r for r in rows if r["setup"] == s and r["precision"] == precision)
            for s in ("sam1_vit_b", "sam2.1_hiera_small")
        )
        hiera["encoder_speedup_vs_vit_b"] = vit["encoder_s"] / hiera["encoder_s"]
        hiera["tile_speedup_vs_vit_b"] = vit["tile_s"] / hiera["tile_s"]
        # what the tile ratio would be with a free mask decoder: the bound a cheaper decoder could reach
        hiera["tile_speedup_without_decoder"] = (vit["tile_s"] - vit["decoder_s"]) / (
            hiera["tile_s"] - hiera["decoder_s"]
        )
    harness.table(
        rows,
        [
            "setup",
            "precision",
            "encoder_s",
            "decoder_s",
            "upsample_s",
            "filters_s",
            "tile_s",
            "decoder_share",
            "tile_speedup_vs_vit_b",
            "tile_speedup_without_decoder",
        ],
        title=f"one {SIZE} px tile, {points_per_side**2} prompts x 3 masks (median of {repeats})",
    )
    out = {**header, "tile_px": SIZE, "prompts": points_per_side**2, "repeats": repeats, "rows": rows}
    harness.finish(out)
    harness.write_result("sam_mask_stage", out, results)  # adds _smoke for smoke runs itself
    return out


def main(argv: list[str] | None = None) -> int:
    ap = harness.base_parser(__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--points-per-side", type=int, default=8)
    a = ap.parse_args(argv)
    run(a.size, a.results, a.repeats, a.points_per_side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
