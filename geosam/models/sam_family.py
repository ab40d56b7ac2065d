"""Which Segment Anything a checkpoint holds: SAM 1 (ViT) or SAM 2.0/2.1 (Hiera), told from keys and shapes.

One ``--sam-checkpoint`` option accepts Meta's ``sam_vit_{b,l,h}_*.pth`` and ``sam2[.1]_hiera_*.pt``;
:func:`identify_sam_checkpoint` reads only the tensor names and shapes (a lazy, memory-mapped,
weights-only load) and returns a :class:`SamModelId`. The rules (measured on the packaged ``sam2``
configurations, see ``docs/sam_models.md``):

* SAM 1: ``image_encoder.patch_embed.proj.weight`` and ``image_encoder.pos_embed`` (segment-anything's
  ``ImageEncoderViT``); the variant follows from width and depth (768/12 ViT-B, 1024/24 ViT-L,
  1280/32 ViT-H; others are geosam's small configurations).
* SAM 2: ``image_encoder.trunk.patch_embed.proj.weight`` (Hiera). Its output channels and the number
  of ``image_encoder.trunk.blocks.N`` give the size: 96 and 12 blocks tiny, 96 and 16 small, 112 and
  24 base_plus, 144 and 48 large. SAM 2.1 checkpoints hold ``no_obj_embed_spatial`` and
  ``obj_ptr_tpos_proj.*``, SAM 2.0 checkpoints do not.
* SAM 3 checkpoints (``detector.*`` keys) are recognised to say which option takes them.

No ``sam2`` or ``segment_anything`` import happens here.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from geosam.errors import CheckpointError, ConfigError

__all__ = [
    "SAM2_VARIANTS",
    "Sam2Variant",
    "SamModelId",
    "identify_sam_checkpoint",
    "identify_sam_state",
    "resolve_sam2_variant",
]

Family = Literal["sam", "sam2", "sam2.1"]


@dataclass(frozen=True)
class Sam2Variant:
    """One packaged SAM 2 configuration of the ``sam2`` package.

    Attributes:
        name: Meta's checkpoint stem, e.g. ``sam2.1_hiera_tiny``.
        family: ``sam2.1`` or ``sam2`` (SAM 2.0).
        size: ``tiny``, ``small``, ``base_plus`` or ``large``.
        config: Hydra config name inside the ``sam2`` package (``configs/sam2.1/sam2.1_hiera_t.yaml``).
        embed_dim: Channels of Hiera's patch embedding (stage 1).
        depth: Hiera blocks over all four stages.
        stages: Blocks per stage.
    """

    name: str
    family: Literal["sam2", "sam2.1"]
    size: str
    config: str
    embed_dim: int
    depth: int
    stages: tuple[int, int, int, int]

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four trunk stages (strides 4, 8, 16, 32)."""
        d = self.embed_dim
        return (d, 2 * d, 4 * d, 8 * d)

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``SAM 2.1 Hiera-T``."""
        short = {"tiny": "T", "small": "S", "base_plus": "B+", "large": "L"}[self.size]
        return f"SAM {self.family[3:]} Hiera-{short}"


_SIZES: dict[str, tuple[str, int, tuple[int, int, int, int]]] = {
    # size: (config suffix, patch-embedding width, blocks per stage) -- from sam2's packaged YAMLs
    "tiny": ("t", 96, (1, 2, 7, 2)),
    "small": ("s", 96, (1, 2, 11, 2)),
    "base_plus": ("b+", 112, (2, 3, 16, 3)),
    "large": ("l", 144, (2, 6, 36, 4)),
}

#: Every SAM 2.x configuration the ``sam2`` package ships, by Meta's checkpoint stem.
SAM2_VARIANTS: dict[str, Sam2Variant] = {
    f"{fam}_hiera_{size}": Sam2Variant(
        name=f"{fam}_hiera_{size}",
        family=fam,  # type: ignore[arg-type]
        size=size,
        config=f"configs/{fam}/{fam}_hiera_{suffix}.yaml",
        embed_dim=dim,
        depth=sum(stages),
        stages=stages,
    )
    for fam in ("sam2.1", "sam2")
    for size, (suffix, dim, stages) in _SIZES.items()
}

_ALIASES = {
    "t": "tiny",
    "s": "small",
    "b+": "base_plus",
    "bplus": "base_plus",
    "b_plus": "base_plus",
    "l": "large",
}


def resolve_sam2_variant(name: str) -> Sam2Variant:
    """The :class:`Sam2Variant` for a name: ``sam2.1_hiera_tiny``, ``sam2.1_hiera_t``, ``sam2_hiera_b+``...

    Raises:
        ConfigError: Not a SAM 2.x configuration the ``sam2`` package ships.
    """
    key = name.strip().lower().replace("-", "_")
    m = re.fullmatch(r"(sam2(?:\.1)?)_hiera_(\w+?\+?)", key)
    if m:
        size = _ALIASES.get(m.group(2), m.group(2))
        key = f"{m.group(1)}_hiera_{size}"
    if key not in SAM2_VARIANTS:
        raise ConfigError(
            f"unknown SAM 2 model {name!r}; choose one of {', '.join(SAM2_VARIANTS)} (or 'auto' to recognise "
            "it from the checkpoint)"
        )
    return SAM2_VARIANTS[key]


@dataclass(frozen=True)
class SamModelId:
    """What a SAM checkpoint is.

    Attributes:
        family: ``sam`` (SAM 1, segment-anything), ``sam2`` (SAM 2.0) or ``sam2.1``.
        name: ``vit_b``/``vit_l``/``vit_h``/``custom`` for SAM 1; the :class:`Sam2Variant` name otherwise.
        variant: The SAM 2 configuration (``None`` for SAM 1).
        has_decoder: Whether the checkpoint holds a prompt encoder and mask decoder (SAM masks possible).
    """

    family: Family
    name: str
    variant: Sam2Variant | None = None
    has_decoder: bool = True

    @property
    def label(self) -> str:
        """Human-readable name for log lines, e.g. ``SAM 1 ViT-B`` or ``SAM 2.1 Hiera-T``."""
        if self.variant is not None:
            return self.variant.label
        return "SAM 1 " + {"vit_b": "ViT-B", "vit_l": "ViT-L", "vit_h": "ViT-H"}.get(
            self.name, "ViT (custom)"
        )

    @property
    def region_source(self) -> str:
        """The ``region_source`` value written into every output: ``sam``, ``sam2`` or ``sam2.1``."""
        return self.family


_TRUNK_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")
_VIT_BLOCK = re.compile(r"^image_encoder\.blocks\.(\d+)\.")
_SAM1_NAMES = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}


def sam1_name(width: int, depth: int) -> str:
    """Meta's name of a SAM 1 ViT of this width and depth (``vit_b``/``vit_l``/``vit_h``), else ``custom``."""
    return _SAM1_NAMES.get((width, depth), "custom")


