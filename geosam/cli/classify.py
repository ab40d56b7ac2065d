"""``geosam classify``: classify a folder of chips (JPEG/PNG/GeoTIFF) through a bundle's own preprocessing."""

from __future__ import annotations

from pathlib import Path

import click

from geosam.cli.options import model_option

EPILOG = """\b
Examples:
  geosam classify eurosat/2750 --out predictions.csv
      default model; class-per-subfolder chips: also prints the accuracy
  geosam classify chips/ --model my_model --radiometry dn --dn-offset -1000
      13-band Sentinel-2 GeoTIFF chips of processing baseline 04.00+

\b
Each chip is one model chip: the bundle's preprocessing (what training applied: radiometry, scaling,
nodata fill, resampling to the encoder input), then the model. This is the training/validation path;
`geosam run` gives a scene's chips the same inputs (docs/preprocessing.md).
CSV columns: file, true_class (the sub-folder), predicted_class, probability, p_<class>...
"""


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("chips", type=click.Path(path_type=Path))
@model_option
@click.option(
    "--sam-checkpoint", type=click.Path(path_type=Path), default=None, help="For head-only bundles."
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("predictions.csv"),
    show_default=True,
    help="CSV of per-chip predictions.",
)
@click.option(
    "--stretch",
    type=click.Choice(["auto", "percentile", "dtype", "none"]),
    default="auto",
    show_default=True,
    help="auto: the model's preprocessing; others override it (with a warning).",
)
@click.option(
    "--radiometry",
    type=click.Choice(["auto", "display", "reflectance", "dn"]),
    default="auto",
    show_default=True,
    help="What the chips' values are (see `geosam run --help`).",
)
@click.option(
    "--dn-offset", type=float, default=None, help="Sentinel-2 DN offset (-1000 for baseline 04.00+)."
)
@click.option("--batch-size", type=int, default=64, show_default=True, help="Chips per forward pass.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.pass_context
def classify(
    ctx: click.Context,
    /,
    chips: Path,
    model: Path | None,
    sam_checkpoint: Path | None,
    out: Path,
    stretch: str,
    radiometry: str,
    dn_offset: float | None,
    batch_size: int,
    device: str,
) -> int:
    """Classify the chips in CHIPS (a folder, flat or class-per-subfolder) with a model bundle."""
    from geosam.classify_chips import classify_chips
    from geosam.config import NormalizeConfig
    from geosam.runtime import resolve_device

    norm = NormalizeConfig.model_validate(
        {"method": stretch, "radiometry": radiometry, "dn_offset": dn_offset}
    )
    res = classify_chips(
        chips,
        model,
        normalize=norm,
        batch_size=batch_size,
        device=str(resolve_device(device)),
        sam_checkpoint=sam_checkpoint,
        progress=bool(ctx.obj and ctx.obj.get("progress")),
    )
    res.write_csv(out)
    click.echo(f"{len(res.files)} chips -> {out}")
    summary = res.summary()
    if summary is not None:
        click.echo(
            f"accuracy over {summary['chips']} labelled chips: overall {summary['overall_accuracy']:.4f}, "
            f"kappa {summary['kappa']:.4f}, macro-F1 {summary['macro_f1']:.4f}"
        )
        for name, pc in summary.get("per_class", {}).items():
            click.echo(
                f"  {name:24} producer's {pc['recall']:.3f}  user's {pc['precision']:.3f}  "
                f"F1 {pc['f1']:.3f}  ({pc['support']} chips)"
            )
        if summary["folders_not_model_classes"]:
            click.echo(f"  not model classes (not scored): {', '.join(summary['folders_not_model_classes'])}")
    return 0
