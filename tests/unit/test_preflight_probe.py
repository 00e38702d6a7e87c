"""The port probe of the swarm pre-flight: which ports to whom, the script, its parser.

The script itself runs here in a real bash against loopback (one listening port, one closed);
what a remote node prints is parsed from recorded and hostile text.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass

import pytest

from tests.unit.test_plan_swarm import _site
from tvdeploy.execute.preflight import listening_now, parse_port_output, port_script, port_targets

SITE = _site(
    [["m1", "manager", "core"], ["m2", "manager", "core"], ["m3", "manager", "core"], ["w1", "worker", "edge"]]
)


def test_targets_gossip_to_all_peers_and_2377_to_managers_only() -> None:
    got = port_targets(SITE, "w1")
    assert got == [
        ("m1", "10.0.0.1", 7946),
        ("m1", "10.0.0.1", 2377),
        ("m2", "10.0.0.2", 7946),
        ("m2", "10.0.0.2", 2377),
        ("m3", "10.0.0.3", 7946),
        ("m3", "10.0.0.3", 2377),
    ]
    assert ("w1", "10.0.0.4", 7946) in port_targets(SITE, "m1")
    assert ("w1", "10.0.0.4", 2377) not in port_targets(SITE, "m1")
    assert all(name != "m2" for name, _a, _p in port_targets(SITE, "m2"))


def test_script_probes_every_target_in_parallel_and_waits() -> None:
    script = port_script([("m1", "10.0.0.1", 7946), ("m1", "10.0.0.1", 2377)], timeout=2)
    assert "p 10.0.0.1 7946 &" in script and "p 10.0.0.1 2377 &" in script
    assert script.rstrip().endswith("wait") and "timeout 2 bash" in script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_script_in_real_bash_tells_open_from_closed_on_loopback() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    open_port = listener.getsockname()[1]
    closed_port = _free_port()
    targets = [("a", "127.0.0.1", open_port), ("b", "127.0.0.1", closed_port)]
    try:
        out = subprocess.run(
            ["bash", "-c", port_script(targets, timeout=2)], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    finally:
        listener.close()
    assert parse_port_output("src", targets, out) == {
        ("src", "a", open_port, "tcp"): "open",
        ("src", "b", closed_port, "tcp"): "closed",
    }


TARGETS = [("m1", "10.0.0.1", 7946), ("m1", "10.0.0.1", 2377)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@@port 10.0.0.1 7946 open\n@@port 10.0.0.1 2377 filtered\n", ["open", "filtered"]),
        ("@@port 10.0.0.1 2377 closed\n", ["skipped", "closed"]),  # truncated: missing one
        ("@@port none\n", ["skipped", "skipped"]),  # no bash on the node
        ("", ["skipped", "skipped"]),
        (
            "@@port 10.0.0.1 7946 wide-open\n@@port 10.0.0.1 x open\n@@port 10.0.0.9 7946 open\n",
            ["skipped", "skipped"],
        ),  # hostile / unknown words and other hosts are ignored
        ("\x00\xff@@port\n@@port 10.0.0.1 7946 open extra\n", ["skipped", "skipped"]),
    ],
)
def test_parse_port_output(text: str, expected: list[str]) -> None:
    got = parse_port_output("w1", TARGETS, text)
    assert [got[("w1", "m1", 7946, "tcp")], got[("w1", "m1", 2377, "tcp")]] == expected


@dataclass
class _Swarm:
    local_state: str
    control_available: bool = False


@dataclass
class _Host:
    swarm: _Swarm


def test_ports_that_must_listen_follow_the_swarm_state() -> None:
    hosts = {
        "m1": _Host(_Swarm("active", True)),
        "w1": _Host(_Swarm("active")),
        "m2": _Host(_Swarm("inactive")),
        "m3": _Host(_Swarm("locked")),
    }
    assert listening_now(hosts) == {("m1", 7946), ("m1", 2377), ("w1", 7946)}


def test_port_jobs_around_other_output_report_on_stderr_only() -> None:
    """The probes run in the same command as the host-facts probe: their lines go to stderr, so
    the facts' sections on stdout stay intact, and the command ends only when all have."""
    from tvdeploy.execute.preflight import port_jobs

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    open_port = listener.getsockname()[1]
    closed_port = _free_port()
    targets = [("a", "127.0.0.1", open_port), ("b", "127.0.0.1", closed_port)]
    before, after = port_jobs(targets, timeout=2)
    try:
        res = subprocess.run(
            ["bash", "-c", before + "printf '@@tvdeploy xfrm\\nrc=0\\n'" + after],
            capture_output=True, text=True, timeout=30, check=True,
        )
    finally:
        listener.close()
    assert res.stdout == "@@tvdeploy xfrm\nrc=0\n"
    assert parse_port_output("src", targets, res.stderr) == {
        ("src", "a", open_port, "tcp"): "open",
        ("src", "b", closed_port, "tcp"): "closed",
    }


def test_port_jobs_without_bash_say_none_and_let_the_facts_run(tmp_path) -> None:
    from tvdeploy.execute.preflight import port_jobs

    before, after = port_jobs([("a", "127.0.0.1", 7946)])
    res = subprocess.run(
        ["/bin/sh", "-c", before + "echo facts" + after],
        capture_output=True, text=True, timeout=30, check=True, env={"PATH": str(tmp_path)},
    )
    assert res.stdout == "facts\n" and "@@port none" in res.stderr
    assert parse_port_output("src", [("a", "127.0.0.1", 7946)], res.stderr) == {("src", "a", 7946, "tcp"): "skipped"}
