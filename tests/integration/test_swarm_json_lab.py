"""``swarm bootstrap --json --trust-new-hosts`` on fresh lab nodes: nothing is silent under --json.

stdout parses as one JSON document (the swarm status), the host-key warnings reach stderr, and
recording each host key is a trust decision with its own audit record (node, address, key type,
fingerprint) — issue 17.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.lab


def _audit(site_file: Path) -> list[dict[str, Any]]:
    from tvdeploy.audit.recorder import site_log_path
    from tvdeploy.config.load import load_site

    path = site_log_path(load_site(site_file))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_bootstrap_json_trust_new_hosts_warns_on_stderr_and_audits_each_key(lab_reset, cli, operator_key,
                                                                            tmp_path: Path) -> None:
    from tvdeploy.config.load import load_site

    doc = yaml.safe_load(lab_reset.site_file.read_text())
    doc["ssh"]["known_hosts"] = str(tmp_path / "known_hosts")  # first contact with every node
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(doc))
    site = load_site(site_file)
    before = len(_audit(site_file))

    r = cli("swarm", "bootstrap", site_file, "--json", "--trust-new-hosts", "--yes")

    assert r.code == 0, r.stderr
    status = json.loads(r.stdout)  # exactly one JSON document on stdout
    assert status["cluster_id"] and {n["name"] for n in status["nodes"]} == {n.name for n in site.nodes}
    warnings = [ln for ln in r.stderr.splitlines() if "recorded new host key" in ln]
    assert len(warnings) == len(site.nodes) and all(ln.startswith("warning: node ") for ln in warnings)
    records = [rec for rec in _audit(site_file)[before:] if rec["event"] == "ssh.host-key.trust"]
    by_node = {rec["objects"][0]["name"]: rec["objects"][0] for rec in records}
    assert set(by_node) == {n.name for n in site.nodes}
    for node in site.nodes:
        obj = by_node[node.name]
        assert obj["address"] == str(node.address) and obj["key_type"] == "ssh-ed25519"
        assert obj["fingerprint"].startswith("SHA256:")
        assert any(obj["fingerprint"] in w and f"node {node.name} " in w for w in warnings)
