"""TorchGeo datasets and samplers for dense (per-pixel) training on a scene.

TorchGeo does the geospatial bookkeeping: a :class:`~torchgeo.datasets.RasterDataset` index for the
scene (its CRS, resolution and footprint), a :class:`~torchgeo.datasets.VectorDataset` that rasterises
label polygons on the queried grid (pixel centres, ``rasterio.features.rasterize``) or a label
``RasterDataset``, their :class:`~torchgeo.datasets.IntersectionDataset` (``scene & labels``),
:class:`~torchgeo.samplers.RandomGeoSampler` for training patches inside regions of interest around
the labels, and :class:`~torchgeo.samplers.GridGeoSampler` to sweep validation areas.

Two thin wrappers, because TorchGeo lacks what geosam needs there:

* :class:`SceneDataset` reads pixels with :func:`geosam.io.read.read_window` instead of TorchGeo's
  ``rasterio.merge``: TorchGeo returns values only (nodata, masks and alpha are lost, and
  pixels outside the file are zeros), while geosam needs a validity mask (nodata pixels are not
  training targets and are filled with the band mean) and must apply the *scene's* stretch
  (:mod:`geosam.stretch`), which is what ``geosam run`` applies, so training and prediction see the
  same 0..1 inputs. It also reads only on the scene's own grid (no warping; queries are snapped to it).
* :func:`chip_aligned` snaps the sampler's patches to the encoder's chip grid anchored at the
  scene's top-left pixel, so that a chip's encoder features in training are the features the same
  chip gets in ``geosam run`` (chips are encoded one by one), and a frozen encoder's features can be
  cached per chip.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.types import PixelWindow

if TYPE_CHECKING:
    import shapely
    import torch

    from geosam.train._scene_sampling import Scene

__all__ = [
    "ChipGrid",
    "SceneDataset",
    "chip_aligned",
    "grid_patches",
    "label_dataset",
    "polygon_label_dataset",
    "random_patches",
    "rois",
    "stack",
]


@dataclass(frozen=True)
class ChipGrid:
    """The scene grid: origin (top-left corner, scene CRS), pixel size, and the encoder chip edge.

    Attributes:
        x0: x of the scene's top-left corner.
        y0: y of the scene's top-left corner.
        res: Pixel size (north-up grids; square pixels).
        chip: Encoder chip edge in pixels.
        width: Scene width in pixels.
        height: Scene height in pixels.
    """

    x0: float
    y0: float
    res: float
    chip: int
    width: int
    height: int

    def window(self, query: Any) -> PixelWindow:
        """Pixel window of a TorchGeo query ``(x slice, y slice, t slice)`` on this grid (rounded)."""
        xs, ys = query[0], query[1]
        col = round((xs.start - self.x0) / self.res)
        row = round((self.y0 - ys.stop) / self.res)
        w = max(1, round((xs.stop - xs.start) / self.res))
        h = max(1, round((ys.stop - ys.start) / self.res))
        return PixelWindow(col, row, w, h)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the scene."""
        return (self.x0, self.y0 - self.height * self.res, self.x0 + self.width * self.res, self.y0)

    def query(self, window: PixelWindow, t: slice | None = None) -> tuple[slice, slice, slice]:
        """TorchGeo query of a pixel window (the inverse of :meth:`window`)."""
        x = self.x0 + window.col_off * self.res
        y = self.y0 - window.row_off * self.res
        return (
            slice(x, x + window.width * self.res, self.res),
            slice(y - window.height * self.res, y, self.res),
            t if t is not None else slice(None),
        )


def _grid(scene: Scene, chip: int) -> ChipGrid:
    from geosam.errors import DataError

    a, b, c, d, e, f = scene.info.transform
    if b or d or not math.isclose(a, -e, rel_tol=1e-6):
        raise DataError(
            "dense training needs a north-up scene with square pixels (warp it first, e.g. "
            "gdalwarp -t_srs <crs> -tr <size> <size>)",
            scene.info.path,
        )
    return ChipGrid(c, f, a, chip, scene.info.width, scene.info.height)


def _scene_dataset_class() -> type:
    """Build :class:`SceneDataset` lazily (torchgeo stays out of ``import geosam``)."""
    from torchgeo.datasets import RasterDataset

    class _SceneDataset(RasterDataset):  # type: ignore[misc]
        """One scene as a TorchGeo dataset whose pixels geosam reads (see the module docstring).

        Samples: ``image`` float32 ``(N, H, W)`` stretched to 0..1 (invalid pixels 0), ``valid`` bool
        ``(H, W)``, ``window`` the scene pixel window, ``crs``, ``bounds``.
        """

        filename_glob = "*"
        is_image = True

        def __init__(self, scene: Scene, grid: ChipGrid) -> None:
            from rasterio.crs import CRS

            self.scene = scene
            self.grid = grid
            super().__init__(
                paths=[scene.info.path], crs=CRS.from_wkt(scene.info.crs), res=grid.res, cache=False
            )

        def __getitem__(self, query: Any) -> dict[str, Any]:
            import torch

            from geosam.io.read import read_window
            from geosam.stretch import apply_stretch

            win = self.grid.window(query)
            data, valid = read_window(self.scene.info.path, win, self.scene.bands)
            unit = apply_stretch(data, valid, self.scene.stretch)
            return {
                "image": torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32)),
                "valid": torch.from_numpy(valid),
                "window": (win.col_off, win.row_off, win.width, win.height),
                "crs": self.crs,
                "bounds": query,
            }

    return _SceneDataset


