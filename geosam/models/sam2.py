"""SAM 2.0/2.1 (Hiera) through Meta's ``sam2`` package: build, load safely, encode once, share the features.

This is the only geosam module that imports ``sam2`` (lazily, inside functions). ``import sam2`` calls
``hydra.initialize_config_module("sam2")``, which sets Hydra's process-wide state; :func:`_sam2` imports
it with that state saved and restored, and every build composes its packaged YAML inside a scoped
``initialize_config_module`` (so geosam leaves a user's own Hydra set-up as it found it).

Models are built with ``sam2.build_sam.build_sam2`` from the package's own configs
(``configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml``, ``configs/sam2/...``) at any input size that is a
multiple of 32 (``++model.image_size=<tile>``: Hiera interpolates its position embedding, the prompt
encoder is built for that size), then Meta's checkpoint (``{"model": state_dict}``) is read with
``torch.load(weights_only=True)`` and loaded with ``strict=True`` (what ``build_sam2(ckpt_path=...)``
does, with geosam's one-line errors).

One encoder pass per tile feeds three consumers (:class:`Sam2Features`):

* SAM 2's mask decoder: :func:`decoder_inputs` gives the ``image_embed`` and ``high_res_feats`` that
  ``SAM2ImagePredictor.set_image`` would compute (identical tensors, tested);
* the classifier: :class:`Sam2Encoder` returns the pooled level(s) (``level``, see :data:`LEVELS`);
* a dense head: :func:`multiscale_features` (Hiera's four stages, strides 4 to 32).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geosam.errors import CheckpointError, ConfigError
from geosam.models.sam_family import Sam2Variant

__all__ = [
    "DEFAULT_LEVEL",
    "LEVELS",
    "SAM2_PIXEL_MEAN",
    "SAM2_PIXEL_STD",
    "Sam2Encoder",
    "Sam2Features",
    "build_image_encoder",
    "build_sam2_model",
    "check_input_size",
    "decoder_inputs",
    "fix_feature_sizes",
    "image_predictor",
    "level_channels",
    "load_sam2",
    "multiscale_features",
    "packaged_config",
    "sam2_amg",
    "sam2_version",
    "save_sam2_checkpoint",
]

log = logging.getLogger(__name__)

#: SAM 2's input normalisation (``sam2.utils.transforms.SAM2Transforms``: ImageNet statistics on 0..1;
#: the same values as SAM 1's pixel mean/std on 0..255 divided by 255).
SAM2_PIXEL_MEAN = (0.485, 0.456, 0.406)
SAM2_PIXEL_STD = (0.229, 0.224, 0.225)

#: Feature maps a classifier can pool, by name: ``fpn<s>`` are the FPN neck's 256-channel outputs at
#: stride ``s`` (``fpn16`` is SAM 2's ``vision_features``, the mask decoder's image embedding without
#: ``no_mem_embed``); ``trunk<s>`` are Hiera's stage outputs (stage channels). Several joined with
#: ``+`` are concatenated on the grid of the first.
LEVELS = ("fpn4", "fpn8", "fpn16", "trunk4", "trunk8", "trunk16", "trunk32")
#: The level the classifier pools unless a bundle says otherwise (see docs/sam_models.md, "which level").
DEFAULT_LEVEL = "fpn16"

_HYDRA_LOCK = threading.RLock()
_SAM2: Any = None


def _sam2() -> Any:
    """Import ``sam2`` once, leaving Hydra's global state as it was before the import."""
    global _SAM2
    if _SAM2 is not None:
        return _SAM2
    with _HYDRA_LOCK:
        if _SAM2 is None:
            from hydra.initialize import get_gh_backup, restore_gh_from_backup

            backup = get_gh_backup()
            try:
                import sam2
                import sam2.build_sam
            except ImportError as err:  # pragma: no cover - sam2 is a declared dependency
                raise CheckpointError(
                    f"SAM 2 checkpoints need the sam2 package ({err}); install it with "
                    '`pip install "geosam[sam2]"` (SAM2_BUILD_CUDA=0 for a pure-Python wheel)'
                ) from None
            finally:
                restore_gh_from_backup(backup)
            _SAM2 = sam2
    return _SAM2


