"""Write geosam's corpus of bad inputs (seeded, deterministic) into a directory.

Every file here is something a user, a batch archive or a scheduled ingestion has handed, or will hand,
to ``geosam run``: broken rasters, rasters that are valid but unusable, hostile or damaged model files,
invalid configurations. ``tests/test_bad_inputs.py`` runs the CLI on each and checks that it fails with
one clear line and leaves nothing behind. Nothing is committed but this script; tests call
:func:`make_bad_inputs` into ``tmp_path``.

Usage::

    python tests/data/make_bad_inputs.py OUT_DIR [--seed 0] [--no-models]

The pickle payloads (``evil*.pth``) are inert unless unpickled with a full unpickler: they create the
file named by :data:`PAYLOAD_MARKER` next to themselves. geosam must never create it.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CASES", "PAYLOAD_MARKER", "cached_corpus", "make_bad_inputs"]

#: File the pickle payloads create (in their own directory) if anything ever unpickles them unsafely.
PAYLOAD_MARKER = "PAYLOAD_RAN"

#: Scene size of the small rasters (one 128 px tile with the tiny test models).
SIDE = 64

#: name -> what the case is (the README table is generated from this too).
CASES: dict[str, str] = {
    # rasters
    "good.tif": "a valid 3-band uint16 scene (the control)",
    "truncated.tif": "256 px COG with a valid header, data cut off half way",
    "corrupt_tiles.tif": "256 px deflate COG whose last tile's bytes were overwritten with garbage",
    "garbage.tif": "4 KiB of random bytes named .tif",
    "empty.tif": "a zero-byte file named .tif",
    "jpeg_as.tif": "a JPEG photo renamed .tif",
    "text_as.tif": "a text file renamed .tif",
    "html_as.tif": "an HTML error page saved as .tif (what a failed download leaves)",
    "no_crs.tif": "GeoTIFF with a geotransform but no CRS",
    "no_transform.tif": "GeoTIFF with a CRS but no geotransform",
    "all_nodata.tif": "every pixel is the nodata value",
    "all_nan.tif": "float32, every pixel NaN, no nodata value",
    "one_pixel.tif": "a 1 x 1 pixel raster",
    "zero_size.vrt": "a VRT of 0 x 0 pixels",
    "zero_bands.vrt": "a VRT with no bands",
    "int16.tif": "16-bit signed scene with negative values and a nodata value",
    "float_nan.tif": "float32 reflectance with NaN holes and +-inf pixels",
    "complex.tif": "complex64 bands",
    "two_bands.tif": "2 bands for a 3-band (RGB) model",
    "large.vrt": "20,000 x 20,000 pixel VRT over good.tif (metadata only, no pixels written)",
    "missing.tif": "(not written) a path that does not exist",
    "a_directory.tif": "a directory named .tif",
    # field cases (issue 11): inputs real users have
    "one_band.tif": "1 band for a 3-band (RGB) model: the hint must be --bands 1,1,1, which runs",
    "paletted.tif": "one paletted band (64 colours, nodata index): read as its RGB colours",
    "paletted_two_bands.tif": "a paletted band beside a plain one: refused with the gdal_translate command",
    "missing_source.vrt": "a VRT whose source file was deleted: reported as missing, naming the source",
    "tiny_pixels.tif": "1 mm pixels (degrees written as metres, typically): refused with the 10 m model",
    "coarse_300m.tif": "300 m pixels for the 10 m model: runs with clamped chips and a warning",
    "webmerc_60n.tif": "Web Mercator at 60 N, 10 'Mercator metres' (5 m on the ground) per pixel",
    "strip_column.tif": "a 1 x 1200 pixel column strip",
    "unnamed_bgr.tif": "3 bands stored blue, green, red with no names and no colour interpretation",
    # model files
    "bundle": "a valid tiny bundle (the control)",
    "bundle_10m": "the control bundle recording a 10 m training GSD (resolution matching on)",
    "bundle_no_meta": "bundle folder without model.json",
    "bundle_bad_json": "model.json is not JSON",
    "bundle_not_bundle": "model.json is JSON but not a geosam bundle",
    "bundle_missing_key": "model.json lacks the 'bands' key",
    "bundle_unknown_key": "model.json has an unknown key",
    "bundle_bad_meta": "model.json: 2 class names for a 3-class head",
    "bundle_no_weights": "bundle folder without weights.safetensors",
    "bundle_tampered_weights": "weights.safetensors changed after the sha256 was recorded",
    "bundle_truncated_weights": "weights.safetensors cut in half",
    "bundle_pickle_weights": "weights.safetensors replaced by a pickle payload, sha256 updated to match",
    "evil.pth": "torch.save checkpoint (zip) with a code-running pickle payload beside real tensors",
    "evil_legacy.pth": "legacy (pre-1.6, non-zip) torch.save checkpoint with a code-running payload",
    "evil_plain_pickle.pth": "a plain pickle.dump of a state dict with a code-running payload",
    "not_a_checkpoint.pth": "random bytes named .pth",
    "no_decoder.pth": "a SAM checkpoint without a mask decoder (encoder only)",
    # configs
    "config_unknown_key.yaml": "unknown key (typo) in a section",
    "config_wrong_type.yaml": "tile_size: 'big' and a negative halo",
    "config_bad_yaml.yaml": "not YAML at all",
    "config_not_mapping.yaml": "a YAML list instead of a mapping",
    "config_future.yaml": "schema_version from the future",
    # outputs
    "a_file": "a regular file where the output directory should go (--out a_file/out)",
}


def _raster(path: Path, **kw: Any) -> Path:
    from geosam.testing import make_raster

    kw.setdefault("count", 3)
    kw.setdefault("dtype", "uint16")
    kw.setdefault("fill", "random")
    return make_raster(path, kw.pop("width", SIDE), kw.pop("height", SIDE), **kw)


def _cog(src: Path, dst: Path, **opts: Any) -> Path:
    import rasterio.shutil

    rasterio.shutil.copy(src, dst, driver="COG", **opts)
    return dst


def _tile_bytes(path: Path, row: int, col: int) -> tuple[int, int]:
    """Byte offset and size of one tile of band 1, from the TIFF tags (GDAL metadata)."""
    import rasterio

    with rasterio.open(path) as ds:
        off = int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    return off, size


class _Payload:
    """Unpickling this runs ``exec(code)``: the classic malicious-checkpoint gadget."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('the pickle payload ran')"

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (exec, (self.code,))


