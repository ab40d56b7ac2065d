"""SAM 3 concept prompts through Meta's ``sam3`` package (optional extra ``geosam-landcover[sam3]``).

This is the only geosam module that imports ``sam3`` (lazily). SAM 3's code and weights are under
Meta's custom **SAM License** (not OSI; see ``docs/sam_models.md``): geosam neither bundles nor
downloads them. Users request access to ``facebook/sam3`` on Hugging Face, download ``sam3.pt``
themselves and pass its path.

Loading (:func:`load_sam3`): the model is built with ``sam3.model_builder.build_sam3_image_model``
without a checkpoint (``load_from_HF=False``: never a download), then the checkpoint
(``{"model": {"detector.*": ..., "tracker.*": ...}}``) is read with ``torch.load(weights_only=True)`` and
its ``detector.*`` tensors are loaded; upstream loads with ``strict=False`` and only prints what is
missing, so geosam refuses a checkpoint with missing or unexpected image-model tensors. The BPE
vocabulary ``sam3==0.1.4`` needs but does not ship is taken from ``open-clip-torch`` (byte-identical,
OpenAI CLIP's MIT-licensed vocabulary).

On CPU, ``sam3==0.1.4`` hard-codes ``device="cuda"`` in a few places (position-encoding caches,
``Sam3Processor``/``forward_text`` defaults; upstream issues #550/#587) and calls ``pin_memory()`` at
inference; :class:`_CudaToCpu` redirects those calls while geosam builds and runs SAM 3 on a CPU.

Per tile (:class:`ConceptSegmenter`): one ``Sam3Processor.set_image`` (the vision backbone, shared by
every prompt), then ``set_text_prompt`` per prompt (text encoder and detector only), collecting each
prompt's masks and scores as :class:`~geosam.zeroshot.ConceptMasks`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geosam.errors import CheckpointError
from geosam.zeroshot import Concept, ConceptMasks

__all__ = ["SAM3_RESOLUTION", "ConceptSegmenter", "load_sam3", "sam3_available", "sam3_version"]

log = logging.getLogger(__name__)

#: SAM 3's input size in pixels (its RoPE tables are built for 72 x 72 patches of 14 px).
SAM3_RESOLUTION = 1008
_INSTALL = (
    'install it with `pip install "geosam-landcover[sam3]"` (Meta\'s sam3 package, SAM License; it pins '
    "numpy<2.4, so use a separate environment if other packages need a newer numpy)"
)


def sam3_available() -> bool:
    """Whether the ``sam3`` package can be imported."""
    import importlib.util

    return importlib.util.find_spec("sam3") is not None


def sam3_version() -> str:
    """Installed ``sam3`` package version (``unknown`` without metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sam3")
    except PackageNotFoundError:
        return "unknown"


def _cuda_to_cpu_mode() -> Any:
    import torch
    from torch.overrides import TorchFunctionMode

    class _CudaToCpu(TorchFunctionMode):
        """Redirect ``device="cuda"`` arguments to the CPU and make ``Tensor.pin_memory`` a no-op."""

        def __torch_function__(
            self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
        ) -> Any:
            if func is torch.Tensor.pin_memory:
                return args[0]
            kw = dict(kwargs or {})
            if str(kw.get("device", "")).startswith("cuda"):
                kw["device"] = "cpu"
            return func(*args, **kw)

    return _CudaToCpu()


@contextlib.contextmanager
def device_mode(device: Any) -> Iterator[None]:
    """Run SAM 3 code on ``device``: on a CPU, CUDA-only calls are redirected (see the module docstring)."""
    if str(device).startswith("cuda"):
        yield
        return
    with _cuda_to_cpu_mode():
        yield


def _bpe_path() -> str:
    try:
        from open_clip.tokenizer import default_bpe
    except ImportError:
        raise CheckpointError(f"SAM 3 needs open-clip-torch for its text vocabulary; {_INSTALL}") from None
    return str(default_bpe())


def build_sam3(device: Any = "cpu") -> Any:
    """A SAM 3 image model (``Sam3Image``) with untrained weights, built without any download.

    Raises:
        CheckpointError: ``sam3`` (or ``open-clip-torch``) is not installed.
    """
    try:
        from sam3.model_builder import build_sam3_image_model
    except ImportError as err:
        raise CheckpointError(f"SAM 3 checkpoints need the sam3 package ({err}); {_INSTALL}") from None
    with device_mode(device):
        model = build_sam3_image_model(
            bpe_path=_bpe_path(),
            device=str(device),
            eval_mode=True,
            checkpoint_path=None,
            load_from_HF=False,
            enable_inst_interactivity=False,
        )
    return model


def load_sam3(checkpoint: str | os.PathLike[str], *, device: Any = "cpu") -> Any:
    """Build SAM 3 and load Meta's ``sam3.pt`` into it (weights-only; every image-model tensor required).

    Args:
        checkpoint: ``sam3.pt`` (``{"model": {"detector.<name>": tensor, "tracker.<name>": ...}}`` or flat).
        device: Torch device.

    Returns:
        The ``Sam3Image`` model in eval mode on ``device``.

    Raises:
        WeightsNotFoundError: The file does not exist.
        CheckpointError: Unsafe or unreadable file, not a SAM 3 checkpoint, tensors missing or of other
            shapes, or ``sam3`` not installed.
    """
    state = _weights(checkpoint)
    image_state = {k[len("detector.") :]: v for k, v in state.items() if k.startswith("detector.")}
    if not image_state:
        raise CheckpointError(
            "not a SAM 3 checkpoint (no detector.* tensors); pass Meta's sam3.pt (SAM 1/2 checkpoints go to "
            "--sam-checkpoint)",
            checkpoint,
        )
    model = build_sam3(device="cpu")
    try:
        missing, unexpected = model.load_state_dict(image_state, strict=False)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise CheckpointError(f"weights do not fit SAM 3 ({first})", checkpoint) from None
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit SAM 3's image model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})",
            checkpoint,
        )
    return model.to(device).eval()


