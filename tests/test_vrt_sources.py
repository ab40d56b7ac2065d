"""Issue 11, also seen: a VRT whose source file is gone is reported as *missing*, naming the source.

The kind: GDAL opens a VRT lazily, so a deleted or moved source only fails when pixels are read, and
the failure read as "the file may be corrupt or truncated". Generated variants: mosaics of 1..4
sources (as ``gdalbuildvrt`` writes them), relative and absolute source paths, nested VRTs, any one
source missing (hypothesis); a corrupt (present) source still reads as corrupt.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import rasterio
from helpers_field import one_error_line, run_geosam, tiny_bundle_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosam.errors import RasterNotFoundError, TileReadError
from geosam.io.read import open_scene, read_window
from geosam.testing import make_large_vrt, make_raster
from geosam.types import PixelWindow


def mosaic_vrt(path: Path, sources: list[Path], *, relative: bool) -> Path:
    """A side-by-side mosaic VRT of equally sized sources (``gdalbuildvrt`` layout)."""
    with rasterio.open(sources[0]) as ds:
        w, h, t, wkt, count = ds.width, ds.height, ds.transform, ds.crs.to_wkt(), ds.count
    bands = []
    for b in range(1, count + 1):
        srcs = []
        for i, s in enumerate(sources):
            name = os.path.relpath(s, path.parent) if relative else str(s)
            srcs.append(
                f'<SimpleSource><SourceFilename relativeToVRT="{int(relative)}">'
                f"{escape(name)}</SourceFilename>"
                f'<SourceBand>{b}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                f'<DstRect xOff="{i * w}" yOff="0" xSize="{w}" ySize="{h}"/></SimpleSource>'
            )
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}">{"".join(srcs)}</VRTRasterBand>')
    gt = ", ".join(repr(v) for v in t.to_gdal())
    path.write_text(
        f'<VRTDataset rasterXSize="{w * len(sources)}" rasterYSize="{h}"><SRS>{escape(wkt)}</SRS>'
        f"<GeoTransform>{gt}</GeoTransform>{''.join(bands)}</VRTDataset>"
    )
    return path


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 4),
    gone=st.integers(0, 3),
    relative=st.booleans(),
    nested=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_missing_vrt_source_is_named_as_missing(n, gone, relative, nested, seed, tmp_path):
    import tempfile

    d = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis reuses tmp_path across examples
    (d / "tiles").mkdir()
    sources = [
        make_raster(d / "tiles" / f"t{i}.tif", 16, 16, dtype="uint8", fill="random", seed=seed + i)
        for i in range(n)
    ]
    vrt = mosaic_vrt(d / "mosaic.vrt", sources, relative=relative)
    if nested:
        vrt = make_large_vrt(d / "outer.vrt", vrt, 16 * n, 16, overview_from_source=False)
    missing = sources[gone % n]
    missing.unlink()
    with pytest.raises(RasterNotFoundError) as err:
        open_scene(vrt)
    msg = str(err.value)
    assert msg.startswith(f"{vrt}: ") and "\n" not in msg
    assert "missing" in msg and missing.name in msg and "corrupt" not in msg


def test_source_missing_after_opening_is_named_when_reading(tmp_path):
    src = make_raster(tmp_path / "src.tif", 32, 32, dtype="uint8", fill="random")
    vrt = make_large_vrt(tmp_path / "v.vrt", src, 32, 32, overview_from_source=False)
    open_scene(vrt)
    src.unlink()  # gone between planning and reading (a batch archive being cleaned up)
    with pytest.raises(RasterNotFoundError) as err:
        read_window(vrt, PixelWindow(0, 0, 8, 8))
    assert "src.tif" in str(err.value) and "missing" in str(err.value)


def test_corrupt_source_is_still_corrupt(tmp_path):
    src = make_raster(
        tmp_path / "src.tif", 256, 256, dtype="uint8", fill="random", compress="deflate", blocksize=128
    )
    vrt = make_large_vrt(tmp_path / "v.vrt", src, 256, 256, overview_from_source=False)
    with rasterio.open(src) as ds:  # overwrite the last tile's compressed bytes
        off = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    with open(src, "r+b") as f:
        f.seek(off)
        f.write(os.urandom(size))
    open_scene(vrt)
    with pytest.raises(TileReadError) as err:
        read_window(vrt, PixelWindow(0, 0, 256, 256))
    assert "corrupt or truncated" in str(err.value) and "missing" not in str(err.value)


def test_cli_reports_the_missing_source_in_one_line(tmp_path, capsys, caplog):
    bundle = tiny_bundle_at(tmp_path / "bundle", gsd_m=None)
    src = make_raster(tmp_path / "tile_a.tif", 64, 64, dtype="uint8", fill="random")
    vrt = mosaic_vrt(tmp_path / "mosaic.vrt", [src], relative=True)
    src.unlink()
    out = tmp_path / "out"
    rc, _, err, _ = run_geosam(["run", str(vrt), "--model", str(bundle), "--out", str(out)], capsys, caplog)
    line = one_error_line(err)
    assert rc == 3 and f"geosam: error: {vrt}: " in line and "tile_a.tif is missing" in line
    assert not out.exists() or not any(out.iterdir())
