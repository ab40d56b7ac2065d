"""Run ``tests/qgis_check.py`` in the system Python that has PyQGIS, from any geosam test.

PyQGIS lives in the system interpreter (``/usr/bin/python3``), not in geosam's venv, so QGIS checks run
in a subprocess::

    from helpers_qgis import qgis_python, run_qgis_check  # tests/ is on sys.path under pytest

    @pytest.mark.qgis
    def test_outputs_open_in_qgis(tmp_path):
        qgis_python()  # skips the test when PyQGIS is not installed
        spec = {"layers": [{"path": str(tif), "expect": {"renderer": "paletted"}}]}
        report = run_qgis_check(spec, tmp_path)
        assert report["layers"][0]["legend"] == ["water", "forest"]

``run_qgis_check`` fails the test (with QGIS's own report) when any expectation does not hold. Set
``GEOSAM_QGIS_PYTHON`` to use another interpreter.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CHECK_SCRIPT = Path(__file__).with_name("qgis_check.py")


def _qgis_env(workdir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    if workdir is not None:
        # Keep QGIS's profile and Qt's runtime dir out of $HOME and quiet.
        runtime = workdir / ".qgis-runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        env["QGIS_CUSTOM_CONFIG_PATH"] = str(workdir / ".qgis-profile")
    return env


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str | None, str]:
    python = os.environ.get("GEOSAM_QGIS_PYTHON", "/usr/bin/python3")
    if not Path(python).is_file():
        return None, f"{python} not found"
    try:
        proc = subprocess.run(
            [python, "-c", "import qgis.core"],
            env=_qgis_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{python} failed to start: {exc}"
    if proc.returncode != 0:
        return None, f"PyQGIS not importable by {python}: {proc.stderr.strip().splitlines()[-1:]}"
    return python, ""


def qgis_python() -> str:
    """Path of the interpreter with PyQGIS; skips the calling test when there is none."""
    python, reason = _probe()
    if python is None:
        pytest.skip(reason)
    return python


def run_qgis_check(
    spec: dict[str, Any], workdir: Path, *, expect_ok: bool = True, timeout: float = 120.0
) -> dict[str, Any]:
    """Run ``qgis_check.py`` on ``spec`` and return its JSON report.

    Args:
        spec: See ``tests/qgis_check.py`` (relative paths are relative to ``workdir``).
        workdir: Where the spec and report files are written (a ``tmp_path``).
        expect_ok: Fail the calling test unless every check passed (set ``False`` to inspect failures).
        timeout: Seconds before QGIS is considered hung.
    """
    python = qgis_python()
    workdir = Path(workdir)
    spec_file = workdir / "qgis_spec.json"
    out_file = workdir / "qgis_report.json"
    spec_file.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    out_file.unlink(missing_ok=True)
    proc = subprocess.run(
        [python, str(CHECK_SCRIPT), str(spec_file), "--out", str(out_file)],
        env=_qgis_env(workdir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode not in (0, 1) or not out_file.is_file():
        pytest.fail(
            f"qgis_check.py exited with {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
            f"stderr:\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    report: dict[str, Any] = json.loads(out_file.read_text(encoding="utf-8"))
    if expect_ok and not report["ok"]:
        failures = [
            f"{entry['path']}: {failure}"
            for entry in report["layers"] + report["projects"]
            for failure in entry["failures"]
        ]
        pytest.fail("QGIS checks failed:\n  " + "\n  ".join(failures) + f"\nQGIS log: {report.get('log')}")
    if (proc.returncode == 0) != report["ok"]:
        pytest.fail(f"qgis_check.py exit status {proc.returncode} disagrees with its report", pytrace=False)
    return report


if __name__ == "__main__":  # pragma: no cover - manual diagnosis
    print(_probe(), file=sys.stderr)