def sam2_version() -> str:
    """Installed ``sam2`` package version (``unknown`` without metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sam2")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def sam2_amg() -> Any:
    """The ``sam2.utils.amg`` module (automatic-mask-generation helpers), imported Hydra-safely."""
    _sam2()
    import sam2.utils.amg as amg

    return amg


@contextlib.contextmanager
def _scoped_hydra() -> Iterator[None]:
    """Hydra initialised for sam2's packaged configs for the duration of a build, then restored."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    with _HYDRA_LOCK:
        backup = get_gh_backup()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_module("sam2", version_base="1.2"):
                yield
        finally:
            restore_gh_from_backup(backup)


def check_input_size(image_size: int) -> None:
    """Refuse SAM 2 input sizes Hiera cannot run at.

    Raises:
        ConfigError: Not a multiple of 32, or below 64 (one stride-32 cell needs 8 x 8 stride-4 windows).
    """
    if image_size < 64 or image_size % 32:
        raise ConfigError(
            f"SAM 2 tiles must be a multiple of 32 pixels and at least 64 (Hiera's stride-32 stage and "
            f"8 x 8 position windows), not {image_size}; for example --tile-size "
            f"{max(64, round(image_size / 32) * 32)}"
        )


def build_sam2_model(
    variant: Sam2Variant, image_size: int = 1024, *, device: str | torch.device = "cpu"
) -> Any:
    """A randomly initialised ``SAM2Base`` of ``variant`` for ``image_size`` px inputs, in eval mode.

    Built by ``sam2.build_sam.build_sam2(config, ckpt_path=None, device=...)`` with
    ``++model.image_size=<image_size>``.

    Raises:
        ConfigError: ``image_size`` is not a multiple of 32 (or below 64).
    """
    check_input_size(image_size)
    _sam2()
    from sam2.build_sam import build_sam2

    with _scoped_hydra():
        model = build_sam2(
            variant.config,
            ckpt_path=None,
            device=str(device),
            hydra_overrides_extra=[f"++model.image_size={int(image_size)}"],
        )
    return model


def packaged_config(variant: Sam2Variant) -> dict[str, Any]:
    """``variant``'s packaged Hydra config (``configs/sam2.1/...yaml``), resolved, as a plain dict."""
    _sam2()
    from hydra import compose
    from omegaconf import OmegaConf

    with _scoped_hydra():
        cfg = OmegaConf.to_container(compose(config_name=variant.config), resolve=True)
    return dict(cfg)  # type: ignore[arg-type]


def build_image_encoder(variant: Sam2Variant) -> nn.Module:
    """A randomly initialised SAM 2 image encoder (Hiera trunk + FPN neck) of ``variant`` only.

    Instantiated from the ``model.image_encoder`` node of the packaged config (no prompt encoder, mask
    decoder or memory modules): what a bundle with its own (fine-tuned) Hiera encoder loads into.
    Hiera interpolates its position embedding to the input at run time, so one encoder serves any size.
    """
    _sam2()
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    with _scoped_hydra():
        cfg = compose(config_name=variant.config)
        OmegaConf.resolve(cfg)
        encoder: nn.Module = instantiate(cfg.model.image_encoder, _recursive_=True)
    return encoder.eval()


def load_sam2(
    path: str | os.PathLike[str],
    variant: Sam2Variant,
    image_size: int = 1024,
    *,
    device: str | torch.device = "cpu",
    state: Mapping[str, torch.Tensor] | None = None,
) -> Any:
    """Build ``variant`` for ``image_size`` and load Meta's checkpoint into it (weights-only, strict).

    Args:
        path: ``sam2.1_hiera_*.pt`` (``{"model": state_dict}``) or a flat state dict / safetensors.
        variant: The configuration (from :func:`geosam.models.sam_family.identify_sam_checkpoint`).
        image_size: Input edge in pixels (a multiple of 32).
        device: Where the model goes.
        state: The already loaded state dict (skips reading ``path`` again).

    Raises:
        WeightsNotFoundError, CheckpointError: Missing, unsafe or unreadable file, or weights that do not
            fit the configuration exactly (missing or unexpected tensors, other shapes).
    """
    from geosam.models.sam import load_state_dict

    sd = dict(state) if state is not None else load_state_dict(path)
    model = build_sam2_model(variant, image_size, device="cpu")
    try:
        result = model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise CheckpointError(f"weights do not fit {variant.name} ({first})", path) from None
    del result
    return model.to(device).eval()


