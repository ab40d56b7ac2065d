"""GDAL PAM sidecars (``<raster>.aux.xml``): category names and thematic raster attribute tables.

rasterio exposes neither category names nor raster attribute tables, so geosam writes and reads the
PAM XML that GDAL (and QGIS) keep next to a raster directly, in this one module. The layout follows
GDAL's ``gdal_pam.h`` / ``gcore/gdal_rat.cpp`` serialisation: ``<PAMDataset><PAMRasterBand band="1">``
with ``<CategoryNames><Category>`` entries (one per value from 0) and a
``<GDALRasterAttributeTable>`` of ``<FieldDefn>`` (``Name``, ``Type``, ``Usage``) and ``<Row><F>``.
Field types and usages are GDAL's enums (``GDALRATFieldType``, ``GDALRATFieldUsage``).
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from geosam.types import ClassScheme

__all__ = ["category_list", "class_map_pam_xml", "class_names", "pam_path"]

log = logging.getLogger(__name__)

# GDALRATFieldType: 0 integer, 2 string. GDALRATFieldUsage: 2 Name, 3 Min, 5 MinMax (the value), 6-9 RGBA.
_GFT_INTEGER, _GFT_STRING = 0, 2
_GFU_NAME, _GFU_MIN, _GFU_MINMAX = 2, 3, 5
_GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 6, 7, 8, 9


def pam_path(raster: str | os.PathLike[str]) -> Path:
    """The PAM sidecar GDAL reads for ``raster``: ``<raster>.aux.xml``."""
    return Path(f"{os.fspath(raster)}.aux.xml")


def class_map_pam_xml(scheme: ClassScheme) -> str:
    """PAM XML for a class map's band 1: category names and a thematic attribute table.

    The table has one row per class: ``value`` (MinMax), ``class_name`` (Name) and ``red``, ``green``,
    ``blue``, ``alpha`` (RGBA usages), so ``gdalinfo`` lists "Categories" and GIS software shows names.
    """
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    cats = ET.SubElement(band, "CategoryNames")
    for name in scheme.names:
        ET.SubElement(cats, "Category").text = name
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    fields = (
        ("value", _GFT_INTEGER, _GFU_MINMAX),
        ("class_name", _GFT_STRING, _GFU_NAME),
        ("red", _GFT_INTEGER, _GFU_RED),
        ("green", _GFT_INTEGER, _GFU_GREEN),
        ("blue", _GFT_INTEGER, _GFU_BLUE),
        ("alpha", _GFT_INTEGER, _GFU_ALPHA),
    )
    for index, (name, ftype, usage) in enumerate(fields):
        defn = ET.SubElement(rat, "FieldDefn", index=str(index))
        ET.SubElement(defn, "Name").text = name
        ET.SubElement(defn, "Type").text = str(ftype)
        ET.SubElement(defn, "Usage").text = str(usage)
    for i, (name, (r, g, b)) in enumerate(zip(scheme.names, scheme.colors, strict=True)):
        row = ET.SubElement(rat, "Row", index=str(i))
        for value in (str(i), name, str(r), str(g), str(b), "255"):
            ET.SubElement(row, "F").text = value
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _band(raster: str | os.PathLike[str], band: int = 1) -> ET.Element | None:
    """The ``PAMRasterBand`` element of ``band`` (a missing ``band`` attribute means 1), or ``None``."""
    aux = pam_path(raster)
    if not aux.is_file():
        return None
    try:
        root = ET.parse(aux).getroot()
    except ET.ParseError as err:
        log.warning("%s: ignored, not valid XML (%s)", aux, err)
        return None
    return next((b for b in root.iter("PAMRasterBand") if b.get("band", "1") == str(band)), None)


def category_list(raster: str | os.PathLike[str]) -> list[str]:
    """Band 1's category names in value order (``""`` for unnamed values); ``[]`` when there are none."""
    band = _band(raster)
    cats = band.find("CategoryNames") if band is not None else None
    return [c.text or "" for c in cats.findall("Category")] if cats is not None else []


def class_names(raster: str | os.PathLike[str]) -> tuple[dict[int, str], str | None]:
    """Class names of band 1: its category names, else the name column of its attribute table.

    Returns:
        ``({value: name}, where)``; ``where`` is ``"category names"``, ``"attribute table"`` or ``None``
        when the sidecar is missing, invalid or names nothing. Empty names are left out.
    """
    band = _band(raster)
    if band is None:
        return {}, None
    cats = band.find("CategoryNames")
    if cats is not None:
        found = {i: (c.text or "").strip() for i, c in enumerate(cats.findall("Category"))}
        found = {i: n for i, n in found.items() if n}
        if found:
            return found, "category names"
    rat = band.find("GDALRasterAttributeTable")
    if rat is None:
        return {}, None
    return _rat_names(rat), "attribute table"


def _rat_names(rat: ET.Element) -> dict[int, str]:
    fields = rat.findall("FieldDefn")
    index = [int(f.get("index", i)) for i, f in enumerate(fields)]
    usage = {int(f.findtext("Usage", "0")): index[i] for i, f in enumerate(fields)}
    name_col = usage.get(_GFU_NAME)
    if name_col is None:  # no column marked as the name: the first string column
        name_col = next(
            (index[i] for i, f in enumerate(fields) if f.findtext("Type") == str(_GFT_STRING)), None
        )
    if name_col is None:
        return {}
    value_col = usage.get(_GFU_MINMAX, usage.get(_GFU_MIN))
    row0, size = rat.findtext("Row0Min"), rat.findtext("BinSize")
    out: dict[int, str] = {}
    for row in rat.findall("Row"):
        cells = [(c.text or "").strip() for c in row.findall("F")]
        i = int(row.get("index", len(out)))
        try:
            if value_col is not None:
                value = float(cells[value_col])
            elif row0 is not None and size is not None:
                value = float(row0) + i * float(size)
            else:
                value = float(i)
            name = cells[name_col]
        except (IndexError, ValueError):
            continue
        if name and value.is_integer():
            out[int(value)] = name
    return out
