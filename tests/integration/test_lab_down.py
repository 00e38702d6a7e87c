"""`lab down` removes everything the lab made (own lab dir, never the shared one)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import run_lab

pytestmark = pytest.mark.lab


def _traces(lab_dir: Path, index: int) -> dict[str, list[str]]:
    netns = [p.name for p in Path("/run/netns").glob(f"tvlab{index}-*")] if Path("/run/netns").exists() else []
    links = [p.name for p in Path("/sys/class/net").iterdir()
             if p.name == f"tvlab{index}" or p.name.startswith(f"tvl{index}v")]  # fmt: skip
    rules = [r for r in subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout.splitlines()
             if f"tvdeploy-lab-{index} " in r + " "]  # fmt: skip
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(lab_dir) in line]
    procs = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"{lab_dir}/" in cmd and "pytest" not in cmd:
                procs.append(f"{p.name}: {cmd}")
    return {"netns": netns, "links": links, "rules": rules, "mounts": mounts, "processes": procs}


def test_down_leaves_nothing_behind_and_is_safe_twice(tmp_path: Path) -> None:
    d = Path("/tmp") / f"tvl-down-{tmp_path.name[-12:]}"
    try:
        up = json.loads(run_lab("up", "--dir", d, "--nodes", "2", home=tmp_path).stdout)
        assert up["state"] == "up"
        index = json.loads((d / "lab.json").read_text())["index"]
        before = _traces(d, index)
        assert len(before["netns"]) == 2 and before["links"] and before["rules"] and before["processes"]
        run_lab("down", "--dir", d, home=tmp_path)
        assert _traces(d, index) == {"netns": [], "links": [], "rules": [], "mounts": [], "processes": []}
        assert not d.exists()
        run_lab("down", "--dir", d, home=tmp_path)  # twice: still fine
        status = json.loads(run_lab("status", "--dir", d, home=tmp_path).stdout)
        assert status["state"] == "down"
    finally:
        subprocess.run(["python3", "-m", "tvdeploy", "lab", "down", "--dir", str(d)], capture_output=True)
