"""XML building blocks of geosam's QGIS styles (:mod:`geosam.io.style`): the elements QGIS 3.22 writes.

Private to :mod:`geosam.io.style`, which documents the styles; names keep their leading underscore.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Literal

#: QGIS version written into styles: the oldest QGIS these styles are tested with.
QGIS_STYLE_VERSION = "3.22.0"
_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
RGB = tuple[int, int, int]

VIRIDIS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (68, 1, 84)),
    (0.1, (72, 36, 117)),
    (0.2, (65, 68, 135)),
    (0.3, (53, 95, 141)),
    (0.4, (42, 120, 142)),
    (0.5, (33, 145, 140)),
    (0.6, (34, 168, 132)),
    (0.7, (68, 191, 112)),
    (0.8, (122, 209, 81)),
    (0.9, (189, 223, 38)),
    (1.0, (253, 231, 37)),
)
"""matplotlib's viridis sampled at 11 stops: ``(fraction 0..1, (r, g, b))``; perceptually uniform and
readable by colour-blind users."""


def _rgba(rgb: Sequence[int], alpha: int = 255) -> str:
    return f"{int(rgb[0])},{int(rgb[1])},{int(rgb[2])},{int(alpha)}"


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb[:3]))


def _num(value: float) -> str:
    """Shortest exact-enough decimal for XML attributes (``1`` not ``1.0``; ``0.1`` not ``0.1000001``)."""
    text = f"{value:.10g}"
    return "0" if text == "-0" else text


def _root(**attrs: str) -> ET.Element:
    root = ET.Element("qgis")
    root.set("version", QGIS_STYLE_VERSION)
    root.set("styleCategories", "AllStyleCategories")
    root.set("hasScaleBasedVisibilityFlag", "0")
    root.set("minScale", "1e+08")
    root.set("maxScale", "0")
    for key, value in attrs.items():
        root.set(key, value)
    return root


def _tostring(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return _DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def _options(parent: ET.Element, props: Mapping[str, str]) -> None:
    """Write symbol-layer/colour-ramp properties in both the new and the legacy QGIS forms."""
    opt = ET.SubElement(parent, "Option", type="Map")
    for key, value in props.items():
        ET.SubElement(opt, "Option", name=key, type="QString", value=value)
    for key, value in props.items():
        ET.SubElement(parent, "prop", k=key, v=value)


def _empty_properties(parent: ET.Element, tag: str = "data_defined_properties") -> None:
    ddp = ET.SubElement(parent, tag)
    opt = ET.SubElement(ddp, "Option", type="Map")
    ET.SubElement(opt, "Option", name="name", type="QString", value="")
    ET.SubElement(opt, "Option", name="properties")
    ET.SubElement(opt, "Option", name="type", type="QString", value="collection")


def _fill_symbol(
    parent: ET.Element,
    name: str,
    *,
    fill: RGB,
    fill_alpha: int,
    outline: RGB,
    outline_width_mm: float,
    fill_style: Literal["solid", "no"] = "solid",
) -> None:
    symbol = ET.SubElement(
        parent, "symbol", type="fill", name=name, alpha="1", clip_to_extent="1", force_rhr="0"
    )
    _empty_properties(symbol)
    layer = ET.SubElement(
        symbol, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"}
    )
    _options(
        layer,
        {
            "border_width_map_unit_scale": "3x:0,0,0,0,0,0",
            "color": _rgba(fill, fill_alpha),
            "joinstyle": "bevel",
            "offset": "0,0",
            "offset_map_unit_scale": "3x:0,0,0,0,0,0",
            "offset_unit": "MM",
            "outline_color": _rgba(outline),
            "outline_style": "solid",
            "outline_width": _num(outline_width_mm),
            "outline_width_unit": "MM",
            "style": fill_style,
        },
    )
    _empty_properties(layer)


def _raster_pipe(root: ET.Element, renderer: ET.Element) -> None:
    pipe = ET.SubElement(root, "pipe")
    pipe.append(renderer)
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(
        pipe,
        "huesaturation",
        saturation="0",
        grayscaleMode="0",
        invertColors="0",
        colorizeOn="0",
        colorizeRed="255",
        colorizeGreen="128",
        colorizeBlue="128",
        colorizeStrength="100",
    )
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(pipe, "resamplingStage").text = "resamplingFilter"
    ET.SubElement(root, "blendMode").text = "0"


def _min_max_origin(renderer: ET.Element) -> None:
    # "None" = user-defined limits: QGIS must not replace the fixed 0..1 / 0..100 range by statistics.
    mmo = ET.SubElement(renderer, "minMaxOrigin")
    for tag, text in (
        ("limits", "None"),
        ("extent", "WholeRaster"),
        ("statAccuracy", "Estimated"),
        ("cumulativeCutLower", "0.02"),
        ("cumulativeCutUpper", "0.98"),
        ("stdDevFactor", "2"),
    ):
        ET.SubElement(mmo, tag).text = text


def _vector_tail(root: ET.Element, *, opacity: float) -> None:
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = _num(opacity)


def _darker(rgb: RGB, factor: float = 0.6) -> RGB:
    return (round(rgb[0] * factor), round(rgb[1] * factor), round(rgb[2] * factor))
