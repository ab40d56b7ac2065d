"""Scene outputs of dense models: the per-pixel probability scratch raster and the probability COG.

:func:`geosam.predict.predict_scene` and :func:`geosam.io.scene_writer.write_maps` use three things here
when the model has a dense head:

* :class:`ProbabilityScratch` keeps each tile core's pixel probabilities (``K`` bands, uint8 in
  1/255 steps) in a tiled scratch GeoTIFF next to the region scratch raster, so the finishing pass
  reads them back window by window: memory stays one window, whatever the scene size.
* :func:`finish_window` turns a window's probabilities and final region ids into the class and
  confidence the class map and confidence COGs get (:func:`geosam.dense.pixel_classes`), and feeds
  the optional probability COG.
* :func:`probability_writer` opens that COG: one band per class (descriptions ``p_<class>``), the
  pixel's probability in percent (uint8 0..100, nodata 255), styled in QGIS as a 0-100 % viridis
  ramp of the first class's band (pick another band in the layer's symbology).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from geosam.types import ClassScheme, PixelWindow, SceneInfo

__all__ = [
    "PROBABILITY_NODATA",
    "SCRATCH_BLOCK",
    "ProbabilityScratch",
    "finish_window",
    "probability_scratch",
    "probability_writer",
]

#: Nodata of the probability COG (percent values are 0..100).
PROBABILITY_NODATA = 255

#: Block edge (pixels) of the :class:`ProbabilityScratch` raster.
SCRATCH_BLOCK = 256


class ProbabilityScratch:
    """A ``K``-band uint8 scratch raster of pixel probabilities (value = round(p * 255)).

    Args:
        path: Scratch file path (inside the run's scratch folder).
        info: Scene header (grid).
        k: Number of classes.
    """

    def __init__(self, path: Path, info: SceneInfo, k: int) -> None:
        import rasterio

        self.path = path
        self.k = k
        profile = {
            "driver": "GTiff",
            "width": info.width,
            "height": info.height,
            "count": k,
            "dtype": "uint8",
            "crs": info.crs,
            "transform": rasterio.Affine(*info.transform),
            "tiled": True,
            "blockxsize": SCRATCH_BLOCK,
            "blockysize": SCRATCH_BLOCK,
            "compress": "deflate",
            "zlevel": 1,
            "interleave": "pixel",
            "BIGTIFF": "IF_SAFER",
            "sparse_ok": True,
        }
        self._ds = rasterio.open(path, "w+", **profile)

    def write(self, window: PixelWindow, probs: np.ndarray) -> None:
        """Store ``(K, h, w)`` probabilities (0..1) of a core window."""
        q = np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8)
        self._ds.write(q, window=window.to_rasterio())

    def read(self, window: PixelWindow) -> np.ndarray:
        """``(K, h, w)`` float32 probabilities of a window (0..1, steps of 1/255)."""
        out: np.ndarray = self._ds.read(window=window.to_rasterio()).astype(np.float32) / 255.0
        return out

    def close(self) -> None:
        """Close the scratch file (it is deleted with the scratch folder)."""
        if not self._ds.closed:
            self._ds.close()

    def __enter__(self) -> ProbabilityScratch:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextmanager
def probability_scratch(
    path: Path, info: SceneInfo, k: int, enabled: bool
) -> Iterator[ProbabilityScratch | None]:
    """A :class:`ProbabilityScratch` for a model with a dense head (``enabled``), else ``None``."""
    if not enabled:
        yield None
        return
    with ProbabilityScratch(path, info, k) as scratch:
        yield scratch


def probability_writer(path: Path, info: SceneInfo, scheme: ClassScheme, **common: Any) -> Any:
    """A :class:`~geosam.io.cog.RasterWriter` for the probability COG (see the module docstring)."""
    from geosam.io.cog import RasterWriter
    from geosam.io.style import confidence_qml

    return RasterWriter(
        path,
        dtype="uint8",
        nodata=PROBABILITY_NODATA,
        count=len(scheme),
        kind="continuous",
        qml=confidence_qml("uint8", band=1),
        band_descriptions=[f"p_{n}" for n in scheme.names],
        **common,
    )


def finish_window(
    scratch: ProbabilityScratch,
    window: PixelWindow,
    regions: np.ndarray,
    region_class: np.ndarray,
    region_prob: np.ndarray,
    invalid: np.ndarray,
    *,
    refine: bool,
    nodata: int,
    prob_writer: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class and confidence of a window of a dense model's map; writes the probability COG window.

    Returns ``(classes uint8, confidence float32)`` (see :func:`geosam.dense.pixel_classes`).
    """
    from geosam.dense import pixel_classes

    probs = scratch.read(window)
    if prob_writer is not None:
        pct = np.rint(probs * 100.0).astype(np.uint8)
        pct[:, invalid] = PROBABILITY_NODATA
        prob_writer.write(window, pct)
    return pixel_classes(probs, regions, region_class, region_prob, invalid, refine=refine, nodata=nodata)
