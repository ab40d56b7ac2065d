"""SAM 2.0/2.1 (Hiera) through Meta's ``sam2`` package: build and load safely at any tile size.

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

The encoder's single pass per tile and its three consumers are in :mod:`geosam.models.sam2_encoder`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geosam.errors import CheckpointError, ConfigError
from geosam.models.sam_family import Sam2Variant

__all__ = [
    "build_image_encoder",
    "build_sam2_model",
    "check_input_size",
    "fix_feature_sizes",
    "image_predictor",
    "load_sam2",
    "packaged_config",
    "sam2_amg",
    "sam2_version",
    "save_sam2_checkpoint",
]

log = logging.getLogger(__name__)

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
                    '`pip install "geosam-landcover[sam2]"` (SAM2_BUILD_CUDA=0 for a pure-Python wheel)'
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