def _rasters(d: Path, rng: np.random.Generator) -> None:
    from geosam.testing import make_large_vrt

    good = _raster(d / "good.tif", seed=int(rng.integers(1 << 31)))

    # header OK, data cut: a COG keeps its IFDs at the start, so GDAL opens it and fails on the tiles
    big = _raster(d / ".big_src.tif", width=256, height=256, fill="coords", compress=None, blocksize=128)
    _cog(big, d / "truncated.tif", compress="NONE", blocksize=128)
    size = (d / "truncated.tif").stat().st_size
    with open(d / "truncated.tif", "r+b") as f:
        f.truncate(size // 2)
    _cog(big, d / "corrupt_tiles.tif", compress="DEFLATE", blocksize=128)
    off, n = _tile_bytes(d / "corrupt_tiles.tif", 1, 1)  # the last tile: earlier tiles read fine
    with open(d / "corrupt_tiles.tif", "r+b") as f:
        f.seek(off)
        f.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    big.unlink()

    (d / "garbage.tif").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "empty.tif").write_bytes(b"")
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(
        d / "jpeg_as.tif", format="JPEG"
    )
    (d / "text_as.tif").write_text("scene_id,date\nLC08_001,2020-01-01\n", encoding="utf-8")
    (d / "html_as.tif").write_text(
        "<!DOCTYPE html><html><body><h1>403 Forbidden</h1></body></html>\n", encoding="utf-8"
    )
    _raster(d / "no_crs.tif", crs=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio's NotGeoreferencedWarning: that is the point
        _raster(d / "no_transform.tif", transform=None)
    _raster(d / "all_nodata.tif", nodata=0, fill=0)
    _raster(d / "all_nan.tif", dtype="float32", fill=float("nan"))
    _raster(d / "one_pixel.tif", width=1, height=1, tiled=False)
    wkt = 'PROJCS["WGS 84 / UTM zone 33N",AUTHORITY["EPSG","32633"]]'
    (d / "zero_size.vrt").write_text(
        '<VRTDataset rasterXSize="0" rasterYSize="0"><SRS>EPSG:32633</SRS>'
        '<VRTRasterBand dataType="Byte" band="1"/></VRTDataset>\n',
        encoding="utf-8",
    )
    (d / "zero_bands.vrt").write_text(
        f'<VRTDataset rasterXSize="{SIDE}" rasterYSize="{SIDE}"><SRS>{wkt}</SRS>'
        "<GeoTransform>500000, 10, 0, 5000000, 0, -10</GeoTransform></VRTDataset>\n",
        encoding="utf-8",
    )
    ints = rng.integers(-2000, 8000, (3, SIDE, SIDE)).astype(np.int16)
    ints[:, :8, :8] = -9999
    _raster(d / "int16.tif", dtype="int16", nodata=-9999, fill=ints)
    floats = rng.random((3, SIDE, SIDE)).astype(np.float32)
    floats[:, 10:20, 10:30] = np.nan
    floats[0, 40, 40], floats[1, 41, 41] = np.inf, -np.inf
    _raster(d / "float_nan.tif", dtype="float32", fill=floats)
    _raster(d / "complex.tif", dtype="complex64", fill=1.0)
    _raster(d / "two_bands.tif", count=2)
    make_large_vrt(d / "large.vrt", good, 20_000, 20_000)
    (d / "a_directory.tif").mkdir()
    (d / "a_file").write_text("not a directory\n", encoding="utf-8")


def _field_rasters(d: Path, rng: np.random.Generator) -> None:
    """Issue 11's kinds: band identity, palettes, VRT sources, ground resolution, strips."""
    import rasterio
    from pyproj import Transformer

    from geosam.testing import make_raster

    _raster(d / "one_band.tif", count=1, dtype="uint8", seed=int(rng.integers(1 << 31)))
    idx = rng.integers(0, 64, size=(SIDE, SIDE)).astype(np.uint8)
    colours = {i: (*(int(v) for v in rng.integers(0, 256, 3)), 255) for i in range(64)}
    profile = {"driver": "GTiff", "width": SIDE, "height": SIDE, "dtype": "uint8", "crs": "EPSG:32633",
               "transform": rasterio.Affine(10, 0, 500000, 0, -10, 5000000)}  # fmt: skip
    with rasterio.open(d / "paletted.tif", "w", count=1, nodata=int(idx[0, 0]), **profile) as ds:
        ds.write(idx, 1)
        ds.write_colormap(1, colours)
    with rasterio.open(d / "paletted_two_bands.tif", "w", count=2, **profile) as ds:
        ds.write(np.stack([idx, idx]))
        ds.write_colormap(1, colours)
    gone = _raster(d / ".gone_source.tif", seed=int(rng.integers(1 << 31)))
    from geosam.testing import make_large_vrt

    make_large_vrt(d / "missing_source.vrt", gone, SIDE, SIDE, overview_from_source=False)
    gone.unlink()
    rgb = ["red", "green", "blue"]
    _raster(
        d / "tiny_pixels.tif",
        dtype="uint8",
        transform=(0.001, 0, 500000, 0, -0.001, 5000000),
        colorinterp=rgb,
    )
    _raster(
        d / "coarse_300m.tif", dtype="uint8", transform=(300, 0, 500000, 0, -300, 5000000), colorinterp=rgb
    )
    x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, 60.0)
    _raster(
        d / "webmerc_60n.tif",
        dtype="uint8",
        crs="EPSG:3857",
        transform=(10, 0, x0, 0, -10, y0),
        colorinterp=rgb,
    )
    make_raster(d / "strip_column.tif", 1, 1200, count=3, dtype="uint8", fill="random", colorinterp=rgb)
    _raster(d / "unnamed_bgr.tif", dtype="uint8", colorinterp=["gray", "undefined", "undefined"])


