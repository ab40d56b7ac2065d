"""The class map being assessed: its grid, its class names, and how its windows are read.

Class names, in this order: geosam's ``GEOSAM_CLASS_SCHEME`` tag (value ``i`` is ``names[i]``), the GDAL
category names or raster attribute table of the ``.aux.xml`` side-car (what QGIS, ArcGIS and
``gdal_edit`` write), else none (the assessment then names classes by their values, ``"3"``).

Band 1 holds the class ids: whole numbers of any integer or float dtype. A pixel is nodata where the
band's nodata value or mask says so, or where a float value is not finite.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.errors import DataError, MissingCRSError, NotARasterError, RasterNotFoundError

if TYPE_CHECKING:
    from affine import Affine

__all__ = ["MapInfo", "open_map", "open_raster", "whole_ids"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapInfo:
    """The class map's grid and class names.

    Attributes:
        path: The map.
        width: Columns.
        height: Rows.
        transform: Geotransform ``(a, b, c, d, e, f)`` in CRS units.
        crs: CRS as WKT.
        crs_name: Short CRS name (``EPSG:32119`` where it has a code).
        dtype: Band 1 data type.
        names: Map value -> class name (empty when the map stores none).
        names_from: Where the names came from (``geosam class scheme``, ``category names``,
            ``attribute table`` or ``values``).
        pixel_area_m2: Area of a pixel in m² for projected CRSs with linear units, else ``None``.
    """

    path: str
    width: int
    height: int
    transform: tuple[float, float, float, float, float, float]
    crs: str
    crs_name: str
    dtype: str
    names: dict[int, str]
    names_from: str
    pixel_area_m2: float | None

    @property
    def affine(self) -> Affine:
        """:attr:`transform` as an :class:`affine.Affine`."""
        from affine import Affine

        return Affine(*self.transform)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the map in its CRS (rotated grids included)."""
        t = self.affine
        corners = [
            t @ (c, r) for c, r in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height))
        ]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        return (min(xs), min(ys), max(xs), max(ys))


def open_raster(path: Path, role: str) -> Any:
    """Open a raster of class ids with rasterio (call inside :func:`geosam.io.env.geosam_env`).

    Args:
        path: The raster.
        role: What it is, for messages (``"class map"``, ``"reference raster"``).

    Returns:
        The open ``rasterio`` dataset (close it, or use it as a context manager).

    Raises:
        RasterNotFoundError: ``path`` does not exist.
        NotARasterError: GDAL cannot read it, band 1 holds neither integers nor floats, or it looks like
            imagery (several float bands and no class names).
        MissingCRSError: It has no CRS or geotransform.
    """
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    if not path.exists():
        raise RasterNotFoundError(f"{role} not found", path)
    if path.is_dir():
        raise NotARasterError(f"the {role} is a directory, not a raster file", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except RasterioError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise NotARasterError(f"cannot read the {role} as a raster ({first})", path) from None
    if ds.crs is None or ds.transform.is_identity:
        ds.close()
        raise MissingCRSError(
            f"the {role} has no CRS or geotransform, so it cannot be placed on the ground; assign its CRS "
            "(gdal_edit -a_srs EPSG:<code>)",
            path,
        )
    dt = np.dtype(ds.dtypes[0])
    if not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        ds.close()
        raise NotARasterError(f"the {role} holds {dt.name} values, not class ids", path)
    return ds


def _map_names(ds: Any, path: Path) -> tuple[dict[int, str], str]:
    import json

    from geosam.io.cog import CLASS_SCHEME_TAG
    from geosam.io.pam import class_names
    from geosam.types import ClassScheme

    tag = ds.tags().get(CLASS_SCHEME_TAG)
    if tag:
        try:
            scheme = ClassScheme.from_dict(json.loads(tag))
            return dict(enumerate(scheme.names)), "geosam class scheme"
        except (ValueError, KeyError, TypeError) as err:
            log.warning("%s: ignored a corrupt %s tag (%s)", path, CLASS_SCHEME_TAG, err)
    names, where = class_names(path)
    return (names, where) if names and where else ({}, "values")


def _pixel_area_m2(crs: Any, transform: Affine) -> float | None:
    from pyproj import CRS

    pcrs = CRS.from_wkt(crs.to_wkt())
    if not pcrs.is_projected:
        return None
    factor = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
    return abs(transform.a * transform.e - transform.b * transform.d) * factor * factor


def open_map(path: str | os.PathLike[str]) -> MapInfo:
    """Read the header and class names of a class map (band 1).

    Raises:
        RasterNotFoundError: ``path`` does not exist.
        NotARasterError: GDAL cannot read it, band 1 holds neither integers nor floats, or it looks like
            imagery (several float bands and no class names).
        MissingCRSError: It has no CRS or geotransform.
    """
    from geosam.io.env import geosam_env

    p = Path(path)
    with geosam_env(p), open_raster(p, "class map") as ds:
        names, where = _map_names(ds, p)
        if ds.count > 1 and np.issubdtype(np.dtype(ds.dtypes[0]), np.floating) and not names:
            raise NotARasterError(
                f"this is not a class map: it has {ds.count} {ds.dtypes[0]} bands and no class names, like "
                "imagery; pass the map to assess (a run's *_classes.tif, or a one-band raster of class ids)",
                p,
            )
        crs = ds.crs
        epsg = crs.to_epsg()
        return MapInfo(
            path=os.fspath(p),
            width=ds.width,
            height=ds.height,
            transform=tuple(ds.transform)[:6],  # type: ignore[arg-type]
            crs=crs.to_wkt(),
            crs_name=f"EPSG:{epsg}" if epsg else (crs.to_string() or "custom"),
            dtype=ds.dtypes[0],
            names=names,
            names_from=where,
            pixel_area_m2=_pixel_area_m2(crs, ds.transform),
        )


def whole_ids(raw: np.ndarray, ok: np.ndarray, path: str, role: str) -> np.ndarray:
    """Class ids of a window as int64 (0 where not ``ok``); non-finite floats become invalid.

    Args:
        raw: Band values ``(h, w)`` of any integer or float dtype.
        ok: bool ``(h, w)`` validity, updated in place for non-finite values.
        path: The raster, for messages.
        role: What it is, for messages.

    Raises:
        DataError: A valid value is not a whole number (an image or a confidence raster).
    """
    if np.issubdtype(raw.dtype, np.floating):
        ok &= np.isfinite(raw)
        vals = raw[ok]
        if vals.size and not np.array_equal(vals, np.rint(vals)):
            bad = vals[vals != np.rint(vals)][0]
            raise DataError(
                f"the {role} holds non-integer values (e.g. {bad:g}); class ids must be whole numbers "
                f"(is it an image or a confidence raster rather than classes?)",
                path,
            )
    return np.where(ok, raw, 0).astype(np.int64)
