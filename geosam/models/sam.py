"""Build and load SAM models with segment-anything's own classes, safely and at any input size.

Checkpoints are Meta's format: a flat ``state_dict`` whose keys start with ``image_encoder.``,
``prompt_encoder.`` and ``mask_decoder.``. They are read with ``torch.load(weights_only=True)`` (no
pickled code runs) and ``map_location`` (GPU-saved weights load on CPU workers). The architecture is
inferred from tensor shapes, so ``sam_vit_b/l/h`` and geosam's small configurations load the same way.

Building for another ``img_size`` interpolates the absolute position embedding (bicubic) and the
relative-position tables of the global-attention blocks (linear, exactly as segment-anything's own
``get_rel_pos`` would at run time), so e.g. 64 x 64 EuroSAT chips can run at 224 instead of 1024.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from geosam.errors import CheckpointError, WeightsNotFoundError
from geosam.models.sam_config import OFFICIAL_CHECKPOINTS, SamConfig

if TYPE_CHECKING:
    from segment_anything import SamPredictor
    from segment_anything.modeling import ImageEncoderViT, Sam

__all__ = [
    "build_encoder",
    "build_sam",
    "infer_config",
    "load_sam",
    "load_state_dict",
    "predictor_embedding",
    "resize_encoder_state",
    "save_sam",
]

# SAM's pixel statistics on the 0..255 scale (segment_anything.build_sam).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def build_encoder(cfg: SamConfig) -> ImageEncoderViT:
    """Build a randomly initialised ``ImageEncoderViT`` exactly as ``build_sam`` does for ``cfg``.

    Global attention runs in blocks of query rows (:mod:`geosam.models.attention`): same result and
    state dict, about 2 GiB less peak memory per ViT-B pass at 1024 px.
    """
    from segment_anything.modeling import ImageEncoderViT

    from geosam.models.attention import chunk_global_attention

    encoder = ImageEncoderViT(
        depth=cfg.depth,
        embed_dim=cfg.embed_dim,
        img_size=cfg.img_size,
        mlp_ratio=cfg.mlp_ratio,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_heads=cfg.num_heads,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=cfg.global_attn_indexes,
        window_size=cfg.window_size,
        out_chans=cfg.out_chans,
    )
    chunk_global_attention(encoder)
    return encoder


def build_sam(cfg: SamConfig) -> Sam:
    """Build a full SAM (encoder, prompt encoder, mask decoder) for ``cfg`` in eval mode."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = cfg.grid_size
    sam = Sam(
        image_encoder=build_encoder(cfg),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.out_chans,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.img_size, cfg.img_size),
            mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=cfg.out_chans,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_heads,
            ),
            transformer_dim=cfg.out_chans,
            iou_head_depth=3,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )
    return sam.eval()


