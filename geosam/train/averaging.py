"""Weight averaging for training: an exponential moving average of the model's weights."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["weight_average"]


def weight_average(model: nn.Module, decay: float, warmup: bool = True) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights (torch's ``AveragedModel``), or ``None``.

    Averaging the weights of the last steps (Polyak and Juditsky 1992) evaluates a smoother model than
    the last step's; buffers (the normalisation statistics) are carried along. With ``warmup`` the
    decay of update ``n`` is ``min(decay, (1 + n) / (10 + n))`` (the ``num_updates`` rule of
    TensorFlow's ``ExponentialMovingAverage``), so a short run is not dominated by its initial weights
    (at decay 0.999 they would still weigh 0.999 ** steps); without it, torch's constant-decay EMA.
    """
    if decay <= 0:
        return None
    if not warmup:
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @torch.no_grad()
    def update(
        ema: tuple[torch.Tensor, ...] | list[torch.Tensor],
        current: tuple[torch.Tensor, ...] | list[torch.Tensor],
        n_averaged: torch.Tensor | int,
    ) -> None:
        n = int(n_averaged)
        d = min(decay, (1 + n) / (10 + n))
        for e, c in zip(ema, current, strict=True):
            if e.is_floating_point():
                e.lerp_(c, 1 - d)
            else:
                e.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
