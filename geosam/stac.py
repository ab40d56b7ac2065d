"""STAC metadata for geosam outputs: one Item per scene, one Collection per output folder.

Built with the ecosystem's libraries: ``rio-stac`` makes the Item from the class map (footprint, bbox),
``pystac`` adds the projection and classification extensions, computes the Collection's extent
(``Extent.from_items``), lays out the links (``normalize_hrefs``) and writes the files through
:func:`atomic_stac_io` (each file replaced atomically, unchanged files left alone). geosam adds what
those do not know: the scene's acquisition time, the run's provenance, and one asset per output file.

A run writes ``<stem>_stac_item.json`` with the scene's other outputs, inside its transaction
(``predict_scene(stac_item_id=...)``, :func:`write_item`), so an item and its assets are committed or
kept together; :func:`write_scene_item` adds one to a scene processed without. Items are built from the
run record (:class:`~geosam.record.RunRecord`) and the class map:

* ``geometry``/``bbox``: the scene's footprint (its full raster extent, 16 points per edge) in EPSG:4326
  longitude/latitude, 7 decimals (footprints crossing the antimeridian are not split);
* ``datetime``: the acquisition time from the scene's metadata when it has one (GDAL tags
  ``ACQUISITION_DATE``, ``DATE_ACQUIRED``, ``SENSING_TIME``..., else ``TIFFTAG_DATETIME``; an
  ``ACQUISITION_YEAR`` alone gives ``start_datetime``/``end_datetime`` for that year), else the
  processing time; ``geosam:datetime_source`` says which;
* the projection extension (``proj:code`` or ``proj:wkt2``, ``proj:shape``, ``proj:transform``,
  ``proj:bbox``) and, on the class map, the classification extension (class values, names, colours);
* one asset per output: ``classes`` (COG, role ``data``), ``confidence`` (COG), ``regions_geojson``,
  ``regions_gpkg``, ``tiles_gpkg``, ``qgis_project``, ``record`` (the run record, role ``metadata``),
  ``classes_aux`` (the class map's GDAL ``.aux.xml`` sidecar with the class names as categories and a
  raster attribute table, role ``metadata``: a copy of the ``.tif`` alone loses them) and the QGIS
  ``.qml`` styles (role ``style``), all with hrefs relative to the item.

:func:`write_collection` (re)builds ``<out>/collection.json`` from the items of committed scenes found
in the output folder (depth 1 and 2), so it is idempotent and survives crashes. Links are relative (a
self-contained catalog): the folder can be moved or served as is. Items keep their place beside their
scene's outputs (``<out>/<scene_id>/``, or ``<out>/`` for a flat layout).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import geosam
from geosam.errors import OutputError
from geosam.outputs import OUTPUT_KINDS, STAC_ITEM_SUFFIX, SceneOutputs, safe_name
from geosam.record import RunRecord, read_run_record

__all__ = [
    "COLLECTION_NAME",
    "ITEM_SUFFIX",
    "atomic_stac_io",
    "build_item",
    "item_path",
    "scene_item",
    "write_collection",
    "write_item",
    "write_scene_item",
]

ITEM_SUFFIX = STAC_ITEM_SUFFIX
COLLECTION_NAME = "collection.json"
#: Points per edge of the footprint polygon (rio-stac's ``geom_densify_pts``).
_FOOTPRINT_POINTS = 16

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
    "probabilities": (
        "image/tiff; application=geotiff; profile=cloud-optimized",
        ["data"],
        "Class probabilities of each pixel (dense models; percent, one band per class)",
    ),
    "qgis_project": ("application/x-qgis", ["metadata"], "QGIS project"),
    "record": ("application/json", ["metadata"], "geosam run record"),
    "classes_aux": (
        "application/xml",
        ["metadata"],
        "Class names of the class map (GDAL PAM sidecar: categories and raster attribute table)",
    ),
    "confidence_aux": ("application/xml", ["metadata"], "GDAL PAM sidecar of the confidence raster"),
    "probabilities_aux": ("application/xml", ["metadata"], "GDAL PAM sidecar of the probability raster"),
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
            return dt.datetime.strptime(s, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


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
        start = dt.datetime(y, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(y, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
        return None, start, end, "ACQUISITION_YEAR"
    return None, None, None, ""


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
    from rio_stac.stac import create_stac_item

    from geosam.io.cog import read_class_scheme

    folder = outputs.directory
    scene = record.scene.path
    when, start, end, source = _scene_times(scene)
    created = _parse_time(record.created) or dt.datetime.now(dt.UTC)
    if when is None and start is None:
        when, source = created, "processing"
    props: dict[str, Any] = {
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "geosam:version": record.versions.get("geosam", geosam.__version__),
        "geosam:scene": os.path.basename(scene),
        "geosam:scene_sha256": record.scene.sha256,
        "geosam:model": record.model.name,
        "geosam:model_weights_sha256": record.model.weights_sha256,
        "geosam:classes": list(record.model.classes),
        "geosam:region_source": record.region_source,
        "geosam:n_regions": record.results.regions,
        "geosam:n_tiles": record.tiling.tiles,
        "geosam:datetime_source": source,
    }
    domain = record.domain
    if domain is not None:  # is the scene like the model's training data? (geosam.domain)
        props["geosam:out_of_domain"] = domain.get("out_of_domain")
        props["geosam:partly_out_of_domain"] = domain.get("partly_out_of_domain")
        props["geosam:domain"] = domain
    if start is not None and end is not None:
        props["start_datetime"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        props["end_datetime"] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        classes = folder / record.outputs["classes"]
        with rasterio.open(classes) as ds:
            item = create_stac_item(
                ds,
                input_datetime=when,
                id=item_id or outputs.stem,
                properties=props,
                assets={"classes": _asset("classes", classes.name)},
                geom_densify_pts=_FOOTPRINT_POINTS,
                geom_precision=7,
            )
            crs, transform, shape, bounds = ds.crs, ds.transform, [ds.height, ds.width], ds.bounds
    except (OSError, KeyError, rasterio.errors.RasterioError) as err:
        msg = f"cannot describe the scene: {type(err).__name__}: {err}"
    else:
        msg = ""
    if msg:
        raise OutputError(msg, outputs.record)
    epsg = crs.to_epsg()
    ProjectionExtension.ext(item, add_if_missing=True).apply(
        code=f"EPSG:{epsg}" if epsg else None,
        wkt2=None if epsg else crs.to_wkt(),
        shape=shape,
        transform=[float(v) for v in list(transform)[:6]],
        bbox=[bounds.left, bounds.bottom, bounds.right, bounds.top],
    )
    files = dict(record.outputs)
    for kind, path in outputs.pam_sidecars().items():  # records written before sidecars were listed
        files.setdefault(kind, path.name)
    for kind, name in files.items():
        if kind in _ASSETS and kind not in ("classes", "record") and (folder / name).exists():
            item.add_asset(kind, _asset(kind, name))
    item.add_asset("record", _asset("record", outputs.record.name))  # committed with the item, last
    styles = {q for kind in OUTPUT_KINDS for q in outputs.sidecars(kind) if q.suffix == ".qml"}
    for qml in sorted(q for q in styles if q.is_file()):
        key = "style_" + qml.stem[len(outputs.stem) :].lstrip("_") if qml.stem != outputs.stem else "style"
        item.add_asset(key, pystac.Asset(href=f"./{qml.name}", media_type="text/xml", roles=["style"]))
    scheme = read_class_scheme(classes)
    ClassificationExtension.ext(item.assets["classes"], add_if_missing=True).classes = [
        Classification.create(
            value=i,
            name=safe_name(n).replace(".", "-"),
            description=n,
            color_hint=scheme.hex_color(i).lstrip("#").upper(),
        )
        for i, n in enumerate(scheme.names)
    ] + [Classification.create(value=scheme.nodata, name="nodata", nodata=True)]
    return item


def _asset(kind: str, name: str) -> Any:
    import pystac

    media, roles, title = _ASSETS[kind]
    return pystac.Asset(href=f"./{name}", media_type=media, roles=list(roles), title=title)


def atomic_stac_io() -> Any:
    """A pystac ``StacIO`` that writes each file atomically and leaves unchanged files untouched.

    A ``pystac.stac_io.DefaultStacIO`` subclass (pystac is imported only here, so ``import geosam.stac``
    stays light): pass it as ``stac_io=`` to pystac's ``save`` methods, so a reader (or a crash) never
    sees half a catalog file.
    """
    from pystac.stac_io import DefaultStacIO

    from geosam.io.atomic import atomic_path

    class AtomicStacIO(DefaultStacIO):
        """pystac's file I/O, writing through :func:`geosam.io.atomic.atomic_path`."""

        def write_text_to_href(self, href: str, txt: str) -> None:
            path = Path(href)
            try:
                if path.read_text(encoding="utf-8") == txt:
                    return
            except OSError:
                pass
            with atomic_path(path) as tmp:
                tmp.write_text(txt, encoding="utf-8")

    return AtomicStacIO()


