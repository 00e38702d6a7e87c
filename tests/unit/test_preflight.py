"""Pre-flight findings from host facts (pure; facts built as the host-fact parsers produce them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_plan_swarm import _site
from tvdeploy.plan.preflight import blocking, port_findings, preflight


@dataclass
class _Feature:
    ok: bool
    evidence: str = "not in /proc/modules or modules.builtin"


@dataclass
class _Kernel:
    esp: _Feature
    ipvs: _Feature


@dataclass
class _Docker:
    installed: bool = True


@dataclass
class _Disk:
    mount: str = "/var/lib/docker"
    avail_kb: int = 50 * 1024 * 1024


@dataclass
class _Facts:
    kernel: _Kernel
    docker: _Docker
    clock_offset: float | None = 0.1
    disk: _Disk | None = None


def facts(esp: bool = True, ipvs: bool = True, **kw) -> _Facts:
    return _Facts(_Kernel(_Feature(esp), _Feature(ipvs)), _Docker(), **kw)


def site(encrypted: bool, mode: str):
    s = _site([["m1", "manager", "core"]])
    return s.model_copy(
        update={"swarm": s.swarm.model_copy(update={"encrypted_networks": encrypted, "publish_mode": mode})}
    )


@pytest.mark.parametrize(
    ("esp", "ipvs", "encrypted", "mode", "expected"),
    [
        (True, True, True, "ingress", []),
        (False, True, True, "ingress", [("kernel.esp", "error")]),
        (False, True, False, "ingress", [("kernel.esp", "warning")]),
        (True, False, True, "ingress", [("kernel.ipvs", "error")]),
        (True, False, True, "host", [("kernel.ipvs", "warning")]),
        (False, False, False, "host", [("kernel.esp", "warning"), ("kernel.ipvs", "warning")]),  # the lab
    ],
)
def test_kernel_features_against_site(esp, ipvs, encrypted, mode, expected) -> None:
    found = preflight(site(encrypted, mode), {"m1": facts(esp, ipvs)}, {})
    assert [(f.check, f.severity) for f in found] == expected
    assert all(f.node == "m1" for f in found)


def test_clock_disk_docker_and_unreachable() -> None:
    f = facts(clock_offset=42.5, disk=_Disk(avail_kb=100 * 1024))
    f.docker.installed = False
    found = preflight(site(False, "host"), {"m1": f}, {"m2": "ssh: connection refused"})
    checks = [(x.node, x.check, x.severity) for x in found]
    assert ("m2", "reachable", "error") in checks
    assert ("m1", "docker.installed", "error") in checks
    docker = found[checks.index(("m1", "docker.installed", "error"))].message
    assert docker.endswith("run 'tvdeploy engine install SITE --bundle BUNDLE' first")  # bare nodes (issue 19)
    assert ("m1", "clock", "error") in checks and "+42.5 s" in found[[c[1] for c in checks].index("clock")].message
    assert ("m1", "disk", "warning") in checks
    assert len(blocking(found)) == 3


def test_port_findings() -> None:
    found = port_findings(
        {("m1", "w1", 7946, "tcp"): "open", ("w1", "m1", 2377, "tcp"): "filtered", ("w1", "m2", 2377, "tcp"): "closed"}
    )
    assert [(f.node, f.check, f.severity) for f in found] == [("w1", "port.2377/tcp", "error")]
    assert "timed out or no route" in found[0].message and "m1" in found[0].message


def test_closed_port_counts_only_where_the_swarm_must_listen() -> None:
    results = {("w1", "m1", 2377, "tcp"): "closed", ("w1", "m2", 2377, "tcp"): "closed"}
    found = port_findings(results, listening={("m1", 2377)})
    assert [(f.node, f.check) for f in found] == [("w1", "port.2377/tcp")]
    assert "m1 refuses 2377/tcp" in found[0].message


def test_unprobed_port_is_a_warning_not_a_guess() -> None:
    found = port_findings({("w1", "m1", 7946, "tcp"): "skipped"})
    assert [(f.check, f.severity) for f in found] == [("port.7946/tcp", "warning")]


@pytest.mark.parametrize(("encrypted", "esp_named"), [(True, True), (False, False)])
def test_udp_is_reported_as_not_checked(encrypted: bool, esp_named: bool) -> None:
    found = preflight(site(encrypted, "host"), {}, {}, ports={})
    udp = [f for f in found if f.check == "port.udp"]
    assert len(udp) == 1 and udp[0].severity == "info" and "not checked" in udp[0].message
    assert ("ESP" in udp[0].message) is esp_named
    assert preflight(site(encrypted, "host"), {}, {}) == []  # ports not probed: nothing said


# Real probe output recorded on hosts with and without each feature (tests/unit/data/host_facts).
RECORDED = Path(__file__).parent / "data" / "host_facts"


@pytest.mark.parametrize(
    ("recording", "encrypted", "mode", "expected"),
    [
        ("sysvinit-lab-unconfigured.txt", False, "host", [("kernel.esp", "warning"), ("kernel.ipvs", "warning")]),
        ("sysvinit-lab-unconfigured.txt", True, "ingress", [("kernel.esp", "error"), ("kernel.ipvs", "error")]),
        ("systemd-debian12-swarm-full-kernel.txt", True, "ingress", []),
        ("systemd-ubuntu2204-unconfigured-loadable.txt", True, "ingress", []),
        (
            "sysvinit-devuan-no-docker-no-xfrm.txt",
            True,
            "host",
            [("docker.installed", "error"), ("disk", "warning"), ("kernel.esp", "error"), ("kernel.ipvs", "warning")],
        ),
    ],
)
def test_findings_from_recorded_probe_output(recording, encrypted, mode, expected) -> None:
    from tvdeploy.facts.host import parse_probe

    facts_ = parse_probe("m1", (RECORDED / recording).read_text(), offset=0.2)
    found = preflight(site(encrypted, mode), {"m1": facts_}, {})
    assert [(f.check, f.severity) for f in found] == expected
    for f in found:
        if f.check.startswith("kernel."):
            assert "(" in f.message and ")" in f.message  # the evidence is named
