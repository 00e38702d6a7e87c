"""`pip install .` (not editable) into a fresh virtual environment gives a working tvdeploy that
finds its templates and policies, run from a directory outside the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_install_outside_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("tvdeploy-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    tvdeploy = str(venv / "bin" / "tvdeploy")
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from tvdeploy.resources import templates_dir, policies_dir; print(templates_dir()); "
         "print(policies_dir())"],
        cwd=outside, check=True, capture_output=True, text=True,
    ).stdout.split()
    assert all(str(venv) in p for p in found), found
    example = Path(found[0]) / "site.example.yaml"
    r = subprocess.run([tvdeploy, "site", "validate", str(example)], cwd=outside, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([tvdeploy, "--help"], cwd=outside, capture_output=True, text=True)
    assert r.returncode == 0 and "site" in r.stdout
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "tvdeploy", "--version"], cwd=outside,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "tvdeploy" in r.stdout