def _tamper_json(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    meta_path = bundle / "model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    edit(meta)
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _models(d: Path, rng: np.random.Generator) -> None:
    import torch

    from geosam.hashing import sha256_file
    from geosam.testing_models import make_tiny_bundle, make_tiny_sam_checkpoint

    bundle = make_tiny_bundle(d / "bundle", seed=int(rng.integers(1 << 31)))
    shutil.copytree(bundle, d / "bundle_10m")
    _tamper_json(d / "bundle_10m", lambda m: m.update(gsd_m=10.0))

    def variant(name: str) -> Path:
        dst = d / name
        shutil.copytree(bundle, dst)
        return dst

    (variant("bundle_no_meta") / "model.json").unlink()
    (variant("bundle_bad_json") / "model.json").write_text('{"format": "geosam-model-bundle", ', "utf-8")
    (variant("bundle_not_bundle") / "model.json").write_text('{"name": "resnet50", "classes": 10}', "utf-8")
    _tamper_json(variant("bundle_missing_key"), lambda m: m.pop("bands"))
    _tamper_json(variant("bundle_unknown_key"), lambda m: m.update(preprocess_script="rm -rf /"))
    _tamper_json(variant("bundle_bad_meta"), lambda m: m["classes"].update(names=["water", "forest"]))
    (variant("bundle_no_weights") / "weights.safetensors").unlink()
    w = variant("bundle_tampered_weights") / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-100] ^= 0xFF  # one bit pattern in the last tensor
    w.write_bytes(bytes(data))
    w = variant("bundle_truncated_weights") / "weights.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    pb = variant("bundle_pickle_weights")
    with open(pb / "weights.safetensors", "wb") as f:
        pickle.dump({"head.fc.weight": _Payload(pb / PAYLOAD_MARKER)}, f)
    _tamper_json(pb, lambda m: m.update(weights_sha256=sha256_file(pb / "weights.safetensors")))

    tensors = {"image_encoder.pos_embed": torch.zeros(1, 2, 2, 8)}
    torch.save({**tensors, "evil": _Payload(d / PAYLOAD_MARKER)}, d / "evil.pth")
    torch.save(  # torch's pre-1.6 format: a bare pickle stream
        {**tensors, "evil": _Payload(d / PAYLOAD_MARKER)},
        d / "evil_legacy.pth",
        _use_new_zipfile_serialization=False,
    )
    with open(d / "evil_plain_pickle.pth", "wb") as f:
        pickle.dump({**tensors, "evil": _Payload(d / PAYLOAD_MARKER)}, f, protocol=2)
    (d / "not_a_checkpoint.pth").write_bytes(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    sam = make_tiny_sam_checkpoint(d / ".tiny_sam.pth", seed=int(rng.integers(1 << 31)))
    state = torch.load(sam, weights_only=True)
    torch.save({k: v for k, v in state.items() if k.startswith("image_encoder.")}, d / "no_decoder.pth")
    sam.unlink()


def _configs(d: Path) -> None:
    texts = {
        "config_unknown_key.yaml": "tiling:\n  tile_size: 128\n  tile_sise: 256\n",
        "config_wrong_type.yaml": "tiling:\n  tile_size: big\n  halo: -4\n",
        "config_bad_yaml.yaml": "tiling: [128\n  halo: {\n",
        "config_not_mapping.yaml": "- tile_size: 128\n- halo: 16\n",
        "config_future.yaml": "schema_version: 99\n",
    }
    for name, text in texts.items():
        (d / name).write_text(text, encoding="utf-8")


def make_bad_inputs(
    out_dir: str | os.PathLike[str], *, seed: int = 0, models: bool = True
) -> dict[str, Path]:
    """Write the corpus into ``out_dir`` (created if needed) and return ``{case name: path}``.

    Args:
        out_dir: Directory to fill; existing files of the same names are replaced.
        seed: Seed for every random byte and pixel.
        models: Also write the model bundles and checkpoints (needs torch; ~6 MB, a few seconds).

    Returns:
        Every case of :data:`CASES` that was written (``missing.tif`` maps to a path that does not exist).
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        p = d / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    rng = np.random.default_rng(seed)
    _rasters(d, rng)
    _field_rasters(d, np.random.default_rng(seed + 11))
    _configs(d)
    if models:
        _models(d, rng)
    return {name: d / name for name in CASES if (d / name).exists() or name == "missing.tif"}


def cached_corpus(base_dir: str | os.PathLike[str], *, seed: int = 0) -> dict[str, Path]:
    """:func:`make_bad_inputs` into ``base_dir/bad_inputs-<seed>``, once: later calls reuse it.

    Test modules share one corpus per session this way (pass pytest's ``getbasetemp()``).
    """
    d = Path(base_dir) / f"bad_inputs-{seed}"
    done = d / ".complete"
    if not done.is_file():
        make_bad_inputs(d, seed=seed)
        done.touch()
    return {name: d / name for name in CASES}


def main(argv: list[str] | None = None) -> int:
    """Command line: write the corpus into a directory."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-models", action="store_true", help="skip bundles and checkpoints (no torch)")
    args = ap.parse_args(argv)
    written = make_bad_inputs(args.out_dir, seed=args.seed, models=not args.no_models)
    for name, path in written.items():
        print(f"{path}  {CASES[name]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
