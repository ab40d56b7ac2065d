"""Architecture description of a SAM model (image encoder, prompt encoder, mask decoder).

A :class:`SamConfig` names every hyper-parameter that segment-anything's ``build_sam`` hard-codes, so
that small, architecture-identical configurations (for tests and CPU training) and Meta's official
ViT-B/L/H use the same builder. It is a plain frozen dataclass: no torch import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from geosam.errors import ConfigError

__all__ = ["OFFICIAL_CHECKPOINTS", "SamConfig"]

#: Meta's published checkpoints (geosam never downloads them; the error for a missing file cites these).
OFFICIAL_CHECKPOINTS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}


@dataclass(frozen=True)
class SamConfig:
    """Hyper-parameters of a SAM model, as used by ``segment_anything.build_sam._build_sam``.

    Attributes:
        name: Preset name (``vit_b``, ``vit_l``, ``vit_h``, ``tiny``...) or ``custom``.
        img_size: Square input size in pixels the encoder is built for (SAM: 1024).
        patch_size: ViT patch size in pixels (SAM: 16); the embedding grid is ``img_size // patch_size``.
        in_chans: Input bands of the patch embedding (3 for SAM; more after the band adapter).
        embed_dim: ViT width.
        depth: Number of transformer blocks.
        num_heads: Attention heads per block.
        global_attn_indexes: Blocks with global attention; the others use windowed attention.
        window_size: Window of the windowed-attention blocks, in patches (0 = all global).
        out_chans: Channels of the neck output, i.e. of the image embedding (SAM: 256); it is also the
            prompt/mask decoder width.
        mlp_ratio: MLP hidden width / embed_dim.
        decoder_depth: Two-way transformer depth of the mask decoder.
        decoder_mlp_dim: MLP width of the mask decoder transformer.
        decoder_heads: Attention heads of the mask decoder transformer.
        iou_head_hidden_dim: Hidden width of the IoU prediction head.
        mask_in_chans: Channels of the prompt encoder's mask downscaling.
    """

    name: str = "vit_b"
    img_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    out_chans: int = 256
    mlp_ratio: float = 4.0
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "global_attn_indexes", tuple(int(i) for i in self.global_attn_indexes))
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if any(not 0 <= i < self.depth for i in self.global_attn_indexes):
            raise ConfigError(f"global_attn_indexes {self.global_attn_indexes} outside 0..{self.depth - 1}")
        if self.out_chans % 8:
            raise ConfigError(f"out_chans {self.out_chans} must be a multiple of 8 (mask decoder upscaling)")

    @property
    def grid_size(self) -> int:
        """Side of the image-embedding grid in patches (64 for SAM at 1024)."""
        return self.img_size // self.patch_size

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SamConfig:
        """Return a named configuration: ``vit_b``, ``vit_l``, ``vit_h`` (Meta's), ``tiny`` or ``small``.

        ``tiny`` (a few hundred thousand parameters) is for unit tests; ``small`` is the CPU-trainable
        encoder of geosam's default model. Both use the same classes as Meta's models.
        """
        presets: dict[str, dict[str, Any]] = {
            "vit_b": {},
            "vit_l": {
                "embed_dim": 1024,
                "depth": 24,
                "num_heads": 16,
                "global_attn_indexes": (5, 11, 17, 23),
            },
            "vit_h": {
                "embed_dim": 1280,
                "depth": 32,
                "num_heads": 16,
                "global_attn_indexes": (7, 15, 23, 31),
            },
            "tiny": {
                "img_size": 128,
                "embed_dim": 64,
                "depth": 2,
                "num_heads": 2,
                "global_attn_indexes": (1,),
                "window_size": 4,
                "out_chans": 32,
                "decoder_mlp_dim": 64,
                "decoder_heads": 2,
                "iou_head_hidden_dim": 32,
                "mask_in_chans": 4,
            },
            "small": {
                "img_size": 64,
                "patch_size": 8,
                "embed_dim": 192,
                "depth": 6,
                "num_heads": 6,
                "global_attn_indexes": (0, 1, 2, 3, 4, 5),
                "window_size": 0,
                "out_chans": 256,
            },
        }
        if name not in presets:
            raise ConfigError(f"unknown SAM configuration {name!r}; choose one of {', '.join(presets)}")
        return replace(cls(name=name, **presets[name]), **overrides)

    def with_img_size(self, img_size: int) -> SamConfig:
        """Same architecture built for another input size (position embeddings are interpolated)."""
        return replace(self, img_size=int(img_size))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["global_attn_indexes"] = list(self.global_attn_indexes)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown SAM configuration keys: {', '.join(sorted(unknown))}")
        return cls(**data)
