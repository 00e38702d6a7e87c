"""The audit report as data (pure): facts read at report time in, the ``report.json`` document out.

    doc = build(ReportFacts(...))   # report.json; report.html and report.pdf render the same doc

Every section carries ``error`` (None, or why its facts could not be read: the section is then
shown as "not read", never silently empty). Sections, in order: identity, inventory, services
(drift), provenance (imports, history, trust root), policy (last run, waivers), changes (audit
records of the period) and integrity (the log's verification, head, last checkpoint, the site's
copies). ``SCHEMA`` names the document's version; ``report_schema.json`` beside this file is its
JSON Schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SCHEMA = "tvdeploy-audit-report/1"
SECTIONS = ("identity", "inventory", "services", "provenance", "policy", "changes", "integrity")
STATUS_ORDER = {"fail": 0, "waived": 1, "not-applicable": 2, "pass": 3}
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
Fact = Any  # a value read at report time, or the str of the error that kept it from being read


@dataclass
class ReportFacts:
    site: str
    site_file: str
    generated: str  # UTC, ISO 8601 with Z
    operator_key_id: str
    operator_key_name: str
    version: str
    since: str | None
    node_decl: list[dict[str, str]]  # site-file nodes: name, role, zone, address
    vms: Fact = None  # list[VmFact-like dict] | str
    swarm: Fact = None  # {"cluster_id", "autolock", "cert_expiry_hours", "members": [...]} | str
    tls_expiry: Fact = None  # node -> expiry | str
    swarm_cert_expiry: Fact = None  # node -> expiry | None | str
    site_ca: Fact = None  # {"fingerprint", "subject", "not_after"} | str
    status: Fact = None  # tvdeploy.release.views.status | str
    releases: Fact = None  # views.list_releases | str
    history: Fact = None  # views.history | str
    trust_root: Fact = None  # {"file", "version", "expires", "threshold", "signers"} | str | None
    key_names: dict[str, str] = field(default_factory=dict)  # key id -> name (local key store)
    policy: Fact = None  # the last `policy check` document | str | None
    waivers: Fact = None  # [{"file", "rule", "scope", "approver", "expires", "state", "reason"}] | str
    log: Fact = None  # {"source", "verify", "records", "head", "checkpoint"} | str
    site_copies: Fact = None  # tvdeploy.execute.audit_site.verify_site document | str


def _err(value: Fact) -> str | None:
    return value if isinstance(value, str) else None


def _ok(value: Fact, default: Any) -> Any:
    return default if isinstance(value, str) or value is None else value


def identity(f: ReportFacts) -> dict[str, Any]:
    return {"error": None, "site": f.site, "site_file": f.site_file, "generated": f.generated,
            "operator_key_id": f.operator_key_id, "operator_key_name": f.operator_key_name,
            "tvdeploy_version": f.version, "period": {"since": f.since, "until": f.generated}}


def inventory(f: ReportFacts) -> dict[str, Any]:
    swarm = _ok(f.swarm, {})
    members = {m["name"]: m for m in swarm.get("members", [])}
    tls, scert = _ok(f.tls_expiry, {}), _ok(f.swarm_cert_expiry, {})
    nodes = []
    for n in f.node_decl:
        m = members.get(n["name"], {})
        nodes.append({"name": n["name"], "address": n["address"], "role": m.get("role") or n["role"],
                      "zone": n["zone"], "state": m.get("state", "not a member"),
                      "availability": m.get("availability"), "engine": m.get("engine"),
                      "leader": bool(m.get("leader")), "tls_cert_expires": tls.get(n["name"]),
                      "swarm_cert_expires": scert.get(n["name"])})
    vms = [{"name": v["name"], "cpus": v["cpus"], "memory_mb": v["memory_mb"], "power": v["power"],
            "ip": v.get("ip")} for v in _ok(f.vms, [])]
    return {
        "error": None,
        "vms": {"error": _err(f.vms), "rows": vms},
        "nodes": {"error": _err(f.swarm) or _err(f.tls_expiry) or _err(f.swarm_cert_expiry), "rows": nodes},
        "swarm": {"error": _err(f.swarm), "cluster_id": swarm.get("cluster_id"), "autolock": swarm.get("autolock"),
                  "cert_expiry_hours": swarm.get("cert_expiry_hours")},
        "site_ca": {"error": _err(f.site_ca), **_ok(f.site_ca, {"fingerprint": None})},
    }


def services(f: ReportFacts) -> dict[str, Any]:
    status = _ok(f.status, {})
    rows = [{"name": s["name"], "service": s.get("service"), "digest": s.get("digest"),
             "running_digests": list(s.get("running_digests") or []), "live_digest": s.get("live_digest"),
             "replicas": dict(s.get("replicas") or {}), "health": s.get("health"), "drift": bool(s.get("drift"))}
            for s in status.get("services", [])]
    return {"error": _err(f.status), "release": status.get("release"), "sequence": status.get("sequence"),
            "kind": status.get("kind"), "rows": rows, "drifted": [r["name"] for r in rows if r["drift"]],
            "damaged_records": list(status.get("damaged_records") or [])}


def _signer(kid: str, names: dict[str, str]) -> dict[str, Any]:
    return {"key_id": kid, "name": names.get(kid)}


def provenance(f: ReportFacts) -> dict[str, Any]:
    root = f.trust_root if isinstance(f.trust_root, dict) else None
    names = dict(f.key_names)
    releases = [{"release": r["release"], "sequence": r["sequence"], "deployed": bool(r.get("deployed")),
                 "imported": r.get("imported"), "manifest_sha256": r.get("manifest_sha256"),
                 "delta_base": r.get("delta_base"), "signers": [_signer(k, names) for k in r.get("signers", [])]}
                for r in _ok(f.releases, [])]
    history = [{k: h.get(k) for k in ("release", "sequence", "kind", "outcome", "time", "operator", "error",
                                      "hotfix_service", "manifest_sha256")} | {"changed": list(h.get("changed") or [])}
               for h in _ok(f.history, [])]
    trust: dict[str, Any] = {"error": _err(f.trust_root), "given": f.trust_root is not None}
    if root is not None:
        trust |= {"file": root["file"], "version": root["version"], "expires": root["expires"],
                  "threshold": root["threshold"],
                  "signers": [{"key_id": s["key_id"], "name": names.get(s["key_id"]), "roles": s["roles"],
                               "expires": s.get("expires")} for s in root["signers"]]}
    return {"error": _err(f.releases) or _err(f.history), "releases": releases, "history": history,
            "trust_root": trust}


def policy(f: ReportFacts) -> dict[str, Any]:
    doc = f.policy if isinstance(f.policy, dict) else None
    waivers = _ok(f.waivers, [])
    out: dict[str, Any] = {"error": _err(f.policy), "last_run": None, "summary": None, "findings": [],
                           "not_passed": [], "passed_by_rule": [],
                           "waiver_problems": [], "waivers": {"error": _err(f.waivers), "rows": waivers},
                           "expired_waivers": sum(1 for w in waivers if w.get("state") == "expired")}
    if doc is not None:
        findings = [x for x in doc.get("findings") or [] if isinstance(x, dict)]
        findings.sort(key=lambda x: (STATUS_ORDER.get(str(x.get("status")), 9),
                                     SEVERITY_ORDER.get(str(x.get("severity")), 9), str(x.get("rule"))))
        passed: dict[str, dict[str, Any]] = {}
        for x in findings:
            if x.get("status") == "pass":
                group = passed.setdefault(str(x.get("rule")), {"rule": x.get("rule"), "title": x.get("title"),
                                                                "severity": x.get("severity"), "results": []})
                group["results"].append({"object": x.get("object"), "node": x.get("node"),
                                         "evidence": x.get("evidence")})
        out |= {"last_run": doc.get("checked_at"), "summary": doc.get("summary"), "findings": findings,
                "not_passed": [x for x in findings if x.get("status") != "pass"],
                "passed_by_rule": list(passed.values()), "waiver_problems": list(doc.get("waiver_problems") or []),
                "targets": list(doc.get("targets") or [])}
    return out


def _in_period(record: dict[str, Any], since: str | None) -> bool:
    return since is None or str(record.get("time", "")) >= since


def changes(f: ReportFacts) -> dict[str, Any]:
    log = _ok(f.log, {})
    verified = (log.get("verify") or {}).get("records", 0)
    rows = []
    for r in log.get("records", []):
        if not _in_period(r, f.since):
            continue
        actor = r.get("actor") if isinstance(r.get("actor"), dict) else {}
        objects = [o for o in r.get("objects") or [] if isinstance(o, dict)]
        rows.append({"seq": r.get("seq"), "time": r.get("time"), "event": r.get("event"),
                     "os_user": actor.get("os_user"), "key_id": actor.get("key_id"),
                     "objects": [_object_label(o) for o in objects], "outcome": r.get("outcome"),
                     "error": r.get("error"), "verified": isinstance(r.get("seq"), int) and r["seq"] <= verified})
    failed = [r for r in rows if r["outcome"] not in ("success", None)]
    return {"error": _err(f.log), "since": f.since, "count": len(rows), "not_success": len(failed), "records": rows}


def _object_label(o: dict[str, Any]) -> str:
    label = o.get("name") or o.get("digest") or o.get("id") or ""
    extra = o.get("digest") if o.get("name") and o.get("digest") else ""
    return f"{o.get('type', '?')}:{label}" + (f"@{extra}" if extra else "")


def integrity(f: ReportFacts) -> dict[str, Any]:
    log = _ok(f.log, {})
    ver = log.get("verify") or {}
    cp = log.get("checkpoint")
    if cp:
        cp = {**cp, "signer_name": f.key_names.get(cp.get("key_id", ""))}
    copies = f.site_copies if isinstance(f.site_copies, dict) else {}
    return {
        "error": _err(f.log), "source": log.get("source"), "valid": ver.get("valid"), "records": ver.get("records"),
        "checkpoints": ver.get("checkpoints"), "key_id": ver.get("key_id"), "first_bad": ver.get("first_bad"),
        "head": log.get("head"), "last_checkpoint": cp,
        "site_copies": {"error": _err(f.site_copies), "valid": copies.get("valid"),
                        "copies": [{"node": c["node"], "path": c["path"], "error": c.get("error"),
                                    "records": (c.get("verify") or {}).get("records"),
                                    "valid": (c.get("verify") or {}).get("valid")} for c in copies.get("copies", [])],
                        "problems": list(copies.get("problems") or [])},
    }


def build(f: ReportFacts) -> dict[str, Any]:
    doc = {"schema": SCHEMA, "identity": identity(f), "inventory": inventory(f), "services": services(f),
           "provenance": provenance(f), "policy": policy(f), "changes": changes(f), "integrity": integrity(f)}
    doc["summary"] = summary(doc)
    return doc


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The few lines a reader looks at first."""
    pol = doc["policy"].get("summary") or {}
    integ = doc["integrity"]
    return {
        "services": len(doc["services"]["rows"]),
        "drifted": list(doc["services"]["drifted"]),
        "release": doc["services"]["release"],
        "policy": pol.get("result") if pol else None,
        "policy_failed": pol.get("fail") if pol else None,
        "expired_waivers": doc["policy"]["expired_waivers"],
        "changes": doc["changes"]["count"],
        "log_valid": integ["valid"],
        "site_copies_valid": integ["site_copies"]["valid"],
        "sections_not_read": [s for s in SECTIONS if doc[s].get("error")],
    }


def waiver_state(expires: datetime, now: datetime, counted: bool) -> str:
    """valid | expired | not counted."""
    if expires <= now:
        return "expired"
    return "valid" if counted else "not counted"
