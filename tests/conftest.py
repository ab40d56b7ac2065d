"""Shared fixtures: paths to real data (skipping cleanly when absent) and a version report header."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GEOSAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
SAMPLE_DATA = ROOT / "sample_tiles" / "data"


def pytest_report_header(config: pytest.Config) -> list[str]:
    import rasterio

    import geosam

    lines = [
        f"geosam {geosam.__version__}, rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}"
    ]
    try:
        import torch

        lines.append(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    except ImportError:  # pragma: no cover
        pass
    lines.append(f"shared data: {SHARED_DATA if SHARED_DATA.is_dir() else 'absent (tests needing it skip)'}")
    return lines


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; skips the test when it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """sample_tiles/data as materialised by `sample_tiles/fetch.py` (make test runs it first)."""
    if not (SAMPLE_DATA / "landsat_multiband.tif").is_file():
        pytest.skip("sample_tiles/data not materialised; run `python sample_tiles/fetch.py`")
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def sam2_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init SAM 2.1 Hiera-T in Meta's ``{"model": state_dict}`` format (156 MB, once per session)."""
    import importlib.util

    if importlib.util.find_spec("sam2") is None:  # not importorskip: importing sam2 sets Hydra's global state
        pytest.skip("SAM 2 tests need the sam2 package (pip install -e '.[sam2]')")
    from geosam.testing_models import make_tiny_sam2_checkpoint

    return make_tiny_sam2_checkpoint(tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt")


@pytest.fixture
def scene_and_polygons(tmp_path: Path) -> tuple[Path, Path]:
    """A 64 x 64 px 10 m UTM scene, dark left half and bright right half, and four label polygons (two per
    half, class column ``lc``): the training tests' smallest real scene-and-polygons pair."""
    import geopandas as gpd
    import numpy as np
    from shapely.geometry import box

    from geosam.testing import make_raster

    cols = np.arange(64)[None, :].repeat(64, axis=0)
    arr = np.stack([np.where(cols < 32, 1000, 9000)] * 3).astype(np.uint16)
    scene = make_raster(
        tmp_path / "scene.tif", 64, 64, count=3, fill=arr, band_names=["red", "green", "blue"]
    )
    x0, y1 = 500000.0, 5000000.0  # 10 m pixels
    polys = gpd.GeoDataFrame(
        {"lc": ["dark", "dark", "bright", "bright"]},
        geometry=[
            box(x0 + 20, y1 - 300, x0 + 150, y1 - 20),
            box(x0 + 20, y1 - 620, x0 + 150, y1 - 340),
            box(x0 + 340, y1 - 300, x0 + 620, y1 - 20),
            box(x0 + 340, y1 - 620, x0 + 620, y1 - 340),
        ],
        crs="EPSG:32633",
    )
    labels = tmp_path / "labels.gpkg"
    polys.to_file(labels)
    return scene, labels
