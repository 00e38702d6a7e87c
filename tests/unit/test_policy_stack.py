"""Stack rules over hand-built compose mappings (tests/unit/data/policy/) and the deploy gate API."""

from __future__ import annotations

from pathlib import Path

from tests import policykit as pk
from tvdeploy.config.load import load_site
from tvdeploy.policy import engine, gate
from tvdeploy.policy.model import PolicyFacts, StackFacts
from tvdeploy.policy.packs import select


def _fails(result) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in result.findings:
        if f.status == "fail":
            out.setdefault(f.rule, set()).add(f.object)
    return out


def test_good_stack_passes_the_gate(tmp_path: Path) -> None:
    site_path = pk.write_site(tmp_path)
    result = gate.check_stack(load_site(site_path), site_path, pk.stack("stack_good"), pk.NOW)
    assert result.ok, result.message()
    assert _fails(result) == {}, _fails(result)
    assert result.summary()["pass"] > 50


def test_bad_stack_is_refused_naming_each_rule(tmp_path: Path) -> None:
    site_path = pk.write_site(tmp_path)
    result = gate.check_stack(load_site(site_path), site_path, pk.stack("stack_bad"), pk.NOW)
    fails = _fails(result)
    # secret in env, image by tag, host network, SYS_ADMIN, no memory limit: each its own rule
    for rid in ("TVD-102", "TVD-101", "TVD-103", "TVD-104", "TVD-105"):
        assert fails.get(rid) == {"cloud"}, (rid, fails)
    assert not result.ok
    msg = result.message()
    for rid in ("TVD-101", "TVD-102", "TVD-103", "TVD-104", "TVD-105"):
        assert rid in msg
    assert "cloud" in msg and "\n" not in msg
    # The secret's value is never in a finding; its name is.
    text = repr(result.to_dict())
    assert "hunter2" not in text and "DB_PASSWORD" in text


def test_evidence_names_the_key_and_value(tmp_path: Path) -> None:
    site_path = pk.write_site(tmp_path)
    result = gate.check_stack(load_site(site_path), site_path, pk.stack("stack_bad"), pk.NOW)
    by = {(f.rule, f.object): f for f in result.findings}
    assert "cap_add: ['SYS_ADMIN']" in by[("TVD-104", "cloud")].evidence
    assert by[("TVD-101", "cloud")].evidence.endswith("/trueverit/cloud:1")
    assert "deploy.resources.limits.memory: not set" == by[("TVD-105", "cloud")].evidence


def test_keys_swarm_ignores_are_findings_not_passes() -> None:
    facts = PolicyFacts(stacks=(StackFacts(pk.stack("stack_ignored_keys"), "rendered", "stack.yaml.j2"),))
    result = engine.run(select(["cis-docker"], None), facts, ("stack",), [], "high")
    f = next(f for f in result.findings if f.rule == "TVD-120" and f.object == "cloud_wsgi")
    assert f.status == "fail" and "does nothing on a swarm site" in f.message
    for key in ("privileged: True", "devices", "pid: host", "security_opt"):
        assert key in f.evidence
    sock = next(f for f in result.findings if f.rule == "TVD-112" and f.object == "cloud")
    assert sock.status == "fail" and sock.severity == "critical" and "docker.sock" in sock.evidence
    assert {"5.5", "5.16", "5.18"} <= set(f.cis)


def test_live_specs_skip_the_ignored_key_rule() -> None:
    facts = PolicyFacts(stacks=(StackFacts(pk.stack("stack_ignored_keys"), "live", "swarm"),))
    result = engine.run(select(["cis-docker"], None), facts, ("stack",), [], "high")
    assert not [f for f in result.findings if f.rule == "TVD-120"]
    assert any(f.rule == "TVD-112" and f.status == "fail" and "live service spec" in f.message
               for f in result.findings)