def _weights(checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's tensors, memory-mapped (weights-only): a 3.4 GB file is not held twice in RAM.

    Falls back to :func:`geosam.models.sam.load_state_dict` (a full read) for files that cannot be
    memory-mapped, which also gives the one-line errors for unsafe or unreadable files.
    """
    import pickle
    import warnings
    import zipfile
    from collections.abc import Mapping

    import torch

    from geosam.models.sam import load_state_dict

    if Path(checkpoint).suffix != ".safetensors" and Path(checkpoint).is_file():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError):
            obj = None
        if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
            obj = obj["model"]
        if isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
    return load_state_dict(checkpoint)  # weights_only; unwraps {"model": ...}; one-line errors


@dataclass
class ConceptSegmenter:
    """SAM 3 masks of every concept prompt for one image, from one vision-backbone pass.

    Args:
        processor: A ``sam3.model.sam3_image_processor.Sam3Processor`` (or an object with its
            ``set_image``/``set_text_prompt``/``reset_all_prompts`` methods and outputs).
        concepts: The classes and their prompts.
        proposal_floor: Proposals scoring at or below this are not returned at all (the processor's
            ``confidence_threshold``); those above and below the acceptance threshold both come back
            (rejected ones set the probability of "unclassified", see :mod:`geosam.zeroshot`).
        device: Device the processor runs on.
    """

    processor: Any
    concepts: tuple[Concept, ...]
    proposal_floor: float = 0.1
    device: Any = "cpu"

    def __post_init__(self) -> None:
        self.processor.confidence_threshold = self.proposal_floor

    @property
    def prompts(self) -> list[tuple[int, str]]:
        """``(concept index, prompt)`` of every prompt, in order."""
        return [(i, p) for i, c in enumerate(self.concepts) for p in c.prompts]

    def __call__(self, rgb: np.ndarray) -> ConceptMasks:
        """Masks, scores and concept of every proposal for a ``(3, H, W)`` uint8 RGB image.

        The processor resizes the image to 1008 px and returns masks at ``(H, W)``.
        """
        import torch

        h, w = rgb.shape[-2:]
        image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.uint8))
        masks: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        concept: list[np.ndarray] = []
        with device_mode(self.device), torch.inference_mode():
            state = self.processor.set_image(image)  # the one vision-backbone pass
            try:
                for ci, prompt in self.prompts:
                    out = self.processor.set_text_prompt(prompt=prompt, state=state)
                    m = out["masks"].reshape(-1, h, w).cpu().numpy().astype(bool)
                    s = out["scores"].reshape(-1).float().cpu().numpy()
                    masks.append(m)
                    scores.append(s.astype(np.float32))
                    concept.append(np.full(len(s), ci, np.int64))
            finally:
                self.processor.reset_all_prompts(state)
        if not masks:
            return ConceptMasks.empty((h, w))
        return ConceptMasks(np.concatenate(masks), np.concatenate(scores), np.concatenate(concept))


def processor_for(model: Any, *, device: Any = "cpu", proposal_floor: float = 0.1) -> Any:
    """``Sam3Processor(model, resolution=1008, device=..., confidence_threshold=proposal_floor)``."""
    from sam3.model.sam3_image_processor import Sam3Processor

    with device_mode(device):
        return Sam3Processor(
            model, resolution=SAM3_RESOLUTION, device=str(device), confidence_threshold=proposal_floor
        )


def checkpoint_label(path: str | os.PathLike[str]) -> str:
    """``sam3.pt`` -> ``SAM 3 (sam3.pt)`` for log lines."""
    return f"SAM 3 ({Path(path).name})"
