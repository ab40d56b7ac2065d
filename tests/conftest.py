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
