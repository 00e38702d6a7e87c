"""The per-machine registry of lab indexes (in a temp dir instead of /run/tvdeploy-lab)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.lab import registry


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run"
    monkeypatch.setattr(registry, "RUN_DIR", d)
    monkeypatch.setattr(registry, "_bridge_exists", lambda index: index == 2)  # someone's leftover
    return d


def test_each_dir_gets_its_own_index_and_keeps_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert registry.allocate(a) == 1
    assert registry.allocate(b) == 3  # 2 has a bridge left by a lost lab: never reused
    assert registry.allocate(a) == 1 and registry.lookup(b) == 3
    registry.release(a)
    assert registry.lookup(a) is None
    assert registry.allocate(tmp_path / "c") == 1


def test_a_lab_gets_back_the_index_of_its_state_file(tmp_path: Path, run_dir: Path) -> None:
    assert registry.allocate(tmp_path / "a", wanted=7) == 7
    assert registry.allocate(tmp_path / "b", wanted=7) == 1  # taken: the lowest free one
    data = json.loads((run_dir / "registry.json").read_text())
    assert data == {str((tmp_path / "a").resolve()): 7, str((tmp_path / "b").resolve()): 1}


@pytest.mark.parametrize("content", ["{not json", "[]", '{"x": "y"}', ""])
def test_a_damaged_registry_is_rebuilt_not_fatal(tmp_path: Path, run_dir: Path, content: str) -> None:
    run_dir.mkdir()
    (run_dir / "registry.json").write_text(content)
    assert registry.allocate(tmp_path / "a") == 1


def test_lab_lock_is_reentrant_across_dirs(tmp_path: Path) -> None:
    with registry.lab_lock(tmp_path / "a"), registry.lab_lock(tmp_path / "b"):
        pass
