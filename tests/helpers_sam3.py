"""A small stand-in with SAM 3's ``Sam3Processor`` interface (geosam's tests must not need ``sam3``).

It has the methods and outputs geosam's adapter calls, as ``sam3==0.1.4`` defines them
(``sam3/model/sam3_image_processor.py``): ``confidence_threshold``; ``set_image(image, state=None)``
taking a ``(3, H, W)`` uint8 tensor and returning the state dict (``original_height``/``original_width``,
``backbone_out``); ``set_text_prompt(prompt, state)`` returning the state with ``masks`` ``(N, 1, H, W)``
bool, ``masks_logits``, ``boxes`` ``(N, 4)`` and ``scores`` ``(N,)``, keeping only proposals scoring
strictly above ``confidence_threshold``; ``reset_all_prompts(state)``.

Its "model" is colour rules: a prompt in ``RULES`` proposes the pixels where that colour dominates
(score 0.9) and a looser version of them (score 0.3), so overlaps, rejected proposals and synonyms
all occur. It counts vision passes and prompts.
"""

from __future__ import annotations

from typing import Any

import torch

#: prompt -> (channel that must dominate, score of the strict mask)
RULES = {
    "water": (2, 0.9),
    "lake": (2, 0.8),
    "river": (2, 0.7),
    "forest": (1, 0.85),
    "tree": (1, 0.6),
    "building": (0, 0.75),
}


class Sam3ProcessorStandIn:
    """Sam3Processor's interface over colour rules (see the module docstring)."""

    def __init__(self, confidence_threshold: float = 0.5) -> None:
        self.confidence_threshold = confidence_threshold
        self.vision_passes = 0
        self.prompts: list[str] = []

    def set_image(self, image: torch.Tensor, state: dict[str, Any] | None = None) -> dict[str, Any]:
        state = {} if state is None else state
        assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3, image.shape
        self.vision_passes += 1
        state["original_height"], state["original_width"] = image.shape[-2:]
        state["backbone_out"] = {"image": image.float() / 255}
        return state

    def set_text_prompt(self, prompt: str, state: dict[str, Any]) -> dict[str, Any]:
        if "backbone_out" not in state:
            raise ValueError("You must call set_image before set_text_prompt")
        self.prompts.append(prompt)
        img = state["backbone_out"]["image"]
        masks, scores = [], []
        if prompt in RULES:
            ch, score = RULES[prompt]
            others = [c for c in range(3) if c != ch]
            strict = (img[ch] > img[others[0]] + 0.2) & (img[ch] > img[others[1]] + 0.2)
            loose = (img[ch] > img[others[0]]) & (img[ch] > img[others[1]])
            masks += [strict, loose]
            scores += [score, 0.3]
        keep = [i for i, s in enumerate(scores) if s > self.confidence_threshold]
        h, w = state["original_height"], state["original_width"]
        m = (
            torch.stack([masks[i] for i in keep])[:, None]
            if keep
            else torch.zeros((0, 1, h, w), dtype=torch.bool)
        )
        state["masks"] = m
        state["masks_logits"] = m.float()
        state["boxes"] = torch.zeros((len(keep), 4))
        state["scores"] = torch.tensor([scores[i] for i in keep], dtype=torch.float32)
        state["backbone_out"]["language_features"] = prompt
        return state

    def reset_all_prompts(self, state: dict[str, Any]) -> None:
        state.get("backbone_out", {}).pop("language_features", None)
        for key in ("geometric_prompt", "boxes", "masks", "masks_logits", "scores"):
            state.pop(key, None)


def patch_sam3(monkeypatch: Any) -> Sam3ProcessorStandIn:
    """Make :func:`geosam.infer_sam3.load_sam3_models` use the stand-in (any file is a "checkpoint")."""
    import geosam.models.sam3 as gs3

    proc = Sam3ProcessorStandIn()
    monkeypatch.setattr(gs3, "load_sam3", lambda checkpoint, device="cpu": object())
    monkeypatch.setattr(gs3, "processor_for", lambda model, device="cpu", proposal_floor=0.1: proc)
    monkeypatch.setattr(gs3, "sam3_version", lambda: "stand-in")
    return proc
