"""The declared dependencies tell the truth: every runtime dependency is imported by geosam (or is
listed here with its reason), every third-party module geosam imports is declared, test-only and
benchmark-only libraries are extras, and requires-python fits the dependencies."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

#: distribution name -> the top-level modules it provides (where they differ from the name)
MODULES = {
    "segment-anything": {"segment_anything"},
    "scikit-image": {"skimage"},
    "pillow": {"PIL"},
    "pyyaml": {"yaml"},
    "rio-stac": {"rio_stac"},
    "rio-cogeo": {"rio_cogeo"},
    "dask": {"dask", "distributed"},
    "segmentation-models-pytorch": {"segmentation_models_pytorch"},
}
#: declared but not imported by geosam itself, and why
NOT_IMPORTED = {
    "requests": "torchgeo 0.8 imports it without declaring it",
}


def dist_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()


def imported(folder: Path) -> set[str]:
    """Top-level modules imported anywhere in ``folder``'s Python files (also inside functions)."""
    out = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                out.add(node.module.split(".")[0])
    return out


def modules_of(req: str) -> set[str]:
    name = dist_name(req)
    return MODULES.get(name, {name.replace("-", "_")})


def test_every_runtime_dependency_is_imported_or_explained():
    used = imported(ROOT / "geosam")
    unused = [dist_name(r) for r in PYPROJECT["project"]["dependencies"] if not modules_of(r) & used]
    assert sorted(unused) == sorted(NOT_IMPORTED), "declared, never imported: drop it or say why"


#: modules of the optional extras (imported lazily, only when a SAM 2 / SAM 3 checkpoint is used)
EXTRA_MODULES = {"sam2": {"sam2", "hydra", "omegaconf"}, "sam3": {"sam3", "open_clip"}}


def test_every_third_party_import_is_declared():
    declared = set().union(*(modules_of(r) for r in PYPROJECT["project"]["dependencies"]))
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra, mods in EXTRA_MODULES.items():
        assert extra in extras
        declared |= mods
    stdlib = set(sys.stdlib_module_names)
    third_party = imported(ROOT / "geosam") - stdlib - {"geosam", "IPython"}  # IPython: optional probe
    assert sorted(third_party - declared) == []


def test_test_and_benchmark_libraries_are_extras():
    extras = PYPROJECT["project"]["optional-dependencies"]
    runtime = {dist_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert "rio-cogeo" in {dist_name(r) for r in extras["dev"]} and "rio-cogeo" not in runtime
    assert "psutil" in {dist_name(r) for r in extras["bench"]} and "psutil" not in runtime
    assert not {"rio_cogeo", "psutil"} & imported(ROOT / "geosam")
    assert "psutil" in imported(ROOT / "benchmarks")


def test_requires_python_fits_torchgeo():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == "3.11"
