"""Fixtures for tests against the real lab (mark them ``@pytest.mark.lab``; they need root).

``lab`` (session): the shared lab, brought up once per session with ``tvdeploy lab up`` (reused
    when it is already up). Its dir is ``$TVDEPLOY_TEST_LAB_DIR`` (default
    ``/tmp/tvdeploy-test-lab``). Yields a ``LabInfo``: ``.dir``, ``.site_file`` (the lab's
    site.yaml: vcenter, 3 nodes, ssh key + known_hosts, state_dir inside the dir), ``.status``
    (the ``lab status --json`` document). The lab stays up after the session (fast reruns);
    ``tvdeploy lab down --dir DIR`` removes it.
``lab_reset`` (function): runs ``tvdeploy lab reset`` before the test, so every node is
    unconfigured (no daemon.json, no certificates, no swarm, no images); yields the ``LabInfo``.
    Use it in tests that bootstrap the nodes.
``lab_images`` (session): runs ``tvdeploy lab images --small`` once; yields ``LabImages``:
    ``.docker_host`` (the build engine, ``unix://...``), ``.release_v1``, ``.release_v2``,
    ``.release_broken`` (release spec paths), ``.dir``.

Tests that run ``lab down`` (or otherwise break the lab) must use their own ``--dir``, never the
shared one. Lab commands run in a subprocess so the lab's processes are not children of pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DEFAULT_DIR = "/tmp/tvdeploy-test-lab"


@dataclass
class LabInfo:
    dir: Path
    site_file: Path
    status: dict[str, Any]


@dataclass
class LabImages:
    dir: Path
    docker_host: str
    release_v1: Path
    release_v2: Path
    release_broken: Path


def run_lab(*args: object, home: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``tvdeploy lab ARGS --json`` in a subprocess; fails the test with its stderr on error."""
    env = dict(os.environ)
    if home is not None:
        env["TVDEPLOY_HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-m", "tvdeploy", "lab", *map(str, args), "--json"],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"tvdeploy lab {' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def lab_dir() -> Path:
    return Path(os.environ.get("TVDEPLOY_TEST_LAB_DIR", DEFAULT_DIR))


@pytest.fixture(scope="session")
def lab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator home `lab up` uses in this session (its operator key lives there)."""
    return tmp_path_factory.mktemp("lab-home")


@pytest.fixture(scope="session")
def lab(lab_home: Path) -> Iterator[LabInfo]:
    d = lab_dir()
    doc = json.loads(run_lab("up", "--dir", d, home=lab_home).stdout)
    assert doc["state"] == "up", doc
    yield LabInfo(d, d / "site.yaml", doc)


@pytest.fixture
def lab_reset(lab: LabInfo, lab_home: Path) -> LabInfo:
    run_lab("reset", "--dir", lab.dir, home=lab_home)
    status = json.loads(run_lab("status", "--dir", lab.dir, home=lab_home).stdout)
    return LabInfo(lab.dir, lab.site_file, status)


@pytest.fixture(scope="session")
def lab_images(lab: LabInfo, lab_home: Path) -> LabImages:
    doc = json.loads(run_lab("images", "--small", "--dir", lab.dir, home=lab_home).stdout)
    d = lab.dir
    return LabImages(d, doc["docker_host"], d / "release-v1.yaml", d / "release-v2.yaml", d / "release-broken.yaml")
