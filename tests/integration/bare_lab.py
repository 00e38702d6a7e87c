"""A lab of bare nodes (``lab up --bare``: Debian 12 roots of their own, no Docker) in its own
dir, ``$TVDEPLOY_TEST_BARE_LAB_DIR`` (default ``/tmp/tvdeploy-test-bare``), shared by the tests
of a session that import ``bare_lab`` (fixture) from here; removed at the end of the session.
The first use on a machine builds the cached Debian root (mmdebstrap, ~30-60 s)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import LabInfo, run_lab


@pytest.fixture(scope="session")
def bare_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator home of the bare lab's session (its operator key, keys, audit log)."""
    return tmp_path_factory.mktemp("bare-home")


@pytest.fixture(scope="session")
def bare_lab(bare_home: Path) -> Iterator[LabInfo]:
    d = Path(os.environ.get("TVDEPLOY_TEST_BARE_LAB_DIR", "/tmp/tvdeploy-test-bare"))
    home = bare_home
    doc = json.loads(run_lab("up", "--dir", d, "--bare", home=home).stdout)
    assert doc["state"] == "up", doc
    try:
        yield LabInfo(d, d / "site.yaml", doc)
    finally:
        run_lab("down", "--dir", d, home=home)
