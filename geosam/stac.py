"""STAC metadata for geosam outputs (pystac): one Item per scene, one Collection per output folder.

A run writes ``<stem>_stac_item.json`` with the scene's other outputs, inside its transaction
(``predict_scene(stac_item_id=...)``, :func:`write_item`), so an item and its assets are committed or
kept together; :func:`write_scene_item` adds one to a scene processed without. Items are built from the
run record (:class:`~geosam.record.RunRecord`) and the class map:

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

:func:`write_collection` (re)builds ``<out>/collection.json`` from the items of committed scenes found
in the output folder (depth 1 and 2), so it is idempotent and survives crashes; each file is written
atomically.
Links are relative (a self-contained catalog): the folder can be moved or served as is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import geosam
from geosam.errors import OutputError
from geosam.outputs import OUTPUT_KINDS, STAC_ITEM_SUFFIX, SceneOutputs
from geosam.record import RunRecord, read_run_record

__all__ = [
    "COLLECTION_NAME",
    "ITEM_SUFFIX",
    "build_item",
    "item_path",
    "scene_item",
    "write_collection",
    "write_item",
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
    """Build the ``pystac.Item`` of a processed scene from its run record file (see the module docstring).

    Args:
        record_path: The scene's ``<stem>_run.json``.
        item_id: Item id (default: the scene stem).

    Raises:
        OutputError: The run record or the class map is missing or unreadable.
    """
    record = read_run_record(record_path)
    return build_item(record, SceneOutputs.from_record_path(record_path), item_id=item_id)


def build_item(record: RunRecord, outputs: SceneOutputs, *, item_id: str | None = None) -> Any:
    """Build the ``pystac.Item`` of a scene from its run record and the files in ``outputs.directory``.

    The folder may be a run's staging folder: the item is then committed with the scene's other files
    (:mod:`geosam.io.transaction`), and its ``record`` asset names the record committed with it.

    Args:
        record: The scene's run record.
        outputs: Where the scene's files are.
        item_id: Item id (default: the scene stem).

    Raises:
        OutputError: The class map is missing or unreadable.
    """
    import pystac
    import rasterio
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension

    from geosam._batch_inputs import safe_name
    from geosam.io.cog import read_class_scheme

    folder = outputs.directory
    try:
        classes = folder / record.outputs["classes"]
        with rasterio.open(classes) as ds:
            crs, transform, width, height, bounds = ds.crs, ds.transform, ds.width, ds.height, ds.bounds
    except (OSError, KeyError, rasterio.errors.RasterioError) as err:
        msg = f"cannot describe the scene: {type(err).__name__}: {err}"
    else:
        msg = ""
    if msg:
        raise OutputError(msg, outputs.record)
    geometry = _footprint(crs, transform, width, height)
    lons = [p[0] for p in geometry["coordinates"][0]]
    lats = [p[1] for p in geometry["coordinates"][0]]
    scene = record.scene.path
    when, start, end, source = _scene_times(scene)
    created = _parse_time(record.created) or dt.datetime.now(dt.timezone.utc)
    if when is None and start is None:
        when, source = created, "processing"
    props: dict[str, Any] = {
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "geosam:version": record.versions.get("geosam", geosam.__version__),
        "geosam:scene": os.path.basename(scene),
        "geosam:scene_sha256": record.scene.sha256,
        "geosam:model": record.model.name,
        "geosam:model_weights_sha256": record.model.weights_sha256,
        "geosam:classes": record.model.classes,
        "geosam:region_source": record.region_source,
        "geosam:n_regions": record.results.regions,
        "geosam:n_tiles": record.tiling.tiles,
        "geosam:datetime_source": source,
    }
    domain = record.domain
    if domain is not None:  # is the scene like the model's training data? (geosam.domain)
        props["geosam:out_of_domain"] = domain.get("out_of_domain")
        props["geosam:domain"] = domain
    if start is not None:
        props["start_datetime"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        props["end_datetime"] = end.strftime("%Y-%m-%dT%H:%M:%SZ") if end else None
    item = pystac.Item(
        id=item_id or outputs.stem,
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
    for kind, name in record.outputs.items():
        if kind not in _ASSETS or not (folder / name).exists():
            continue
        media, roles, title = _ASSETS[kind]
        item.add_asset(kind, pystac.Asset(href=f"./{name}", media_type=media, roles=list(roles), title=title))
    media, roles, title = _ASSETS["record"]  # committed with the item (the last file of the set)
    item.add_asset(
        "record", pystac.Asset(href=f"./{outputs.record.name}", media_type=media, roles=roles, title=title)
    )
    styles = {q for kind in OUTPUT_KINDS for q in outputs.sidecars(kind) if q.suffix == ".qml"}
    for qml in sorted(q for q in styles if q.is_file()):
        key = "style_" + qml.stem[len(outputs.stem) :].lstrip("_") if qml.stem != outputs.stem else "style"
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
    """Write the STAC item of an already committed scene next to its outputs (atomically).

    Runs write the item inside the scene's transaction instead (``predict_scene(stac_item_id=...)``);
    this is for scenes processed without one.
    """
    item = scene_item(record_path, item_id=item_id)
    path = item_path(record_path)
    _write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))
    return path


def write_item(record: RunRecord, outputs: SceneOutputs, *, item_id: str | None = None) -> Path:
    """Write the item of the scene in ``outputs`` (a run's staged set) from its record; returns its path."""
    item = build_item(record, outputs, item_id=item_id)
    _write_json(outputs.stac_item, item.to_dict(include_self_link=False, transform_hrefs=False))
    return outputs.stac_item


def _committed(item_file: Path) -> bool:
    """Whether an item belongs to a committed scene: its run record is there with the files it lists."""
    outputs = SceneOutputs(item_file.parent, item_file.name[: -len(ITEM_SUFFIX)])
    try:
        record = read_run_record(outputs.record)
    except OutputError:
        return False
    return all((outputs.directory / name).is_file() for name in record.outputs.values())


def write_collection(
    out_dir: str | os.PathLike[str],
    *,
    collection_id: str | None = None,
    description: str = "Land-cover classes and regions made by geosam",
) -> Path | None:
    """(Re)build ``<out_dir>/collection.json`` over every scene item in the folder.

    Items are found at ``<out_dir>/*/*_stac_item.json`` and ``<out_dir>/*_stac_item.json``; each is
    rewritten with its ``root``/``parent``/``collection`` links. Transactions of killed runs in these
    folders are finished or rolled back first (:func:`geosam.io.transaction.recover`), and only items
    of committed scenes (their run record lists the item) are listed. Returns ``None`` when there is none.
    """
    import pystac

    from geosam._batch_inputs import safe_name
    from geosam.io.transaction import recover

    out = Path(out_dir).absolute()
    for folder in (out, *(d for d in out.iterdir() if d.is_dir())) if out.is_dir() else ():
        recover(folder)
    paths = sorted({*out.glob(f"*{ITEM_SUFFIX}"), *out.glob(f"*/*{ITEM_SUFFIX}")})
    found: list[tuple[Path, Any]] = []
    for p in paths:
        if not _committed(p):
            continue  # a scene without its complete set: its item describes nothing
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
