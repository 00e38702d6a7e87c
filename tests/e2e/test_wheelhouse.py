"""scripts/build-wheelhouse: tvdeploy and every dependency (all extras) as wheels with their
SHA-256 list; installed in a network namespace with no route at all (`unshare --net`: only a
down loopback) into a fresh venv of Debian's Python, with pip's --require-hashes.

The wheelhouse is built once per session (PyPI is reachable in CI); set
TVDEPLOY_TEST_WHEELHOUSE=DIR to reuse one built by the script (it is verified first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-wheelhouse"
DEBIAN_PYTHON = "/usr/bin/python3"
# No pip configuration or environment of this machine (its find-links and index mirrors): only DIR.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent", "PIP_CONFIG_FILE": os.devnull,
             "LANG": "C.UTF-8"}


def script(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reuse = os.environ.get("TVDEPLOY_TEST_WHEELHOUSE")
    if reuse:
        r = script("--verify", reuse)
        assert r.returncode == 0, r.stderr
        return Path(reuse)
    target = tmp_path_factory.mktemp("wheelhouse") / "wh"
    r = script(target)
    assert r.returncode == 0, r.stderr
    return target


@pytest.mark.slow
def test_wheelhouse_installs_with_no_route_and_runs(wheelhouse: Path, tmp_path: Path) -> None:
    names = {p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}
    assert {"tvdeploy", "typer", "cryptography", "paramiko", "docker", "pyvmomi", "pydantic", "pyzstd",
            "weasyprint", "pytest"} <= names
    sums = (wheelhouse / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(names) == len((wheelhouse / "requirements.txt").read_text().splitlines())
    venv = tmp_path / "venv"
    steps = (
        f"ip -4 route; ip -6 route; "  # printed: must be empty
        f"{DEBIAN_PYTHON} -m venv {venv} && "
        f"{venv}/bin/pip install -q --no-index --find-links {wheelhouse} --require-hashes "
        f"-r {wheelhouse}/requirements.txt && "
        f"{venv}/bin/tvdeploy --version && "
        f"{venv}/bin/python -c 'import tvdeploy.cli.app, pyVmomi, docker, paramiko, pydantic, weasyprint'"
    )
    proc = subprocess.run(["unshare", "--net", "sh", "-c", steps], capture_output=True, text=True, env=CLEAN_ENV,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["tvdeploy 0.1.0"], proc.stdout  # no route lines: no network at all


def _fake_wheelhouse(folder: Path) -> Path:
    folder.mkdir()
    for name in ("alpha-1.0-py3-none-any.whl", "beta-2.1-cp311-cp311-manylinux_2_17_x86_64.whl"):
        (folder / name).write_bytes(name.encode() * 100)
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("build_wheelhouse", str(SCRIPT))
    spec = importlib.util.spec_from_loader("build_wheelhouse", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    module.write_lists(folder, sorted(folder.glob("*.whl")))
    return folder


def test_verify_names_a_changed_missing_or_unlisted_wheel(tmp_path: Path) -> None:
    wh = _fake_wheelhouse(tmp_path / "wh")
    assert (wh / "requirements.txt").read_text().splitlines()[0].startswith("alpha==1.0 --hash=sha256:")
    assert script("--verify", wh).returncode == 0
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=wh, check=False).returncode == 0

    (wh / "beta-2.1-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"tampered")
    r = script("--verify", wh)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"error: {wh}/beta-2.1-cp311-cp311-manylinux_2_17_x86_64.whl: SHA-256 differs "
                                     "from SHA256SUMS; copy the wheelhouse again"]
    (wh / "beta-2.1-cp311-cp311-manylinux_2_17_x86_64.whl").unlink()
    assert "listed in SHA256SUMS but missing" in script("--verify", wh).stderr
    shutil.copy(wh / "alpha-1.0-py3-none-any.whl", wh / "gamma-1.0-py3-none-any.whl")
    (wh / "SHA256SUMS").write_text((wh / "SHA256SUMS").read_text().splitlines()[0] + "\n")
    r = script("--verify", wh)
    assert r.returncode == 1 and r.stderr.splitlines() == [
        f"error: {wh}/gamma-1.0-py3-none-any.whl: not listed in SHA256SUMS; remove it or rebuild the wheelhouse"]


def test_bad_input_fails_in_one_line_before_any_download(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    r = script(busy)
    assert (r.returncode, r.stderr.splitlines()) == (1, [
        f"error: {busy}: not empty and not a wheelhouse (no SHA256SUMS); choose an empty or new directory"])
    assert (busy / "notes.txt").read_text() == "mine"
    r = script(tmp_path / "new", "--extras", "report,gui")
    assert r.returncode == 1 and r.stderr.startswith("error: --extras: unknown extra 'gui'")
    assert not (tmp_path / "new").exists()
    r = script("--verify", tmp_path / "nothing")
    assert (r.returncode, r.stderr.strip()) == (1, f"error: {tmp_path / 'nothing'}/SHA256SUMS: not found (not a wheelhouse)")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "SHA256SUMS").write_text("xyz  a.whl\n")
    assert script("--verify", tmp_path / "bad").stderr.strip() == (
        f"error: {tmp_path / 'bad'}/SHA256SUMS:1: expected '<sha256>  <file name>'")
    assert script().returncode == 64
    assert script(tmp_path, "--bogus").returncode == 64