def load_state_dict(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read a checkpoint as a flat ``{name: tensor}`` dict without executing pickled code.

    Accepts ``.pth``/``.pt`` files written by ``torch.save`` (Meta's format) and ``.safetensors``.

    Raises:
        WeightsNotFoundError: The file does not exist (the message says where Meta's checkpoints are).
        CheckpointError: The file is not a checkpoint, is corrupt, or contains pickled objects other
            than tensors (``weights_only=True`` refuses them).
    """
    p = Path(path)
    if not p.is_file():
        hint = (
            "; download one of Meta's checkpoints ("
            + ", ".join(f"{k}: {v}" for k, v in OFFICIAL_CHECKPOINTS.items())
            + "; SAM 2.1: https://github.com/facebookresearch/sam2#download-checkpoints"
            + ") and pass its path; geosam never downloads weights"
        )
        raise WeightsNotFoundError("SAM checkpoint not found" + hint, p)
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p), device=str(map_location)))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"not a valid safetensors file ({err})", p) from None
    try:
        with warnings.catch_warnings():
            # torch warns (on stderr) about pickle protocols its weights-only unpickler was not built
            # for; the load is refused or succeeds all the same, and the CLI keeps errors to one line.
            warnings.simplefilter("ignore", UserWarning)
            obj = _torch_load(p, map_location)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(str(err)), p) from None
    except Exception as err:  # on bytes that are no pickle torch.load raises IndexError, struct.error...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if isinstance(err, EOFError) or not isinstance(err, (RuntimeError, zipfile.BadZipFile, OSError)):
            first = "the file is empty or ends early" if isinstance(err, EOFError) else "not a PyTorch pickle"
        raise CheckpointError(f"not a readable PyTorch checkpoint ({first[:200]})", p) from None
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]  # training checkpoints that wrap the state dict
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("not a state_dict (expected a mapping of parameter names to tensors)", p)
    return {str(k): v for k, v in obj.items()}


def _torch_load(path: Path, map_location: str | torch.device) -> object:
    """``torch.load(weights_only=True)``, memory-mapped unless the file is in the legacy (pre-zip) format.

    Mapped tensors are copied into the model from the page cache: no second copy of the weights on
    the heap, where the CLI's allocator settings would keep it resident (375 MB for ViT-B).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location=map_location, weights_only=True)


_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error:\s*(.+)")


def _refusal(torch_message: str) -> str:
    """Why the weights-only unpickler refused a file, without torch's advice to load it unsafely."""
    unsafe = _UNSAFE_GLOBAL.search(torch_message)
    if unsafe:
        return (
            f"refusing to load: the checkpoint holds a pickled reference to {unsafe.group(1)!r}, which "
            "would run code when unpickled; geosam loads weights only (a state_dict of tensors)"
        )
    detail = _UNPICKLER_ERROR.search(torch_message)
    why = detail.group(1).strip()[:120] if detail else "unpickling refused"
    return (
        f"not a checkpoint geosam can load safely ({why}): it is corrupt, not a PyTorch file, or holds "
        "pickled objects other than tensors; geosam loads weights only (a state_dict of tensors)"
    )


_BLOCK = re.compile(r"^image_encoder\.blocks\.(\d+)\.")


def infer_config(
    state: Mapping[str, torch.Tensor], *, name: str = "custom", source: str | None = None
) -> SamConfig:
    """Infer the :class:`SamConfig` of a SAM state dict from its tensor shapes.

    Works for Meta's ViT-B/L/H and for any configuration built by :func:`build_sam`. Encoder-only
    state dicts (keys ``image_encoder.*``) are accepted; decoder fields then keep their defaults
    scaled to ``out_chans``.

    Raises:
        CheckpointError: The keys or shapes are not those of a SAM image encoder.
    """
    try:
        proj = state["image_encoder.patch_embed.proj.weight"]  # (D, C, p, p)
        pos = state["image_encoder.pos_embed"]  # (1, G, G, D)
        neck0 = state["image_encoder.neck.0.weight"]  # (out, D, 1, 1)
    except KeyError as err:
        raise CheckpointError(f"not a SAM checkpoint: missing {err.args[0]!r}", source) from None
    embed_dim, in_chans, patch, _ = proj.shape
    grid = pos.shape[1]
    depth = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK.match(k))), default=-1)
    if depth == 0:
        raise CheckpointError("not a SAM checkpoint: the image encoder has no blocks", source)
    head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
    tables = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(depth)]
    global_len = 2 * grid - 1
    global_idx = tuple(i for i, n in enumerate(tables) if n == global_len)
    window_lens = {n for n in tables if n != global_len}
    if len(window_lens) > 1:
        raise CheckpointError(f"inconsistent relative-position table sizes {sorted(set(tables))}", source)
    window = (window_lens.pop() + 1) // 2 if window_lens else 0
    out_chans = neck0.shape[0]
    kw: dict[str, object] = {
        "name": name,
        "img_size": grid * patch,
        "patch_size": patch,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": embed_dim // head_dim,
        "global_attn_indexes": global_idx,
        "window_size": window,
        "out_chans": out_chans,
        "mlp_ratio": state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
    }
    if "mask_decoder.transformer.layers.0.mlp.lin1.weight" in state:
        kw["decoder_mlp_dim"] = state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]
        kw["decoder_depth"] = 1 + max(
            int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers.")
        )
        kw["iou_head_hidden_dim"] = state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]
        kw["mask_in_chans"] = state["prompt_encoder.mask_downscaling.0.weight"].shape[0] * 4
        # heads cannot be read from shapes; SAM uses 8 at width 256; keep head_dim 32 otherwise.
        kw["decoder_heads"] = 8 if out_chans == 256 else max(1, out_chans // 16)
    else:
        kw.update(
            decoder_mlp_dim=out_chans * 8,
            decoder_heads=max(1, min(8, out_chans // 16)),
            iou_head_hidden_dim=out_chans,
            mask_in_chans=max(4, out_chans // 16),
        )
    try:
        return SamConfig(**kw)  # type: ignore[arg-type]
    except Exception as err:  # ConfigError from validation
        raise CheckpointError(f"unsupported SAM architecture ({err})", source) from None


def _resize_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubic resize of a ``(1, G, G, D)`` absolute position embedding to ``(1, grid, grid, D)``."""
    if pos.shape[1] == grid and pos.shape[2] == grid:
        return pos
    x = pos.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(grid, grid), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).to(pos.dtype).contiguous()


def _resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resize of a ``(L, head_dim)`` relative-position table, as SAM's ``get_rel_pos`` does."""
    if table.shape[0] == length:
        return table
    x = F.interpolate(
        table.float().reshape(1, table.shape[0], -1).permute(0, 2, 1), size=length, mode="linear"
    )
    return x.reshape(-1, length).permute(1, 0).to(table.dtype).contiguous()


def resize_encoder_state(
    state: Mapping[str, torch.Tensor], cfg: SamConfig, prefix: str = "image_encoder."
) -> dict[str, torch.Tensor]:
    """Adapt encoder weights saved at one input size to ``cfg.img_size``.

    Only the absolute position embedding and the global blocks' relative-position tables depend on the
    input size; windowed blocks' tables depend on the window only and are kept.
    """
    out = dict(state)
    key = prefix + "pos_embed"
    if key in out:
        out[key] = _resize_pos_embed(out[key], cfg.grid_size)
    for i in cfg.global_attn_indexes:
        for axis in ("h", "w"):
            k = f"{prefix}blocks.{i}.attn.rel_pos_{axis}"
            if k in out:
                out[k] = _resize_rel_pos(out[k], 2 * cfg.grid_size - 1)
    return out


def load_sam(
    path: str | os.PathLike[str],
    *,
    img_size: int | None = None,
    map_location: str | torch.device = "cpu",
    encoder_only: bool = False,
) -> tuple[nn.Module, SamConfig]:
    """Load a SAM checkpoint (Meta's ``sam_vit_*.pth`` or geosam's small ones) safely.

    Args:
        path: Checkpoint file (state dict, ``.pth`` or ``.safetensors``).
        img_size: Build for this input size instead of the checkpoint's (interpolates position tables).
        map_location: Device to load tensors on.
        encoder_only: Return only the ``ImageEncoderViT`` (decoder weights are not required).

    Returns:
        ``(model, config)``: a :class:`segment_anything.modeling.Sam` in eval mode (or its image encoder).

    Raises:
        WeightsNotFoundError, CheckpointError: See :func:`load_state_dict`; also for shape mismatches.
    """
    state = load_state_dict(path, map_location=map_location)
    cfg = infer_config(state, name=Path(path).stem, source=str(path))
    if img_size is not None:
        cfg = cfg.with_img_size(img_size)
    state = resize_encoder_state(state, cfg)
    has_decoder = any(k.startswith("mask_decoder.") for k in state)
    if encoder_only or not has_decoder:
        if not encoder_only:
            raise CheckpointError(
                "the checkpoint has no mask decoder (encoder-only); it cannot make SAM masks", path
            )
        model: nn.Module = build_encoder(cfg)
        sub = {k[len("image_encoder.") :]: v for k, v in state.items() if k.startswith("image_encoder.")}
    else:
        model = build_sam(cfg)
        sub = state
    try:
        model.load_state_dict(sub, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"weights do not fit the inferred architecture ({str(err)[:300]})", path
        ) from None
    return model.to(map_location).eval(), cfg


def save_sam(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Save a SAM (or bare image encoder) as an official-format state dict (``torch.save``), atomically.

    A bare encoder is saved with the ``image_encoder.`` prefix so :func:`load_sam` reads it back.
    """
    from segment_anything.modeling import ImageEncoderViT

    state = model.state_dict()
    if isinstance(model, ImageEncoderViT):
        state = {f"image_encoder.{k}": v for k, v in state.items()}
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def predictor_embedding(
    predictor: SamPredictor, embedding: torch.Tensor, image_size: tuple[int, int]
) -> Iterator[SamPredictor]:
    """A ``SamPredictor`` holding a precomputed image embedding, as ``set_image`` would leave it.

    segment-anything's predictor keeps the image state in attributes (``features``, ``original_size``,
    ``input_size``, ``is_image_set``) that ``set_image`` fills by running the image encoder. geosam
    encodes each tile once for both classes and masks, so the state is written here from the shared
    embedding, in this one place (mirroring ``SamPredictor.set_torch_image``), and cleared on exit.

    Args:
        predictor: The predictor of a ``SamAutomaticMaskGenerator``.
        embedding: ``(1, C, h, w)`` image embedding of the tile (any float dtype; used as float32).
        image_size: ``(H, W)`` of the tile in pixels; its longest side is the encoder input size.
    """
    h, w = image_size
    predictor.reset_image()
    predictor.original_size = (h, w)
    predictor.input_size = tuple(
        predictor.transform.get_preprocess_shape(h, w, predictor.transform.target_length)
    )
    predictor.features = embedding.to(predictor.device, torch.float32)
    predictor.is_image_set = True
    try:
        yield predictor
    finally:
        predictor.reset_image()