def save_sam2_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save a ``SAM2Base`` in Meta's checkpoint format (``{"model": state_dict}``), atomically."""
    p = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        torch.save({"model": state}, tmp)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


@dataclass(frozen=True)
class Sam2Features:
    """One encoder pass of a batch of tiles: every map SAM 2's consumers need.

    Attributes:
        trunk: Hiera's four stage outputs ``(B, C_i, H/s, W/s)`` for strides ``s`` = 4, 8, 16, 32
            (channels ``d, 2d, 4d, 8d``; ``d`` = 96 tiny/small, 112 base_plus, 144 large).
        fpn: The FPN neck's 256-channel outputs at strides 4, 8 and 16 (the stride-32 level is dropped by
            the packaged configs' ``scalp: 1``); ``fpn[-1]`` is SAM 2's ``vision_features``.
    """

    trunk: tuple[torch.Tensor, ...]
    fpn: tuple[torch.Tensor, ...]

    def level(self, name: str) -> torch.Tensor:
        """The map called ``name`` (:data:`LEVELS`)."""
        kind, stride = _parse_level(name)
        maps = self.trunk if kind == "trunk" else self.fpn
        strides = (4, 8, 16, 32)[: len(maps)]
        if stride not in strides:
            raise ConfigError(f"no {kind} level at stride {stride} (have {strides})")
        return maps[strides.index(stride)]


def _parse_level(name: str) -> tuple[str, int]:
    if name not in LEVELS:
        raise ConfigError(f"unknown SAM 2 feature level {name!r}; choose from {', '.join(LEVELS)}")
    kind = "trunk" if name.startswith("trunk") else "fpn"
    return kind, int(name[len(kind) :])


def level_channels(level: str, variant: Sam2Variant) -> int:
    """Channels of the (possibly ``+``-joined) classifier level for ``variant``."""
    total = 0
    for part in level.split("+"):
        kind, stride = _parse_level(part)
        total += 256 if kind == "fpn" else variant.stage_channels[(4, 8, 16, 32).index(stride)]
    return total


