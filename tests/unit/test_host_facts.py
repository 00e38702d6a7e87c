"""Host-fact parsers on recorded probe output (systemd and sysvinit hosts, with and without IPVS
and ESP), plus hostile and truncated output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.facts import host as H
from tvdeploy.pki.certinfo import cert_info, load_cert_pem

DATA = Path(__file__).parent / "data" / "host_facts"
EXPECTED = json.loads((DATA / "expected.json").read_text())


def observed(f: H.HostFacts) -> dict:
    dc = f.daemon_config
    cert = cert_info(load_cert_pem(f.server_cert_pem.encode(), "x")) if f.server_cert_pem else None
    return {
        "os_id": f.os.id, "os_version": f.os.version_id, "init": f.init, "hostname": f.hostname,
        "docker_installed": f.docker.installed, "docker_version": f.docker.version,
        "dockerd_path": f.docker.dockerd_path,
        "running": f.swarm.running, "swarm_state": f.swarm.local_state,
        "control_available": f.swarm.control_available,
        "daemon_json": "absent" if dc.raw is None else ("error" if dc.error else "ok"),
        "tlsverify": (dc.data or {}).get("tlsverify") if dc.data is not None else None,
        "dropin": f.dropin is not None,
        "ca_cert": f.ca_pem is not None,
        "server_cert_cn": cert.subject_cn if cert else None,
        "key_mode": f.server_key.mode if f.server_key else None,
        "key_owner": f.server_key.owner if f.server_key else None,
        "key_digest": (f.server_key.public_key_sha256 is not None) if f.server_key else None,
        "disk_mount": f.disk.mount if f.disk else None,
        "disk_avail_kb": f.disk.avail_kb if f.disk else None,
        "ipvs": f.kernel.ipvs.status, "esp": f.kernel.esp.status,
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_probe_output(name):
    facts = H.parse_probe("n1", (DATA / name).read_text())
    assert observed(facts) == EXPECTED[name]


def test_every_recorded_file_has_expectations():
    assert sorted(p.name for p in DATA.glob("*.txt")) == sorted(EXPECTED)


def test_configured_lab_key_matches_its_certificate():
    facts = H.parse_probe("lab-mgr-1", (DATA / "sysvinit-lab-configured.txt").read_text())
    cert = cert_info(load_cert_pem(facts.server_cert_pem.encode(), "x"))
    assert facts.server_key.public_key_sha256 == cert.public_key_sha256


def test_feature_evidence_is_explained():
    lab = H.parse_probe("n", (DATA / "sysvinit-lab-unconfigured.txt").read_text())
    assert "AES-GCM" in lab.kernel.esp.evidence
    assert "/proc/net/ip_vs" in lab.kernel.ipvs.evidence
    assert not lab.kernel.esp.ok and not lab.kernel.ipvs.ok
    devuan = H.parse_probe("n", (DATA / "sysvinit-devuan-no-docker-no-xfrm.txt").read_text())
    assert "xfrm" in devuan.kernel.esp.evidence


@pytest.mark.parametrize("sections, ipvs, esp", [
    # monolithic kernel with GCM but no way to see esp4: unknown, not a false "no"
    ({"crypto": "name : gcm(aes)", "xfrm": "rc=0"}, "no", "unknown"),
    ({"modules": "esp4 1 0 - Live 0x0", "crypto": "name : rfc4106(gcm(aes))", "xfrm": "rc=0"}, "no", "yes"),
    ({"modules": "ip_vs 1 0 - Live 0x0", "xfrm": "rc=0"}, "yes", "no"),
    ({"modules-dep": "kernel/net/ipv4/esp4.ko.xz:\nkernel/crypto/gcm.ko.xz:", "xfrm": "rc=0"}, "no", "loadable"),
    ({"modules-builtin": "kernel/net/ipv4/esp4.ko\nkernel/crypto/ghash-generic.ko", "xfrm": "rc=0"}, "no", "yes"),
    ({"modules": "esp4 1 0 - Live 0x0", "crypto": "name : gcm(aes)", "xfrm": "rc=1"}, "no", "no"),
    ({"ip-vs": "present"}, "yes", "no"),
])
def test_kernel_feature_matrix(sections, ipvs, esp):
    k = H.parse_kernel(sections)
    assert (k.ipvs.status, k.esp.status) == (ipvs, esp)


@pytest.mark.parametrize("text", [
    "", "garbage\x00\xff", "@@tvdeploy swarm\n{not json\nrc=0", "@@tvdeploy df\nFilesystem\n/dev/x a b c d /",
    "@@tvdeploy daemon-json\n[1, 2]", "@@tvdeploy server-key\n",
])
def test_hostile_or_truncated_output_does_not_crash(text):
    facts = H.parse_probe("n", text)
    assert facts.node == "n"


def test_truncated_probe_reads_as_unknown_not_as_configured():
    full = (DATA / "sysvinit-lab-configured.txt").read_text()
    cut = full[: full.index("@@tvdeploy ca-cert")]
    facts = H.parse_probe("n", cut)
    assert facts.ca_pem is None and facts.server_cert_pem is None


@pytest.mark.parametrize("text, expect", [
    ('{"hosts": []}', {"hosts": []}), ("", {}), ("   \n", {}),
])
def test_daemon_json_variants(text, expect):
    assert H.parse_daemon_json(text).data == expect


def test_daemon_json_not_an_object_is_an_error():
    assert "not a JSON object" in H.parse_daemon_json("[]").error
    assert "not valid JSON" in H.parse_daemon_json("{").error


def test_swarm_locked_and_error_states():
    locked = H.parse_swarm('{"LocalNodeState":"locked","NodeID":"","ControlAvailable":false}\nrc=0')
    assert locked.running and locked.local_state == "locked"
    down = H.parse_swarm('{"LocalNodeState":""}\nCannot connect to the Docker daemon at x\nrc=1')
    assert not down.running and down.error.startswith("Cannot connect")


@pytest.mark.parametrize("node_time, sent, received, expect", [
    ("1000.5\n", 1000.0, 1001.0, 0.0),
    ("1030.000000000", 1000.0, 1000.2, 29.9),
    ("990", 1000.0, 1000.0, -10.0),
])
def test_clock_offset_uses_round_trip_midpoint(node_time, sent, received, expect):
    assert H.clock_offset(node_time, sent, received) == pytest.approx(expect)


def test_clock_offset_unreadable():
    assert H.clock_offset("date: invalid", 0, 1) is None
    assert H.clock_offset("", 0, 1) is None


def test_large_clock_offset_warns_with_the_number():
    text = (DATA / "sysvinit-lab-configured.txt").read_text()
    assert H.parse_probe("n", text, offset=1.0).warnings == ()
    (warning,) = H.parse_probe("lab-mgr-1", text, offset=-42.25).warnings
    assert "node lab-mgr-1" in warning and "-42.2 s" in warning


class FakeRunner:
    """Stands in for an SSH connection: replays recorded output (no host needed)."""

    def __init__(self, probe: str) -> None:
        self.probe, self.commands = probe, []

    def run(self, cmd, input=None, check=True):
        from tvdeploy.connectors.ssh import Result

        self.commands.append(cmd)
        return Result(self.probe, "", 0)


def test_gather_is_one_round_trip_and_measures_offset():
    clock = iter([100.0, 100.2])
    probe = "\n@@tvdeploy clock\n160.1\n" + (DATA / "sysvinit-lab-unconfigured.txt").read_text()
    runner = FakeRunner(probe)
    facts = H.gather("n", runner, clock=lambda: next(clock))
    assert runner.commands == [H.PROBE]
    assert facts.clock_offset == pytest.approx(60.0)
    assert facts.warnings and "+60.0 s" in facts.warnings[0]
    assert facts.hostname == "lab-wkr-1"


def test_probe_reads_the_clock_first():
    assert H.PROBE.split("sec clock; ")[1].startswith(H.CLOCK_PROBE)
    assert H.PROBE.index("sec clock") < H.PROBE.index("sec os-release")


def test_gather_with_runs_extra_shell_around_the_probe_in_one_round_trip():
    runner = FakeRunner("\n@@tvdeploy clock\n100.1\n" + (DATA / "sysvinit-lab-unconfigured.txt").read_text())
    clock = iter([100.0, 100.2])
    facts, result = H.gather_with("n", runner, "BEFORE\n", "\nAFTER", clock=lambda: next(clock))
    assert runner.commands == ["BEFORE\n" + H.PROBE + "\nAFTER"]
    assert facts.hostname == "lab-wkr-1" and result.stderr == ""


@pytest.mark.parametrize("text, expect", [
    # dockerd started at 1000; daemon.json written at 1100 by a run cut off before its restart
    ("now 1200\netimes 200\nmtime 1100 /etc/docker/daemon.json\nmtime 990 /etc/docker/tls/ca.pem",
     ("/etc/docker/daemon.json",)),
    # written in the same second as the restart: not stale
    ("now 1200\netimes 200\nmtime 1001 /etc/docker/daemon.json", ()),
    ("now 1200\nmtime 1100 /etc/docker/daemon.json", ()),  # no dockerd running: no fact
    ("", ()),
    ("now x\netimes 200\nmtime 1100 /etc/docker/daemon.json", ()),  # garbled
    ("now 1200\netimes 200\nmtime zz /etc/docker/daemon.json\nmtime 1199", ()),
])
def test_files_changed_after_dockerd_started(text, expect):
    assert H.parse_dockerd_age(text) == expect