def _save_item(item: Any, path: Path) -> Path:
    item.set_self_href(str(path))
    item.save_object(include_self_link=False, stac_io=atomic_stac_io())
    return path


def write_scene_item(record_path: str | os.PathLike[str], *, item_id: str | None = None) -> Path:
    """Write the STAC item of an already committed scene next to its outputs (atomically).

    Runs write the item inside the scene's transaction instead (``predict_scene(stac_item_id=...)``);
    this is for scenes processed without one.
    """
    return _save_item(scene_item(record_path, item_id=item_id), item_path(record_path))


def write_item(record: RunRecord, outputs: SceneOutputs, *, item_id: str | None = None) -> Path:
    """Write the item of the scene in ``outputs`` (a run's staged set) from its record; returns its path."""
    return _save_item(build_item(record, outputs, item_id=item_id), outputs.stac_item)


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
    rewritten (where its links change) with its ``root``/``parent``/``collection`` links, in place.
    Transactions of killed runs in these folders are finished or rolled back first
    (:func:`geosam.io.transaction.recover`), and only items of committed scenes (their run record lists
    the item's assets) are listed. The extent is ``pystac.Extent.from_items``; links are laid out by
    ``normalize_hrefs`` and written by :func:`atomic_stac_io`. Returns ``None`` when there is none.
    """
    import pystac
    from pystac.layout import CustomLayoutStrategy

    from geosam.io.transaction import recover

    out = Path(out_dir).absolute()
    for folder in (out, *(d for d in out.iterdir() if d.is_dir())) if out.is_dir() else ():
        recover(folder)
    found: dict[str, Path] = {}
    items = []
    for p in sorted({*out.glob(f"*{ITEM_SUFFIX}"), *out.glob(f"*/*{ITEM_SUFFIX}")}):
        if not _committed(p):
            continue  # a scene without its complete set: its item describes nothing
        try:
            item = pystac.Item.from_file(str(p))
        except (OSError, ValueError, KeyError, pystac.STACError):
            continue  # a foreign or broken file: not ours to describe
        if item.id in found:
            continue  # the same id twice (a copied folder): the first one found describes it
        item.clear_links()
        found[item.id] = p
        items.append(item)
    if not items:
        return None
    collection = pystac.Collection(
        id=collection_id or safe_name(out.name),
        description=description,
        extent=pystac.Extent.from_items(items),
        license="other",
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )
    collection.add_items(items)
    # every item stays where it is, beside its scene's outputs
    layout = CustomLayoutStrategy(item_func=lambda item, _parent: str(found[item.id]))
    collection.normalize_hrefs(str(out), strategy=layout)
    collection.save(stac_io=atomic_stac_io())
    return out / COLLECTION_NAME
