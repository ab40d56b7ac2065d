"""``geosam`` entry point: a click group whose subcommands are imported only when used.

User mistakes (:class:`geosam.errors.GeosamError`) are printed as one line without a traceback and
exit with the error's ``exit_code``; ``-v`` shows debug logging and tracebacks. Ctrl-C (SIGINT) and
SIGTERM (schedulers, ``docker stop``) stop a command cleanly: half-written outputs are rolled back
and the exit status is 130 or 143.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

import geosam
from geosam._signals import EXIT_TERMINATED, Terminated, sigterm_raises
from geosam.errors import GeosamError

__all__ = ["cli", "main"]

#: subcommand -> "module:function"; modules are imported lazily so `geosam --help` stays fast.
COMMANDS: dict[str, str] = {
    "run": "geosam.cli.run:run",
    "train": "geosam.cli.train:train",
    "batch": "geosam.cli.batch:batch",
    "ingest": "geosam.cli.ingest:ingest",
    "info": "geosam.cli.info:info",
    "evaluate": "geosam.cli.evaluate:evaluate",
    "calibrate": "geosam.cli.calibrate:calibrate",
}

#: glibc allocator settings that keep large freed buffers (attention maps) instead of returning them
#: to the OS on every call; ~1.6x faster SAM encoder on CPU (docs/performance.md). One arena: threads
#: other than the main one (dask worker tasks) would otherwise allocate from secondary arenas, whose
#: heaps cannot hold buffers over 64 MB, so every attention map was a fresh mmap again there.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "MALLOC_TOP_PAD_": "1073741824",
    "MALLOC_ARENA_MAX": "1",
}

HELP = """Land-cover classification of satellite rasters with Segment Anything.

\b
Examples:
  geosam run scene.tif                       classify a scene with the default model
  geosam run scene.tif --model my_model --sam-checkpoint sam_vit_b_01ec64.pth --out results/
  geosam train folder eurosat/2750 --out my_model
  geosam batch 'archive/*.tif' --out results/
  geosam ingest --config pipelines/configs/ingest.yaml
  geosam info scene.tif                      bands, CRS, tiling plan
  geosam evaluate out/scene_classes.tif reference.gpkg   accuracy against reference polygons
  geosam calibrate my_model --data chips/    calibrated confidence and a domain check for a bundle

Run `geosam COMMAND --help` for each command's options and examples.
"""


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """All subcommand names, sorted."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the subcommand ``cmd_name``."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            cmd: click.Command = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("geosam.cli"):
                return None  # subcommand not available in this build
            raise
        return cmd


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("rasterio", "fiona", "pyogrio", "distributed", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@click.group(
    cls=LazyGroup,
    help=HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(geosam.__version__, "--version", prog_name="geosam")
@click.option("-v", "--verbose", count=True, help="More logging (-vv: debug, and tracebacks on errors).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Top-level options shared by every subcommand."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    ctx.obj["quiet"] = quiet
    ctx.obj["progress"] = not quiet and sys.stderr.isatty()
    _configure_logging(verbose, quiet)


def _maybe_reexec_with_allocator_env() -> None:
    """Re-execute once with the glibc allocator variables set (they are read at process start only)."""
    if os.environ.get("GEOSAM_NO_REEXEC") or not sys.platform.startswith("linux"):
        return
    if all(os.environ.get(k) for k in MALLOC_ENV):
        return
    env = {
        **os.environ,
        **{k: v for k, v in MALLOC_ENV.items() if not os.environ.get(k)},
        "GEOSAM_NO_REEXEC": "1",
    }
    try:
        os.execve(sys.executable, [sys.executable, "-m", "geosam", *sys.argv[1:]], env)
    except OSError:  # pragma: no cover - exec not permitted: run as is
        return


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    if argv is None:
        _maybe_reexec_with_allocator_env()
    args = sys.argv[1:] if argv is None else argv
    debug = any(a.startswith("-vv") for a in args) or args.count("-v") + args.count("--verbose") >= 2
    try:
        with sigterm_raises():
            result: Any = cli.main(args=args, prog_name="geosam", standalone_mode=False)
    except Terminated:
        click.echo("geosam: terminated (SIGTERM)", err=True)
        return EXIT_TERMINATED
    except GeosamError as err:
        if debug:
            raise
        click.echo(f"geosam: error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Abort:
        click.echo("geosam: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("geosam: interrupted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except OSError as err:
        if debug:
            raise
        # Environment problems (disk full, permissions) without a traceback; name the file.
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        click.echo(f"geosam: error: {where}{err.strerror or err}", err=True)
        return 1
    return int(result) if isinstance(result, int) else 0


def console() -> None:  # pragma: no cover - thin wrapper for the console script
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
