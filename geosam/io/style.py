"""QGIS layer styles (``.qml``) for geosam outputs, written beside the data so QGIS loads them itself.

QGIS looks for a layer's *default style* in a file named after the data file with its last extension
replaced by ``.qml`` (``QgsMapLayer::styleURI``: ``<dir>/<completeBaseName>.qml``, where the complete base
name is everything before the *last* dot). So ``scene_classes.tif`` is styled by ``scene_classes.qml`` and
``scene_regions.gpkg`` by ``scene_regions.qml`` (for a GeoPackage, a style stored inside the file's
``layer_styles`` table would win; geosam does not write one). Outputs that differ only in extension
share one ``.qml``; geosam gives them the same style, so that is intended (``x_regions.geojson`` and
``x_regions.gpkg``).

The XML follows what QGIS 3.22 writes itself (``QgsMapLayer::exportNamedStyle``), trimmed to the
renderer, labelling and blending elements; QGIS fills every omitted setting with its default. Symbol
layer properties are written both as ``<Option>`` maps (QGIS >= 3.16) and ``<prop k v>`` pairs (older),
as QGIS 3.22 does. The styles are tested by loading them into real QGIS (``tests/test_qgis.py``).

Functions return the XML text; :func:`write_qml` writes it atomically.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from geosam.io._qml import (
    QGIS_STYLE_VERSION,
    RGB,
    VIRIDIS,
    _darker,
    _fill_symbol,
    _hex,
    _min_max_origin,
    _num,
    _options,
    _raster_pipe,
    _rgba,
    _root,
    _tostring,
    _vector_tail,
)
from geosam.types import ClassScheme

__all__ = [
    "QGIS_STYLE_VERSION",
    "VIRIDIS",
    "categorized_fill_qml",
    "confidence_qml",
    "outline_labels_qml",
    "paletted_qml",
    "pseudocolor_qml",
    "qml_path",
    "write_qml",
]


def qml_path(data_path: str | os.PathLike[str]) -> Path:
    """The ``.qml`` path QGIS loads as default style for ``data_path``.

    Only the last extension is replaced, as QGIS does: ``a/x.tif`` -> ``a/x.qml``,
    ``a/x.v2.gpkg`` -> ``a/x.v2.qml``, ``a/x`` -> ``a/x.qml``.
    """
    p = Path(data_path)
    return p.with_name((p.stem if p.suffix else p.name) + ".qml")


# -- rasters ---------------------------------------------------------------------------------------------


def _legend_entries(scheme: ClassScheme, legend: Sequence[tuple[int, str]] | None) -> list[tuple[int, str]]:
    entries = [(i, n) for i, n in enumerate(scheme.names)] if legend is None else list(legend)
    for i, _ in entries:
        if not 0 <= i < len(scheme):
            raise ValueError(f"legend entry for class id {i}: the scheme has {len(scheme)} classes")
    return entries


def paletted_qml(
    scheme: ClassScheme,
    *,
    band: int = 1,
    opacity: float = 1.0,
    legend: Sequence[tuple[int, str]] | None = None,
) -> str:
    """Paletted ("unique values") raster style: one entry per class, labelled with the class name.

    Class ``i`` is drawn in ``scheme.colors[i]``; the nodata value has no entry and is transparent
    (QGIS hides the band's nodata value).

    Args:
        scheme: Class names and colours.
        band: 1-based band holding the class ids.
        opacity: Layer opacity, 0..1.
        legend: ``(class id, label)`` pairs in legend order (see :mod:`geosam.io.legend`); classes left
            out get no entry (fine for classes absent from the raster: nothing is drawn for them).
            ``None``: every class in id order, labelled with its name.
    """
    root = _root()
    renderer = ET.Element(
        "rasterrenderer",
        type="paletted",
        band=str(band),
        opacity=_num(opacity),
        alphaBand="-1",
        nodataColor="",
    )
    ET.SubElement(renderer, "rasterTransparency")
    _min_max_origin(renderer)
    palette = ET.SubElement(renderer, "colorPalette")
    for i, label in _legend_entries(scheme, legend):
        ET.SubElement(
            palette, "paletteEntry", value=str(i), color=scheme.hex_color(i), alpha="255", label=label
        )
    _raster_pipe(root, renderer)
    return _tostring(root)


def pseudocolor_qml(
    vmin: float,
    vmax: float,
    *,
    band: int = 1,
    ramp: Sequence[tuple[float, RGB]] = VIRIDIS,
    label_scale: float = 1.0,
    label_decimals: int = 1,
    label_suffix: str = "",
    opacity: float = 1.0,
) -> str:
    """Single-band pseudocolour style: a colour ramp interpolated linearly from ``vmin`` to ``vmax``.

    Values are in the band's own units. The range is fixed (QGIS's min/max origin is "user
    defined"), so every scene of a product looks the same whatever its statistics. Values outside the
    range take the end colours; the band's nodata value is transparent.

    Args:
        vmin: Value drawn in the first ramp colour.
        vmax: Value drawn in the last ramp colour (> ``vmin``).
        band: 1-based band.
        ramp: ``(fraction 0..1, (r, g, b))`` stops, fractions increasing from 0 to 1.
        label_scale: Legend labels show ``value * label_scale``.
        label_decimals: Decimals in legend labels.
        label_suffix: Appended to legend labels (``" %"``).
        opacity: Layer opacity, 0..1.
    """
    if not vmax > vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")
    if len(ramp) < 2 or ramp[0][0] != 0.0 or ramp[-1][0] != 1.0:
        raise ValueError("a colour ramp needs at least two stops, the first at 0 and the last at 1")
    root = _root()
    renderer = ET.Element(
        "rasterrenderer",
        type="singlebandpseudocolor",
        band=str(band),
        opacity=_num(opacity),
        alphaBand="-1",
        nodataColor="",
        classificationMin=_num(vmin),
        classificationMax=_num(vmax),
    )
    ET.SubElement(renderer, "rasterTransparency")
    _min_max_origin(renderer)
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader")
    shader.attrib.update(
        colorRampType="INTERPOLATED",
        classificationMode="1",
        clip="0",
        minimumValue=_num(vmin),
        maximumValue=_num(vmax),
        labelPrecision=str(label_decimals),
    )
    cramp = ET.SubElement(shader, "colorramp", name="[source]", type="gradient")
    # QGIS stop syntax: "f;r,g,b,a:f;r,g,b,a"
    inner = ":".join(f"{_num(f)};{_rgba(c)}" for f, c in ramp[1:-1])
    _options(
        cramp,
        {
            "color1": _rgba(ramp[0][1]),
            "color2": _rgba(ramp[-1][1]),
            "discrete": "0",
            "rampType": "gradient",
            "stops": inner,
        },
    )
    for frac, color in ramp:
        value = vmin + frac * (vmax - vmin)
        label = f"{value * label_scale:.{label_decimals}f}{label_suffix}"
        ET.SubElement(shader, "item", value=_num(value), color=_hex(color), alpha="255", label=label)
    ET.SubElement(
        shader,
        "rampLegendSettings",
        useContinuousLegend="1",
        minimumLabel="",
        maximumLabel="",
        prefix="",
        suffix=label_suffix,
        orientation="2",
        direction="0",
    )
    _raster_pipe(root, renderer)
    return _tostring(root)


def confidence_qml(dtype: Literal["float32", "uint8"] = "float32", *, band: int = 1) -> str:
    """Style for a confidence raster: viridis from 0 (dark) to full confidence (yellow).

    ``float32`` rasters hold probabilities 0..1 (legend ``0.0`` .. ``1.0``); ``uint8`` rasters hold
    percent 0..100 (legend ``0 %`` .. ``100 %``). Nodata (-1 or 255) is transparent.
    """
    if dtype == "float32":
        return pseudocolor_qml(0.0, 1.0, band=band, label_decimals=1)
    if dtype == "uint8":
        return pseudocolor_qml(0.0, 100.0, band=band, label_decimals=0, label_suffix=" %")
    raise ValueError(f"confidence dtype must be 'float32' or 'uint8', not {dtype!r}")


# -- vectors ---------------------------------------------------------------------------------------------


def categorized_fill_qml(
    scheme: ClassScheme,
    *,
    field: str = "class_name",
    fill_opacity: float = 0.5,
    outline_width_mm: float = 0.26,
    legend: Sequence[tuple[int, str]] | None = None,
) -> str:
    """Polygon style categorized by class name: class-coloured, semi-transparent fill, darker outline.

    Each feature is drawn with the colour of the class whose name equals its ``field`` value. Features
    whose value matches no category are not drawn, so a misspelt class name shows up as a gap.

    Args:
        scheme: Class names and colours.
        field: Attribute holding the class name.
        fill_opacity: Fill opacity 0..1 (the outline stays opaque) so the imagery shows through.
        outline_width_mm: Outline width in millimetres on screen/paper.
        legend: ``(class id, label)`` pairs in legend order; only these classes get a category (leave
            out only classes no feature has). ``None``: every class in id order, labelled by name.
    """
    if not 0.0 <= fill_opacity <= 1.0:
        raise ValueError(f"fill_opacity must be in 0..1, not {fill_opacity}")
    root = _root(labelsEnabled="0")
    renderer = ET.SubElement(
        root,
        "renderer-v2",
        type="categorizedSymbol",
        attr=field,
        symbollevels="0",
        forceraster="0",
        enableorderby="0",
        referencescale="-1",
    )
    cats = ET.SubElement(renderer, "categories")
    entries = _legend_entries(scheme, legend)
    for i, label in entries:
        ET.SubElement(cats, "category", value=scheme.names[i], symbol=str(i), label=label, render="true")
    symbols = ET.SubElement(renderer, "symbols")
    alpha = round(fill_opacity * 255)
    for i in sorted({i for i, _ in entries}):
        color = scheme.colors[i]
        _fill_symbol(
            symbols,
            str(i),
            fill=color,
            fill_alpha=alpha,
            outline=_darker(color),
            outline_width_mm=outline_width_mm,
        )
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    _vector_tail(root, opacity=1.0)
    return _tostring(root)


def outline_labels_qml(
    *,
    label_field: str = "tile_id",
    color: RGB = (230, 0, 126),
    outline_width_mm: float = 0.4,
    font_size_pt: float = 8.0,
) -> str:
    """Outline-only polygon style with each feature labelled by ``label_field`` (for tile grids).

    Polygons have no fill, so the layers below stay visible. Labels are placed over the polygon's
    centroid with a white halo, in ``color``, only where they fit inside their polygon and collide
    with no other label: zoomed out over a large grid, QGIS shows fewer labels instead of a pile of
    overlapping text (``displayAll=0``, ``fitInPolygonOnly=1``).

    Args:
        label_field: Attribute shown as label.
        color: Outline and label colour ``(r, g, b)``.
        outline_width_mm: Outline width in millimetres.
        font_size_pt: Label size in points.
    """
    root = _root(labelsEnabled="1")
    renderer = ET.SubElement(
        root,
        "renderer-v2",
        type="singleSymbol",
        symbollevels="0",
        forceraster="0",
        enableorderby="0",
        referencescale="-1",
    )
    symbols = ET.SubElement(renderer, "symbols")
    _fill_symbol(
        symbols,
        "0",
        fill=color,
        fill_alpha=0,
        outline=color,
        outline_width_mm=outline_width_mm,
        fill_style="no",
    )
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    labeling = ET.SubElement(root, "labeling", type="simple")
    settings = ET.SubElement(labeling, "settings", calloutType="simple")
    text_style = ET.SubElement(
        settings,
        "text-style",
        fieldName=label_field,
        isExpression="0",
        fontFamily="Sans Serif",
        namedStyle="Regular",
        fontWeight="50",
        fontItalic="0",
        fontSize=_num(font_size_pt),
        fontSizeUnit="Point",
        textColor=_rgba(color),
        textOpacity="1",
        multilineHeight="1",
        allowHtml="0",
    )
    ET.SubElement(
        text_style,
        "text-buffer",
        bufferDraw="1",
        bufferSize="0.8",
        bufferSizeUnits="MM",
        bufferColor="255,255,255,255",
        bufferOpacity="0.8",
        bufferNoFill="1",
        bufferJoinStyle="128",
        bufferBlendMode="0",
    )
    ET.SubElement(settings, "text-format", multilineAlign="3", wrapChar="", formatNumbers="0")
    # placement 1 = "over point" (offset from centroid) for polygons; centroid of the visible part.
    ET.SubElement(
        settings,
        "placement",
        placement="1",
        quadOffset="4",
        centroidInside="1",
        centroidWhole="0",
        fitInPolygonOnly="1",
        priority="5",
        dist="0",
        offsetType="0",
    )
    ET.SubElement(
        settings,
        "rendering",
        drawLabels="1",
        obstacle="0",
        displayAll="0",
        upsidedownLabels="0",
        scaleVisibility="0",
        fontLimitPixelSize="0",
        limitNumLabels="0",
    )
    _vector_tail(root, opacity=1.0)
    return _tostring(root)


# -- files -----------------------------------------------------------------------------------------------


def write_qml(path: str | os.PathLike[str], qml: str, *, overwrite: bool = True) -> Path:
    """Write style XML to ``path`` atomically (UTF-8) and return the path.

    Raises:
        OutputError: The directory cannot take the file (see :mod:`geosam.io.atomic`).
    """
    from geosam.io.atomic import atomic_path

    target = Path(path)
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_text(qml, encoding="utf-8")
    return target
