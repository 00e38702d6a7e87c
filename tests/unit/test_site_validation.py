"""Site-file validation: each rule has its own broken file; every error is ONE line naming
file, line and key path, exit 1, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "templates" / "site.example.yaml"

GOOD = """\
version: 1
site: {name: plant-a}
vcenter:
  host: vc.example
  user: admin
  password: env:VC_PW
  fingerprint: "3a1f927c550bae419d3e2071c4885fe207bb6419a0d35c7e912f4806e5cb731d"
  datacenter: DC0
  cluster: C0
  datastore: DS0
  folder: tv
  template: tmpl
  network: VM Network
network: {subnet: 10.20.0.0/24, gateway: 10.20.0.1, dns: [10.20.0.2], domain: example}
nodes:
  - {name: mgr-1, role: manager, address: 10.20.0.11, zone: core}
  - {name: mgr-2, role: manager, address: 10.20.0.12, zone: core}
  - {name: mgr-3, role: manager, address: 10.20.0.13, zone: core}
  - {name: edge-1, role: worker, address: 10.20.0.21, zone: edge}
ssh: {user: root, key: id_ed25519, known_hosts: known_hosts}
"""

# (case id, text transformation, expected line, expected key path, expected message fragment)
BROKEN = [
    ("unknown-top-key", lambda t: t + "sshh: {}\n", 21, "sshh", "unknown key (did you mean 'ssh'?)"),
    ("unknown-nested-key", lambda t: t.replace("  folder: tv\n", "  folder: tv\n  foldr: x\n"), 12,
     "vcenter.foldr", "unknown key"),
    ("wrong-version", lambda t: t.replace("version: 1", "version: 2"), 1, "version", "Input should be 1"),
    ("missing-site", lambda t: t.replace("site: {name: plant-a}\n", ""), None, "site", "required key is missing"),
    ("bad-type-cpus", lambda t: t.replace("zone: edge}", "zone: edge, cpus: many}"), 19, "nodes[3].cpus",
     "valid integer"),
    ("bad-hostname", lambda t: t.replace("name: edge-1", "name: Edge_1"), 19, "nodes[3].name", "RFC 1123"),
    ("hostname-too-long", lambda t: t.replace("name: edge-1", "name: " + "a" * 64), 19, "nodes[3].name",
     "RFC 1123"),
    ("duplicate-name", lambda t: t.replace("name: edge-1", "name: mgr-1"), 19, "nodes[3].name",
     "duplicate node name 'mgr-1'"),
    ("duplicate-address", lambda t: t.replace("10.20.0.21", "10.20.0.11"), 19, "nodes[3].address",
     "duplicate address 10.20.0.11"),
    ("address-outside-subnet", lambda t: t.replace("10.20.0.21", "10.30.0.21"), 19, "nodes[3].address",
     "outside network.subnet"),
    ("bad-address", lambda t: t.replace("10.20.0.21", "10.20.0.300"), 19, "nodes[3].address",
     "IPv4 address"),
    ("two-managers", lambda t: t.replace("{name: mgr-3, role: manager", "{name: mgr-3, role: worker"), 15,
     "nodes", "2 managers declared; use 1, 3, 5 or 7"),
    ("bad-role", lambda t: t.replace("role: worker", "role: boss"), 19, "nodes[3].role",
     "'manager' or 'worker'"),
    ("inline-secret", lambda t: t.replace("password: env:VC_PW", "password: hunter2-Secret"), 6,
     "vcenter.password", "inline secrets are refused"),
    ("both-pins", lambda t: t.replace("  datacenter: DC0", "  ca_file: ca.pem\n  datacenter: DC0"), 3,
     "vcenter", "exactly one of fingerprint"),
    ("bad-fingerprint", lambda t: t.replace("3a1f927c", "zz1f927c"), 7, "vcenter.fingerprint", "SHA-256"),
    ("missing-referenced-file", lambda t: t + "trust: {root: no-such-root.json}\n", 21, "trust.root",
     "file not found"),
    ("bad-publish-mode", lambda t: t + "swarm: {publish_mode: mesh}\n", 21, "swarm.publish_mode",
     "'ingress' or 'host'"),
    ("bad-port", lambda t: t.replace("ssh: {user: root,", "ssh: {user: root, port: 70000,"), 20, "ssh.port",
     "less than or equal to 65535"),
    ("duplicate-key", lambda t: t.replace("version: 1\n", "version: 1\nversion: 1\n"), 2, "version",
     "duplicate key"),
    ("not-yaml", lambda t: t.replace("nodes:\n", "nodes: [\n"), None, "", "not valid YAML"),
    ("top-level-list", lambda t: "- 1\n- 2\n", 1, "(top level)", "expected a mapping"),
    ("alias-bomb", lambda t: _bomb(), None, "", "alias bomb"),
    ("empty-nodes", lambda t: t.split("nodes:")[0] + "nodes: []\nssh: {known_hosts: kh}\n", 15, "nodes",
     "at least 1 item"),
    ("gateway-outside", lambda t: t.replace("gateway: 10.20.0.1", "gateway: 10.99.0.1"), 14,
     "network.gateway", "outside network.subnet"),
]


def _bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    prev = "a"
    for name in "bcdefghij":
        lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
        prev = name
    return "\n".join(lines) + "\n"


def test_example_site_is_valid(cli) -> None:
    r = cli("site", "validate", EXAMPLE)
    assert r.code == 0, r.stderr
    assert "valid" in r.stdout


def test_good_fixture_is_valid(cli, tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(GOOD)
    r = cli("site", "validate", f)
    assert r.code == 0, r.stderr


@pytest.mark.parametrize(("case", "transform", "line", "key", "fragment"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_site_file(cli, tmp_path: Path, case, transform, line, key, fragment) -> None:
    f = tmp_path / f"{case}.yaml"
    f.write_text(transform(GOOD))
    r = cli("site", "validate", f)
    assert r.code == 1
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"error: {f}"), first
    if line is not None:
        assert first.startswith(f"error: {f}:{line}: {key}: "), first
    else:
        assert key in first
    assert fragment in first, first
    # one error line, at most one "(N more errors ...)" line
    assert len(r.stderr.splitlines()) <= 2
    if len(r.stderr.splitlines()) == 2:
        assert re.fullmatch(r"\(\d+ more errors; -v shows all\)", r.stderr.splitlines()[1])


def test_broken_cases_are_distinct() -> None:
    assert len({b[0] for b in BROKEN}) == len(BROKEN) >= 15


def test_several_errors_count_and_verbose(cli, tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(GOOD.replace("role: worker", "role: boss").replace("zone: core}", "zone: Core}"))
    r = cli("site", "validate", f)
    assert r.code == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and lines[1] == "(3 more errors; -v shows all)"
    r = cli("site", "validate", f, "-v")
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith(("error: ", "  ")) and ": nodes[" in ln]) == 4


def test_missing_site_file_is_exit_1_not_usage(cli, tmp_path: Path) -> None:
    r = cli("site", "validate", tmp_path / "nope.yaml")
    assert r.code == 1
    assert r.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: file not found"


def test_directory_instead_of_file(cli, tmp_path: Path) -> None:
    r = cli("site", "show", tmp_path)
    assert r.code == 1
    assert "is a directory" in r.stderr


def test_unreadable_site_file(cli) -> None:
    # Root reads any mode-0 file, so use a path whose read fails for everyone.
    r = cli("site", "validate", "/proc/self/mem")
    assert r.code == 1
    assert r.stderr.startswith("error: /proc/self/mem: cannot read")


def test_oversized_site_file(cli, tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(GOOD + "#" * (1024 * 1024 + 10))
    r = cli("site", "validate", f)
    assert r.code == 1 and "larger than" in r.stderr


def test_show_resolves_paths_and_keeps_key_names(cli, tmp_path: Path) -> None:
    import json

    f = tmp_path / "site.yaml"
    f.write_text(GOOD)
    r = cli("site", "show", f, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ssh"]["known_hosts"] == str(tmp_path / "known_hosts")
    assert doc["ssh"]["key"] == str(tmp_path / "id_ed25519")
    assert doc["nodes"][0]["name"] == "mgr-1"
    assert set(doc) >= {"version", "site", "vcenter", "network", "nodes", "ssh", "pki", "swarm", "registry",
                        "stack", "policies", "trust", "state_dir"}
    assert doc["vcenter"]["password"] == "env:VC_PW"


def test_secret_file_reference_resolved_to_absolute(cli, tmp_path: Path) -> None:
    import json

    f = tmp_path / "site.yaml"
    f.write_text(GOOD.replace("password: env:VC_PW", "password: file:secrets/vc"))
    r = cli("--json", "site", "show", f)
    assert json.loads(r.stdout)["vcenter"]["password"] == f"file:{tmp_path / 'secrets' / 'vc'}"
