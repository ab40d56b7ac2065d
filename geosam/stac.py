"""STAC metadata for geosam outputs (pystac): one Item per scene, one Collection per output folder.

:func:`write_scene_item` writes ``<stem>_stac_item.json`` next to a scene's outputs, built from its run
record and class map:

* ``geometry``/``bbox``: the scene's footprint (its full raster extent, edges densified) in EPSG:4326
  longitude/latitude (footprints crossing the antimeridian are not split);
* ``datetime``: the acquisition time from the scene's metadata when it has one (GDAL tags
  ``ACQUISITION_DATE``, ``DATE_ACQUIRED``, ``SENSING_TIME``..., else ``TIFFTAG_DATETIME``; an
  ``ACQUISITION_YEAR`` alone gives ``start_datetime``/``end_datetime`` for that year), else the
  processing time; ``geosam:datetime_source`` says which;
* the projection extension (``proj:code`` or ``proj:wkt2``, ``proj:shape``, ``proj:transform``,
  ``proj:bbox``) and, on the class map, the classification extension (class values, names, colours);
* one asset per output: ``classes`` (COG, role ``data``), ``confidence`` (COG), ``regions_geojson``,
  ``regions_gpkg``, ``tiles_gpkg``, ``qgis_project``, ``record`` (the run record, role ``metadata``)
  and the QGIS ``.qml`` styles (role ``style``), all with hrefs relative to the item.

:func:`write_collection` (re)builds ``<out>/collection.json`` from every item found in the output
folder (depth 1 and 2), so it is idempotent and survives crashes; each file is written atomically.
Links are relative (a self-contained catalog): the folder can be moved or served as is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import geosam
from geosam.outputs import RECORD_SUFFIX, STAC_ITEM_SUFFIX, SceneOutputs

__all__ = [
    "COLLECTION_NAME",
    "ITEM_SUFFIX",
    "item_path",
    "scene_item",
    "write_collection",
    "write_scene_item",
]

ITEM_SUFFIX = STAC_ITEM_SUFFIX
COLLECTION_NAME = "collection.json"

#: output kind -> (media type, roles, title)
_ASSETS: dict[str, tuple[str, list[str], str]] = {
    "classes": (
        "image/tiff; application=geotiff; profile=cloud-optimized",
        ["data"],
        "Land-cover classes",
    ),
    "confidence": (
        "image/tiff; application=geotiff; profile=cloud-optimized",
        ["data", "quality"],
        "Probability of the chosen class",
    ),
    "regions_geojson": ("application/geo+json", ["data"], "Regions (EPSG:4326)"),
    "regions_gpkg": ("application/geopackage+sqlite3", ["data"], "Regions (scene CRS)"),
    "tiles_gpkg": ("application/geopackage+sqlite3", ["data"], "Tile classes"),
    "qgis_project": ("application/x-qgis", ["metadata"], "QGIS project"),
    "record": ("application/json", ["metadata"], "geosam run record"),
}

_DATE_TAGS = (
    "ACQUISITION_DATETIME",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "DATETIME",
)


def item_path(record_path: str | os.PathLike[str]) -> Path:
    """Where the STAC item of the scene whose run record is ``record_path`` goes."""
    return SceneOutputs.from_record_path(record_path).stac_item


def _parse_time(text: str) -> dt.datetime | None:
    s = text.strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y%m%d"):
        try:
            return dt.datetime.strptime(s, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            pass
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _scene_times(scene: str) -> tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None, str]:
    """``(datetime, start, end, source tag)`` from the scene's metadata, or Nones."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(scene) as ds:
            tags = {k.upper(): v for k, v in ds.tags().items()}
    except (RasterioError, OSError):
        return None, None, None, ""
    for key in (*_DATE_TAGS, "TIFFTAG_DATETIME"):
        if key in tags and (t := _parse_time(tags[key])) is not None:
            return t, None, None, key
    year = tags.get("ACQUISITION_YEAR", "").strip()
    if year.isdigit() and len(year) == 4:
        y = int(year)
        start = dt.datetime(y, 1, 1, tzinfo=dt.timezone.utc)
        end = dt.datetime(y, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
        return None, start, end, "ACQUISITION_YEAR"
    return None, None, None, ""


def _footprint(crs: Any, transform: Any, width: int, height: int, n: int = 16) -> dict[str, Any]:
    """The raster's outline (``n`` points per edge) as a GeoJSON polygon in EPSG:4326."""
    from rasterio.warp import transform as warp

    cols = [width * i / n for i in range(n)]
    rows = [height * i / n for i in range(n)]
    ring_px = (
        [(c, 0.0) for c in cols]
        + [(float(width), r) for r in rows]
        + [(width - c, float(height)) for c in cols]
        + [(0.0, height - r) for r in rows]
    )
    xy = [transform @ p for p in ring_px]
    lon, lat = warp(crs, "EPSG:4326", [p[0] for p in xy], [p[1] for p in xy])
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def scene_item(record_path: str | os.PathLike[str], *, item_id: str | None = None) -> Any:
    """Build the ``pystac.Item`` of a processed scene from its run record (see the module docstring).

    Args:
        record_path: The scene's ``<stem>_run.json``.
        item_id: Item id (default: the scene stem).

    Raises:
        OutputError: The run record or the class map is missing or unreadable.
    """
    import pystac
    import rasterio
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension

    from geosam.batch import safe_name
    from geosam.errors import OutputError
    from geosam.io.cog import read_class_scheme

    rec_path = Path(record_path)
    try:
        record = json.loads(rec_path.read_text(encoding="utf-8"))
        classes = rec_path.parent / record["outputs"]["classes"]
        with rasterio.open(classes) as ds:
            crs, transform, width, height, bounds = ds.crs, ds.transform, ds.width, ds.height, ds.bounds
    except (OSError, ValueError, KeyError, rasterio.errors.RasterioError) as err:
        msg = f"cannot describe the scene: {type(err).__name__}: {err}"
    else:
        msg = ""
    if msg:
        raise OutputError(msg, rec_path)
    geometry = _footprint(crs, transform, width, height)
    lons = [p[0] for p in geometry["coordinates"][0]]
    lats = [p[1] for p in geometry["coordinates"][0]]
    scene = record["scene"]["path"]
    when, start, end, source = _scene_times(scene)
    created = _parse_time(record["created"]) or dt.datetime.now(dt.timezone.utc)
    if when is None and start is None:
        when, source = created, "processing"
    stem = rec_path.name[: -len(RECORD_SUFFIX)]
    props: dict[str, Any] = {
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "geosam:version": record.get("versions", {}).get("geosam", geosam.__version__),
        "geosam:scene": os.path.basename(scene),
        "geosam:scene_sha256": record["scene"].get("sha256"),
        "geosam:model": record["model"].get("name"),
        "geosam:model_weights_sha256": record["model"].get("weights_sha256"),
        "geosam:classes": record["model"].get("classes"),
        "geosam:region_source": record.get("region_source"),
        "geosam:n_regions": record.get("results", {}).get("regions"),
        "geosam:n_tiles": record.get("tiling", {}).get("tiles"),
        "geosam:datetime_source": source,
    }
    if start is not None:
        props["start_datetime"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        props["end_datetime"] = end.strftime("%Y-%m-%dT%H:%M:%SZ") if end else None
    item = pystac.Item(
        id=item_id or stem,
        geometry=geometry,
        bbox=[min(lons), min(lats), max(lons), max(lats)],
        datetime=when,
        properties=props,
        start_datetime=start,
        end_datetime=end,
    )
    epsg = crs.to_epsg()
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(
        code=f"EPSG:{epsg}" if epsg else None,
        wkt2=None if epsg else crs.to_wkt(),
        shape=[height, width],
        transform=[float(v) for v in list(transform)[:6]],
        bbox=[bounds.left, bounds.bottom, bounds.right, bounds.top],
    )
    outputs: dict[str, str] = {**record.get("outputs", {}), "record": rec_path.name}
    for kind, name in outputs.items():
        if kind not in _ASSETS or not (rec_path.parent / name).exists():
            continue
        media, roles, title = _ASSETS[kind]
        asset = pystac.Asset(href=f"./{name}", media_type=media, roles=list(roles), title=title)
        item.add_asset(kind, asset)
    for qml in sorted(rec_path.parent.glob(f"{stem}*.qml")):
        key = "style_" + qml.stem[len(stem) :].lstrip("_") if qml.stem != stem else "style"
        item.add_asset(key, pystac.Asset(href=f"./{qml.name}", media_type="text/xml", roles=["style"]))
    if "classes" in item.assets:
        scheme = read_class_scheme(classes)
        ext = ClassificationExtension.ext(item.assets["classes"], add_if_missing=True)
        ext.classes = [
            Classification.create(
                value=i,
                name=safe_name(n).replace(".", "-"),
                description=n,
                color_hint=scheme.hex_color(i).lstrip("#").upper(),
            )
            for i, n in enumerate(scheme.names)
        ] + [Classification.create(value=scheme.nodata, name="nodata", nodata=True)]
    return item


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from geosam.io.atomic import atomic_path

    text = json.dumps(data, indent=2) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_scene_item(record_path: str | os.PathLike[str], *, item_id: str | None = None) -> Path:
    """Write the scene's STAC item next to its outputs (atomically) and return its path."""
    item = scene_item(record_path, item_id=item_id)
    path = item_path(record_path)
    _write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))
    return path


