"""Map scene bands onto a pretrained RGB patch embedding, so 4-band NAIP or 13-band Sentinel-2 work.

SAM's patch embedding is a ``Conv2d(3, D, p, p)`` trained on red, green, blue. For ``N`` input bands
named e.g. ``("blue", "green", "red", "nir")`` the adapter builds a ``Conv2d(N, D, p, p)`` where each
input band named red/green/blue receives the matching pretrained kernel (band order does not matter)
and every other band is initialised by ``init``:

* ``"zero"`` (default): new bands start at zero weight, so the adapted encoder gives exactly the
  pretrained output on the RGB bands and fine-tuning learns how to use the others (their weight
  gradients do not depend on the weights, so they train normally).
* ``"mean"``: new bands get the mean RGB kernel and all kernels are scaled by ``3 / N`` so the
  activation scale stays that of the pretrained model (timm's ``adapt_input_conv`` rule); useful for
  frozen-encoder probing, where zero weights would make the extra bands invisible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from geosam.bands import canonical_band_name
from geosam.errors import InputMismatchError

__all__ = ["RGB", "adapt_patch_embed", "adapt_patch_embed_weight"]

RGB = ("red", "green", "blue")


def adapt_patch_embed_weight(
    weight: torch.Tensor,
    band_names: Sequence[str],
    *,
    source_bands: Sequence[str] = RGB,
    init: Literal["zero", "mean"] = "zero",
) -> torch.Tensor:
    """Return a patch-embedding kernel ``(D, len(band_names), p, p)`` built from ``weight`` ``(D, C, p, p)``.

    Args:
        weight: The pretrained kernel whose input channels are ``source_bands``.
        band_names: Names of the new input bands, in input order (aliases such as ``B04`` accepted).
        source_bands: Names of ``weight``'s input channels (SAM: red, green, blue).
        init: How to initialise bands absent from ``source_bands`` (see module docstring).

    Raises:
        InputMismatchError: ``weight`` does not have ``len(source_bands)`` inputs, or no band is named.
    """
    if weight.shape[1] != len(source_bands):
        raise InputMismatchError(
            f"patch embedding has {weight.shape[1]} input bands "
            f"but {len(source_bands)} source names were given"
        )
    if not band_names:
        raise InputMismatchError("the band adapter needs at least one band name")
    src = [canonical_band_name(b) for b in source_bands]
    names = [canonical_band_name(b) for b in band_names]
    n = len(names)
    new = weight.new_zeros((weight.shape[0], n, *weight.shape[2:]))
    mean_kernel = weight.mean(dim=1)
    matched = 0
    for i, name in enumerate(names):
        if name in src:
            new[:, i] = weight[:, src.index(name)]
            matched += 1
        elif init == "mean":
            new[:, i] = mean_kernel
    if init == "mean" and n != len(src):
        new = new * (len(src) / n)
    if matched == 0 and init == "zero":
        # Nothing to copy: fall back to the mean kernel so the encoder is not blind.
        new[:] = mean_kernel[:, None] * (len(src) / n)
    return new


def adapt_patch_embed(
    encoder: nn.Module,
    band_names: Sequence[str],
    *,
    source_bands: Sequence[str] = RGB,
    init: Literal["zero", "mean"] = "zero",
) -> nn.Module:
    """Replace ``encoder.patch_embed.proj`` in place by an ``N``-band convolution; returns ``encoder``."""
    old: nn.Conv2d = encoder.patch_embed.proj  # type: ignore[union-attr,assignment]
    new = nn.Conv2d(
        len(band_names),
        old.out_channels,
        kernel_size=old.kernel_size,  # type: ignore[arg-type]
        stride=old.stride,  # type: ignore[arg-type]
        padding=old.padding,  # type: ignore[arg-type]
        bias=old.bias is not None,
    ).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(
            adapt_patch_embed_weight(old.weight, band_names, source_bands=source_bands, init=init)
        )
        if old.bias is not None:
            new.bias.copy_(old.bias)  # type: ignore[union-attr]
    encoder.patch_embed.proj = new  # type: ignore[union-attr]
    return encoder
