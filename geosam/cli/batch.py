"""``geosam batch``: classify many scenes (folders, globs, lists, archives), locally or on a dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geosam.cli.options import build_run_config, run_options

EPILOG = """\b
Examples:
  geosam batch scenes/ --out results/
      every .tif/.tiff/.vrt under scenes/, one local worker process
  geosam batch 'archive/2024-*/*.tif' scenes.txt delivery.zip --out results/ --workers 2
      a glob, a list file (one path per line) and an archive (extracted safely)
  geosam batch scenes/ --out results/ --scheduler tcp://10.0.0.5:8786 --gpu --stac
      on a running dask cluster, one scene per GPU worker, with a STAC collection
  geosam batch scenes/ --out results/ --workers 0
      one scene after another in this process, without dask

\b
Outputs: results/<scene>/<scene>_classes.tif ... (see `geosam run --help`) and
results/batch_report.json (status, timings, tiles, regions and errors of every scene).
A scene that fails is recorded and skipped; the exit status is 1 if any failed.
Cluster setup, GPU workers and memory: docs/batch.md.
"""


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), required=True, help="Output directory (created)."
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run on a running dask scheduler (tcp://host:8786) instead of local workers.",
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Local worker processes (each loads the model once). 0: run in this process without dask.",
)
@click.option("--threads", is_flag=True, help="Local workers are threads of this process, not processes.")
@click.option(
    "--torch-threads", type=click.IntRange(min=1), default=None, help="Torch threads per local worker."
)
@click.option(
    "--memory-limit",
    default="auto",
    show_default=True,
    help="Memory per local worker ('8GB', 'auto' = machine / workers, 'none').",
)
@click.option("--gpu", is_flag=True, help="Each scene task requests resources={'GPU': 1}.")
@click.option("--stac", is_flag=True, help="Write a STAC item per scene and OUT/collection.json.")
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Skip scenes whose complete outputs exist for the same input content (run record present, "
    "every file matching its recorded sha256).",
)
@click.option(
    "--layout",
    type=click.Choice(["folders", "flat"]),
    default="folders",
    show_default=True,
    help="One folder per scene under OUT, or every file directly in OUT.",
)
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="Batch report path (default OUT/batch_report.json).",
)
@click.option("--keep-extracted", is_flag=True, help="Keep archive members extracted in OUT/.geosam-work/.")
@run_options
@click.pass_context
def batch(
    ctx: click.Context,
    /,
    inputs: tuple[str, ...],
    out: Path,
    scheduler: str | None,
    workers: int,
    threads: bool,
    torch_threads: int | None,
    memory_limit: str,
    gpu: bool,
    stac: bool,
    skip_existing: bool,
    layout: str,
    report: Path | None,
    keep_extracted: bool,
    model: Path | None,
    sam_checkpoint: Path | None,
    config_path: Path | None,
    bands: list[int | str] | None,
    **options: Any,
) -> int:
    """Classify every scene in INPUTS: files, folders, 'globs', list files (.txt), archives (.zip, .tgz)."""
    from geosam.batch import ExecutorSpec, run_batch

    cfg = build_run_config(config_path, bands, **options)
    executor = ExecutorSpec(
        scheduler=scheduler,
        workers=workers,
        processes=not threads,
        torch_threads=torch_threads,
        memory_limit=None if memory_limit.lower() in ("none", "0") else memory_limit,
        gpu=gpu,
    )
    progress = bool(ctx.obj and ctx.obj.get("progress"))
    res = run_batch(
        inputs,
        out,
        model=model,
        sam_checkpoint=sam_checkpoint,
        cfg=cfg,
        executor=executor,
        layout="flat" if layout == "flat" else "folders",
        stac=stac,
        skip_existing=skip_existing,
        report_path=report,
        keep_extracted=keep_extracted,
        progress=progress,
    )
    for o in res.failed:
        click.echo(f"geosam: failed: {o.scene}: {o.error_type}: {o.error_message}", err=True)
    c = res.counts()
    click.echo(
        f"{c['scenes']} scenes: {c['done']} done, {c['failed']} failed, {c['skipped']} skipped; "
        f"{c['tiles']} tiles, {c['regions']} regions in {res.seconds:.1f} s; "
        f"report: {report or Path(res.out_dir) / 'batch_report.json'}"
    )
    return res.exit_code
