"""Chips through the chip classifier: model inputs, augmentation, evaluation and prediction.

:func:`model_input` prepares a batch as ``geosam run`` prepares chips (the bundle preprocessing's 0..1
values, nodata fill, resampling to the encoder input), so that training, validation
(:func:`evaluate`) and :func:`predict_chips` see what runs see; :func:`dihedral` and :func:`augment`
are the symmetries of the square that training draws from; :func:`probe_features` embeds every chip
once through a frozen encoder (probe mode), cached on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from geosam.models.classifier import LandCoverModel
from geosam.train.data import ChipData

__all__ = ["augment", "dihedral", "evaluate", "model_input", "predict_chips", "probe_features"]


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Apply symmetry ``k`` (0..7) of the square to ``(..., H, W)``.

    ``k % 4`` quarter turns, then a horizontal flip when ``k >= 4``.
    """
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random symmetry of the square (:func:`dihedral`) per chip of the batch ``(N, C, H, W)``."""
    ks = rng.integers(0, 8, size=len(x))
    out = torch.empty_like(x)
    for k in np.unique(ks):
        sel = torch.from_numpy(np.flatnonzero(ks == k))
        out[sel] = dihedral(x[sel], int(k))
    return out


def model_input(
    data: ChipData, idx: np.ndarray, size: int, device: torch.device, fill: np.ndarray | None = None
) -> torch.Tensor:
    """Model input of chips ``idx``: the bundle preprocessing's 0..1 values, nodata fill and resampling.

    The same functions ``geosam run`` uses (:meth:`ChipData.model_input`,
    :func:`geosam.preprocess.resample_chips`), so training and prediction inputs agree.
    """
    from geosam.preprocess import resample_chips

    f = np.zeros(len(data.bands), np.float32) if fill is None else fill
    x = torch.from_numpy(data.model_input(idx, f)).to(device)
    out: torch.Tensor = resample_chips(x, size, data.record.resampling)
    return out


@torch.no_grad()
def evaluate(
    model: LandCoverModel,
    data: ChipData,
    idx: np.ndarray,
    size: int,
    device: torch.device,
    batch: int,
    features: torch.Tensor | None = None,
    fill: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Predicted classes of chips ``idx`` and their mean cross-entropy (``features``: the probe's)."""
    model.eval()
    preds, losses = [], []
    for s in range(0, len(idx), batch):
        b = idx[s : s + batch]
        y = torch.from_numpy(data.labels[b]).to(device)
        logits = (
            model.classifier(features[b].to(device))
            if features is not None
            else model(model_input(data, b, size, device, fill))
        )
        losses.append(F.cross_entropy(logits.float(), y, reduction="sum").item())
        preds.append(logits.argmax(1).cpu().numpy())
    return np.concatenate(preds), float(sum(losses) / max(1, len(idx)))


@torch.no_grad()
def predict_chips(
    model: LandCoverModel, data: ChipData, idx: np.ndarray | None = None, *, size: int, batch: int = 256
) -> np.ndarray:
    """Class probabilities ``(n, K)`` float32 of chips through the training/validation path.

    Exactly what :func:`geosam.train.engine.train` evaluates: the chips' preprocessing
    (:meth:`ChipData.model_input` with the preprocessing's nodata fill), the chip resampling to the
    encoder input, the model's forward pass (encoder, mean pooling, head), softmax. The reference
    ``geosam run`` and ``geosam classify`` are checked against (tests/test_parity.py). ``size`` is the
    encoder input edge (the bundle's ``input_size``).
    """
    from geosam.preprocess import fill_values

    model.eval()
    device = next(model.parameters()).device
    mean: torch.Tensor = model.mean  # type: ignore[assignment]
    fill = fill_values(data.record, mean.detach().cpu().numpy().reshape(-1))
    ids = np.arange(len(data.labels)) if idx is None else np.asarray(idx)
    out = []
    for s in range(0, len(ids), batch):
        logits = model(model_input(data, ids[s : s + batch], size, device, fill))
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


@torch.no_grad()
def probe_features(
    model: LandCoverModel,
    data: ChipData,
    size: int,
    device: torch.device,
    batch: int,
    cache: Path | None,
    progress: bool,
    fill: np.ndarray | None = None,
) -> torch.Tensor:
    """Pooled embeddings ``(n, C)`` of every chip through the frozen encoder (probe mode).

    Cached in ``cache`` as ``probe-<key>.npy``, keyed by the encoder weights, the chips' provenance,
    ``size`` and the chip array shape.
    """
    from geosam.progress import progress_iter

    key = None
    if cache is not None:
        h = hashlib.sha256()
        for v in model.encoder.state_dict().values():
            h.update(v.detach().cpu().numpy().tobytes()[:4096])
        h.update(json.dumps([data.provenance, size, list(data.images.shape)], default=str).encode())
        key = cache / f"probe-{h.hexdigest()[:20]}.npy"
        if key.is_file():
            return torch.from_numpy(np.load(key))
    model.eval()
    out = []
    starts = list(range(0, len(data.labels), batch))
    use_bf16 = device.type == "cpu"
    for s in progress_iter(starts, "embedding chips (frozen encoder)", enabled=progress, unit="batches"):
        b = np.arange(s, min(s + batch, len(data.labels)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            f = model.features(model_input(data, b, size, device, fill))
        out.append(f.float().mean(dim=(2, 3)).cpu())
    feats = torch.cat(out)
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        np.save(key, feats.numpy())
    return feats
