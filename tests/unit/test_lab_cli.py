"""Bad input to the lab commands: one `error:` line, exit 1 (64 for usage), no traceback,
nothing made. None of these needs root: they fail before touching the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.lab.labstate import LabState, NodeRecord, load_state


def _one_error(r, *needles: str) -> None:
    assert r.code == 1, (r.code, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[-1]


@pytest.mark.parametrize("content", ["", "{", "[]", '{"index": "x"}', '{"subnet": 1}', "\x00\xff"])
def test_damaged_lab_state_is_one_error_line(cli, tmp_path: Path, content: str) -> None:
    (tmp_path / "lab.json").write_text(content, errors="surrogateescape")
    for args in (["status"], ["reset"], ["node", "stop", "lab-mgr-1"], ["images", "--small"]):
        r = cli("lab", *args, "--dir", tmp_path)
        _one_error(r, str(tmp_path / "lab.json"), "unreadable lab state")


def test_commands_on_a_dir_without_a_lab(cli, tmp_path: Path) -> None:
    for args in (["reset"], ["node", "add"], ["node", "isolate", "x"], ["images"]):
        r = cli("lab", *args, "--dir", tmp_path / "none")
        _one_error(r, "no lab here")
    assert not (tmp_path / "none").exists()


def test_status_of_no_lab_is_down(cli, tmp_path: Path) -> None:
    r = cli("lab", "status", "--dir", tmp_path / "none", "--json")
    assert r.code == 0
    doc = json.loads(r.stdout)
    assert doc["state"] == "down" and doc["nodes"] == [] and doc["site_file"] is None


def test_unknown_node_names_the_node(cli, tmp_path: Path) -> None:
    st = LabState(index=9, subnet="10.213.9.0/24", bridge="tvlab9",
                  nodes=[NodeRecord(1, "lab-mgr-1", "manager", "core", "10.213.9.11", "tvlab9-lab-mgr-1", "tvl9v1")])
    (tmp_path / "lab.json").write_bytes(st.to_json())
    r = cli("lab", "node", "stop", "lab-mgr-7", "--dir", tmp_path)
    _one_error(r, "lab-mgr-7", "lab-mgr-1")
    r = cli("lab", "node", "stop", "lab-mgr-1", "--dir", tmp_path)  # recorded, but not running
    _one_error(r, "lab-mgr-1 is not running")


def test_bad_options(cli, tmp_path: Path) -> None:
    r = cli("lab", "images", "--version", "3", "--dir", tmp_path)
    _one_error(r, "--version")
    r = cli("lab", "up", "--nodes", "0", "--dir", tmp_path)
    assert r.code == 64
    r = cli("lab", "up", "--bogus")
    assert r.code == 64


def test_state_round_trip(tmp_path: Path) -> None:
    st = LabState(index=3, subnet="10.213.3.0/24", bridge="tvlab3",
                  nodes=[NodeRecord(1, "lab-mgr-1", "manager", "core", "10.213.3.11", "ns", "v", pid=5, marker="m")],
                  rules=[["FORWARD", "-j", "ACCEPT"]])  # fmt: skip
    (tmp_path / "lab.json").write_bytes(st.to_json())
    assert load_state(tmp_path / "lab.json") == st
    assert load_state(tmp_path / "missing.json") is None


def test_dead_or_foreign_pids_are_never_ours() -> None:
    import os

    from tvdeploy.lab.proc import is_alive

    assert not is_alive(0, "x") and not is_alive(os.getpid(), "")
    # Our own pid is alive, but its command line does not hold a lab marker: not ours to kill.
    assert not is_alive(os.getpid(), "/nonexistent/lab/nodes/boot.sh")


def test_up_on_a_file_is_refused_before_anything_runs(cli, tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("lab", "up", "--dir", f)
    _one_error(r, str(f), "not a directory")
    assert f.read_text() == "x"
