"""``geosam train``: train a land-cover classifier from chips, or from a scene with label polygons/raster.

The commands only parse options, build a :class:`~geosam.train.config.TrainConfig` (from ``--config``
YAML, then the options given on the command line: :func:`~geosam.train.config.load_train_config`) and
call the library: a chip loader (:func:`geosam.train.data.load_folder_chips`) and
:func:`geosam.train.engine.train`, or a scene workflow (:mod:`geosam.train.workflows`). The options
are generated from the config's fields (:mod:`geosam.cli.config_options`): a field, its option and
its YAML key are one thing, with one description.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geosam.cli.config_options import FieldOption, field_options, given_values, leaf_fields, option_decorator
from geosam.errors import ConfigError
from geosam.train.config import TrainConfig, load_train_config

if TYPE_CHECKING:
    from geosam.train.data import ChipData

__all__ = ["TRAIN_OPTIONS", "train"]

_COMMON_EXAMPLES = """
\b
Options come from --config YAML (the TrainConfig fields, e.g. `epochs: 20`; the source options under
`sampling:`, the dense head's under `dense:`), then from the options given here, which win. A bundle's
report/train_config.yaml replays its run. Run with -q to hide progress bars.
"""
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _options(*paths: str) -> tuple[FieldOption, ...]:
    return field_options(
        TrainConfig,
        paths,
        flatten=("sampling",),
        flags={"gsd_m": ("--gsd",), "sampling.class_column": ("--field", "--class-column")},
        defaults={"head": "chip; dense for polygons"},
        metavars={"gsd_m": "METRES"},
    )


_TRAIN_FIELDS = leaf_fields(TrainConfig, skip=("schema_version", "sampling", "out", "backbone", "head"))
#: Every source's options: the training fields (the dense head's as --dense-*) and the band names.
TRAIN_OPTIONS = _options("out", "backbone", "head", *_TRAIN_FIELDS, "sampling.band_names")
_RADIOMETRY = ("sampling.radiometry", "sampling.dn_offset")
_FOLDER_OPTIONS = _options("sampling.reflectance_to_display", *_RADIOMETRY)
_SCENE_OPTIONS = _options(
    "sampling.chip_size", "sampling.bands", "sampling.spacing", "sampling.max_nodata", *_RADIOMETRY
)
_POLYGON_OPTIONS = _options("sampling.class_column", "sampling.layer", "sampling.max_per_polygon")
_RASTER_OPTIONS = _options(
    "sampling.classes", "sampling.label_rule", "sampling.label_nodata", "sampling.block_chips"
)

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML file of TrainConfig fields (unknown keys are an error; a bundle's report/train_config.yaml "
    "replays its run); options given here win.",
)
_cv_option = click.option(
    "--cv",
    "cv",
    type=int,
    help="Also run K-fold spatially grouped cross-validation (folds of whole polygons or blocks, "
    "stratified, seeded by --seed): train on K-1 folds, classify the scene with `geosam run`, "
    "score the held-out labels; prints per-fold and mean accuracy, kappa and F1 and writes "
    "<out>/report/cv.json. Takes about K times the training plus K runs.",
)


def _config(config_path: Path | None, kw: dict[str, Any], *groups: tuple[FieldOption, ...]) -> TrainConfig:
    """The run's TrainConfig: the YAML file, then the options given (which leave ``kw``)."""
    options = [o for g in groups for o in g]
    values = given_values(options, kw)
    return load_train_config(config_path, values, flags={o.path: o.flags[0] for o in options})


TRAIN_HELP = """Train a land-cover classifier (a SAM encoder plus a head) and save it as a model bundle.

\b
Three sources of labelled chips:
  folder    chips sorted into one folder per class (EuroSAT layout)
  polygons  a scene and label polygons (GeoJSON, GeoPackage, Shapefile)
  raster    a scene and a label raster of class ids

\b
Examples:
  geosam train folder ../shared/data/eurosat_rgb/2750 --max-per-class 500 --out eurosat_model
  geosam train polygons scene.tif labels.gpkg --class-column landcover --out my_model
  geosam train raster scene.tif landcover.tif --classes 1=water,2=forest,3=urban --out my_model

The bundle folder holds model.json, weights.safetensors and report/ (metrics.json,
confusion_matrix.png/json, learning_curve.png, history.json). Use it with
`geosam run scene.tif --model <out>`. Run `geosam train SOURCE --help` for each source's options and
examples, and see docs/training.md.
"""

FOLDER_HELP = """Train on chips in ROOT/<class>/*.jpg|png|tif (the sub-folder names are the classes).

Chips of a folder are scaled to 0..1 per band (uint8: /255; other types: 2-98 % percentiles over a
sample of chips). 13-band chips are assumed to be Sentinel-2 L1C unless --band-names says otherwise.

\b
Examples:
  # EuroSAT RGB, 500 chips per class, `small` encoder from scratch
  geosam train folder ../shared/data/eurosat_rgb/2750 --max-per-class 500 \\
      --epochs 15 --cache-dir .cache --out eurosat_small
  # EuroSAT 13-band GeoTIFFs through the band adapter (EuroSAT MS stores B8A last)
  geosam train folder ../shared/data/eurosat_ms/train --out eurosat_ms_model \\
      --band-names B01,B02,B03,B04,B05,B06,B07,B08,B09,B10,B11,B12,B8A
  # linear probe on Meta's ViT-B (download sam_vit_b_01ec64.pth yourself); 64 px chips run at 224
  geosam train folder eurosat/2750 --backbone sam_vit_b_01ec64.pth --mode probe \\
      --input-size 224 --cache-dir .cache --out eurosat_probe
  # continue an interrupted run (same options, plus --resume)
  geosam train folder eurosat/2750 --max-per-class 500 --out eurosat_small --resume
"""

POLYGONS_HELP = """Train on SCENE and the polygons of LABELS (any CRS: reprojected).

By default this trains the dense head (a class and probability per pixel; `geosam run` then gives
each region the mean probabilities of its pixels) on the pixel values alone: no encoder features
(--no-dense-use-encoder), no local means (empty --dense-context), input noise 0.2, every polygon
trained on (--dense-keep last). Chosen by leave-polygons-out cross-validation on the Raleigh sample:
overall accuracy 0.834 (mean of five fold assignments) against 0.739 for a per-pixel Random Forest
(docs/training.md). The [default: ...] of the --dense-* options below are the dense head's own, which
`train raster --head dense` uses; any you give here replaces the polygons default. With a SAM
checkpoint as --backbone the head reads its features (--dense-use-encoder unless you pass
--no-dense-use-encoder); on a SAM 2.x checkpoint it reads Hiera's four levels, and `geosam run
--sam-checkpoint <that checkpoint>` then makes masks and pixel classes from one Hiera pass per tile.

--head chip trains the chip classifier instead: chip centres lie on a lattice inside each polygon (a
polygon smaller than the lattice step gets one chip at its representative point), a chip's label is
its polygon's class, chips are stretched as `geosam run` stretches the scene, and chips of one polygon
stay on one side of the train/validation split.

\b
Examples:
  # the Raleigh sample scene: 34 polygons, 7 classes in column `label`, 28.5 m pixels
  geosam train polygons sample_tiles/data/raleigh_landsat7_2000_5band.vrt \\
      sample_tiles/data/landsat96_polygons.shp --field label --out raleigh_model
  # the same, first measured by 5-fold leave-polygons-out cross-validation (report/cv.json)
  geosam train polygons sample_tiles/data/raleigh_landsat7_2000_5band.vrt \\
      sample_tiles/data/landsat96_polygons.shp --field label --cv 5 --out raleigh_model
  # the chip classifier, 16 px chips every 4 px
  geosam train polygons sample_tiles/data/landsat_multiband.tif \\
      sample_tiles/data/landsat96_polygons.shp --class-column label --head chip \\
      --band-names blue,green,red,nir,swir1 --chip-size 16 --spacing 4 --out raleigh_chip_model
  # one layer of a GeoPackage, the first three bands of a 4-band scene
  geosam train polygons naip.tif labels.gpkg --layer training --class-column class \\
      --bands 1,2,3 --out naip_model
"""

RASTER_HELP = """Train on chips of SCENE where LABEL_RASTER has a class id (any grid: read nearest-neighbour).

Chip centres lie on a lattice where the label is valid; the chip's label is the majority class in the
chip (or the centre pixel's, --label-rule centre). Split groups are spatial blocks of chips.

\b
Examples:
  # Raleigh: the sample polygons rasterised on the scene grid (ids 1-7, nodata -99999)
  geosam train raster sample_tiles/data/landsat_multiband.tif \\
      sample_tiles/data/landsat96_labelled_pixels.tif --chip-size 16 --spacing 4 \\
      --classes 1=developed,2=agriculture,3=herbaceous,4=forest,5=water,6=sediment,7=shrubland \\
      --band-names blue,green,red,nir,swir1 --out raleigh_raster_model
  # a land-cover map where 0 means "unlabelled"; centre-pixel labels; 2000 chips per class
  geosam train raster scene.tif landcover.tif --label-nodata 0 --label-rule centre \\
      --max-per-class 2000 --out lc_model
"""


def _progress(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("progress", False))


def _run(ctx: click.Context, cfg: TrainConfig, data: ChipData) -> None:
    """Train, then print a short summary."""
    from geosam.train.engine import train as run_training

    n_bands = len(data.bands)
    click.echo(
        f"training on {len(data.labels)} chips of {data.chip_size} px, {len(data.classes)} classes, "
        f"{n_bands} band(s) ({', '.join(data.bands)}); backbone {cfg.backbone}, mode {cfg.mode}",
        err=True,
    )
    result = run_training(cfg, data, progress=_progress(ctx))
    m = result.metrics
    t = result.meta.training
    click.echo(
        f"validation ({m['n']} chips, best epoch {t['best_epoch']} of {t['epochs_run']}, "
        f"{result.seconds:.0f} s): overall accuracy {m['overall_accuracy']:.3f}, "
        f"macro-F1 {m['macro_f1']:.3f}, kappa {m['kappa']:.3f}"
    )
    _print_calibration(result)
    click.echo(f"bundle: {result.bundle}  (model.json, weights.safetensors)")
    click.echo(
        f"report: {result.bundle / 'report'}  (metrics.json, confusion_matrix.png, learning_curve.png)"
    )


def _print_calibration(result: Any) -> None:
    cal = result.meta.calibration
    if cal is not None and cal.ece_before is not None and cal.ece_after is not None:
        click.echo(
            f"calibration: temperature {cal.temperature:.3f}, expected calibration error "
            f"{cal.ece_before:.3f} -> {cal.ece_after:.3f} (validation, cross-fitted; docs/calibration.md)"
        )


def _check_scene_options(cfg: TrainConfig, scene: Path) -> None:
    """Refuse impossible option combinations before sampling chips (header reads only)."""
    from geosam.io.read import open_scene
    from geosam.train.checks import check_gsd, check_options

    # the dense head cuts its own chips (cfg.dense); --chip-size is the chip classifier's
    check_options(cfg, chip_size=cfg.sampling.chip_size if cfg.head == "chip" else None)
    check_gsd(cfg.gsd_m, open_scene(scene).gsd_m, scene)


def _summary(result: Any, cv_result: Any = None) -> None:
    """Print the validation figures of a training result (and write the CV report into its bundle)."""
    import json

    m = result.metrics
    t = result.meta.training
    if m.get("n"):
        click.echo(
            f"validation ({m['n']} {'pixels' if t.get('head') == 'dense' else 'chips'}, best epoch "
            f"{t['best_epoch']} of {t['epochs_run']}, {result.seconds:.0f} s): overall accuracy "
            f"{m['overall_accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, kappa {m['kappa']:.3f}"
        )
    elif ((t.get("config") or {}).get("dense") or {}).get("keep") == "last":
        click.echo(
            f"trained in {result.seconds:.0f} s on every polygon/block (keep: last, no validation split; "
            "measure the recipe with --cv K); with nothing held out, its probabilities are not calibrated "
            "and it has no domain statistics"
        )
    else:
        click.echo(f"trained in {result.seconds:.0f} s (no class had two polygons/blocks to validate on)")
    _print_calibration(result)
    if cv_result is not None:
        report = result.bundle / "report"
        report.mkdir(exist_ok=True)
        (report / "cv.json").write_text(json.dumps(cv_result.to_dict(), indent=2) + "\n", encoding="utf-8")
    click.echo(f"bundle: {result.bundle}  ({t.get('head', 'chip')} head; model.json, weights.safetensors)")
    click.echo(f"report: {result.bundle / 'report'}")


@click.group("train", help=TRAIN_HELP, context_settings=_CONTEXT)
def train() -> None:
    """Train a land-cover classifier (a SAM encoder plus a head) and save it as a model bundle."""


@train.command("folder", help=FOLDER_HELP, epilog=_COMMON_EXAMPLES, context_settings=_CONTEXT)
@click.argument("root", type=click.Path(path_type=Path))
@option_decorator(_FOLDER_OPTIONS)
@_config_option
@option_decorator(TRAIN_OPTIONS)
@click.pass_context
def folder(ctx: click.Context, /, root: Path, config_path: Path | None, **kw: Any) -> None:
    """Train on chips in ROOT/<class>/*.jpg|png|tif (sub-folder names are the classes)."""
    from geosam.preprocess import EUROSAT_RGB_FROM_L1C
    from geosam.train.checks import check_options
    from geosam.train.data import load_folder_chips

    cfg = _config(config_path, kw, _FOLDER_OPTIONS, TRAIN_OPTIONS)
    check_options(cfg)  # the chip-size checks run once the chips are loaded, before training
    s = cfg.sampling
    data = load_folder_chips(
        root,
        band_names=s.band_names,
        max_per_class=cfg.max_per_class,
        cache_dir=cfg.cache_dir,
        seed=cfg.seed,
        progress=_progress(ctx),
        radiometry=s.radiometry,
        dn_offset=s.dn_offset,
        reflectance_to_display=EUROSAT_RGB_FROM_L1C if s.reflectance_to_display == "eurosat-l1c" else None,
    )
    _run(ctx, cfg, data)


@train.command("polygons", help=POLYGONS_HELP, epilog=_COMMON_EXAMPLES, context_settings=_CONTEXT)
@click.argument("scene", type=click.Path(path_type=Path))
@click.argument("labels", type=click.Path(path_type=Path))
@option_decorator(_POLYGON_OPTIONS)
@_cv_option
@option_decorator(_SCENE_OPTIONS)
@_config_option
@option_decorator(TRAIN_OPTIONS)
@click.pass_context
def polygons(
    ctx: click.Context, /, scene: Path, labels: Path, config_path: Path | None, cv: int | None, **kw: Any
) -> None:
    """Train on SCENE with the polygons of LABELS (any CRS; reprojected)."""
    from geosam.train.workflows import class_column, polygons_head, train_polygons

    cfg = polygons_head(_config(config_path, kw, _POLYGON_OPTIONS, _SCENE_OPTIONS, TRAIN_OPTIONS))
    class_column(cfg)  # given, before anything is read
    _check_scene_options(cfg, scene)
    cv_result = None
    if cv is not None:
        from geosam.cli.train_cv import cross_validate_polygons

        cv_result = cross_validate_polygons(scene, labels, cfg, cv, progress=_progress(ctx))
    _summary(train_polygons(scene, labels, cfg=cfg, progress=_progress(ctx)), cv_result)


@train.command("raster", help=RASTER_HELP, epilog=_COMMON_EXAMPLES, context_settings=_CONTEXT)
@click.argument("scene", type=click.Path(path_type=Path))
@click.argument("label_raster", type=click.Path(path_type=Path))
@option_decorator(_RASTER_OPTIONS)
@_cv_option
@option_decorator(_SCENE_OPTIONS)
@_config_option
@option_decorator(TRAIN_OPTIONS)
@click.pass_context
def raster(
    ctx: click.Context,
    /,
    scene: Path,
    label_raster: Path,
    config_path: Path | None,
    cv: int | None,
    **kw: Any,
) -> None:
    """Train on SCENE where LABEL_RASTER has a class id (any grid; read nearest-neighbour)."""
    from geosam.train.workflows import train_raster

    cfg = _config(config_path, kw, _RASTER_OPTIONS, _SCENE_OPTIONS, TRAIN_OPTIONS)
    _check_scene_options(cfg, scene)
    cv_result = None
    if cv is not None:
        from geosam.cli.train_cv import cross_validate_raster

        cv_result = cross_validate_raster(scene, label_raster, cfg, cv, progress=_progress(ctx))
    _summary(train_raster(scene, label_raster, cfg=cfg, progress=_progress(ctx)), cv_result)


TORCHGEO_HELP = """Train on a TorchGeo dataset already on disk in TorchGeo's layout (never downloaded).

\b
NAME: eurosat, eurosat100 (classification: the chip classifier) or landcoverai (semantic
segmentation: the dense head). ROOT is the dataset's `root` folder as TorchGeo expects it.

\b
Examples:
  # EuroSAT 13-band (torchgeo.datasets.EuroSAT layout under data/eurosat)
  geosam train torchgeo eurosat --root data/eurosat --max-per-class 500 --out eurosat_ms_model
  # LandCover.ai (pre-chipped: output/*.jpg, *_m.png, train.txt, val.txt): dense head
  geosam train torchgeo landcoverai --root data/landcoverai --out lcai_dense
"""


@train.command("torchgeo", help=TORCHGEO_HELP, epilog=_COMMON_EXAMPLES, context_settings=_CONTEXT)
@click.argument("dataset", metavar="NAME")
@click.option(
    "--root", required=True, type=click.Path(path_type=Path), help="The dataset's folder (TorchGeo layout)."
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    default="train",
    show_default=True,
    help="Split to train on (segmentation datasets validate on `val`).",
)
@_config_option
@option_decorator(TRAIN_OPTIONS)
@click.pass_context
def torchgeo_cmd(
    ctx: click.Context, /, dataset: str, root: Path, split: str, config_path: Path | None, **kw: Any
) -> None:
    """Train on TorchGeo dataset NAME found under ROOT."""
    from geosam.train.workflows import train_torchgeo

    cfg = _config(config_path, kw, TRAIN_OPTIONS)
    if cfg.sampling.band_names is not None:
        raise ConfigError("--band-names does not apply to TorchGeo datasets: their bands are known")
    result = train_torchgeo(dataset, root, cfg=cfg, split=split, progress=_progress(ctx))
    _summary(result)
