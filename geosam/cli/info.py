"""``geosam info``: what geosam sees in a scene, and the plan ``geosam run`` would use for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geosam.cli.options import build_run_config, run_options

EPILOG = """\b
Examples:
  geosam info scene.tif
      size, CRS, GSD, bands, nodata, and the plan `geosam run scene.tif` would use with the
      default model: which bands, region source, chip and tile sizes after resolution matching
  geosam info scene.tif --model my_model --sam-checkpoint sam_vit_b_01ec64.pth
      the plan for that model with SAM regions (1024 px tiles)
  geosam info scene.tif --tile-size 512 --halo 32
      the plan with `geosam run`'s --tile-size and --halo (every `run` option is accepted)
  geosam info sample_tiles/data/raleigh_landsat7_2000.vrt
      check which bands geosam finds by name before choosing --bands for `geosam run`

\b
Reads the header, model.json (no weights) and, to count empty tiles, a decimated validity sample of
at most 4096 x 4096 px; tiles are counted, never listed, so huge scenes take well under a second.
"""


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("scene", type=click.Path(path_type=Path))
@run_options
def info(
    scene: Path,
    model: Path | None,
    sam_checkpoint: Path | None,
    config_path: Path | None,
    bands: list[int | str] | None,
    **options: Any,
) -> None:
    """Describe SCENE (size, CRS, bands, nodata) and the tile plan `geosam run` would use for it."""
    from rasterio.crs import CRS

    from geosam.bands import describe_bands
    from geosam.io.read import open_scene
    from geosam.scene_plan import describe_run

    cfg = build_run_config(config_path, bands, **options)
    si = open_scene(scene)
    crs = CRS.from_user_input(si.crs)
    gsd = f"  GSD {si.gsd_m:g} m" if si.gsd_m is not None else "  (not in metres: no GSD)"
    click.echo(f"{scene}")
    click.echo(f"  size     {si.width} x {si.height} px, {si.count} bands, {si.dtype}")
    click.echo(f"  crs      {crs.to_string()}  pixel {si.res[0]:g} x {si.res[1]:g}{gsd}")
    click.echo(
        f"  nodata   {', '.join('-' if v is None else f'{v:g}' for v in si.nodata)}"
        f"{'  (+ mask band)' if si.has_mask else ''}"
    )
    click.echo(f"  bands    {describe_bands(si)}")
    plan = describe_run(si, model, sam_checkpoint, cfg)
    for key, text in plan.lines():
        click.echo(f"  {key:<8} {text}")
