"""``geosam run``: classify scenes into styled GeoTIFF, GeoPackage, GeoJSON and a QGIS project."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from geosam.cli.options import build_run_config, run_options
from geosam.errors import GeosamError

log = logging.getLogger("geosam")

EPILOG = """\b
Examples:
  geosam run scene.tif
      default model (EuroSAT RGB classes), superpixel regions, outputs in ./geosam_out
  geosam run scene.tif --bands 3,2,1 --out results/
      pick the red, green, blue bands of an unlabelled 5-band Landsat stack
  geosam run s2.tif --model my_bundle --sam-checkpoint sam_vit_b_01ec64.pth
      SAM regions; my_bundle trained with `geosam train ... --backbone sam_vit_b_01ec64.pth`
  geosam run scene.tif --regions tiles --tile-size 512
      tile labels only
  geosam run scene.tif --sam-checkpoint sam2.1_hiera_small.pt
      SAM 2.1 regions (recognised from the checkpoint) classified by the default model
  geosam run scene.tif --sam3-checkpoint sam3.pt --concepts "forest,water=water|lake|river,building"
      zero-shot: SAM 3 concept prompts are the classes; uncovered pixels are 'unclassified'

\b
Outputs for scene.tif: scene_classes.tif (class map COG), scene_confidence.tif,
scene_regions.gpkg / .geojson, scene_tiles.gpkg, scene.qgs (open in QGIS), scene_run.json.
A scene that fails is reported and skipped; the exit status is non-zero if any failed.
"""


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("scenes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("geosam_out"),
    show_default=True,
    help="Output directory.",
)
@run_options
@click.option(
    "--sam3-checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Meta's SAM 3 checkpoint (sam3.pt; SAM License, downloaded by you) for concept prompts: the "
    "concepts are the classes (zero-shot), or with --regions sam3 the regions a model classifies. "
    'Needs `pip install "geosam-landcover[sam3]"`.',
)
@click.option(
    "--concepts",
    default=None,
    help="SAM 3 classes and their text prompts: 'forest,water=water|lake|river,building,road,cropland'.",
)
@click.option(
    "--concept-threshold",
    type=float,
    default=None,
    help="SAM 3 score at which a concept mask is accepted [default: 0.5].",
)
@click.pass_context
def run(
    ctx: click.Context,
    /,
    scenes: tuple[Path, ...],
    out: Path,
    model: Path | None,
    sam_checkpoint: Path | None,
    config_path: Path | None,
    bands: list[int | str] | None,
    sam3_checkpoint: Path | None,
    **options: Any,
) -> int:
    """Classify SCENES (GeoTIFF/COG/VRT, any CRS, 1 to 13+ bands) into land-cover classes and regions."""
    from geosam.predict import predict_scene
    from geosam.runtime import load_models

    cfg = build_run_config(config_path, bands, **options)
    models = load_models(model, sam_checkpoint, cfg, sam3_checkpoint=sam3_checkpoint)
    progress = bool(ctx.obj and ctx.obj.get("progress"))
    if models.region_source == "felzenszwalb":
        log.info("no SAM checkpoint given: regions are Felzenszwalb superpixels (see docs/architecture.md)")
    failed = 0
    for scene in scenes:
        try:
            res = predict_scene(scene, out, models, cfg, progress=progress, model_path=model)
        except GeosamError as err:
            if len(scenes) == 1:
                raise
            failed += 1
            click.echo(f"geosam: error: {err} (skipped)", err=True)
            continue
        classes = res.outputs["classes"]
        click.echo(
            f"{scene}: {res.n_tiles} tiles, {res.n_regions} regions ({res.region_source}) "
            f"in {res.seconds.get('total', 0):.1f} s -> {classes.parent}/{Path(scene).stem}_*"
        )
    if len(scenes) > 1:
        click.echo(f"{len(scenes) - failed} of {len(scenes)} scenes done; outputs in {out}")
    return 1 if failed else 0