def write_collection(
    out_dir: str | os.PathLike[str],
    *,
    collection_id: str | None = None,
    description: str = "Land-cover classes and regions made by geosam",
) -> Path | None:
    """(Re)build ``<out_dir>/collection.json`` over every scene item in the folder.

    Items are found at ``<out_dir>/*/*_stac_item.json`` and ``<out_dir>/*_stac_item.json``; each is
    rewritten with its ``root``/``parent``/``collection`` links. Returns ``None`` when there is none.
    """
    import pystac

    from geosam.batch import safe_name

    out = Path(out_dir).absolute()
    paths = sorted({*out.glob(f"*{ITEM_SUFFIX}"), *out.glob(f"*/*{ITEM_SUFFIX}")})
    found: list[tuple[Path, Any]] = []
    for p in paths:
        try:
            item = pystac.Item.from_dict(json.loads(p.read_text(encoding="utf-8")), preserve_dict=False)
        except (OSError, ValueError, KeyError, pystac.STACError):
            continue  # a foreign or broken file: not ours to describe
        item.clear_links()
        item.set_self_href(str(p))
        found.append((p, item))
    if not found:
        return None
    items = [item for _, item in found]
    boxes = [i.bbox for i in items if i.bbox]
    bbox = [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]
    times = [
        t
        for i in items
        for t in (i.datetime, i.common_metadata.start_datetime, i.common_metadata.end_datetime)
        if t is not None
    ]
    collection = pystac.Collection(
        id=collection_id or safe_name(out.name),
        description=description,
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(times), max(times)]])),
        license="other",
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )
    for item in items:  # before the collection has an href, so items keep their own locations
        collection.add_item(item)
    path = out / COLLECTION_NAME
    collection.set_self_href(str(path))
    for p, item in found:
        _write_json(p, item.to_dict(include_self_link=False, transform_hrefs=True))
    _write_json(path, collection.to_dict(include_self_link=False, transform_hrefs=True))
    return path
