"""Host facts from recorded probe output (a lab node; a systemd node with auditd, recorded by
hand in the probe's format) and the host rules: modes compared as bits, never as decimals."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tvdeploy.facts.policy_host import PROBE, parse_listeners, parse_probe, watched_paths
from tvdeploy.policy import engine
from tvdeploy.policy.model import FileStat, HostFacts, PolicyFacts
from tvdeploy.policy.packs import select

DATA = Path(__file__).parent / "data" / "policy"


def _run(hosts: Mapping[str, HostFacts]) -> dict[tuple[str, str], list]:
    result = engine.run(select(["cis-docker"], None), PolicyFacts(hosts=hosts), ("host", "swarm"), [], "high")
    out: dict[tuple[str, str], list] = {}
    for f in result.findings:
        out.setdefault((f.rule, f.object), []).append(f)
    return out


def test_probe_is_one_script() -> None:
    assert PROBE.count("@@tvpolicy") == 1  # the marker is printed by one helper, one run


def test_lab_node_recorded() -> None:
    h = parse_probe("lab-mgr-1", (DATA / "host_probe_lab.txt").read_text())
    assert h.files["/etc/docker/daemon.json"].mode == 0o644 and h.files["/var/run/docker.sock"].group == "docker"
    assert h.audit_rules is None and h.docker_group == () and h.docker_root_mount == "/var/lib/docker"
    assert ("10.213.1.11", 2377) in h.listeners and h.daemon_json and h.daemon_json["tlsverify"] is True
    by = _run({"lab-mgr-1": h})
    for rid in ("TVD-417", "TVD-418", "TVD-414", "TVD-416", "TVD-406", "TVD-507"):
        assert {f.status for fs in by.values() for f in fs if f.rule == rid} == {"pass"}, rid
    audit = by[("TVD-431", "/usr/sbin/dockerd")][0]
    assert audit.status == "fail" and "auditd not installed" in audit.message
    assert by[("TVD-441", "/etc/sysconfig/docker")][0].status == "not-applicable"


def test_systemd_node_with_auditd_recorded() -> None:
    h = parse_probe("n1", (DATA / "host_probe_systemd_auditd.txt").read_text())
    assert h.init == "systemd" and h.audit_source == "auditctl -l"
    by = _run({"n1": h})
    # 0622 daemon.json, 0707 /etc/docker, 0664 docker.socket: all fail (decimal 622 <= 644 would pass)
    for rid, obj, ev in (("TVD-418", "/etc/docker/daemon.json", "mode 0622"), ("TVD-406", "/etc/docker", "mode 0707"),
                         ("TVD-404", "/lib/systemd/system/docker.socket", "mode 0664")):
        f = by[(rid, obj)][0]
        assert f.status == "fail" and ev in f.evidence and f.location == f"n1:{obj}", (rid, f)
    # TLS paths come from daemon.json; a 0440 key fails "400", a 0644 server cert fails "444"
    assert by[("TVD-414", "/etc/docker/pki/server-key.pem")][0].status == "fail"
    assert by[("TVD-412", "/etc/docker/pki/server.pem")][0].status == "fail"
    # registry client files are checked too, uid and gid
    assert by[("TVD-407", "/etc/docker/certs.d/10.1.0.11:5000/client.cert")][0].status == "fail"
    assert by[("TVD-408", "/etc/docker/certs.d/10.1.0.11:5000/client.cert")][0].status == "fail"
    assert by[("TVD-408", "/etc/docker/certs.d/10.1.0.11:5000/client.key")][0].status == "pass"
    # audit: exact paths; a containerd rule does not count for containerd-shim
    assert by[("TVD-431", "/usr/sbin/dockerd")][0].status == "pass"
    assert by[("TVD-442", "/usr/bin/containerd")][0].status == "pass"
    assert by[("TVD-445", "/usr/bin/containerd-shim-runc-v2")][0].status == "pass"
    assert by[("TVD-446", "/usr/bin/runc")][0].status == "fail"
    assert by[("TVD-439", "/etc/docker/daemon.json")][0].status == "fail"
    assert by[("TVD-450", "/var/lib/docker")][0].status == "fail"
    assert "untrusted members: ['ops', 'deploy']" in by[("TVD-451", "group docker")][0].message
    assert by[("TVD-507", "node n1")][0].status == "fail"


@pytest.mark.parametrize(("mode", "allowed", "ok"), [
    (0o622, 0o644, False), (0o077, 0o644, False), (0o600, 0o644, True), (0o644, 0o644, True),
    (0o4644, 0o644, False), (0o400, 0o400, True), (0o440, 0o400, False), (0o000, 0o400, True),
    (0o670, 0o660, False), (0o707, 0o755, False),
])
def test_modes_are_compared_as_bits(mode: int, allowed: int, ok: bool) -> None:
    path = {0o644: "/etc/docker/daemon.json", 0o400: "/etc/docker/tls/server-key.pem",
            0o660: "/var/run/docker.sock", 0o755: "/etc/docker"}[allowed]
    rid = {0o644: "TVD-418", 0o400: "TVD-414", 0o660: "TVD-416", 0o755: "TVD-406"}[allowed]
    f = FileStat(path, "regular file", mode, 0, 0, "root", "root")
    h = HostFacts("n1", {path: f}, {}, "", None, "", None, "/var/lib/docker", ())
    assert (_run({"n1": h})[(rid, path)][0].status == "pass") is ok


def test_watched_paths_and_listeners() -> None:
    rules = ("-w /etc/docker/ -p rwxa -k docker", "-a always,exit -F path=/usr/bin/runc -F perm=x",
             "-w /usr/bin/containerd -p wa")
    assert watched_paths(rules) == {"/etc/docker", "/usr/bin/runc", "/usr/bin/containerd"}
    text = ("   0: 0100007F:0016 00000000:0000 0A x\n   1: 0100007F:0017 00000000:0000 01 x\n"
            "   0: 00000000000000000000000001000000:0949 0:0 0A x\n")
    assert parse_listeners(text) == (("127.0.0.1", 22), ("::1", 2377))
