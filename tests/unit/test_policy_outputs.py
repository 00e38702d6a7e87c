"""Report formats: SARIF 2.1.0 validated against the OASIS schema (tests/data/sarif-schema-2.1.0.json,
the errata01 schema as published by OASIS), JUnit XML that parses, JSON with its schema number."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests import policykit as pk
from tvdeploy.config.load import load_site
from tvdeploy.policy import gate, junit, sarif
from tvdeploy.policy.model import EngineFacts, FileStat, HostFacts, PolicyFacts, StackFacts

SCHEMA = Path(__file__).parent.parent / "data" / "sarif-schema-2.1.0.json"


def _result(tmp_path: Path):
    key, entry = pk.approver(tmp_path)
    waiver = pk.write_waiver(tmp_path / "w.yaml", pk.waiver_doc("TVD-418", {"node": "mgr-1"}), key)
    site_path = pk.write_site(tmp_path, waivers=[waiver], approvers=[entry])
    daemon = FileStat("/etc/docker/daemon.json", "regular file", 0o622, 0, 0, "root", "root")
    host = HostFacts("mgr-1", {daemon.path: daemon}, {"hosts": ["unix:///var/run/docker.sock"]}, "", None, "",
                     (), "/", ())
    engine = EngineFacts("mgr-1", {"Swarm": {"LocalNodeState": "active"}, "SecurityOptions": ["name=seccomp"]},
                         {"Version": "20.10.24"}, (), ())
    facts = PolicyFacts(stacks=(StackFacts(pk.stack("stack_bad"), "rendered", "templates/trueverit/stack.yml.j2"),),
                        hosts={"mgr-1": host}, engines={"mgr-1": engine}, unreachable={"host:mgr-2": "ssh: timed out"})
    return gate.evaluate(load_site(site_path), site_path, facts, now=pk.NOW), site_path


def test_sarif_validates_against_the_2_1_0_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result, site_path = _result(tmp_path)
    doc = sarif.render(result, str(site_path), "1.0")
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(doc)
    run = doc["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert all(run["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])
    assert "TVD-900" in ids and all(r["help"]["text"] for r in run["tool"]["driver"]["rules"])
    by = {(r["ruleId"], r["properties"]["node"]): r for r in run["results"]}
    waived = by[("TVD-418", "mgr-1")]
    assert waived["suppressions"][0]["status"] == "accepted"
    assert waived["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "mgr-1:/etc/docker/daemon.json"
    na = by[("TVD-324", "mgr-1")]
    assert na["kind"] == "notApplicable" and na["level"] == "none" and "swarm" in na["message"]["text"]
    stack = next(r for r in run["results"] if r["ruleId"] == "TVD-104")
    assert stack["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "templates/trueverit/stack.yml.j2"


def test_junit_parses_one_case_per_rule_and_object(tmp_path: Path) -> None:
    result, _ = _result(tmp_path)
    root = ET.fromstring(junit.render(result))
    cases = list(root.iter("testcase"))
    assert len(cases) == len(result.findings)
    assert len({(c.get("classname"), c.get("name")) for c in cases}) == len(cases)
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == sum(f.status == "fail" for f in result.findings)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"stack", "engine", "host"}


def test_json_document_shape(tmp_path: Path) -> None:
    result, _ = _result(tmp_path)
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["schema"] == 1
    statuses = {f["status"] for f in doc["findings"]}
    assert statuses == {"fail", "pass", "waived", "not-applicable"}
    unreachable = next(f for f in doc["findings"] if f["rule"] == "TVD-900")
    assert unreachable["node"] == "mgr-2" and unreachable["status"] == "fail"
    assert doc["summary"]["result"] == "fail" and doc["summary"]["blocking"] >= 1