def SceneDataset(scene: Scene, chip: int) -> Any:
    """The scene as a TorchGeo ``RasterDataset`` that geosam reads (stretched 0..1 plus validity).

    Raises:
        DataError: A rotated or non-square-pixel grid (dense training reads the scene grid as is).
    """
    cls = _scene_dataset_class()
    return cls(scene, _grid(scene, chip))


def polygon_label_dataset(gpkg: str | Path, id_column: str, scene: Scene) -> Any:
    """TorchGeo ``VectorDataset`` rasterising polygons on the scene grid; ``mask`` = ``id_column`` (0 = none).

    The polygons must already be in the scene CRS (:func:`geosam.train.reference.read_label_polygons`).
    """
    from rasterio.crs import CRS
    from torchgeo.datasets import VectorDataset

    a = scene.info.transform[0]
    return VectorDataset(paths=[str(gpkg)], crs=CRS.from_wkt(scene.info.crs), res=a, label_name=id_column)


def label_dataset(path: str | Path, scene: Scene) -> Any:
    """TorchGeo ``RasterDataset`` of a label raster (nearest-neighbour onto the scene CRS and pixel size).

    ``mask`` is int64 class ids as stored; the caller maps ids to classes and treats others as
    unlabelled.
    """
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from torchgeo.datasets import RasterDataset

    class _Labels(RasterDataset):  # type: ignore[misc]
        filename_glob = Path(path).name
        is_image = False

        @property
        def resampling(self) -> Resampling:
            return Resampling.nearest

    return _Labels(paths=[str(path)], crs=CRS.from_wkt(scene.info.crs), res=scene.info.transform[0])


def chip_aligned(queries: Iterator[Any], grid: ChipGrid) -> Iterator[tuple[slice, slice, slice]]:
    """Snap each TorchGeo query's top-left corner to the chip grid (see the module docstring)."""
    for q in queries:
        win = grid.window(q)
        col = round(win.col_off / grid.chip) * grid.chip
        row = round(win.row_off / grid.chip) * grid.chip
        w = max(grid.chip, round(win.width / grid.chip) * grid.chip)
        h = max(grid.chip, round(win.height / grid.chip) * grid.chip)
        yield grid.query(PixelWindow(col, row, w, h), q[2] if len(q) > 2 else None)


def rois(
    geoms: Sequence[shapely.Geometry],
    margin: float,
    min_size: float,
    within: tuple[float, float, float, float],
) -> list[shapely.Geometry]:
    """Regions of interest: each geometry's bounding box grown by ``margin``, at least ``min_size`` wide.

    Units are the CRS's. TorchGeo's ``RandomGeoSampler`` ignores a region smaller than its patch (after
    clipping it to the dataset's footprint), so boxes are grown around their centre to ``min_size``
    and then moved inside ``within`` (``xmin, ymin, xmax, ymax``, the scene) when they stick out.
    """
    import shapely as sh

    bx0, by0, bx1, by1 = within
    out = []
    for g in geoms:
        x0, y0, x1, y1 = g.buffer(margin).bounds
        w, h = min(max(x1 - x0, min_size), bx1 - bx0), min(max(y1 - y0, min_size), by1 - by0)
        cx = min(max((x0 + x1) / 2, bx0 + w / 2), bx1 - w / 2)
        cy = min(max((y0 + y1) / 2, by0 + h / 2), by1 - h / 2)
        out.append(sh.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out


def random_patches(
    dataset: Any, roi_boxes: Sequence[Any], size: int, length: int, seed: int
) -> list[tuple[slice, slice, slice]]:
    """``length`` TorchGeo ``RandomGeoSampler`` patches of ``size`` pixels over the regions of interest.

    One sampler per region (TorchGeo clips its index to one ROI and samples inside the ROI's bounds);
    each region gets a share of ``length`` proportional to its area, at least one. ``dataset`` is the
    scene dataset (its index is the scene footprint), so regions at the edge of the labels' extent
    keep their full size.
    """
    import torch
    from torchgeo.samplers import RandomGeoSampler

    gen = torch.Generator().manual_seed(seed)
    areas = np.array([max(b.area, 1e-9) for b in roi_boxes])
    counts = np.maximum(1, np.round(length * areas / areas.sum())).astype(int)
    out: list[tuple[slice, slice, slice]] = []
    for box, n in zip(roi_boxes, counts, strict=True):
        sampler = RandomGeoSampler(dataset, size=size, length=int(n), roi=box, generator=gen)
        out.extend(sampler)
    order = torch.randperm(len(out), generator=gen).tolist()
    return [out[i] for i in order]


def grid_patches(dataset: Any, roi_boxes: Sequence[Any], size: int) -> list[tuple[slice, slice, slice]]:
    """TorchGeo ``GridGeoSampler`` patches of ``size`` pixels covering each region of interest."""
    from torchgeo.samplers import GridGeoSampler

    out: list[tuple[slice, slice, slice]] = []
    for box in roi_boxes:
        out.extend(GridGeoSampler(dataset, size=size, stride=size, roi=box))
    return out


def stack(samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack ``image``, ``valid`` and ``mask`` of equally sized samples into batch tensors."""
    import torch

    out: dict[str, torch.Tensor] = {
        k: torch.stack([s[k] for s in samples]) for k in ("image", "valid", "mask") if k in samples[0]
    }
    return out
