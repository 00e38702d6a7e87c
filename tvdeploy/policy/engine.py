"""Run the selected rules over the facts, apply waivers, judge against ``fail_on``. Pure.

A rule runs when its target is asked for and the facts it needs are there. A target node the
facts could not reach becomes a failed finding of TVD-900 (never a silent pass).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from tvdeploy.policy.model import TARGETS, Check, Finding, PolicyFacts, rank
from tvdeploy.policy.packs import Selected
from tvdeploy.policy.waivers import Waiver

SCHEMA = 1
UNREACHABLE_RULE = "TVD-900"


@dataclass
class PolicyResult:
    findings: list[Finding]
    fail_on: str
    rules: dict[str, Selected]
    waiver_problems: list[str] = field(default_factory=list)
    targets: tuple[str, ...] = TARGETS
    timings: dict[str, float] = field(default_factory=dict)  # rule id -> seconds

    @property
    def blocking(self) -> list[Finding]:
        """Unwaived failed findings at or above fail_on."""
        return [f for f in self.findings if f.status == "fail" and rank(f.severity) >= rank(self.fail_on)]

    @property
    def ok(self) -> bool:
        return not self.blocking

    def message(self) -> str:
        """One line naming the rules that block (for the deploy gate's refusal)."""
        if not self.blocking:
            return "policy gate passed"
        by_rule: dict[str, list[str]] = {}
        for f in self.blocking:
            by_rule.setdefault(f.rule, []).append(f.object + (f"@{f.node}" if f.node else ""))
        parts = [f"{rid} {self.rules[rid].rule.title if rid in self.rules else ''} ({', '.join(objs[:3])}"
                 f"{', ...' if len(objs) > 3 else ''})" for rid, objs in sorted(by_rule.items())]
        return (f"policy gate: {len(self.blocking)} finding(s) at or above {self.fail_on}: " + "; ".join(parts))

    def summary(self) -> dict[str, Any]:
        counts = {s: sum(1 for f in self.findings if f.status == s)
                  for s in ("fail", "pass", "waived", "not-applicable")}
        sev = {s: sum(1 for f in self.findings if f.status == "fail" and f.severity == s)
               for s in ("critical", "high", "medium", "low", "info")}
        return {**counts, "by_severity": sev, "blocking": len(self.blocking), "fail_on": self.fail_on,
                "rules": len(self.rules), "result": "pass" if self.ok else "fail"}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "targets": list(self.targets), "findings": [f.to_dict() for f in self.findings],
                "summary": self.summary(), "waiver_problems": list(self.waiver_problems)}


def _finding(sel: Selected, c: Check) -> Finding:
    r = sel.rule
    return Finding(r.id, r.cis, r.target, c.object, c.node, sel.severity, c.status, c.evidence, c.message,
                   r.title, c.location)


def _unreachable(facts: PolicyFacts, targets: tuple[str, ...]) -> list[Finding]:
    out = []
    for key, why in sorted(facts.unreachable.items()):
        target, _, node = key.partition(":")
        if target in targets:
            out.append(Finding(UNREACHABLE_RULE, (), target, f"node {node}" if node else target, node or None,
                               "high", "fail", why, f"{target} facts could not be read", "Target observed"))
    return out


def run(selected: dict[str, Selected], facts: PolicyFacts, targets: tuple[str, ...], waivers: list[Waiver],
        fail_on: str, waiver_problems: list[str] | None = None,
        clock: Any = time.perf_counter) -> PolicyResult:
    findings: list[Finding] = []
    timings: dict[str, float] = {}
    for rid, sel in selected.items():
        if sel.rule.target not in targets or not all(_present(facts, n) for n in sel.rule.needs):
            continue
        start = clock()
        findings.extend(_finding(sel, c) for c in sel.rule.check(facts, sel.params))
        timings[rid] = clock() - start
    findings.extend(_unreachable(facts, targets))
    findings = [_waive(f, waivers) for f in findings]
    return PolicyResult(findings, fail_on, selected, list(waiver_problems or []), targets, timings)


def _present(facts: PolicyFacts, name: str) -> bool:
    value = getattr(facts, name)
    return bool(value) if name == "stacks" else value is not None


def _waive(f: Finding, waivers: list[Waiver]) -> Finding:
    if f.status != "fail":
        return f
    for w in waivers:
        if w.matches(f):
            return replace(f, status="waived", waiver=w.ref())
    return f
