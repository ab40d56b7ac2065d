"""``geosam info``: what geosam sees in a scene (bands, CRS, nodata) and how it would tile it."""

from __future__ import annotations

from pathlib import Path

import click

EPILOG = """\b
Examples:
  geosam info scene.tif
      size, CRS, pixel size, band names, nodata, and a plan of 1024 px tiles
  geosam info scene.tif --tile-size 512 --halo 32
      the plan for 512 px tiles with 32 px of context on each side
  geosam info sample_tiles/data/raleigh_landsat7_2000.vrt
      check which bands geosam finds by name before choosing --bands for `geosam run`

\b
Reads only the header and a decimated sample (to skip empty tiles), so it is instant on huge scenes.
"""


@click.command(epilog=EPILOG)
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("--tile-size", type=int, default=1024, show_default=True, help="Tile edge in pixels.")
@click.option("--halo", type=int, default=None, help="Halo in pixels (default tile-size/8).")
def info(scene: Path, tile_size: int, halo: int | None) -> None:
    """Describe SCENE: size, CRS, bands and their names, nodata, and the tile plan."""
    from rasterio.crs import CRS

    from geosam.bands import describe_bands
    from geosam.config import TilingConfig
    from geosam.io.read import open_scene
    from geosam.tiling import plan_tiles

    si = open_scene(scene)
    crs = CRS.from_user_input(si.crs)
    plan = plan_tiles(si, TilingConfig(tile_size=tile_size, halo=halo).resolved(tile_size))
    click.echo(f"{scene}")
    click.echo(f"  size     {si.width} x {si.height} px, {si.count} bands, {si.dtype}")
    click.echo(f"  crs      {crs.to_string()}  pixel {si.res[0]:g} x {si.res[1]:g}")
    click.echo(
        f"  nodata   {', '.join('-' if v is None else f'{v:g}' for v in si.nodata)}"
        f"{'  (+ mask band)' if si.has_mask else ''}"
    )
    click.echo(f"  bands    {describe_bands(si)}")
    click.echo(
        f"  tiles    {len(plan.tiles)} of {plan.tile_size} px (halo {plan.halo}), "
        f"{len(plan.skipped)} empty tiles skipped"
    )
