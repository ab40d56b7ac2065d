"""``geosam calibrate``: add calibrated confidence and a domain check to an existing model bundle."""

from __future__ import annotations

from pathlib import Path

import click

EPILOG = """\b
Examples:
  # the packaged default model, from the EuroSAT RGB chips it was trained on
  geosam calibrate geosam/data/default_model --data ../shared/data/eurosat_rgb/2750 --cache-dir .cache
  # write a calibrated copy instead of updating the bundle in place
  geosam calibrate my_model --data chips/ --out my_model_calibrated

\b
What it fits, on the training run's own split (recomputed from the seed and validation fraction in
model.json): the temperature and the threshold on validation chips the model was not trained on, the
domain Gaussians on the training chips (they describe what the model was trained on):
  temperature   logits / T makes the probabilities calibrated (Guo et al. 2017); fitted on the
                validation chips; the expected calibration error (15 bins) before and after is
                measured by 2-fold cross-fitting and printed
  domain        class means and a shared covariance of the training chips' encoder features
                (Mahalanobis score, Lee et al. 2018) and a threshold at the 95th percentile of the
                validation chips' scores; `geosam run` warns when most of a scene's chips exceed it

The weights are not changed. model.json gains `calibration` and `domain`, the folder gains
domain.safetensors, report/calibration.json and report/reliability.png. `geosam train` does the same
when it finishes; this command is for bundles trained before it did. See docs/calibration.md.
"""


@click.command(epilog=EPILOG)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="The chips the model was trained on: ROOT/<class>/*.jpg|png|tif, as for `geosam train folder`.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write the calibrated bundle here [default: update BUNDLE in place, atomically].",
)
@click.option(
    "--band-names",
    help="Comma-separated chip band names, as given to `geosam train folder` [default: from the data].",
)
@click.option(
    "--fit-per-class",
    type=int,
    default=1000,
    show_default=True,
    help="Training chips per class for the domain statistics (0 = all).",
)
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache for decoded chips.")
@click.option("--threads", type=int, help="Torch CPU threads [default: all cores].")
@click.pass_context
def calibrate(
    ctx: click.Context,
    bundle: Path,
    data: Path,
    out: Path | None,
    band_names: str | None,
    fit_per_class: int,
    cache_dir: Path | None,
    threads: int | None,
) -> None:
    """Fit temperature scaling and domain statistics for BUNDLE on the chips it was trained on."""
    from geosam.train.calibrate import calibrate_bundle
    from geosam.train.data import load_folder_chips

    progress = bool(ctx.obj.get("progress")) if ctx.obj else False
    names = [b.strip() for b in band_names.split(",")] if band_names else None
    chips = load_folder_chips(data, band_names=names, cache_dir=cache_dir, progress=progress)
    post = calibrate_bundle(bundle, chips, out=out, fit_per_class=fit_per_class or None, threads=threads)
    cal, dom = post.calibration, post.domain_meta
    click.echo(f"{out or bundle}: calibrated on {cal.n} validation chips")
    click.echo(
        f"  temperature  {cal.temperature:.4f}   ECE ({cal.ece_bins} bins) {cal.ece_before:.4f} -> "
        f"{cal.ece_after:.4f} (cross-fitted)   NLL {cal.nll_before:.4f} -> {cal.nll_after:.4f}"
    )
    click.echo(
        f"  domain       Mahalanobis (tied), {dom.n_fit} training chips, threshold {dom.threshold:.3f} "
        f"(95th percentile of the validation chips)"
    )
