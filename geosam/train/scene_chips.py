"""Training chips sampled from one scene, labelled by polygons or by a label raster.

Both sources read only windows around the chips, never the whole scene: candidates are grouped in tiles
of ``4 x chip_size`` pixels and each tile is read once, with a chip-sized halo
(:func:`geosam.io.read.read_window`, boundless). Every chip is stretched with the scene's own stretch,
:func:`geosam.stretch.compute_stretch` once per scene and then :func:`geosam.stretch.apply_stretch`,
which is how ``geosam run`` prepares scenes. What the values mean is decided by the radiometry rule
(:mod:`geosam.radiometry`); the stretch is the scene's ``low``-``high`` percentile stretch unless
``normalize.method`` says otherwise, and the :class:`~geosam.train.data.ChipData` carries it as its
``preprocessing`` record, which the bundle stores and every run applies. Chips are stored as float16
(or float32) values in 0..1 (invalid pixels ``NaN``, given the model's nodata fill when batched), with
``low = 0`` and ``high = 1``. The options of ``geosam train polygons|raster`` that reach these
functions are :class:`~geosam.train.config.SamplingConfig` (``sampling:``); the label files are read by
:mod:`geosam.train.label_polygons` and :mod:`geosam.train.label_raster`.

Conventions. Chips are ``chip_size`` pixels square on the scene grid. A chip's *centre pixel* is
``(row_off + chip_size // 2, col_off + chip_size // 2)``: for even sizes, the pixel just below and right
of the geometric centre. Chips may reach past the scene edge; pixels outside the scene count as
nodata. A chip is skipped when its centre pixel is nodata or when more than ``max_nodata`` of its
pixels are (a pixel is nodata when any band read is: see :mod:`geosam.io.read`).

Sampling from polygons (:func:`polygon_chips`):

1. Polygons are reprojected to the scene CRS when theirs differs (a file without a CRS is an error).
   Rows with an empty class, or an empty or non-polygonal geometry, are skipped and counted.
2. Candidate centres of a polygon are the pixels of a lattice with step ``spacing`` (default
   ``chip_size // 2``) and a seeded random offset whose *pixel centres* lie inside the polygon and the
   scene. A polygon the lattice misses (smaller than the step) gets one candidate: the pixel holding its
   representative point (shapely's ``representative_point``, always inside the polygon).
3. Candidates whose centre is also inside a polygon of another class are dropped as ambiguous.
4. Each class's candidates are visited round-robin over its polygons in seeded random order, so every
   polygon gets its first chip before any polygon gets a second, until ``max_per_polygon`` chips of a
   polygon or ``max_per_class`` chips of a class are kept.
5. Label = the polygon's class; group = the polygon (feature), so that
   :func:`geosam.train.data.stratified_split` never puts chips of one polygon on both sides.

Sampling from a label raster (:func:`raster_chips`):

1. The label raster is read on the scene grid: directly when the grids are equal, else through a
   nearest-neighbour warped VRT (any CRS, resolution or extent). Valid labels are whole numbers that
   are not nodata (the raster's nodata or mask, or ``label_nodata``) and, when ``classes`` is given,
   are listed in it.
2. Candidate centres are the lattice pixels (step ``spacing``, default ``chip_size // 2``, seeded offset)
   whose label is valid. The label raster is scanned in 1024-pixel windows; only lattice values are kept.
3. Label rule ``majority`` (default): the most frequent valid class inside the chip window (ties go to
   the centre pixel's class, else to the class of the smallest id); ``centre``: the centre pixel's.
4. Groups are spatial blocks of ``block_chips x block_chips`` chips, to limit leakage between training
   and validation chips that overlap or touch. Candidates are visited round-robin over blocks, up to
   ``max_per_class`` chips per class. The grouped split keeps a block's chips *of one class* together;
   chips of different classes in one block may still end up on different sides.
5. Class names: ``classes`` (id -> name; ids sharing a name are merged into one class), else the
   raster's category names or attribute table (GDAL ``.aux.xml`` side-car), else ``class_<id>``.
   Classes are ordered by their (smallest) id.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from geosam.config import NormalizeConfig
from geosam.errors import DataError
from geosam.hashing import sha256_files
from geosam.io.pam import class_names
from geosam.train import _scene_sampling as ss
from geosam.train import label_polygons as lp
from geosam.train import label_raster as lr
from geosam.train.data import ChipData

if TYPE_CHECKING:
    from geosam.preprocess import Preprocessing

__all__ = ["polygon_chips", "raster_chips"]

log = logging.getLogger(__name__)

_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def _local(path: str) -> str:
    return os.path.abspath(path) if os.path.exists(path) else path


def _chip_data(
    sc: ss.Scene, sel: ss.Selection, classes: Sequence[str], source: str, provenance: dict[str, Any]
) -> ChipData:
    labels, kept = ss.compact_classes(sel.labels, classes, source)
    counts = Counter(kept[i] for i in labels)
    n = len(sc.bands)
    provenance = {
        **provenance,
        "scene": _local(sc.info.path),
        "scene_sha256": sha256_files([sc.info.path]),
        "bands": list(sc.bands),
        "band_names": list(sc.band_names),
        "chips": len(labels),
        "groups": len(np.unique(sel.groups)),
        "skipped_chips": sel.skipped,
        "per_class": {c: counts.get(c, 0) for c in kept},
        "scaling": ss.scaling(sc),
    }
    return ChipData(
        images=sel.images,
        labels=labels,
        classes=kept,
        bands=sc.band_names,
        low=np.zeros(n),
        high=np.ones(n),
        groups=sel.groups,
        provenance=provenance,
        gsd_m=sc.info.gsd_m,
        preprocessing=sc.record,
    )


def polygon_chips(
    scene: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    class_column: str,
    chip_size: int = 64,
    layer: str | None = None,
    bands: Sequence[int | str] | None = None,
    band_names: Sequence[str] | None = None,
    spacing: int | None = None,
    max_per_polygon: int | None = 50,
    max_per_class: int | None = None,
    max_nodata: float = 0.5,
    normalize: NormalizeConfig | None = None,
    dtype: Literal["float16", "float32"] = "float16",
    seed: int = 0,
    progress: bool = False,
    model: tuple[Preprocessing, Sequence[float]] | None = None,
) -> ChipData:
    """Sample labelled chips from a scene inside label polygons (rules in the module docstring).

    Args:
        scene: The image (any raster :func:`geosam.io.read.open_scene` accepts).
        labels: Polygons (GeoJSON, GeoPackage, Shapefile: anything GDAL/OGR reads), in any CRS.
        class_column: Attribute holding each polygon's class (names or ids; they become class names,
            sorted).
        chip_size: Chip edge in scene pixels.
        layer: Layer of a multi-layer file (GeoPackage); default the first.
        bands: Scene bands by 1-based index or name (:func:`geosam.bands.resolve_bands`); default all
            but alpha.
        band_names: Names of the selected bands (``red``, Sentinel-2 ``B04``...), as the model will
            record them; default the scene's band descriptions, else ``b<index>``.
        spacing: Lattice step between candidate centres in pixels; default ``chip_size // 2``.
        max_per_polygon: At most this many chips per polygon (``None``: no cap).
        max_per_class: At most this many chips per class (``None``: no cap).
        max_nodata: Skip chips with more than this fraction of nodata pixels.
        normalize: Scene stretch; must be the one ``geosam run`` will use (default: its default).
        dtype: Storage dtype of the 0..1 chips.
        seed: Seed of the lattice offsets and of the visiting order.
        progress: Show a progress bar while reading chips.
        model: ``(preprocessing, mean)`` of a bundle to fine-tune: chips are prepared exactly as
            ``geosam run`` prepares this scene for it (default: the scene's own stretch, ``normalize``).

    Returns:
        Chips with ``groups`` = polygon (feature index in the file), ``low = 0``, ``high = 1``,
        provenance and ``gsd_m``.

    Raises:
        DataError: Missing file or class column (the message lists the columns), no CRS, no polygon
            overlapping the scene, fewer than two classes with chips, or invalid arguments.
        RasterError: The scene cannot be read (see :func:`geosam.io.read.open_scene`).
        BandError: A band in ``bands`` does not exist.
    """
    step = ss.check_common(chip_size, spacing, max_nodata, dtype)
    lab_path = Path(labels)
    gdf = lp.read_polygons(lab_path, layer, class_column)
    sc = ss.prepare_scene(scene, bands, band_names, normalize, model)
    labels_crs = gdf.crs.to_string()
    scene_crs = ss.proj_crs(sc.info)
    reprojected = not gdf.crs.equals(scene_crs)
    if reprojected:
        gdf = gdf.to_crs(scene_crs)
    names = lp.class_values(gdf[class_column].tolist())
    geoms = gdf.geometry.to_numpy()
    usable = np.array(
        [
            g is not None and not g.is_empty and g.geom_type in ("Polygon", "MultiPolygon") and n is not None
            for g, n in zip(geoms, names, strict=True)
        ],
        dtype=bool,
    )
    keep = np.flatnonzero(usable)
    if len(keep) < len(gdf):
        log.warning(
            "%d of %d label features skipped (no class value, or not a polygon)",
            len(gdf) - len(keep),
            len(gdf),
        )
    if len(keep) == 0:
        raise DataError(f"no polygon has a value in {class_column!r}", lab_path)
    classes = tuple(sorted({n for n in (names[i] for i in keep) if n is not None}))
    poly_cls = np.array([classes.index(str(names[i])) for i in keep], np.int64)
    geoms_px = ss.to_pixels(geoms[keep], sc.info)
    rng = np.random.default_rng(seed)
    rows, cols, owner, fallbacks = lp.polygon_candidates(geoms_px, sc.info.width, sc.info.height, step, rng)
    if len(rows) == 0:
        x0, y0, x1, y1 = gdf.geometry.iloc[keep].total_bounds
        sx0, sy0, sx1, sy1 = ss.scene_bounds(sc.info)
        raise DataError(
            f"none of the {len(keep)} polygons overlaps the scene (in the scene CRS, the polygons span "
            f"x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f}; the scene x {sx0:.0f}..{sx1:.0f}, "
            f"y {sy0:.0f}..{sy1:.0f}); are they for this scene? their CRS is {labels_crs}",
            lab_path,
        )
    ambiguous = lp.ambiguous_candidates(geoms_px, poly_cls, rows, cols, owner)
    if ambiguous.any():
        log.warning("%d candidate chips dropped: their centre is in polygons of two classes", ambiguous.sum())
    ok = ~ambiguous
    cand = ss.Candidates(rows[ok], cols[ok], poly_cls[owner[ok]], keep[owner[ok]])
    sel = ss.select_and_read(
        sc,
        cand,
        chip_size=chip_size,
        max_per_group=max_per_polygon,
        max_per_class=max_per_class,
        max_nodata=max_nodata,
        dtype=dtype,
        seed=seed,
        progress=progress,
        n_classes=len(classes),
    )
    return _chip_data(
        sc,
        sel,
        classes,
        str(lab_path),
        {
            "source": "polygons",
            "labels": str(lab_path.resolve()),
            "labels_sha256": sha256_files(
                [lab_path.with_suffix(s) for s in _SHAPEFILE_PARTS if lab_path.with_suffix(s).is_file()]
                if lab_path.suffix.lower() == ".shp"
                else [lab_path]
            ),
            "layer": layer,
            "class_column": class_column,
            "labels_crs": labels_crs,
            "reprojected_to_scene_crs": reprojected,
            "chip_size": chip_size,
            "spacing": step,
            "max_per_polygon": max_per_polygon,
            "max_per_class": max_per_class,
            "max_nodata": max_nodata,
            "seed": seed,
            "features": len(gdf),
            "features_skipped": len(gdf) - len(keep),
            "small_polygon_fallbacks": fallbacks,
            "ambiguous_candidates": int(ambiguous.sum()),
        },
    )


def raster_chips(
    scene: str | os.PathLike[str],
    label_raster: str | os.PathLike[str],
    *,
    chip_size: int = 64,
    classes: Mapping[int, str] | None = None,
    label_rule: Literal["majority", "centre"] = "majority",
    label_nodata: float | None = None,
    bands: Sequence[int | str] | None = None,
    band_names: Sequence[str] | None = None,
    spacing: int | None = None,
    block_chips: int = 4,
    max_per_class: int | None = None,
    max_nodata: float = 0.5,
    normalize: NormalizeConfig | None = None,
    dtype: Literal["float16", "float32"] = "float16",
    seed: int = 0,
    progress: bool = False,
    model: tuple[Preprocessing, Sequence[float]] | None = None,
) -> ChipData:
    """Sample labelled chips from a scene where a label raster has classes (rules in the module docstring).

    Args:
        scene: The image (any raster :func:`geosam.io.read.open_scene` accepts).
        label_raster: Class ids in band 1 (whole numbers; any dtype, CRS, resolution and extent).
        chip_size: Chip edge in scene pixels.
        classes: Class id -> name; ids not listed are ignored (like nodata), ids with the same name form
            one class. Default: the raster's category names or attribute table, else ``class_<id>``
            for every id found.
        label_rule: ``majority`` (most frequent valid id in the chip) or ``centre`` (the centre pixel's).
        label_nodata: An extra id meaning "no label" (e.g. ``0``), besides the raster's nodata/mask.
        bands: Scene bands by 1-based index or name; default all but alpha.
        band_names: Names of the selected bands; default the scene's band descriptions, else ``b<index>``.
        spacing: Lattice step between candidate centres in pixels; default ``chip_size // 2``.
        block_chips: Edge of the spatial blocks used as split groups, in chips.
        max_per_class: At most this many chips per class (``None``: no cap).
        max_nodata: Skip chips with more than this fraction of nodata pixels (in the scene).
        normalize: Scene stretch; must be the one ``geosam run`` will use (default: its default).
        dtype: Storage dtype of the 0..1 chips.
        seed: Seed of the lattice offset and of the visiting order.
        progress: Show a progress bar while reading chips.
        model: ``(preprocessing, mean)`` of a bundle to fine-tune: chips are prepared exactly as
            ``geosam run`` prepares this scene for it (default: the scene's own stretch, ``normalize``).

    Returns:
        Chips with ``groups`` = spatial block, ``low = 0``, ``high = 1``, provenance and ``gsd_m``.

    Raises:
        DataError: Missing or unreadable label raster, no CRS, non-integer labels, no labelled pixel
            inside the scene, fewer than two classes with chips, or invalid arguments.
        RasterError: The scene cannot be read.
    """
    step = ss.check_common(chip_size, spacing, max_nodata, dtype)
    if label_rule not in ("majority", "centre"):
        raise DataError(f"label_rule must be 'majority' or 'centre', not {label_rule!r}")
    if block_chips < 1:
        raise DataError(f"block_chips must be at least 1, not {block_chips}")
    lab_path = Path(label_raster)
    sc = ss.prepare_scene(scene, bands, band_names, normalize, model)
    rng = np.random.default_rng(seed)
    offset = (int(rng.integers(0, step)), int(rng.integers(0, step)))
    with lr.label_grid(lab_path, sc.info) as (ds, warped):
        rows, cols, ids = lr.scan_lattice(ds, step, offset, label_nodata, lab_path)
        found = Counter(int(v) for v in np.unique(ids))
        if classes is not None:
            names_by_id = {int(k): str(v) for k, v in classes.items()}
            names_from = "classes option"
            unlisted = sorted(set(found) - set(names_by_id))
            if unlisted:
                log.warning("label ids %s are not in the class list; they are ignored", unlisted)
        else:
            cats, names_from_aux = class_names(lab_path)
            names_by_id = {i: cats.get(i, f"class_{i}") for i in sorted(found)}
            names_from = names_from_aux or "ids"
        known = np.array(sorted(names_by_id), np.int64)
        names = list(dict.fromkeys(names_by_id[int(i)] for i in known))  # ids may share a name: merged
        cls_of_id = np.array([names.index(names_by_id[int(i)]) for i in known], np.int64)
        listed = np.isin(ids, known)
        if not listed.any():
            sx0, sy0, sx1, sy1 = ss.scene_bounds(sc.info)
            raise DataError(
                "no labelled pixel on the scene: the label raster is all nodata there, or does not cover "
                f"the scene (x {sx0:.0f}..{sx1:.0f}, y {sy0:.0f}..{sy1:.0f} in the scene CRS)"
                + ("; or none of its ids is in the class list" if classes is not None else ""),
                lab_path,
            )
        rows, cols, ids = rows[listed], cols[listed], ids[listed]
        cls = lr.classes_of(ids, known, cls_of_id)
        block = block_chips * chip_size
        group = (rows // block) * (-(-sc.info.width // block)) + cols // block
        relabel: ss.Relabel | None = None
        if label_rule == "majority":

            def label_of(arrays: tuple[np.ndarray, ...]) -> int | None:
                return lr.majority(arrays[0], arrays[1], known, cls_of_id)

            relabel = (lambda w: lr.read_labels(ds, w, label_nodata, lab_path), label_of)
        sel = ss.select_and_read(
            sc,
            ss.Candidates(rows, cols, cls, group),
            chip_size=chip_size,
            max_per_group=None,
            max_per_class=max_per_class,
            max_nodata=max_nodata,
            dtype=dtype,
            seed=seed,
            progress=progress,
            relabel=relabel,
            n_classes=len(names),
        )
    return _chip_data(
        sc,
        sel,
        names,
        str(lab_path),
        {
            "source": "label_raster",
            "labels": str(lab_path.resolve()),
            "labels_sha256": sha256_files([lab_path]),
            "warped_to_scene_grid": warped,
            "label_rule": label_rule,
            "label_nodata": label_nodata,
            "class_ids": {n: [int(i) for i in known if names_by_id[int(i)] == n] for n in names},
            "class_names_from": names_from,
            "chip_size": chip_size,
            "spacing": step,
            "block_chips": block_chips,
            "max_per_class": max_per_class,
            "max_nodata": max_nodata,
            "seed": seed,
            "candidates": len(rows),
        },
    )