class Sam2Encoder(nn.Module):
    """SAM 2's image encoder (Hiera trunk + FPN neck) as the classifier's encoder.

    ``forward`` maps normalised ``(B, N, H, W)`` inputs to the ``(B, C, H/s, W/s)`` map the classifier
    pools (``level``); :meth:`forward_features` returns every map of the same single pass
    (:class:`Sam2Features`), for the mask decoder and a dense head. ``blocks``, ``neck`` and
    ``patch_embed`` expose Hiera's blocks (for ``last_n`` training), the neck and the patch embedding
    (``Conv2d(3, d, 7, stride 4)``, which the band adapter replaces for more than 3 bands).

    Args:
        image_encoder: ``sam2.modeling.backbones.image_encoder.ImageEncoder`` of a ``SAM2Base``.
        variant: Its configuration.
        level: Classifier level (:data:`LEVELS`, optionally ``+``-joined).
    """

    def __init__(self, image_encoder: nn.Module, variant: Sam2Variant, level: str = DEFAULT_LEVEL) -> None:
        super().__init__()
        for part in level.split("+"):
            _parse_level(part)
        self.image_encoder = image_encoder
        self.variant = variant
        self.level = level

    @property
    def blocks(self) -> nn.ModuleList:
        """Hiera's blocks, all stages in order (stage ends at ``trunk.stage_ends``)."""
        return self.image_encoder.trunk.blocks  # type: ignore[union-attr,return-value]

    @property
    def neck(self) -> nn.Module:
        """The FPN neck."""
        return self.image_encoder.neck  # type: ignore[union-attr,return-value]

    @property
    def patch_embed(self) -> nn.Module:
        """Hiera's patch embedding (``.proj`` is the input convolution)."""
        return self.image_encoder.trunk.patch_embed  # type: ignore[union-attr,return-value]

    @property
    def out_chans(self) -> int:
        """Channels of the classifier level."""
        return level_channels(self.level, self.variant)

    @property
    def feature_stride(self) -> int:
        """Input pixels per cell of the classifier map (the stride of the first level, e.g. 16)."""
        return _parse_level(self.level.split("+")[0])[1]

    def forward_features(self, x: torch.Tensor) -> Sam2Features:
        """Run Hiera and the neck once on normalised ``(B, N, H, W)`` inputs (``H, W`` multiples of 32)."""
        enc: Any = self.image_encoder
        trunk = enc.trunk(x)
        fpn, _pos = enc.neck(trunk)
        if enc.scalp > 0:
            fpn = fpn[: -enc.scalp]
        return Sam2Features(tuple(trunk), tuple(fpn))

    def classifier_map(self, feats: Sam2Features) -> torch.Tensor:
        """The map the classifier pools, from a pass's features (levels concatenated on the first's grid)."""
        parts = [feats.level(p) for p in self.level.split("+")]
        if len(parts) == 1:
            return parts[0]
        size = (int(parts[0].shape[-2]), int(parts[0].shape[-1]))
        out = [parts[0]]
        for p in parts[1:]:
            if p.shape[-1] < size[-1]:  # coarser: repeat each cell (area weights stay exact)
                p = F.interpolate(p, size=size, mode="nearest")
            elif p.shape[-1] > size[-1]:
                p = F.adaptive_avg_pool2d(p, size)
            out.append(p)
        return torch.cat(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, out_chans, H/s, W/s)`` classifier features of normalised inputs."""
        return self.classifier_map(self.forward_features(x))


def multiscale_features(encoder: Sam2Encoder, x: torch.Tensor) -> list[torch.Tensor]:
    """Hiera's multi-scale pyramid for a dense (per-pixel) head, from one encoder pass.

    Args:
        encoder: The classifier's :class:`Sam2Encoder` (band-adapted or fine-tuned alike).
        x: ``(B, N, H, W)`` float32 inputs, normalised by the bundle's mean/std, ``H, W`` multiples of 32.

    Returns:
        Four ``(B, C_i, H/s, W/s)`` float maps for strides ``s`` = 4, 8, 16, 32 with ``C_i`` =
        ``d, 2d, 4d, 8d`` (``d`` = 96 for Hiera tiny/small, 112 base_plus, 144 large): the inputs of an
        smp ``UPerNetDecoder``/``FPNDecoder`` (``encoder_channels=(N, 0, *C)``). Hiera's stages are those
        timm's ``sam2_hiera_*`` models return with ``features_only=True`` (notes: bit-identical outputs).
    """
    return list(encoder.forward_features(x).trunk)


def decoder_inputs(model: Any, feats: Sam2Features, index: int = 0) -> dict[str, Any]:
    """The features ``SAM2ImagePredictor.set_image`` stores, from a pass's :class:`Sam2Features`.

    ``image_embed`` is the stride-16 FPN map plus ``no_mem_embed`` (SAM 2 adds it for single images);
    ``high_res_feats`` are the stride-4 and stride-8 FPN maps through the mask decoder's ``conv_s0`` and
    ``conv_s1`` (what ``SAM2Base.forward_image`` does), for tile ``index`` of the batch, in the
    decoder's dtype.
    """
    dtype = model.no_mem_embed.dtype  # the decoder's (float32); bf16/fp16 autocast features are cast
    fpn = [f[index : index + 1].to(dtype) for f in feats.fpn]
    embed = fpn[-1]
    if model.directly_add_no_mem_embed:
        embed = embed + model.no_mem_embed.reshape(1, -1, 1, 1).to(embed.dtype)
    high = list(fpn[:-1])
    if model.use_high_res_features_in_sam:
        high = [model.sam_mask_decoder.conv_s0(high[0]), model.sam_mask_decoder.conv_s1(high[1])]
    return {"image_embed": embed, "high_res_feats": high}


def image_predictor(model: Any, **kwargs: Any) -> Any:
    """``sam2.sam2_image_predictor.SAM2ImagePredictor`` for ``model``, fixed for its input size.

    ``SAM2ImagePredictor`` hard-codes its backbone feature sizes for 1024 px inputs
    (``_bb_feat_sizes = [(256, 256), (128, 128), (64, 64)]``); they are set here from
    ``model.image_size`` (strides 4, 8, 16), so ``set_image`` works at any supported size.
    """
    _sam2()
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pred = SAM2ImagePredictor(model, **kwargs)
    fix_feature_sizes(pred)
    return pred


def fix_feature_sizes(predictor: Any) -> None:
    """Set a ``SAM2ImagePredictor``'s ``_bb_feat_sizes`` from its model's ``image_size``."""
    s = int(predictor.model.image_size)
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
