"""Reference pixels of label polygons on a scene grid, and the accuracy of a class map at them.

Rule (the usual one for polygon reference data, and the one ``geosam evaluate`` uses): a pixel belongs
to a polygon when its *centre* lies inside it (``rasterio.features.rasterize``, ``all_touched=False``).
A pixel inside polygons of different classes is ambiguous and left out; a pixel inside two polygons of
one class belongs to the first. Each polygon is rasterised over its own bounding window, so memory
follows the polygons' sizes, not the scene's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.errors import DataError
from geosam.train.metrics import confusion_matrix, summarize

if TYPE_CHECKING:
    import geopandas as gpd

    from geosam.types import SceneInfo

__all__ = [
    "LabelPolygons",
    "ReferencePixels",
    "miou",
    "read_at",
    "read_label_polygons",
    "reference_pixels",
    "score_classes",
]


@dataclass(frozen=True)
class LabelPolygons:
    """Label polygons in the scene CRS with their class.

    Attributes:
        frame: The usable polygons (scene CRS), in file order; ``frame.index`` is the feature's
            position in the file (the polygon id used for folds and groups).
        cls: ``(P,)`` class index of each usable polygon into ``classes``.
        classes: Class names, sorted.
        path: The label file.
        class_column: Attribute holding the class.
        layer: Layer read (``None``: the first).
    """

    frame: gpd.GeoDataFrame
    cls: np.ndarray
    classes: tuple[str, ...]
    path: Path
    class_column: str
    layer: str | None

    @property
    def ids(self) -> np.ndarray:
        """``(P,)`` polygon ids (feature positions in the file)."""
        return np.asarray(self.frame.index.to_numpy(), dtype=np.int64)

    def subset(self, ids: Sequence[int] | np.ndarray) -> gpd.GeoDataFrame:
        """The polygons with these ids, with the class column, in the scene CRS."""
        keep = np.isin(self.ids, np.asarray(ids))
        return self.frame.loc[keep]


@dataclass(frozen=True)
class ReferencePixels:
    """Reference pixels: scene row/col, polygon id and class index of each (int64 arrays of one length)."""

    rows: np.ndarray
    cols: np.ndarray
    polygon: np.ndarray
    label: np.ndarray
    classes: tuple[str, ...]
    ambiguous: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, keep: np.ndarray) -> ReferencePixels:
        """The pixels where the boolean ``keep`` is true."""
        return ReferencePixels(
            self.rows[keep], self.cols[keep], self.polygon[keep], self.label[keep], self.classes, 0
        )


def read_label_polygons(
    path: str | os.PathLike[str], class_column: str, info: SceneInfo, layer: str | None = None
) -> LabelPolygons:
    """Read label polygons, keep those with a class and a polygonal geometry, reproject to the scene CRS.

    Raises:
        DataError: Missing file or column (the message lists the columns), no CRS, or no usable polygon.
    """
    from geosam.train import _scene_sampling as ss
    from geosam.train.label_polygons import class_values, read_polygons

    p = Path(path)
    gdf = read_polygons(p, layer, class_column)
    scene_crs = ss.proj_crs(info)
    if not gdf.crs.equals(scene_crs):
        gdf = gdf.to_crs(scene_crs)
    names = class_values(gdf[class_column].tolist())
    usable = np.array(
        [
            g is not None and not g.is_empty and g.geom_type in ("Polygon", "MultiPolygon") and n is not None
            for g, n in zip(gdf.geometry.to_numpy(), names, strict=True)
        ],
        dtype=bool,
    )
    if not usable.any():
        raise DataError(f"no polygon has a value in {class_column!r}", p)
    gdf = gdf.reset_index(drop=True).loc[usable].copy()
    kept = [n for n, u in zip(names, usable, strict=True) if u]
    classes = tuple(sorted({str(n) for n in kept}))
    cls = np.array([classes.index(str(n)) for n in kept], np.int64)
    gdf["_class"] = [str(n) for n in kept]
    return LabelPolygons(gdf, cls, classes, p, class_column, layer)


def reference_pixels(polys: LabelPolygons, info: SceneInfo) -> ReferencePixels:
    """The scene pixels whose centre lies in each polygon (rules in the module docstring)."""
    import math

    from affine import Affine
    from rasterio.features import rasterize

    transform = Affine(*info.transform)
    inv = ~transform
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    for k, geom in enumerate(polys.frame.geometry.to_numpy()):
        x0, y0, x1, y1 = geom.bounds
        corners = [inv @ (x, y) for x in (x0, x1) for y in (y0, y1)]
        c0 = max(0, math.floor(min(c for c, _ in corners)))
        r0 = max(0, math.floor(min(r for _, r in corners)))
        c1 = min(info.width, math.ceil(max(c for c, _ in corners)))
        r1 = min(info.height, math.ceil(max(r for _, r in corners)))
        if c1 <= c0 or r1 <= r0:
            continue  # outside the scene
        h, w = r1 - r0, c1 - c0
        wt = transform @ Affine.translation(c0, r0)
        m = rasterize([(geom, 1)], out_shape=(h, w), transform=wt, fill=0, dtype="uint8").astype(bool)
        rr, cc = np.nonzero(m)
        rows.append(rr + r0)
        cols.append(cc + c0)
        owner.append(np.full(len(rr), k))
    if not rows:
        raise DataError("no polygon covers the centre of any scene pixel", polys.path)
    r, c, o = np.concatenate(rows), np.concatenate(cols), np.concatenate(owner)
    lab = polys.cls[o]
    flat = r * info.width + c
    order = np.lexsort((o, flat))
    flat, r, c, o, lab = flat[order], r[order], c[order], o[order], lab[order]
    first = np.ones(len(flat), bool)
    first[1:] = flat[1:] != flat[:-1]
    start = np.flatnonzero(first)
    lo = np.minimum.reduceat(lab, start)
    hi = np.maximum.reduceat(lab, start)
    clean = (lo == hi)[np.cumsum(first) - 1]
    keep = first & clean
    ambiguous = int((~(lo == hi)).sum())
    return ReferencePixels(r[keep], c[keep], polys.ids[o[keep]], lab[keep], polys.classes, ambiguous)


def read_at(path: str | os.PathLike[str], ref: ReferencePixels) -> np.ndarray:
    """Band-1 values of a raster on the scene grid at the reference pixels (window by window)."""
    import rasterio
    from rasterio.windows import Window

    out = np.empty(len(ref), np.int64)
    with rasterio.open(path) as ds:
        block = 512
        tile = (ref.rows // block) * ((ds.width + block - 1) // block) + ref.cols // block
        for t in np.unique(tile):
            sel = np.flatnonzero(tile == t)
            r0, c0 = int(ref.rows[sel].min()), int(ref.cols[sel].min())
            h, w = int(ref.rows[sel].max()) - r0 + 1, int(ref.cols[sel].max()) - c0 + 1
            a = ds.read(1, window=Window(c0, r0, w, h))
            out[sel] = a[ref.rows[sel] - r0, ref.cols[sel] - c0]
    return out


def score_classes(
    predicted: np.ndarray, ref: ReferencePixels, predicted_names: Sequence[str], nodata: int | None = 255
) -> dict[str, Any]:
    """Accuracy of predicted class ids at the reference pixels.

    Args:
        predicted: ``(n,)`` class ids (into ``predicted_names``) at ``ref``'s pixels.
        ref: The reference pixels.
        predicted_names: Class names of the predicted ids, each one of ``ref.classes`` (a model trained
            on some folds may know fewer classes than the reference has).
        nodata: Predicted value meaning "no class" (a nodata scene pixel): such pixels are left out
            of the metrics and counted as ``unclassified``.

    Returns:
        :func:`geosam.train.metrics.summarize` of the confusion matrix over ``ref.classes`` plus
        ``miou`` (mean intersection over union of the classes present) and ``unclassified``.

    Raises:
        DataError: A predicted class name that the reference does not have.
    """
    unknown = [n for n in predicted_names if n not in ref.classes]
    if unknown:
        raise DataError(f"predicted classes {unknown} are not reference classes {list(ref.classes)}")
    pred = np.asarray(predicted, dtype=np.int64)
    ok = np.ones(len(pred), bool) if nodata is None else pred != nodata
    lookup = np.array([ref.classes.index(n) for n in predicted_names], np.int64)
    if ok.any() and (pred[ok].min() < 0 or pred[ok].max() >= len(lookup)):
        raise DataError(f"predicted class ids outside 0..{len(lookup) - 1}")
    cm = confusion_matrix(ref.label[ok], lookup[pred[ok]], len(ref.classes))
    out = summarize(cm, ref.classes)
    out["miou"] = miou(cm)
    out["unclassified"] = int((~ok).sum())
    return out


def miou(cm: np.ndarray) -> float:
    """Mean IoU over classes present in truth or prediction: ``TP / (TP + FP + FN)`` per class."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1) - tp
    present = denom > 0
    return float((tp[present] / denom[present]).mean()) if present.any() else 0.0
