"""Write a QGIS project (``.qgs``) that opens a scene's outputs, styled, with relative paths.

The project is plain XML built with :mod:`xml.etree.ElementTree` (geosam's runtime has no PyQGIS), in the
format QGIS 3.22 writes: project CRS, layer tree, one ``<maplayer>`` per layer with its CRS and the
style of its ``.qml`` embedded (QGIS does not apply a layer's default ``.qml`` when it reads a project),
legends of styled rasters without QGIS's "Band 1: ... (Palette)" header (``legend/node-order``),
map canvas extent, and ``Paths/Absolute = false``. Data sources are written relative to the project
file (``./x.tif``; QGIS only treats sources starting with ``./`` or ``../`` as relative), so the output
folder can be moved or shared as a whole. ``tests/test_qgis.py`` opens the result in real QGIS.

Example:
    >>> layers = [
    ...     QgisLayer("s1_regions.gpkg", "regions", "vector", layer_name="regions", style="s1_regions.qml"),
    ...     QgisLayer("s1_classes.tif", "classes", "raster", style="s1_classes.qml"),
    ... ]
    >>> write_qgis_project("out/s1.qgs", layers, crs="EPSG:32633")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from geosam.errors import OutputError
from geosam.io.atomic import atomic_path

__all__ = ["QGIS_PROJECT_VERSION", "QgisLayer", "write_qgis_project"]

QGIS_PROJECT_VERSION = "3.22.0"
"""QGIS version written into projects: the oldest QGIS they are tested with."""

_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
Extent = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class QgisLayer:
    """One layer of a QGIS project.

    Attributes:
        path: Data file, relative to the project's directory (``"s1_classes.tif"``); an absolute
            path is made relative.
        name: Name shown in the Layers panel.
        kind: ``"raster"`` or ``"vector"``.
        provider: QGIS data provider; ``None`` means ``gdal`` for rasters and ``ogr`` for vectors.
        layer_name: Layer inside a multi-layer file (GeoPackage table name); ``None`` for single-layer files.
        style: ``.qml`` file whose style is embedded, relative to the project's directory (or
            absolute); ``None`` leaves QGIS's default rendering.
        crs: Layer CRS (WKT, ``"EPSG:4326"``...); ``None`` reads it from the data file.
        visible: Whether the layer is switched on.
    """

    path: str
    name: str
    kind: Literal["raster", "vector"]
    provider: str | None = None
    layer_name: str | None = None
    style: str | None = None
    crs: str | None = None
    visible: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("raster", "vector"):
            raise ValueError(f"layer kind must be 'raster' or 'vector', not {self.kind!r}")
        if not self.name.strip():
            raise ValueError("a project layer needs a name")

    @property
    def provider_key(self) -> str:
        """The provider, defaulted from :attr:`kind`."""
        return self.provider or ("gdal" if self.kind == "raster" else "ogr")


# -- CRS and extents ---------------------------------------------------------------------------------------


def _spatialrefsys(parent: ET.Element, crs_input: Any) -> None:
    """QGIS ``<spatialrefsys>``; QGIS rebuilds the CRS from the WKT (no QGIS-internal srsid is written)."""
    from pyproj import CRS

    crs = CRS.from_user_input(crs_input)
    srs = ET.SubElement(parent, "spatialrefsys", nativeFormat="Wkt")
    ET.SubElement(srs, "wkt").text = crs.to_wkt()
    authority = crs.to_authority()
    ET.SubElement(srs, "srid").text = authority[1] if authority and authority[1].isdigit() else "0"
    ET.SubElement(srs, "authid").text = f"{authority[0]}:{authority[1]}" if authority else ""
    ET.SubElement(srs, "description").text = crs.name
    ET.SubElement(srs, "geographicflag").text = "true" if crs.is_geographic else "false"


def _file_crs(layer: QgisLayer, source: Path) -> str:
    if layer.kind == "raster":
        import rasterio

        with rasterio.open(source) as ds:
            if ds.crs is None:
                raise ValueError(f"{source}: raster has no CRS; give QgisLayer.crs")
            return str(ds.crs.to_wkt())
    import pyogrio

    info = pyogrio.read_info(source, layer=layer.layer_name)
    if not info.get("crs"):
        raise ValueError(f"{source}: vector layer has no CRS; give QgisLayer.crs")
    return str(info["crs"])


def _file_bounds(layer: QgisLayer, source: Path) -> Extent | None:
    """Bounds of a data file in its own CRS, or ``None`` (empty layer)."""
    if layer.kind == "raster":
        import rasterio

        with rasterio.open(source) as ds:
            b = ds.bounds
            return (b.left, b.bottom, b.right, b.top)
    import pyogrio

    info = pyogrio.read_info(source, layer=layer.layer_name, force_total_bounds=True)
    bounds = info.get("total_bounds")
    if bounds is None or any(v != v for v in bounds):  # NaN for empty layers
        return None
    return (float(bounds[0]), float(bounds[1]), float(bounds[2]), float(bounds[3]))


def _union_extent(items: list[tuple[Extent, str]], project_crs: Any) -> Extent | None:
    from pyproj import CRS, Transformer

    target = CRS.from_user_input(project_crs)
    boxes = []
    for bounds, crs in items:
        source = CRS.from_user_input(crs)
        if source != target:
            transformer = Transformer.from_crs(source, target, always_xy=True)
            bounds = transformer.transform_bounds(*bounds, densify_pts=21)
        if all(v == v and abs(v) != float("inf") for v in bounds):
            boxes.append(bounds)
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


# -- XML ---------------------------------------------------------------------------------------------------


def _layer_id(layer: QgisLayer, datasource: str, taken: set[str]) -> str:
    slug = re.sub(r"[^0-9A-Za-z_]+", "_", layer.name).strip("_") or "layer"
    base = f"{slug}_{hashlib.sha1(datasource.encode()).hexdigest()[:12]}"
    layer_id, n = base, 1
    while layer_id in taken:
        n += 1
        layer_id = f"{base}_{n}"
    taken.add(layer_id)
    return layer_id


def _relative_source(project_dir: Path, data: Path) -> str:
    rel = Path(os.path.relpath(data, project_dir)).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def _raster_legend_order(style: ET.Element) -> str | None:
    """``legend/node-order`` that hides a styled raster's band-name header ("Band 1: class (Palette)").

    QGIS puts the band's display name above a paletted or pseudocolor raster's legend; the layer name
    already says what the raster is. The order lists the other legend nodes (the palette entries, or
    the continuous colour ramp), so QGIS shows only those. ``None`` for other renderers.
    """
    renderer = style.find("pipe/rasterrenderer")
    if renderer is None:
        return None
    kind = renderer.get("type")
    if kind == "paletted":
        n = len(renderer.findall("colorPalette/paletteEntry"))
        return ",".join(str(i) for i in range(1, n + 1)) if n else None
    ramp = renderer.find(".//rampLegendSettings")
    if kind == "singlebandpseudocolor" and ramp is not None and ramp.get("useContinuousLegend") == "1":
        return "1"  # the continuous ramp, one node
    return None


def _embed_style(maplayer: ET.Element, qml_file: Path) -> ET.Element:
    try:
        root = ET.parse(qml_file).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ValueError(f"{qml_file}: cannot read the style ({exc})") from None
    if root.tag != "qgis":
        raise ValueError(f"{qml_file}: not a QGIS style (root element <{root.tag}>)")
    for key, value in root.attrib.items():
        if key != "version":  # labelsEnabled, scale visibility... live on <maplayer> in a project
            maplayer.set(key, value)
    for child in list(root):
        maplayer.append(child)
    return root


def _canvas(root: ET.Element, crs: Any, extent: Extent | None) -> None:
    from pyproj import CRS

    unit = (CRS.from_user_input(crs).axis_info[0].unit_name or "").lower()
    units = "degrees" if unit.startswith("degree") else "meters" if unit in ("metre", "meter") else "unknown"
    canvas = ET.SubElement(root, "mapcanvas", name="theMapCanvas", annotationsVisible="1")
    ET.SubElement(canvas, "units").text = units
    if extent is not None:
        ext = ET.SubElement(canvas, "extent")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), extent, strict=True):
            ET.SubElement(ext, tag).text = repr(float(value))
    ET.SubElement(canvas, "rotation").text = "0"
    _spatialrefsys(ET.SubElement(canvas, "destinationsrs"), crs)
    ET.SubElement(canvas, "rendermaptile").text = "0"
    # QGIS >= 3.18 also keeps a "default view" (used by QGIS Server, QField and new map views).
    if extent is not None:
        view = ET.SubElement(root, "ProjectViewSettings", UseProjectScales="0", rotation="0")
        ET.SubElement(view, "Scales")
        default = ET.SubElement(
            view,
            "DefaultViewExtent",
            xmin=repr(float(extent[0])),
            ymin=repr(float(extent[1])),
            xmax=repr(float(extent[2])),
            ymax=repr(float(extent[3])),
        )
        _spatialrefsys(default, crs)


def write_qgis_project(
    path: str | os.PathLike[str],
    layers: Sequence[QgisLayer],
    *,
    crs: Any,
    extent: Extent | None = None,
    title: str | None = None,
    abstract: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a ``.qgs`` project showing ``layers`` with their styles; returns ``path``.

    Args:
        path: Output ``.qgs`` file; layer paths are relative to its directory.
        layers: Layers from top to bottom as in the Layers panel (the first is drawn on top).
        crs: Project CRS (normally the scene CRS): WKT, ``"EPSG:32633"``, a pyproj/rasterio CRS.
        extent: Initial map extent ``(xmin, ymin, xmax, ymax)`` in the project CRS; ``None`` uses the
            union of the layers' extents read from their files.
        title: Project title; defaults to the file stem.
        abstract: Project abstract (QGIS: Project > Properties > Metadata), e.g. the run's domain note.
        overwrite: Replace an existing project file.

    Raises:
        OutputError: A layer's data file does not exist, or the directory cannot take the file.
        ValueError: A style file is not a readable QGIS style, or a layer has no CRS.
    """
    target = Path(path)
    project_dir = Path(os.path.abspath(target.parent))
    title = target.stem if title is None else title
    root = ET.Element("qgis", projectname=title, version=QGIS_PROJECT_VERSION)
    ET.SubElement(root, "homePath", path="")
    ET.SubElement(root, "title").text = title
    if abstract is not None:
        metadata = ET.SubElement(root, "projectMetadata")
        ET.SubElement(metadata, "title").text = title
        ET.SubElement(metadata, "abstract").text = abstract
    _spatialrefsys(ET.SubElement(root, "projectCrs"), crs)
    tree = ET.SubElement(root, "layer-tree-group")
    projectlayers = ET.Element("projectlayers")
    order = ET.Element("layerorder")
    taken: set[str] = set()
    extents: list[tuple[Extent, str]] = []
    for layer in layers:
        data = Path(layer.path) if os.path.isabs(layer.path) else project_dir / layer.path
        if not data.exists():
            raise OutputError(f"layer {layer.name!r}: data file does not exist", data)
        source = _relative_source(project_dir, data)
        datasource = source + (f"|layername={layer.layer_name}" if layer.layer_name else "")
        layer_id = _layer_id(layer, datasource, taken)
        layer_crs = layer.crs or _file_crs(layer, data)
        if extent is None:
            bounds = _file_bounds(layer, data)
            if bounds is not None:
                extents.append((bounds, layer_crs))
        tree_layer = ET.SubElement(
            tree,
            "layer-tree-layer",
            id=layer_id,
            name=layer.name,
            source=datasource,
            providerKey=layer.provider_key,
            checked="Qt::Checked" if layer.visible else "Qt::Unchecked",
            expanded="1",
        )
        maplayer = ET.SubElement(projectlayers, "maplayer", type=layer.kind)
        ET.SubElement(maplayer, "id").text = layer_id
        ET.SubElement(maplayer, "datasource").text = datasource
        ET.SubElement(maplayer, "layername").text = layer.name
        _spatialrefsys(ET.SubElement(maplayer, "srs"), layer_crs)
        provider = ET.SubElement(maplayer, "provider")
        provider.text = layer.provider_key
        if layer.kind == "vector":
            provider.set("encoding", "UTF-8")
        if layer.style is not None:
            style = Path(layer.style) if os.path.isabs(layer.style) else project_dir / layer.style
            order_text = _raster_legend_order(_embed_style(maplayer, style))
            if order_text is not None and layer.kind == "raster":
                props = ET.SubElement(ET.SubElement(tree_layer, "customproperties"), "Option", type="Map")
                ET.SubElement(props, "Option", name="legend/node-order", value=order_text, type="QString")
        ET.SubElement(order, "layer", id=layer_id)
    root.append(projectlayers)
    root.append(order)
    _canvas(root, crs, extent if extent is not None else _union_extent(extents, crs))
    properties = ET.SubElement(root, "properties")
    absolute = ET.SubElement(ET.SubElement(properties, "Paths"), "Absolute", type="bool")
    absolute.text = "false"
    enabled = ET.SubElement(ET.SubElement(properties, "SpatialRefSys"), "ProjectionsEnabled", type="int")
    enabled.text = "1"
    ET.indent(root, space="  ")
    text = _DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
