"""``geosam evaluate``: accuracy of a class map against reference polygons, points or a label raster."""

from __future__ import annotations

from pathlib import Path

import click

EPILOG = """\b
Examples:
  geosam evaluate out/scene_classes.tif reference.gpkg --field class
      polygons with a `class` field: pixel and per-polygon error matrices, accuracies, areas
  geosam evaluate out/raleigh_landsat7_2000_classes.tif sample_tiles/data/landsat96_polygons.shp \\
      --classes eurosat_to_raleigh
      the default model's EuroSAT classes renamed to the Raleigh polygons' classes (packaged mapping)
  geosam evaluate landcover.tif samples.gpkg --classes my_classes.yaml --out reports/
      another tool's class map (any CRS, integer classes) against sample points
  geosam evaluate map.tif polygons.gpkg --where "split = 'test'"
      only the held-out polygons (OGR SQL on the reference's fields)
  geosam evaluate map.tif labels.tif --reference-nodata 0
      a label raster on any grid (warped onto the map grid, nearest neighbour)

\b
Writes <map>_evaluation.json (every number), <map>_confusion.png and, for polygons,
<map>_confusion_polygons.png next to the map (or in --out), and prints a table.
Overall, producer's (recall) and user's (precision) accuracy, F1, IoU, kappa; area-weighted accuracy
and class areas with confidence intervals (Olofsson et al. 2014): see docs/evaluation.md.
"""


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("map_path", metavar="MAP", type=click.Path(path_type=Path))
@click.argument("reference", type=click.Path(path_type=Path))
@click.option(
    "--field", "-f", default=None, help="Class field of reference polygons/points [default: guessed]."
)
@click.option("--layer", default=None, help="Layer of a multi-layer vector file (GeoPackage).")
@click.option(
    "--where",
    default=None,
    help='OGR SQL filter of reference features, e.g. held-out polygons: "fold = 3".',
)
@click.option(
    "--classes",
    "-c",
    default=None,
    help="Class-mapping file (YAML/CSV: name -> name) or a packaged mapping, e.g. eurosat_to_raleigh.",
)
@click.option("--reference-nodata", type=float, default=None, help="Label-raster value meaning 'no label'.")
@click.option(
    "--drop-unmatched",
    is_flag=True,
    default=False,
    help="Leave out reference units of classes the map does not have (default: count them as errors).",
)
@click.option(
    "--confidence", type=float, default=None, help="Confidence level of the intervals [default: 0.95]."
)
@click.option("--window-size", type=int, default=None, help="Map window edge in pixels [default: 1024].")
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), default=None, help="Report folder [default: the map's]."
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    /,
    map_path: Path,
    reference: Path,
    out: Path | None,
    **options: object,
) -> int:
    """Assess the class raster MAP against REFERENCE polygons, points or a label raster."""
    from rich.console import Console

    from geosam.accuracy.config import EvaluateConfig
    from geosam.accuracy.evaluate import evaluate as run_evaluation
    from geosam.accuracy.report import render, write_report

    cfg = EvaluateConfig.build(**options)
    progress = bool(ctx.obj and ctx.obj.get("progress"))
    ev = run_evaluation(map_path, reference, cfg, progress=progress)
    paths = write_report(ev, out)
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs and pipes: no wrapped table cells
    console.print(render(ev))
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
