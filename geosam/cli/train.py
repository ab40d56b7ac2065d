"""``geosam train``: train a land-cover classifier from chips, or from a scene with label polygons/raster.

The commands only parse options, build a :class:`~geosam.train.config.TrainConfig` (from ``--config``
YAML, then the options given on the command line) and call the library: a chip loader
(:func:`geosam.train.data.load_folder_chips`, :func:`geosam.train.scene_chips.polygon_chips`,
:func:`geosam.train.scene_chips.raster_chips`) and :func:`geosam.train.engine.train`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from geosam.errors import ConfigError
from geosam.train.config import TrainConfig

if TYPE_CHECKING:
    from geosam.train.data import ChipData

__all__ = ["train"]

F = TypeVar("F", bound=Callable[..., Any])

_COMMON_EXAMPLES = """
\b
Training options come from --config YAML (keys: the TrainConfig fields, e.g. `epochs: 20`), then
from the options given here, which win. Run with -q to hide progress bars.
"""


def _default(field: str) -> str:
    value = TrainConfig.model_fields[field].default
    return "none" if value is None else str(value)


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise ConfigError(f"empty item in the comma-separated list {value!r}")
    return items


def _train_options(f: F) -> F:
    """Options shared by every source: the TrainConfig fields and --config."""
    options = [
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            help="Bundle folder to write (replaced if it exists) [default: model].",
        ),
        click.option(
            "--backbone",
            help="`small` or `tiny` (geosam's CPU-sized SAM encoders, trained from scratch), or the path of "
            "an official SAM checkpoint: SAM 1 (sam_vit_b_01ec64.pth) or SAM 2.x (sam2.1_hiera_small.pt), "
            "recognised from its weights; geosam never downloads it [default: small].",
        ),
        click.option(
            "--head",
            type=click.Choice(["chip", "dense"]),
            help="chip: classify chips, regions and tiles from pooled encoder features; dense: classify "
            "every pixel (the encoder's features plus the pixels and their local context; regions then "
            "take the mean pixel probabilities). Dense is for scene sources [default: chip; dense for "
            "polygons].",
        ),
        click.option(
            "--mode",
            type=click.Choice(["probe", "last_n", "full"]),
            help="probe: frozen encoder, cached embeddings, train the head only (needs a pretrained "
            "checkpoint); last_n: also train the last N blocks and the neck; full: train everything "
            f"[default: {_default('mode')}].",
        ),
        click.option(
            "--last-n", type=int, help=f"Blocks trained in last_n mode [default: {_default('last_n')}]."
        ),
        click.option(
            "--feature-level",
            help="SAM 2 backbones: feature map(s) the head pools, e.g. fpn16 (SAM 2's image embedding) or "
            "fpn16+trunk32 [default: fpn16].",
        ),
        click.option(
            "--input-size",
            type=int,
            help="Encoder input size in pixels; chips are resized to it (e.g. 224 for 64 px chips and "
            "ViT-B; position embeddings are interpolated) [default: the chip size].",
        ),
        click.option("--epochs", type=int, help=f"Maximum epochs [default: {_default('epochs')}]."),
        click.option("--batch-size", type=int, help=f"Chips per step [default: {_default('batch_size')}]."),
        click.option(
            "--lr", type=float, help=f"Peak learning rate (AdamW, cosine) [default: {_default('lr')}]."
        ),
        click.option(
            "--patience",
            type=int,
            help=f"Stop after this many epochs without a better validation macro-F1; 0 = never "
            f"[default: {_default('patience')}].",
        ),
        click.option(
            "--val-fraction",
            type=float,
            help=f"Share of each class held out for validation [default: {_default('val_fraction')}].",
        ),
        click.option(
            "--seed",
            type=int,
            help=f"Seed for split, initialisation, sampling [default: {_default('seed')}].",
        ),
        click.option(
            "--band-names",
            help="Comma-separated names of the chip bands in order, e.g. B01,B02,...,B12,B8A for EuroSAT MS "
            "(Sentinel-2 ids, red/green/blue/nir...). Default: from the data.",
        ),
        click.option(
            "--max-per-class", type=int, help="Use at most this many chips per class [default: all]."
        ),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            help="Cache for decoded chips and probe embeddings.",
        ),
        click.option(
            "--resume/--no-resume", default=None, help="Continue from <out>.work/last.pt when it exists."
        ),
        click.option(
            "--save-dtype",
            type=click.Choice(["float32", "float16"]),
            help="Weight storage dtype [default: float32].",
        ),
        click.option(
            "--tile-size",
            type=int,
            help="Default tile size of `geosam run` for this model, in scene pixels (a multiple of the "
            "chip size) [default: about 256 encoder pixels of chips].",
        ),
        click.option(
            "--gsd",
            "gsd_m",
            type=float,
            metavar="METRES",
            help="Ground sampling distance of the training chips (metres per pixel, e.g. 10 for "
            "Sentinel-2), recorded so `geosam run` can match scene resolutions. Needed for chip folders; "
            "scenes in a projected CRS record their own.",
        ),
        click.option("--name", help=f"Model name recorded in the bundle [default: {_default('name')}]."),
        click.option("--threads", type=int, help="Torch CPU threads [default: all cores]."),
        click.option("--device", help="cpu, cuda or auto [default: auto]."),
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path),
            help="YAML file of TrainConfig fields (unknown keys are an error); options given here win.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _radiometry_options(f: F) -> F:
    """What the training data's values are (:mod:`geosam.radiometry`), recorded in the bundle."""
    options = [
        click.option(
            "--radiometry",
            type=click.Choice(["auto", "display", "reflectance", "dn"]),
            default="auto",
            show_default=True,
            help="What the values are: auto (from metadata and value ranges, logged), display (8-bit "
            "levels), reflectance (after GDAL scale/offset), dn (Sentinel-2 DN: reflectance = "
            "(DN + dn-offset) / 10000).",
        ),
        click.option(
            "--dn-offset",
            type=float,
            help="Sentinel-2 RADIO_ADD_OFFSET/BOA_ADD_OFFSET of the data: -1000 for processing baseline "
            "04.00+ (acquired from 2022-01-25) [default: 0].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _scene_options(f: F) -> F:
    """Options of the scene sources (polygons, raster)."""
    options = [
        click.option(
            "--cv",
            "cv",
            type=int,
            help="Also run K-fold spatially grouped cross-validation (folds of whole polygons or blocks, "
            "stratified, seeded by --seed): train on K-1 folds, classify the scene with `geosam run`, "
            "score the held-out labels; prints per-fold and mean accuracy, kappa and F1 and writes "
            "<out>/report/cv.json. Takes about K times the training plus K runs.",
        ),
        click.option(
            "--chip-size", type=int, default=64, show_default=True, help="Chip edge in scene pixels."
        ),
        click.option(
            "--bands",
            help="Scene bands to use, by 1-based index or name, comma-separated (3,2,1 or red,green,blue) "
            "[default: all but alpha].",
        ),
        click.option(
            "--spacing",
            type=int,
            help="Step in pixels between candidate chip centres [default: chip size / 2].",
        ),
        click.option(
            "--max-nodata",
            type=float,
            default=0.5,
            show_default=True,
            help="Skip chips with more than this fraction of nodata pixels.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


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

POLYGONS_HELP = """Train on chips of SCENE centred inside the polygons of LABELS (any CRS: reprojected).

Chip centres lie on a lattice inside each polygon (a polygon smaller than the lattice step gets one
chip at its representative point); a chip's label is its polygon's class. Chips are stretched as
`geosam run` stretches the scene, and chips of one polygon stay on one side of the
train/validation split.

\b
Examples:
  # the Raleigh sample scene: 34 polygons, 7 classes in column `label`, 28.5 m pixels
  geosam train polygons sample_tiles/data/landsat_multiband.tif \\
      sample_tiles/data/landsat96_polygons.shp --class-column label \\
      --band-names blue,green,red,nir,swir1 --chip-size 16 --spacing 4 --out raleigh_model
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


_TRAIN_KEYS = (
    "head",
    "out",
    "backbone",
    "mode",
    "last_n",
    "feature_level",
    "input_size",
    "epochs",
    "batch_size",
    "lr",
    "patience",
    "val_fraction",
    "seed",
    "max_per_class",
    "cache_dir",
    "resume",
    "save_dtype",
    "tile_size",
    "gsd_m",
    "name",
    "threads",
    "device",
)


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError("configuration file not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"not valid YAML ({str(err).splitlines()[0]})", path) from None
    except RecursionError:
        raise ConfigError("not a valid configuration: the YAML is nested too deeply", path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"a training configuration is a mapping of TrainConfig fields, not a {type(data).__name__}", path
        )
    return data


def build_config(config_path: Path | None, options: dict[str, Any]) -> TrainConfig:
    """TrainConfig from the YAML file (if any) overridden by the options that were given (not ``None``).

    Raises:
        ConfigError: Unreadable YAML, unknown keys or invalid values; the message names the key or option.
    """
    from pydantic import ValidationError

    data = _load_yaml(config_path) if config_path is not None else {}
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return TrainConfig.model_validate({**data, **given})
    except ValidationError as err:
        parts = []
        for e in err.errors():
            key = str(e["loc"][0]) if e["loc"] else ""
            flag = "--gsd" if key == "gsd_m" else f"--{key.replace('_', '-')}"
            where = flag if key in given else f"{key!r} in {config_path}" if key else ""
            if e["type"] == "extra_forbidden":
                known = ", ".join(TrainConfig.model_fields)
                parts.append(f"unknown key {key!r} in {config_path} (known keys: {known})")
            else:
                parts.append(f"{where}: {e['msg']}" if where else str(e["msg"]).removeprefix("Value error, "))
        raise ConfigError("invalid training configuration: " + "; ".join(parts)) from None


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
    cal = result.meta.calibration
    if cal is not None and cal.ece_before is not None and cal.ece_after is not None:
        click.echo(
            f"calibration: temperature {cal.temperature:.3f}, expected calibration error "
            f"{cal.ece_before:.3f} -> {cal.ece_after:.3f} (validation, cross-fitted; docs/calibration.md)"
        )
    click.echo(f"bundle: {result.bundle}  (model.json, weights.safetensors)")
    click.echo(
        f"report: {result.bundle / 'report'}  (metrics.json, confusion_matrix.png, learning_curve.png)"
    )


def _check_scene_options(cfg: TrainConfig, scene: Path, chip_size: int) -> None:
    """Refuse impossible option combinations before sampling chips (header reads only)."""
    from geosam.io.read import open_scene
    from geosam.train.checks import check_gsd, check_options

    # the dense head cuts its own chips (cfg.dense); --chip-size is the chip classifier's
    check_options(cfg, chip_size=chip_size if cfg.head == "chip" else None)
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
    else:
        click.echo(f"trained in {result.seconds:.0f} s (no class had two polygons/blocks to validate on)")
    cal = result.meta.calibration
    if cal is not None and cal.ece_before is not None and cal.ece_after is not None:
        click.echo(
            f"calibration: temperature {cal.temperature:.3f}, expected calibration error "
            f"{cal.ece_before:.3f} -> {cal.ece_after:.3f} (validation, cross-fitted; docs/calibration.md)"
        )
    if cv_result is not None:
        report = result.bundle / "report"
        report.mkdir(exist_ok=True)
        (report / "cv.json").write_text(json.dumps(cv_result.to_dict(), indent=2) + "\n", encoding="utf-8")
    click.echo(f"bundle: {result.bundle}  ({t.get('head', 'chip')} head; model.json, weights.safetensors)")
    click.echo(f"report: {result.bundle / 'report'}")


def _cross_validate_polygons(
    ctx: click.Context,
    scene: Path,
    labels: Path,
    class_column: str,
    cfg: TrainConfig,
    sampling: dict[str, Any],
    k: int,
) -> Any:
    """Run ``--cv K`` for the polygons source and print per-fold and pooled figures."""
    from geosam.io.read import open_scene
    from geosam.train.cv import cross_validate_polygons
    from geosam.train.workflows import polygons_fold_workflow

    train_opts = {f: getattr(cfg, f) for f in cfg.model_fields_set if f not in ("out", "resume", "cache_dir")}
    layer = sampling.pop("layer")
    workflow = polygons_fold_workflow(
        scene, class_column=class_column, train=train_opts, sampling=sampling, progress=_progress(ctx)
    )
    click.echo(f"{k}-fold cross-validation, polygons never split (seed {cfg.seed})", err=True)
    res = cross_validate_polygons(
        open_scene(scene),
        labels,
        workflow,
        k=k,
        seed=cfg.seed,
        class_column=class_column,
        layer=layer,
        on_fold=_fold_printer(k),
    )
    sampling["layer"] = layer
    _print_cv(res)
    return res


def _cross_validate_raster(
    ctx: click.Context,
    scene: Path,
    label_raster: Path,
    classes: dict[int, str] | None,
    cfg: TrainConfig,
    sampling: dict[str, Any],
    k: int,
) -> Any:
    """Run ``--cv K`` for the label-raster source (blocks of --block-chips x --chip-size pixels)."""
    from geosam.io.read import open_scene
    from geosam.train.cv import cross_validate_raster, raster_reference
    from geosam.train.workflows import raster_fold_workflow

    info = open_scene(scene)
    block = sampling["block_chips"] * sampling["chip_size"]
    _, class_map = raster_reference(
        info, label_raster, classes=classes, label_nodata=sampling["label_nodata"]
    )
    train_opts = {f: getattr(cfg, f) for f in cfg.model_fields_set if f not in ("out", "resume", "cache_dir")}
    workflow = raster_fold_workflow(
        scene,
        label_raster,
        classes=class_map,
        block=block,
        label_nodata=sampling["label_nodata"],
        train=train_opts,
        sampling={k_: v for k_, v in sampling.items() if k_ != "label_nodata"},
        progress=_progress(ctx),
    )
    click.echo(f"{k}-fold cross-validation, {block} px blocks never split (seed {cfg.seed})", err=True)
    res = cross_validate_raster(
        info,
        label_raster,
        workflow,
        k=k,
        seed=cfg.seed,
        classes=class_map,
        label_nodata=sampling["label_nodata"],
        block=block,
        on_fold=_fold_printer(k),
    )
    _print_cv(res)
    return res


def _fold_printer(k: int) -> Any:
    def on_fold(r: Any) -> None:
        m = r.metrics
        click.echo(
            f"  fold {r.fold + 1}/{k}: {m['n']} pixels of {len(r.test_polygons)} groups: overall "
            f"accuracy {m['overall_accuracy']:.3f}, kappa {m['kappa']:.3f}, macro-F1 {m['macro_f1']:.3f} "
            f"({r.seconds:.0f} s)",
            err=True,
        )

    return on_fold


def _print_cv(res: Any) -> None:
    p, mean, std = res.pooled, res.mean, res.std
    click.echo(
        f"cross-validation ({res.n_pixels} reference pixels, each predicted once): overall accuracy "
        f"{p['overall_accuracy']:.3f}, kappa {p['kappa']:.3f}, macro-F1 {p['macro_f1']:.3f}, mIoU "
        f"{p['miou']:.3f}; per fold {mean['overall_accuracy']:.3f} +- {std['overall_accuracy']:.3f}"
    )
    click.echo("  per-class F1: " + ", ".join(f"{c} {v['f1']:.2f}" for c, v in p["per_class"].items()))


def _options_to_config(config_path: Path | None, kw: dict[str, Any]) -> TrainConfig:
    return build_config(config_path, {k: kw.pop(k) for k in _TRAIN_KEYS})


@click.group(
    "train",
    help=TRAIN_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
def train() -> None:
    """Train a land-cover classifier (a SAM encoder plus a head) and save it as a model bundle."""


@train.command(
    "folder",
    help=FOLDER_HELP,
    epilog=_COMMON_EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.argument("root", type=click.Path(path_type=Path))
@click.option(
    "--reflectance-to-display",
    type=click.Choice(["none", "eurosat-l1c"]),
    default="none",
    show_default=True,
    help="For display chips rendered from Sentinel-2 reflectance: record how reflectance maps to their "
    "levels, so runs can take reflectance scenes (eurosat-l1c: the EuroSAT RGB JPEGs' mapping, "
    "docs/preprocessing.md).",
)
@_radiometry_options
@_train_options
@click.pass_context
def folder(
    ctx: click.Context,
    /,
    root: Path,
    reflectance_to_display: str,
    radiometry: str,
    dn_offset: float | None,
    config_path: Path | None,
    band_names: str | None,
    **kw: Any,
) -> None:
    """Train on chips in ROOT/<class>/*.jpg|png|tif (sub-folder names are the classes)."""
    from geosam.preprocess import EUROSAT_RGB_FROM_L1C
    from geosam.train.checks import check_options
    from geosam.train.data import load_folder_chips

    cfg = _options_to_config(config_path, kw)
    check_options(cfg)  # the chip-size checks run once the chips are loaded, before training
    data = load_folder_chips(
        root,
        band_names=_csv(band_names),
        max_per_class=cfg.max_per_class,
        cache_dir=cfg.cache_dir,
        seed=cfg.seed,
        progress=_progress(ctx),
        radiometry=radiometry,  # type: ignore[arg-type]
        dn_offset=dn_offset,
        reflectance_to_display=EUROSAT_RGB_FROM_L1C if reflectance_to_display == "eurosat-l1c" else None,
    )
    _run(ctx, cfg, data)


@train.command(
    "polygons",
    help=POLYGONS_HELP,
    epilog=_COMMON_EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.argument("scene", type=click.Path(path_type=Path))
@click.argument("labels", type=click.Path(path_type=Path))
@click.option(
    "--field",
    "--class-column",
    "class_column",
    required=True,
    help="Attribute of LABELS holding each polygon's class (--class-column is the same option).",
)
@click.option("--layer", help="Layer of a multi-layer LABELS file (GeoPackage) [default: the first].")
@click.option(
    "--max-per-polygon", type=int, default=50, show_default=True, help="At most this many chips per polygon."
)
@_scene_options
@_radiometry_options
@_train_options
@click.pass_context
def polygons(
    ctx: click.Context,
    /,
    scene: Path,
    labels: Path,
    class_column: str,
    layer: str | None,
    max_per_polygon: int,
    chip_size: int,
    bands: str | None,
    spacing: int | None,
    max_nodata: float,
    radiometry: str,
    dn_offset: float | None,
    config_path: Path | None,
    band_names: str | None,
    **kw: Any,
) -> None:
    """Train on SCENE with the polygons of LABELS (any CRS; reprojected)."""
    from geosam.train.workflows import polygons_head, train_polygons

    cv = kw.pop("cv")
    cfg = polygons_head(_options_to_config(config_path, kw))
    _check_scene_options(cfg, scene, chip_size)
    sampling: dict[str, Any] = {
        "layer": layer,
        "chip_size": chip_size,
        "bands": _csv(bands),
        "band_names": _csv(band_names),
        "spacing": spacing,
        "max_per_polygon": max_per_polygon,
        "max_nodata": max_nodata,
        "normalize": _normalize(radiometry, dn_offset),
    }
    cv_result = None
    if cv is not None:
        cv_result = _cross_validate_polygons(ctx, scene, labels, class_column, cfg, sampling, cv)
    result = train_polygons(
        scene, labels, class_column=class_column, cfg=cfg, progress=_progress(ctx), **sampling
    )
    _summary(result, cv_result)


def _normalize(radiometry: str, dn_offset: float | None) -> Any:
    from geosam.config import NormalizeConfig

    return NormalizeConfig.model_validate({"radiometry": radiometry, "dn_offset": dn_offset})


def _parse_classes(value: str | None) -> dict[int, str] | None:
    if value is None:
        return None
    out: dict[int, str] = {}
    for item in _csv(value) or []:
        key, sep, name = item.partition("=")
        if not sep or not key.strip().lstrip("-").isdigit() or not name.strip():
            raise ConfigError(f"--classes takes ID=NAME pairs such as 1=water,2=forest; {item!r} is not one")
        out[int(key)] = name.strip()
    return out


@train.command(
    "raster",
    help=RASTER_HELP,
    epilog=_COMMON_EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.argument("scene", type=click.Path(path_type=Path))
@click.argument("label_raster", type=click.Path(path_type=Path))
@click.option(
    "--classes",
    help="ID=NAME pairs, comma-separated (1=water,2=forest); other ids are ignored, ids with one name are "
    "merged. Default: the raster's category names / attribute table (.aux.xml), else class_<id>.",
)
@click.option(
    "--label-rule",
    type=click.Choice(["majority", "centre"]),
    default="majority",
    show_default=True,
    help="Chip label: the most frequent class in the chip, or the centre pixel's class.",
)
@click.option("--label-nodata", type=float, help="A label value meaning 'no label' (e.g. 0), besides nodata.")
@click.option(
    "--block-chips",
    type=int,
    default=4,
    show_default=True,
    help="Split groups are blocks of N x N chips (limits train/validation leakage).",
)
@_scene_options
@_radiometry_options
@_train_options
@click.pass_context
def raster(
    ctx: click.Context,
    /,
    scene: Path,
    label_raster: Path,
    classes: str | None,
    label_rule: str,
    label_nodata: float | None,
    block_chips: int,
    chip_size: int,
    bands: str | None,
    spacing: int | None,
    max_nodata: float,
    radiometry: str,
    dn_offset: float | None,
    config_path: Path | None,
    band_names: str | None,
    **kw: Any,
) -> None:
    """Train on SCENE where LABEL_RASTER has a class id (any grid; read nearest-neighbour)."""
    from geosam.train.workflows import train_raster

    cv = kw.pop("cv")
    cfg = _options_to_config(config_path, kw)
    _check_scene_options(cfg, scene, chip_size)
    sampling: dict[str, Any] = {
        "label_rule": label_rule,
        "label_nodata": label_nodata,
        "block_chips": block_chips,
        "chip_size": chip_size,
        "bands": _csv(bands),
        "band_names": _csv(band_names),
        "spacing": spacing,
        "max_nodata": max_nodata,
        "normalize": _normalize(radiometry, dn_offset),
    }
    class_map = _parse_classes(classes)
    cv_result = None
    if cv is not None:
        cv_result = _cross_validate_raster(ctx, scene, label_raster, class_map, cfg, sampling, cv)
    result = train_raster(
        scene, label_raster, cfg=cfg, classes=class_map, progress=_progress(ctx), **sampling
    )
    _summary(result, cv_result)


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


@train.command(
    "torchgeo",
    help=TORCHGEO_HELP,
    epilog=_COMMON_EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
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
@_train_options
@click.pass_context
def torchgeo_cmd(
    ctx: click.Context,
    /,
    dataset: str,
    root: Path,
    split: str,
    config_path: Path | None,
    band_names: str | None,
    **kw: Any,
) -> None:
    """Train on TorchGeo dataset NAME found under ROOT."""
    from geosam.train.workflows import train_torchgeo

    if band_names is not None:
        raise ConfigError("--band-names does not apply to TorchGeo datasets: their bands are known")
    cfg = _options_to_config(config_path, kw)
    result = train_torchgeo(dataset, root, cfg=cfg, split=split, progress=_progress(ctx))
    _summary(result)