def identify_sam_state(
    shapes: Mapping[str, tuple[int, ...]], *, source: str | os.PathLike[str] | None = None
) -> SamModelId:
    """Identify a SAM checkpoint from its tensor names and shapes.

    Args:
        shapes: ``{name: shape}`` of the checkpoint's tensors (the ``"model"`` wrapper removed).
        source: Path named in error messages.

    Raises:
        CheckpointError: Not a SAM 1 or SAM 2.x checkpoint (the message says which option takes a SAM 3
            checkpoint), or a Hiera size that ``sam2`` has no configuration for.
    """
    src = None if source is None else os.fspath(source)
    if "image_encoder.trunk.patch_embed.proj.weight" in shapes:
        width = int(shapes["image_encoder.trunk.patch_embed.proj.weight"][0])
        depth = 1 + max((int(m.group(1)) for k in shapes if (m := _TRUNK_BLOCK.match(k))), default=-1)
        family: Literal["sam2", "sam2.1"] = (
            "sam2.1" if "no_obj_embed_spatial" in shapes or "obj_ptr_tpos_proj.weight" in shapes else "sam2"
        )
        for v in SAM2_VARIANTS.values():
            if v.family == family and v.embed_dim == width and v.depth == depth:
                has_dec = any(k.startswith("sam_mask_decoder.") for k in shapes)
                return SamModelId(v.family, v.name, v, has_dec)
        raise CheckpointError(
            "a SAM 2 Hiera checkpoint of a size the sam2 package has no configuration for (patch embedding "
            f"width {width}, {depth} blocks); use one of Meta's "
            "sam2.1_hiera_{tiny,small,base_plus,large}.pt",
            src,
        )
    if "image_encoder.patch_embed.proj.weight" in shapes and "image_encoder.pos_embed" in shapes:
        width = int(shapes["image_encoder.patch_embed.proj.weight"][0])
        depth = 1 + max((int(m.group(1)) for k in shapes if (m := _VIT_BLOCK.match(k))), default=-1)
        has_dec = any(k.startswith("mask_decoder.") for k in shapes)
        return SamModelId("sam", sam1_name(width, depth), None, has_dec)
    if any(k.startswith(("detector.", "tracker.")) for k in shapes):
        raise CheckpointError(
            "this is a SAM 3 checkpoint: pass it with --sam3-checkpoint (concept prompts), not "
            "--sam-checkpoint, which takes SAM 1 (sam_vit_*.pth) or SAM 2.x (sam2.1_hiera_*.pt)",
            src,
        )
    raise CheckpointError(
        "not a SAM 1 or SAM 2.x checkpoint (no image_encoder.patch_embed or image_encoder.trunk weights); "
        "pass one of Meta's sam_vit_{b,l,h}_*.pth or sam2.1_hiera_{tiny,small,base_plus,large}.pt",
        src,
    )


