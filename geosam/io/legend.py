"""Legends of a scene's class map and regions: every class, only the classes present, or by area.

A model knows ten classes; a scene shows a few. ``output.legend`` (:class:`geosam.config.OutputConfig`)
chooses what the ``.qml`` styles of ``<scene>_classes.tif`` and ``<scene>_regions.*`` (and so the QGIS
project, which embeds them) list:

* ``all``: every class of the model, in class-id order (a legend that is the same for every scene);
* ``present``: only the classes that occur in the class map, in class-id order;
* ``area`` (default): only the classes that occur, largest area first, each labelled with its share of
  the classified pixels, e.g. ``HerbaceousVegetation (62.4 %)``.

Absent classes can be left out of the styles because no pixel and no region has them (a region's
class is the class of its pixels in the class map). The counts come from one block-by-block read of
the finished class map, so memory does not grow with the scene.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from geosam.types import ClassScheme

if TYPE_CHECKING:
    from geosam.config import OutputConfig
    from geosam.outputs import SceneOutputs

__all__ = ["LegendMode", "class_pixel_counts", "legend_entries", "restyle_legends", "restyle_scene"]

LegendMode = Literal["all", "present", "area"]


def class_pixel_counts(classes_tif: str | os.PathLike[str], n_classes: int) -> np.ndarray:
    """Pixels per class id ``0..n_classes-1`` of a class map (nodata and other values not counted).

    Reads the raster block by block (its internal tiles), so memory is one block.

    Returns:
        int64 array ``(n_classes,)``.
    """
    import rasterio

    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(classes_tif) as ds:
        for _, window in ds.block_windows(1):
            counts += np.bincount(ds.read(1, window=window).ravel(), minlength=256)[:256]
    return counts[:n_classes]


def _share(count: int, total: int) -> str:
    pct = 100.0 * count / total if total else 0.0
    return "< 0.1 %" if 0 < pct < 0.05 else f"{pct:.1f} %"


def legend_entries(
    scheme: ClassScheme, counts: Sequence[int] | np.ndarray, mode: LegendMode
) -> list[tuple[int, str]]:
    """``(class id, label)`` pairs in legend order for ``mode`` (see the module docstring).

    A scene with no classified pixel keeps every class (an empty legend helps nobody).

    Raises:
        ValueError: ``counts`` does not have one value per class, or an unknown mode.
    """
    c = np.asarray(counts, dtype=np.int64)
    if c.shape != (len(scheme),):
        raise ValueError(f"{c.shape[0] if c.ndim else 0} counts for {len(scheme)} classes")
    if mode == "all" or not c.any():
        return list(enumerate(scheme.names))
    present = [i for i in range(len(scheme)) if c[i] > 0]
    if mode == "present":
        return [(i, scheme.names[i]) for i in present]
    if mode == "area":
        total = int(c.sum())
        order = sorted(present, key=lambda i: (-int(c[i]), i))
        return [(i, f"{scheme.names[i]} ({_share(int(c[i]), total)})") for i in order]
    raise ValueError(f"unknown legend mode {mode!r}: all, present or area")


def restyle_legends(
    classes_tif: str | os.PathLike[str],
    regions_styles: Sequence[str | os.PathLike[str]],
    scheme: ClassScheme,
    mode: LegendMode,
) -> list[tuple[int, str]]:
    """Rewrite the class map's and the regions' ``.qml`` styles with the legend for ``mode``.

    The styles were written by this run a moment earlier (with every class), so they are replaced
    whatever ``output.overwrite`` says.

    Args:
        classes_tif: The finished class map (its style is ``<stem>.qml`` beside it).
        regions_styles: The regions layers' ``.qml`` files that exist (written by the vector writers).
        scheme: The class scheme of the class map.
        mode: ``all``, ``present`` or ``area``.

    Returns:
        The legend entries written.

    Raises:
        OutputError: A style cannot be written.
    """
    from geosam.io.style import categorized_fill_qml, paletted_qml, qml_path, write_qml

    if mode == "all":
        return list(enumerate(scheme.names))  # what the writers wrote already
    entries = legend_entries(scheme, class_pixel_counts(classes_tif, len(scheme)), mode)
    classes_qml = qml_path(classes_tif)
    if classes_qml.exists():
        write_qml(classes_qml, paletted_qml(scheme, legend=entries), overwrite=True)
    for style in regions_styles:
        if Path(style).exists():
            write_qml(style, categorized_fill_qml(scheme, legend=entries), overwrite=True)
    return entries


def restyle_scene(outputs: SceneOutputs, scheme: ClassScheme, cfg: OutputConfig) -> list[tuple[int, str]]:
    """:func:`restyle_legends` for a scene's outputs (its class map, and its regions' style when written)."""
    from geosam.io.style import qml_path

    regions = [qml_path(outputs.path("regions_gpkg"))] if cfg.regions else []
    return restyle_legends(outputs.classes, regions, scheme, cfg.legend)
