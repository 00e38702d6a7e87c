"""The audit report without a site: the model from hand-made facts, the HTML (self-contained,
escaped), the JSON schema, the PDF's text, and the secret scrub."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tvdeploy.audit import report_model, report_render

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
KID = "a" * 64


def sample_facts(**over: Any) -> report_model.ReportFacts:
    records = [
        {"seq": 1, "time": "2026-12-01T10:00:00.000Z", "event": "release.deploy", "actor": {"os_user": "ops", "key_id": KID},
         "objects": [{"type": "release", "name": "v1"}], "outcome": "success", "error": None},
        {"seq": 2, "time": "2026-12-02T10:00:00.000Z", "event": "release.deploy", "actor": {"os_user": "ops", "key_id": KID},
         "objects": [{"type": "release", "name": "v2"}], "outcome": "rolled-back", "error": "service api: unhealthy"},
    ]
    facts = report_model.ReportFacts(
        site="plant-a", site_file="/sites/plant-a.yaml", generated="2026-12-02T11:00:00Z", operator_key_id=KID,
        operator_key_name="operator", version="0.1.0", since=None,
        node_decl=[{"name": "m1", "role": "manager", "zone": "core", "address": "10.0.0.1"}],
        vms=[{"name": "m1", "cpus": 2, "memory_mb": 4096, "power": "poweredOn", "ip": "10.0.0.1"}],
        swarm={"cluster_id": "c1", "autolock": True, "cert_expiry_hours": 2160,
               "members": [{"name": "m1", "role": "manager", "state": "ready", "availability": "active",
                            "engine": "20.10.24", "leader": True}]},
        tls_expiry={"m1": "2027-12-01T00:00:00Z"}, swarm_cert_expiry={"m1": "2027-03-01T00:00:00Z"},
        site_ca={"fingerprint": "f" * 64, "subject": "CN=ca", "not_after": "2036-01-01T00:00:00Z"},
        status={"release": "v1", "sequence": 1, "kind": "deploy", "damaged_records": [], "services": [
            {"name": "api", "service": "tv_api", "digest": D1, "running_digests": [D1], "live_digest": D1,
             "replicas": {"running": 1, "desired": 1}, "health": "healthy", "drift": False},
            {"name": "<script>alert(1)</script>", "service": "tv_x", "digest": D2, "running_digests": [D3],
             "live_digest": D3, "replicas": {"running": 1, "desired": 1}, "health": "healthy", "drift": True}]},
        releases=[{"release": "v1", "sequence": 1, "deployed": True, "imported": "2026-12-01T09:00:00Z",
                   "manifest_sha256": "e" * 64, "signers": [KID]}],
        history=[{"release": "v2", "sequence": 2, "kind": "deploy", "outcome": "rolled-back", "time": "t",
                  "operator": KID, "changed": ["api"], "error": "unhealthy", "hotfix_service": None,
                  "manifest_sha256": "e" * 64}],
        trust_root={"file": "root.json", "version": 3, "expires": "2099-01-01T00:00:00Z", "threshold": 1,
                    "signers": [{"key_id": KID, "roles": ["bundle"], "expires": None}]},
        key_names={KID: "release-signer"},
        policy={"schema": 1, "checked_at": "2026-12-02T10:30:00.000Z", "targets": ["stack"],
                "summary": {"fail": 1, "pass": 5, "waived": 1, "not-applicable": 0, "blocking": 1, "fail_on": "high",
                            "rules": 7, "result": "fail"},
                "findings": [{"rule": "TVD-101", "status": "fail", "severity": "high", "target": "stack",
                              "object": "api", "node": None, "evidence": "privileged: true", "message": "m",
                              "title": "t"}], "waiver_problems": []},
        waivers=[{"file": "w.yaml", "rule": "TVD-506", "scope": "node: m1", "approver": "alice",
                  "expires": "2026-11-01T00:00:00Z", "justification": "lab", "state": "expired", "reason": ""}],
        log={"source": "local", "verify": {"valid": True, "records": 2, "checkpoints": 0, "key_id": KID,
                                           "first_bad": None}, "records": records,
             "head": {"seq": 2, "hash": "b" * 64}, "checkpoint": None},
        site_copies={"valid": False, "copies": [{"node": "m1", "path": "/var/log/tvdeploy/audit/plant-a.log",
                                                 "error": None, "verify": {"records": 1, "valid": True}}],
                     "problems": ["node m1: record(s) missing: seq 2"]},
    )
    for k, v in over.items():
        setattr(facts, k, v)
    return facts


def test_model_has_every_section_and_flags_drift_expired_waivers_and_failures() -> None:
    doc = report_model.build(sample_facts())
    assert doc["schema"] == report_model.SCHEMA
    assert all(s in doc for s in report_model.SECTIONS)
    assert doc["summary"]["drifted"] == ["<script>alert(1)</script>"]
    assert doc["policy"]["expired_waivers"] == 1
    assert doc["changes"]["not_success"] == 1
    assert doc["provenance"]["releases"][0]["signers"] == [{"key_id": KID, "name": "release-signer"}]
    assert doc["integrity"]["site_copies"]["problems"] == ["node m1: record(s) missing: seq 2"]
    assert doc["inventory"]["nodes"]["rows"][0]["swarm_cert_expires"] == "2027-03-01T00:00:00Z"


def test_since_keeps_only_the_period() -> None:
    doc = report_model.build(sample_facts(since="2026-12-02T00:00:00.000Z"))
    assert [r["seq"] for r in doc["changes"]["records"]] == [2]


def test_a_fact_not_read_marks_its_section() -> None:
    doc = report_model.build(sample_facts(status="site lab: no manager answers", vms="vcenter.host: refused"))
    assert doc["services"]["error"] == "site lab: no manager answers"
    assert doc["inventory"]["vms"]["error"] == "vcenter.host: refused"
    assert doc["summary"]["sections_not_read"] == ["services"]
    html = report_render.render_html(doc).decode()
    assert "Not read: site lab: no manager answers" in html


def test_json_matches_its_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(report_model.__file__).with_name("report_schema.json")).read_text())
    doc = json.loads(report_render.render_json(report_model.build(sample_facts())))
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "schema": "tvdeploy-audit-report/0"}, schema)


def test_html_is_self_contained_and_escaped() -> None:
    html = report_render.render_html(report_model.build(sample_facts())).decode()
    assert "<script" not in html  # the hostile service name is escaped, and the page has no script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"(?i)\b(src|href)\s*=\s*[\"'](?!#)", html)  # only in-page anchors
    assert not re.search(r"(?i)<link|@import|url\(|https?://(?!json-schema)", html)
    for section in report_model.SECTIONS:
        assert f'id="{section}"' in html
    for digest in (D1, D2, D3):
        assert digest in html
    assert 'class="drift"' in html and "DRIFT" in html
    assert "EXPIRED" in html


def test_pdf_text_holds_the_digests_and_the_policy_summary(tmp_path: Path) -> None:
    pytest.importorskip("weasyprint")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    pdf = report_render.render_pdf(report_render.render_html(report_model.build(sample_facts())))
    (tmp_path / "r.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = re.sub(r"\s+", "", text)
    for digest in (D1, D2, D3):
        assert digest in flat
    assert "Policysummary:fail" in flat


def test_pdf_without_weasyprint_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tvdeploy.errors import TvdeployError

    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import fails as if not installed
    with pytest.raises(TvdeployError, match=r"pip install 'tvdeploy\[report\]'"):
        report_render.render_pdf(b"<html></html>")


def test_scrub_masks_resolved_secrets_and_refuses_private_keys(tmp_path: Path) -> None:
    from tvdeploy.config.secrets import resolve_secret
    from tvdeploy.errors import TvdeployError
    from tvdeploy.execute.audit_report import scrub

    (tmp_path / "pw").write_text("Planted-Secret-4711\n")
    resolve_secret(f"file:{tmp_path / 'pw'}", "vcenter.password")
    doc = scrub({"x": ["error: login as admin/Planted-Secret-4711 refused"]})
    assert "Planted-Secret-4711" not in json.dumps(doc)
    with pytest.raises(TvdeployError, match=r"\$\.k holds a secret value"):
        scrub({"k": "-----BEGIN PRIVATE KEY-----"})


def test_policy_last_run_is_kept_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    from tvdeploy.config.load import load_site
    from tvdeploy.errors import InputFileError
    from tvdeploy.policy import last

    site = load_site(Path(__file__).resolve().parents[2] / "templates" / "site.example.yaml")
    assert last.load(site) is None
    path = last.save(site, {"schema": 1, "findings": [], "summary": {}}, "2026-12-02T10:00:00.000Z", "s.yaml")
    assert last.load(site)["checked_at"] == "2026-12-02T10:00:00.000Z"
    path.write_text("{not json")
    with pytest.raises(InputFileError, match=rf"{re.escape(str(path))}: damaged"):
        last.load(site)


def test_policy_results_not_passed_first_and_passes_grouped_by_rule() -> None:
    facts = sample_facts()
    facts.policy["findings"] = [
        {"rule": "TVD-2", "status": "pass", "severity": "low", "object": "a", "evidence": "e1", "title": "T2"},
        {"rule": "TVD-1", "status": "not-applicable", "severity": "high", "object": "b", "evidence": "e2"},
        {"rule": "TVD-2", "status": "pass", "severity": "low", "object": "c", "evidence": "e3", "title": "T2"},
        {"rule": "TVD-3", "status": "fail", "severity": "critical", "object": "d", "evidence": "e4"},
    ]
    pol = report_model.build(facts)["policy"]
    assert [x["status"] for x in pol["findings"]] == ["fail", "not-applicable", "pass", "pass"]
    assert [x["rule"] for x in pol["not_passed"]] == ["TVD-3", "TVD-1"]
    assert pol["passed_by_rule"] == [{"rule": "TVD-2", "title": "T2", "severity": "low", "results": [
        {"object": "a", "node": None, "evidence": "e1"}, {"object": "c", "node": None, "evidence": "e3"}]}]
    html = report_render.render_html(report_model.build(facts)).decode()
    assert "[e1]" in html and "[e3]" in html and "e4" in html
