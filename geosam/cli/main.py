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
from collections.abc import Callable
from typing import Any

import click

import geosam
from geosam._signals import EXIT_TERMINATED, Terminated, sigterm_raises
from geosam.errors import GeosamError

__all__ = ["DaskLogFilter", "cli", "configure_logging", "main"]

#: subcommand -> "module:function"; modules are imported lazily so `geosam --help` stays fast.
COMMANDS: dict[str, str] = {
    "run": "geosam.cli.run:run",
    "train": "geosam.cli.train:train",
    "batch": "geosam.cli.batch:batch",
    "ingest": "geosam.cli.ingest:ingest",
    "info": "geosam.cli.info:info",
    "evaluate": "geosam.cli.evaluate:evaluate",
    "classify": "geosam.cli.classify:classify",
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
  geosam classify chips/ --out predictions.csv   classify a folder of chips (accuracy per sub-folder)
  geosam calibrate my_model --data chips/    calibrated confidence and a domain check for a bundle

Run `geosam COMMAND --help` for each command's options and examples. The options below may also
follow the command (`geosam run scene.tif -q`). Without a terminal (cron, CI, `!geosam` in Jupyter),
progress is logged at INFO every --progress-interval seconds instead of drawn as bars.
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
        return add_global_params(cmd)


#: Libraries whose INFO chatter is never useful to a geosam user (their warnings still show).
_NOISY = ("rasterio", "fiona", "pyogrio", "matplotlib", "PIL")
#: Marks the handler the CLI installed, so a later ``-v``/``-q`` after the subcommand re-levels it
#: while a host application's (or pytest's) handlers are left alone.
_HANDLER_TAG = "_geosam_cli_handler"


class DaskLogFilter(logging.Filter):
    """Drop ``distributed.*`` and ``dask.*`` records below ``level``.

    A local dask cluster logs ~25 lines on a successful run, among them a WARNING that the nanny killed
    a worker at shutdown. Setting logger levels is not enough: importing ``distributed`` (after the CLI
    configured logging) resets the ``distributed`` logger to INFO from dask's own configuration. A filter
    on the CLI's handler holds whatever dask does to its loggers.
    """

    PREFIXES = ("distributed", "dask")

    def __init__(self, level: int = logging.ERROR) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it is dask's and below the level."""
        name = record.name
        ours = any(name == p or name.startswith(p + ".") for p in self.PREFIXES)
        return not ours or record.levelno >= self.level


def configure_logging(verbose: int, quiet: bool) -> None:
    """Configure logging for the CLI and the ``pipelines/`` scripts.

    INFO by default, WARNING with ``quiet``, DEBUG with ``verbose >= 2``; dask's loggers only at ERROR
    unless ``verbose`` (INFO; ``verbose >= 2``: DEBUG). A handler on stderr is installed only when the
    root logger has none (a host application's logging is left alone, except for the noisy libraries).
    """
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
        )
        handler.addFilter(DaskLogFilter())
        setattr(handler, _HANDLER_TAG, True)
        root.addHandler(handler)
        ours = [handler]
    if ours:
        root.setLevel(level)
    dask_level = logging.ERROR if quiet or verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    for h in ours:
        for f in h.filters:
            if isinstance(f, DaskLogFilter):
                f.level = dask_level
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _apply_global(
    ctx: click.Context, verbose: int | None, quiet: bool | None, interval: float | None
) -> None:
    """Record the global options in ``ctx.obj`` and apply them (logging, progress settings)."""
    from geosam.progress import progress_settings

    obj = ctx.find_root().ensure_object(dict)
    if verbose:
        obj["verbose"] = obj.get("verbose", 0) + verbose
    if quiet:
        obj["quiet"] = True
    if interval is not None:
        obj["progress_interval"] = interval
    obj.setdefault("verbose", 0)
    obj.setdefault("quiet", False)
    obj["progress"] = not obj["quiet"]
    configure_logging(obj["verbose"], obj["quiet"])
    ctx.with_resource(progress_settings(interval_s=obj.get("progress_interval")))


def _late_option(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value or (name == "progress_interval" and value is not None):  # given after the subcommand
            _apply_global(
                ctx,
                value if name == "verbose" else None,
                True if name == "quiet" else None,
                value if name == "progress_interval" else None,
            )

    return callback


def _progress_interval_option(**kw: Any) -> click.Option:
    return click.Option(
        ["--progress-interval"],
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        help="Seconds between progress log lines when stderr is not a terminal (cron, CI, Jupyter's "
        "!geosam) [default: 30]; on a terminal, progress bars.",
        **kw,
    )


def global_params() -> list[click.Parameter]:
    """``-v``, ``-q`` and ``--progress-interval`` as accepted after a subcommand (``geosam run x.tif -q``)."""
    return [
        click.Option(
            ["-v", "--verbose"],
            count=True,
            expose_value=False,
            callback=_late_option("verbose"),
            help="More logging, as `geosam -v` (-vv: debug and tracebacks).",
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            callback=_late_option("quiet"),
            help="Only warnings and errors, as `geosam -q`.",
        ),
        _progress_interval_option(expose_value=False, callback=_late_option("progress_interval")),
    ]


def add_global_params(cmd: click.Command) -> click.Command:
    """Give ``cmd`` (and, for a group, each of its subcommands) the global options, once."""
    if getattr(cmd, "_geosam_globals", False):
        return cmd
    cmd._geosam_globals = True  # type: ignore[attr-defined]
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            add_global_params(sub)
        return cmd  # a group's own options stay its own; its subcommands take the globals
    taken = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    for param in global_params():
        if not taken & set(param.opts):
            cmd.params.append(param)
    return cmd


@click.group(
    cls=LazyGroup,
    help=HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(geosam.__version__, "--version", prog_name="geosam")
@click.option("-v", "--verbose", count=True, help="More logging (-vv: debug, and tracebacks on errors).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress.")
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Seconds between progress log lines when stderr is not a terminal (cron, CI, Jupyter's "
    "!geosam) [default: 30]; on a terminal, progress bars.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, progress_interval: float | None) -> None:
    """Top-level options shared by every subcommand (they may also follow the subcommand)."""
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=0, quiet=False)
    _apply_global(ctx, verbose, quiet, progress_interval)


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