def identify_sam_checkpoint(path: str | os.PathLike[str], *, named: str | None = None) -> SamModelId:
    """Identify the SAM checkpoint at ``path`` (only names and shapes are read).

    Args:
        path: ``.pth``/``.pt`` (``torch.save``, optionally ``{"model": state_dict}``) or ``.safetensors``.
        named: A SAM 2 configuration the user named (``sam2.1_hiera_small``...); ``None`` or ``auto``
            recognises it from the keys. A named configuration must agree with the weights' sizes.

    Raises:
        WeightsNotFoundError: The file does not exist.
        CheckpointError: Unreadable, not weights-only, not SAM 1/2.x, or not the named configuration.
        ConfigError: ``named`` is not a known SAM 2 configuration.
    """
    from geosam.models.sam import load_state_dict

    p = Path(path)
    shapes = _peek_shapes(p)
    if shapes is None:  # not a zip checkpoint (or unreadable): the full loader gives the precise error
        shapes = {k: tuple(v.shape) for k, v in load_state_dict(p).items()}
    found = identify_sam_state(shapes, source=p)
    if named and named != "auto":
        want = resolve_sam2_variant(named)
        if found.variant is None or (want.embed_dim, want.depth) != (
            found.variant.embed_dim,
            found.variant.depth,
        ):
            raise CheckpointError(
                f"the checkpoint is {found.label}, not the named {want.label} ({want.name}); "
                "drop --sam-model to recognise it automatically",
                p,
            )
        found = SamModelId(want.family, want.name, want, found.has_decoder)
    return found


def _peek_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Tensor shapes of a checkpoint without reading its data (memory-mapped, weights-only)."""
    import torch

    if not path.is_file():
        return None
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        except Exception:  # corrupt file: the full loader reports it
            return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            obj: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        # not a checkpoint: the full loader (geosam.models.sam.load_state_dict) reports it in one line
        return None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    return {str(k): tuple(v.shape) for k, v in obj.items()}
