"""Immutable value objects shared by every pipeline stage.

They hold plain Python numbers and strings (no open datasets, no arrays, no torch tensors) so they are
cheap to create, hashable, and picklable into dask tasks. Pixel coordinates are always
``(col, row)`` offsets in the *scene's* pixel grid, with ``row`` growing downwards, and windows are
half-open: a window covers columns ``col_off <= c < col_off + width``.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from geosam.errors import ConfigError

if TYPE_CHECKING:  # imported lazily: keep ``import geosam`` light
    from affine import Affine
    from rasterio.windows import Window

    from geosam.geodesy import GroundResolution

__all__ = ["ClassScheme", "PixelWindow", "SceneInfo", "TileSpec"]


@dataclass(frozen=True, slots=True)
class PixelWindow:
    """A rectangle of pixels in a scene's grid (half-open), possibly reaching outside the scene.

    Attributes:
        col_off: First column (may be negative for halos that overhang the left edge).
        row_off: First row (may be negative).
        width: Number of columns (> 0).
        height: Number of rows (> 0).
    """

    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def col_end(self) -> int:
        """One past the last column."""
        return self.col_off + self.width

    @property
    def row_end(self) -> int:
        """One past the last row."""
        return self.row_off + self.height

    def to_rasterio(self) -> Window:
        """Return the equivalent :class:`rasterio.windows.Window`."""
        from rasterio.windows import Window

        return Window(self.col_off, self.row_off, self.width, self.height)

    def intersection(self, other: PixelWindow) -> PixelWindow | None:
        """Return the overlap of two windows, or ``None`` when they do not overlap."""
        c0, r0 = max(self.col_off, other.col_off), max(self.row_off, other.row_off)
        c1, r1 = min(self.col_end, other.col_end), min(self.row_end, other.row_end)
        if c1 <= c0 or r1 <= r0:
            return None
        return PixelWindow(c0, r0, c1 - c0, r1 - r0)

    def relative_to(self, outer: PixelWindow) -> tuple[slice, slice]:
        """Row and column slices of this window inside an array covering ``outer``."""
        r0, c0 = self.row_off - outer.row_off, self.col_off - outer.col_off
        return slice(r0, r0 + self.height), slice(c0, c0 + self.width)


@dataclass(frozen=True, slots=True)
class TileSpec:
    """One tile of a scene: what to read and which part of it this tile owns.

    The *read window* (``window``) is ``size x size`` pixels and includes a ``halo`` of context on each
    side. The *core* is the part of the scene this tile is responsible for: cores of the tiles of a plan
    never overlap and together cover the scene exactly. Edge tiles whose read window reaches outside the
    scene are ``padded``: the outside pixels are filled with nodata when read.

    Attributes:
        scene_id: Identifier of the scene (the plan's ``scene_id``).
        index: Position of the tile in its plan (row-major), unique per scene.
        row: Tile row in the grid.
        col: Tile column in the grid.
        window: Read window in scene pixels (may overhang the scene).
        core: Owned window in scene pixels (always inside the scene).
        halo: Context width in pixels on each side of the core.
        transform: Affine geotransform of the read window's top-left pixel, as the 6 coefficients
            ``(a, b, c, d, e, f)`` of :class:`affine.Affine` (rasterio's order, not GDAL's), in the
            scene CRS.
        crs: The scene CRS as WKT.
        padded: ``True`` when ``window`` reaches outside the scene.
    """

    scene_id: str
    index: int
    row: int
    col: int
    window: PixelWindow
    core: PixelWindow
    halo: int
    transform: tuple[float, float, float, float, float, float]
    crs: str
    padded: bool

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the read window in pixels."""
        return (self.window.height, self.window.width)

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """Row and column slices of the core inside the tile array."""
        return self.core.relative_to(self.window)

    @property
    def affine(self) -> Affine:
        """The read window's transform as an :class:`affine.Affine`."""
        from affine import Affine

        return Affine(*self.transform)

    @property
    def tile_id(self) -> str:
        """Stable human-readable id, ``r<row>_c<col>``."""
        return f"r{self.row:03d}_c{self.col:03d}"


def _default_color(i: int, n: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((i / max(n, 1)) % 1.0, 0.65, 0.9)
    return (round(r * 255), round(g * 255), round(b * 255))


@dataclass(frozen=True, slots=True)
class ClassScheme:
    """Class names and colours of a land-cover legend; class ``i`` is ``names[i]``.

    Class ids are stored as uint8 in class maps, so at most 255 classes are allowed and
    ``nodata`` (default 255) must not be a class id.

    Attributes:
        names: Class names, unique, non-empty.
        colors: One ``(r, g, b)`` colour (0-255) per class.
        nodata: The class-map value used for "no data".
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...] = field(default=())
    nodata: int = 255

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        if not names:
            raise ConfigError("a class scheme needs at least one class")
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"class names must be unique; repeated: {', '.join(dupes)}")
        if any(not n.strip() for n in names):
            raise ConfigError("class names must not be empty")
        if not 0 <= self.nodata <= 255 or self.nodata < len(names):
            raise ConfigError(
                f"nodata value {self.nodata} must be in 0..255 and not a class id "
                f"(there are {len(names)} classes)"
            )
        colors = tuple(tuple(int(v) for v in c) for c in self.colors) or tuple(
            _default_color(i, len(names)) for i in range(len(names))
        )
        if len(colors) != len(names):
            raise ConfigError(f"{len(names)} class names but {len(colors)} colours")
        for c in colors:
            if len(c) != 3 or any(not 0 <= v <= 255 for v in c):
                raise ConfigError(f"colour {c} is not an (r, g, b) triple of 0..255 integers")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Return the class id of ``name``; raise :class:`ConfigError` if unknown."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(f"unknown class {name!r}; known: {', '.join(self.names)}") from None

    def hex_color(self, i: int) -> str:
        """Colour of class ``i`` as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.colors[i])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {"names": list(self.names), "colors": [list(c) for c in self.colors], "nodata": self.nodata}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassScheme:
        """Build from :meth:`to_dict` output."""
        return cls(
            names=tuple(data["names"]),
            colors=tuple(tuple(c) for c in data.get("colors", ())),  # type: ignore[misc]
            nodata=int(data.get("nodata", 255)),
        )

    def to_json(self) -> str:
        """Compact JSON string of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SceneInfo:
    """What geosam knows about an input raster, read from its header only (no pixels).

    Attributes:
        path: The path or GDAL URI as given.
        width: Columns.
        height: Rows.
        count: Number of bands.
        dtype: numpy dtype name of the bands (``uint8``, ``uint16``, ``int16``, ``float32``...).
        crs: CRS as WKT.
        transform: Geotransform coefficients ``(a, b, c, d, e, f)``.
        nodata: Per-band nodata values (``None`` where unset).
        band_names: Per-band names from band descriptions or colour interpretation (``None`` if unknown).
        has_mask: Whether the raster has an internal/per-dataset mask band.
    """

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    nodata: tuple[float | None, ...]
    band_names: tuple[str | None, ...]
    has_mask: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (absolute values; rotation ignored)."""
        a, b, _, d, e, _ = self.transform
        return ((a * a + d * d) ** 0.5, (b * b + e * e) ** 0.5)

    @property
    def ground_resolution(self) -> GroundResolution | None:
        """Ground size of the pixels at the scene centre (:func:`geosam.geodesy.ground_resolution`).

        Measured on the ellipsoid in every CRS: projected ones (any unit, any scale factor, Web Mercator
        included) and geographic ones. ``None`` when the CRS has no ellipsoid.
        """
        from geosam.geodesy import ground_resolution

        return ground_resolution(self.crs, self.transform, self.width, self.height)

    @property
    def gsd_m(self) -> float | None:
        """Ground sampling distance in metres, 4 significant digits (``None`` when it cannot be measured).

        The side of the square with one pixel's ground area at the scene centre
        (:attr:`geosam.geodesy.GroundResolution.mean_m`): 10 m UTM pixels give 10.0, 10 m Web Mercator
        pixels at 60 N give 5.009, 0.0001 degree pixels at 45 N give 9.3.
        """
        from geosam.geodesy import round_significant

        res = self.ground_resolution
        return None if res is None else round_significant(res.mean_m, 4)


def as_tuple6(values: Sequence[float]) -> tuple[float, float, float, float, float, float]:
    """Convert an :class:`affine.Affine` or sequence to a 6-tuple of floats."""
    v = [float(x) for x in list(values)[:6]]
    return (v[0], v[1], v[2], v[3], v[4], v[5])
