"""`lab sink` life cycle on a one-node lab of its own: on routes every node (including one added
later) into the sink, counters survive a second `on`, off leaves nodes routeless, and `lab down`
removes every rule and chain. ($TVDEPLOY_TEST_SINK_LAB_DIR, default /tmp/tvdeploy-test-sink.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.airgap import AirGap, AirGapBreached
from tests.integration.conftest import run_lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    lab_dir = Path(os.environ.get("TVDEPLOY_TEST_SINK_LAB_DIR", "/tmp/tvdeploy-test-sink"))
    home = tmp_path_factory.mktemp("sink-home")
    try:
        run_lab("up", "--nodes", 1, "--dir", lab_dir, home=home)
        yield lab_dir
    finally:
        run_lab("down", "--dir", lab_dir, home=home, timeout=300)


def state(lab_dir: Path) -> dict:
    return json.loads((lab_dir / "lab.json").read_text())


def default_route(netns: str) -> str:
    return subprocess.run(["ip", "-n", netns, "route", "show", "default"], capture_output=True, text=True,
                          check=True).stdout.strip()


def rules_of(index: int) -> list[str]:
    lines = []
    for table in ("raw", "mangle"):
        out = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
        lines += [f"{table} {line}" for line in out.splitlines() if f"TVLAB{index}-" in line]
    return lines


def probe(netns: str, address: str) -> None:
    subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "timeout", "3", "busybox", "wget", "-q",
                    f"http://{address}:9/"], capture_output=True, check=False)


def test_on_routes_every_node_keeps_counters_and_off_removes_routes(small_lab: Path) -> None:
    st = state(small_lab)
    gateway = f"10.213.{st['index']}.1"
    node = st["nodes"][0]
    gap = AirGap(small_lab)
    gap.on()
    assert default_route(node["netns"]) == f"default via {gateway} dev eth0"
    assert len(rules_of(st["index"])) == 2 + 2 + 5 + 4  # two chains, two jumps, their nine rules
    gap.reset()
    probe(node["netns"], "203.0.113.9")
    gap.on()  # again: nothing duplicated, counters kept
    assert len(rules_of(st["index"])) == 13
    with pytest.raises(AirGapBreached, match=rf"{node['address']} -> 203\.0\.113\.9 tcp/9"):
        gap.assert_nothing_left()

    added = json.loads(run_lab("node", "add", "--dir", small_lab).stdout)  # routed at birth
    netns = next(n["netns"] for n in state(small_lab)["nodes"] if n["name"] == added["name"])
    assert default_route(netns) == f"default via {gateway} dev eth0"

    run_lab("sink", "off", "--dir", small_lab)
    assert default_route(node["netns"]) == default_route(netns) == ""
    assert rules_of(st["index"]) == []
    assert not (small_lab / "sink.json").exists()
    r = subprocess.run([sys.executable, "-m", "tvdeploy", "lab", "sink", "report", "--dir", str(small_lab)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1 and r.stderr.strip() == (
        f"error: {small_lab}: the lab's sink is off (tvdeploy lab sink on --dir {small_lab})")


def test_lab_down_removes_the_sink_rules(small_lab: Path) -> None:
    index = state(small_lab)["index"]
    AirGap(small_lab).on()
    assert rules_of(index)
    run_lab("down", "--dir", small_lab)
    assert rules_of(index) == []
