"""The distribution users install: `geosam-landcover` (PyPI's `geosam` is an unrelated project), a wheel
with the whole `geosam` package, the packaged default model and the `geosam` command.

Built here from a copy of the sources (``pip wheel --no-build-isolation``: setuptools from this
environment, nothing downloaded, nothing written into the checkout). Installing the wheel into a fresh
virtual environment and running it on the sample scene is done by hand (it downloads torch), as the
README's installation section says.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "geosam", src / "geosam", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if res.returncode != 0 and "No module named" in res.stderr:
        pytest.skip(f"cannot build without network: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stderr[-2000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_wheel_is_geosam_landcover_with_package_data_and_command(wheel: Path) -> None:
    assert wheel.name.startswith("geosam_landcover-0.1.0-py3-none-any")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = Parser().parsestr(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert meta["Name"] == "geosam-landcover" and meta["Requires-Python"] == ">=3.11"
    assert "geosam = geosam.cli.main:console" in entry
    model = "geosam/data/default_model/"
    assert {f"{model}model.json", f"{model}weights.safetensors", "geosam/py.typed"} <= names
    assert {"geosam/batch/__init__.py", "geosam/batch/dask_backend.py", "geosam/cli/main.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)
    # every dependency of pyproject.toml is in the wheel's metadata (extras marked as such)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requires = meta.get_all("Requires-Dist") or []
    assert len([r for r in requires if "extra ==" not in r]) == len(declared)
    assert any(r.startswith("psutil") and 'extra == "bench"' in r for r in requires)
