#!/usr/bin/env python3
"""Scheduled ingestion entry point for cron and systemd timers.

    python pipelines/ingest.py --config pipelines/configs/ingest.yaml [--dry-run] [-v]

The same as ``geosam ingest --config ...``: it calls :func:`geosam.ingest.run_ingest`. Exit status: 0
all good, 1 a scene failed in this run (recorded in the manifest), 2 a bad configuration, 75 another
run holds the lock (EX_TEMPFAIL: try again at the next tick).
"""

from __future__ import annotations

import argparse
import sys

from geosam.cli.main import configure_logging
from geosam.errors import GeosamError
from geosam.ingest import load_ingest_config, run_ingest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="ingest YAML (see pipelines/configs/ingest.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be processed, change nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    # as `geosam ingest`: INFO (-v: DEBUG); dask's ~25 lines per local-cluster run only with -v
    configure_logging(2 if args.verbose else 0, quiet=False)
    try:
        report = run_ingest(load_ingest_config(args.config), dry_run=args.dry_run)
    except GeosamError as err:
        print(f"geosam-ingest: error: {err}", file=sys.stderr)
        return err.exit_code
    for decision in report.decisions if args.dry_run else ():
        print(decision.line())
    print(report.summary())
    return report.exit_code


if __name__ == "__main__":  # the guard matters: local dask workers are spawned and re-import __main__
    sys.exit(main())
