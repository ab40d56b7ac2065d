"""Issue 11 item 8: a paletted band is read as the colours of its palette, never as palette indexes.

The kind: a band with a colour table holds indexes into it; classifying the indexes as grey levels
(what ``--bands 1,1,1`` did) classifies arbitrary numbers. geosam expands such a band into red, green
and blue (and alpha for transparent entries), as ``gdal_translate -expand rgb`` does, and refuses a
paletted band among other bands with the command that extracts it. Generated variants: palette size,
colours, nodata index, transparent entries, scene size, tiling (hypothesis); the end-to-end check is
that a paletted scene classifies exactly as its RGB expansion does.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from helpers_field import crop, run_geosam, tiny_bundle_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosam.config import TilingConfig
from geosam.errors import BandError
from geosam.io.read import open_scene, read_decimated, read_tile, read_validity
from geosam.tiling import plan_tiles

TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def write_paletted(
    path, idx, palette, *, nodata=None, crs="EPSG:32633", transform=TRANSFORM, extra_band=None
):
    """A GeoTIFF whose band 1 is ``idx`` (uint8) with colour table ``palette`` ((n, 3) or (n, 4))."""
    count = 1 if extra_band is None else 2
    profile = {
        "driver": "GTiff",
        "width": idx.shape[1],
        "height": idx.shape[0],
        "count": count,
        "dtype": idx.dtype.name,
        "crs": crs,
        "transform": rasterio.Affine(*transform),
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(idx, 1)
        if extra_band is not None:
            ds.write(extra_band, 2)
        ds.write_colormap(
            1,
            {i: tuple(int(v) for v in (*c[:3], c[3] if len(c) > 3 else 255)) for i, c in enumerate(palette)},
        )
    return path


def expanded(idx, palette):
    """What ``gdal_translate -expand rgb`` gives: (3, h, w) uint8 colours."""
    pal = np.zeros((max(256, len(palette), int(idx.max()) + 1), 3), np.uint8)
    pal[: len(palette)] = np.asarray(palette)[:, :3]
    return np.moveaxis(pal[idx], -1, 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dtype=st.sampled_from(["uint8", "uint16"]),
    n=st.integers(2, 256) | st.integers(257, 2000),
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    seed=st.integers(0, 2**16),
    use_nodata=st.booleans(),
    tile=st.sampled_from([32, 64]),
)
def test_paletted_band_reads_as_its_colours(dtype, n, h, w, seed, use_nodata, tile, tmp_path):
    n = min(n, 256) if dtype == "uint8" else n  # 16-bit GeoTIFF palettes hold up to 65536 colours
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(n, 3))
    idx = rng.integers(0, n, size=(h, w)).astype(dtype)
    nodata = int(rng.integers(0, n)) if use_nodata else None
    path = write_paletted(tmp_path / f"p{seed}.tif", idx, palette, nodata=nodata)
    info = open_scene(path)
    assert info.count == 3 and info.band_names == ("red", "green", "blue") and info.dtype == "uint8"
    want = expanded(idx, palette).astype(np.float32)
    valid = np.ones((h, w), bool) if nodata is None else idx != nodata
    want[:, ~valid] = 0
    plan = plan_tiles(info, TilingConfig(tile_size=tile, halo=4, skip_empty=False))
    for spec in plan.tiles:
        t = read_tile(path, spec, (1, 2, 3))
        rs, cs = spec.core_slices
        core = spec.core
        assert np.array_equal(
            t.data[:, rs, cs], want[:, core.row_off : core.row_end, core.col_off : core.col_end]
        )
        assert np.array_equal(
            t.valid[rs, cs], valid[core.row_off : core.row_end, core.col_off : core.col_end]
        )
    data, v = read_decimated(path, (3, 2, 1), max_side=4096)
    assert np.array_equal(data, want[::-1]) and np.array_equal(v, valid)
    assert np.array_equal(read_validity(path), valid)


def test_transparent_palette_entries_become_an_alpha_band(tmp_path):
    # GeoTIFF palettes have no alpha; a VRT palette does
    idx = np.arange(64, dtype=np.uint8).reshape(8, 8) % 4
    base = write_paletted(tmp_path / "base.tif", idx, [(10, 20, 30), (40, 50, 60), (70, 80, 90), (0, 0, 0)])
    entries = "".join(
        f'<Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>'
        for r, g, b, a in [(10, 20, 30, 255), (40, 50, 60, 255), (70, 80, 90, 255), (0, 0, 0, 0)]
    )
    with rasterio.open(base) as ds:
        wkt, gt = ds.crs.to_wkt(), ", ".join(map(repr, ds.transform.to_gdal()))
    vrt = tmp_path / "alpha.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="8" rasterYSize="8"><SRS>{wkt}</SRS><GeoTransform>{gt}</GeoTransform>'
        '<VRTRasterBand dataType="Byte" band="1"><ColorInterp>Palette</ColorInterp>'
        f"<ColorTable>{entries}</ColorTable><SimpleSource><SourceFilename>{base}</SourceFilename>"
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    info = open_scene(vrt)
    assert info.band_names == ("red", "green", "blue", "alpha")
    from geosam.io.read import read_window
    from geosam.types import PixelWindow

    data, valid = read_window(vrt, PixelWindow(0, 0, 8, 8), (1, 2, 3))
    assert np.array_equal(valid, idx != 3)
    assert np.array_equal(data[:, 0, 1], [40, 50, 60])


def test_paletted_band_among_others_is_refused_with_a_command_that_works(tmp_path):
    idx = np.random.default_rng(0).integers(0, 16, size=(40, 40)).astype(np.uint8)
    palette = np.random.default_rng(1).integers(0, 256, size=(16, 3))
    path = write_paletted(tmp_path / "two.tif", idx, palette, extra_band=idx)
    with pytest.raises(BandError) as err:
        open_scene(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and "palette indexes" in msg
    command = msg[msg.index("gdal_translate") :].split()
    if shutil.which("gdal_translate") is None:
        pytest.skip("gdal_translate (gdal-bin) is not installed: the command cannot be run here")
    subprocess.run(command, check=True, cwd=tmp_path, capture_output=True)
    out = tmp_path / command[-1]
    info = open_scene(out)
    assert info.band_names == ("red", "green", "blue")
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), expanded(idx, palette))


# -- end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle_at(tmp_path_factory.mktemp("pal") / "bundle", gsd_m=10.0)


def _classes(out, stem):
    with rasterio.open(out / f"{stem}_classes.tif") as ds:
        return ds.read(1)


def _run_pair(paletted, rgb, bundle, tmp_path, capsys, caplog, extra=()):
    results = {}
    for scene in (paletted, rgb):
        out = tmp_path / f"out_{scene.stem}"
        rc, _, err, records = run_geosam(
            ["run", str(scene), "--model", str(bundle), "--out", str(out), *extra], capsys, caplog
        )
        assert rc == 0, err
        results[scene.stem] = (out, records)
    return results


def test_paletted_scene_classifies_as_its_rgb_expansion(bundle, tmp_path, capsys, caplog):
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, size=(64, 3))
    idx = np.repeat(np.repeat(rng.integers(0, 64, size=(12, 12)), 8, 0), 8, 1).astype(np.uint8)
    paletted = write_paletted(tmp_path / "pal.tif", idx, palette, nodata=int(idx[0, 0]))
    rgb_data = expanded(idx, palette)
    profile = {
        "driver": "GTiff",
        "width": 96,
        "height": 96,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": rasterio.Affine(*TRANSFORM),
        "photometric": "RGB",
    }
    with rasterio.open(tmp_path / "rgb.tif", "w", **profile) as ds:
        ds.write(rgb_data)
        ds.write_mask(np.where(idx != idx[0, 0], 255, 0).astype(np.uint8))
    res = _run_pair(paletted, tmp_path / "rgb.tif", bundle, tmp_path, capsys, caplog)
    a, b = _classes(res["pal"][0], "pal"), _classes(res["rgb"][0], "rgb")
    assert np.array_equal(a, b)
    assert (a[idx == idx[0, 0]] == 255).all()  # the palette's nodata index stays nodata
    assert any("paletted" in r.getMessage() for r in res["pal"][1])
    rec = json.loads((res["pal"][0] / "pal_run.json").read_text())
    assert rec["scene"]["bands_used"] == [1, 2, 3]


@pytest.mark.shared
def test_real_scene_quantised_to_64_colours(shared_data, bundle, tmp_path, capsys, caplog):
    from PIL import Image

    src = crop(shared_data / "scenes" / "rasterio" / "RGB.byte.tif", tmp_path / "c.tif", 300, 300, 96, 96)
    with rasterio.open(src) as ds:
        rgb = ds.read()
        profile = ds.profile
    img = Image.fromarray(np.moveaxis(rgb, 0, -1)).quantize(64)
    idx = np.asarray(img, dtype=np.uint8)
    palette = np.asarray(img.getpalette()[: 64 * 3]).reshape(-1, 3)
    paletted = write_paletted(
        tmp_path / "pal64.tif", idx, palette, crs=profile["crs"], transform=profile["transform"]
    )
    profile.update(count=3, nodata=None, photometric="RGB")
    with rasterio.open(tmp_path / "rgb64.tif", "w", **profile) as ds:
        ds.write(expanded(idx, palette))
    res = _run_pair(paletted, tmp_path / "rgb64.tif", bundle, tmp_path, capsys, caplog)
    assert np.array_equal(_classes(res["pal64"][0], "pal64"), _classes(res["rgb64"][0], "rgb64"))
