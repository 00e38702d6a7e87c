"""CIS Docker Benchmark v1.6.0 coverage: every one of the 117 recommendations with the rule(s)
that check it, or why none does ("manual" or "not-applicable", with the reason)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvdeploy.policy.registry import all_rules

DATA = Path(__file__).with_name("cis_v160.yaml")
STATUSES = ("automated", "manual", "not-applicable")


def rows() -> list[dict[str, Any]]:
    from tvdeploy.config.yamlsafe import load_yaml_file

    data = load_yaml_file(DATA).data
    assert isinstance(data, list)
    return data


def coverage() -> list[dict[str, Any]]:
    by_cis: dict[str, list[str]] = {}
    for r in all_rules().values():
        for c in r.cis:
            by_cis.setdefault(c, []).append(r.id)
    out = []
    for row in rows():
        rules = by_cis.get(row["id"], [])
        status = row.get("status") or ("automated" if rules else "manual")
        reason = row.get("reason", "")
        if status == "automated":
            reason = "checked on every node" if _per_node(rules) else "checked by " + ", ".join(rules)
        elif status == "manual" and not reason:
            raise ValueError(f"{DATA}: {row['id']}: no rule checks it and no reason is given")
        out.append({"cis": row["id"], "title": row["title"], "label": row["label"],
                    "rule": rules[0] if rules else None, "rules": rules, "status": status, "reason": reason})
    return out


def _per_node(rules: list[str]) -> bool:
    known = all_rules()
    return any(known[r].target in ("engine", "host") for r in rules)


def counts(table: list[dict[str, Any]]) -> dict[str, int]:
    return {s: sum(1 for r in table if r["status"] == s) for s in STATUSES} | {"total": len(table)}
