"""SARIF 2.1.0 for a policy result: one run; the rules with help text; a result per failed,
waived or not-applicable finding, located at the node file (``NODE:PATH``), the stack template,
the bundle, or the site file; waived findings carry an external, accepted suppression with the
waiver's justification (GitHub code scanning ignores suppressions: filter them before upload)."""

from __future__ import annotations

import hashlib
from typing import Any

from tvdeploy.policy.engine import PolicyResult
from tvdeploy.policy.model import Finding

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}


def _rule(rid: str, result: PolicyResult) -> dict[str, Any]:
    sel = result.rules.get(rid)
    if sel is None:
        return {"id": rid, "name": "TargetObserved", "shortDescription": {"text": "Target observed"},
                "fullDescription": {"text": "The facts of a target node could be read."},
                "help": {"text": "Make the node reachable (SSH, Docker API over mTLS) and run the check again."},
                "properties": {"security-severity": SECURITY_SEVERITY["high"], "tags": ["security"]}}
    r = sel.rule
    cis = f" (CIS Docker Benchmark v1.6.0: {', '.join(r.cis)})" if r.cis else ""
    return {
        "id": rid, "name": "".join(w.capitalize() for w in r.title.replace(":", " ").split() if w.isalnum()),
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": f"{r.title}{cis}. Target: {r.target}."},
        "help": {"text": r.remediation},
        "defaultConfiguration": {"level": LEVEL[sel.severity]},
        "properties": {"security-severity": SECURITY_SEVERITY[sel.severity], "target": r.target,
                       "cis": list(r.cis), "tags": ["security", *(f"CIS-{c}" for c in r.cis)]},
    }


def _location(f: Finding, site_file: str) -> dict[str, Any]:
    uri = f.location or site_file
    return {"physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": 1}},
            "logicalLocations": [{"name": f.object, "fullyQualifiedName":
                                  f"{f.node}/{f.object}" if f.node else f.object, "kind": f.target}]}


def _result(f: Finding, index: dict[str, int], site_file: str) -> dict[str, Any]:
    text = f.message or f.title
    if f.evidence:
        text += f" [{f.evidence}]"
    where = f" on {f.node}" if f.node else ""
    out: dict[str, Any] = {
        "ruleId": f.rule, "ruleIndex": index[f.rule],
        "kind": "notApplicable" if f.status == "not-applicable" else "fail",
        "level": "none" if f.status == "not-applicable" else LEVEL[f.severity],
        "message": {"text": f"{f.object}{where}: {text}"},
        "locations": [_location(f, site_file)],
        "partialFingerprints": {"tvdeploy/v1": hashlib.sha256(
            f"{f.rule}|{f.target}|{f.node}|{f.object}".encode()).hexdigest()},
        "properties": {"severity": f.severity, "status": f.status, "node": f.node, "evidence": f.evidence},
    }
    if f.waiver is not None:
        out["suppressions"] = [{"kind": "external", "status": "accepted",
                                "justification": f"{f.waiver.justification} (approved by {f.waiver.approver}, "
                                                 f"expires {f.waiver.expires}; {f.waiver.file})",
                                "properties": {"expiryUtc": f.waiver.expires, "file": f.waiver.file}}]
    return out


def render(result: PolicyResult, site_file: str, version: str) -> dict[str, Any]:
    shown = [f for f in result.findings if f.status in ("fail", "waived", "not-applicable")]
    ids = sorted({f.rule for f in shown} | set(result.rules))
    index = {rid: i for i, rid in enumerate(ids)}
    return {
        "$schema": SCHEMA_URI, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "tvdeploy", "version": version, "semanticVersion": version,
                                "informationUri": "https://trueverit.invalid/tvdeploy",
                                "rules": [_rule(rid, result) for rid in ids]}},
            "results": [_result(f, index, site_file) for f in shown],
            "invocations": [{"executionSuccessful": True,
                             "toolExecutionNotifications": [{"message": {"text": p}, "level": "warning"}
                                                            for p in result.waiver_problems]}],
            "properties": {"summary": result.summary()},
        }],
    }
