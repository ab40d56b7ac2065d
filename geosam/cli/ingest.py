"""``geosam ingest``: process new or changed scenes of an inbox, once each (for cron/systemd timers)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from geosam.ingest import IngestConfig

EPILOG = """\b
Examples:
  geosam ingest --config pipelines/configs/ingest.yaml
      one run: new/changed scenes of the inbox are classified, the rest is skipped
  geosam ingest --config ingest.yaml --status
      configuration problems (a missing inbox...), then what the manifest holds: scenes per status,
      failures with reasons, recent runs
  geosam ingest --config ingest.yaml --dry-run
      every scene found: what a run would process, and why it leaves the others (too new, done,
      failed...); writes nothing, not even the output folder or the manifest
  geosam ingest --config ingest.yaml --retry-failed
      give every failed scene new attempts, then run

\b
Exit status: 0 all good, 1 a scene failed in this run (recorded in the manifest), 2 bad config
(also from --status when the configuration cannot run), 75 another ingest run holds the lock (try
again later). Scheduling: pipelines/README.md.
"""


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Ingest configuration YAML (see pipelines/configs/ingest.yaml).",
)
@click.option(
    "--dry-run", is_flag=True, help="Scan; say what would be processed and why not the rest; write nothing."
)
@click.option(
    "--status",
    is_flag=True,
    help="Print configuration problems and the manifest's summary, and exit (no lock, no work).",
)
@click.option("--retry-failed", is_flag=True, help="Reset failed scenes to pending (attempts 0), then run.")
@click.option("--stac/--no-stac", default=None, help="Override the config's stac setting.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Override the config's workers.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Override the config's scheduler.")
@click.pass_context
def ingest(
    ctx: click.Context,
    /,
    config_path: Path,
    dry_run: bool,
    status: bool,
    retry_failed: bool,
    stac: bool | None,
    workers: int | None,
    scheduler: str | None,
) -> int:
    """Classify the new and changed scenes of an inbox, recording each in a SQLite manifest."""
    from geosam.ingest import load_ingest_config, run_ingest

    cfg = load_ingest_config(config_path, stac=stac, workers=workers, scheduler=scheduler)
    if status:
        return _print_status(cfg)
    if retry_failed and dry_run:
        from geosam.errors import ConfigError

        raise ConfigError("--retry-failed changes the manifest, --dry-run changes nothing: use one")
    if retry_failed:
        from geosam.ingest import ingest_lock
        from geosam.manifest import Manifest

        with ingest_lock(cfg.lock_path), Manifest.open(cfg.db_path) as m:
            click.echo(f"{m.retry_failed()} failed scenes reset to pending")
    progress = bool(ctx.obj and ctx.obj.get("progress"))
    report = run_ingest(cfg, dry_run=dry_run, progress=progress)
    if dry_run:
        for decision in report.decisions:
            click.echo(decision.line())
    for o in report.outcomes:
        if o.status == "failed":
            click.echo(f"geosam: failed: {o.source}: {o.error_type}: {o.error_message}", err=True)
    click.echo(report.summary())
    return report.exit_code


def _print_status(cfg: IngestConfig) -> int:
    """Print configuration problems and the manifest's summary; 2 when the configuration cannot run."""
    from geosam.ingest import check_ingest_config
    from geosam.manifest import Manifest

    problems = check_ingest_config(cfg)
    for problem in problems:
        click.echo(f"configuration problem: {problem}")
    db = cfg.db_path
    if not db.is_file():
        click.echo(f"manifest {db}: none yet (no run has scanned the inbox)")
        return 2 if problems else 0
    with Manifest.snapshot(db) as m:  # reads without creating -wal/-shm files
        counts = m.counts()
        click.echo(f"manifest {db}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        for row in m.rows("failed"):
            click.echo(
                f"failed: {row.key} (attempts {row.attempts}{'' if row.retryable else ', input error'}): "
                f"{row.error_type}: {row.error_message}"
            )
        for row in m.rows("running"):
            click.echo(f"running: {row.key} since {row.started} on {row.worker}")
        for run in m.last_runs(3):
            click.echo(
                f"run {run['run_id']}: {run['status']}, started {run['started']}, "
                f"{run['done'] or 0} done, {run['failed'] or 0} failed"
            )
    return 2 if problems else 0
