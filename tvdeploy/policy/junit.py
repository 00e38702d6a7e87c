"""JUnit XML for a policy result: a test suite per target, one test case per rule and object
(failed: <failure>; waived and not-applicable: <skipped> with the reason)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from tvdeploy.policy.engine import PolicyResult
from tvdeploy.policy.model import TARGETS


def render(result: PolicyResult) -> str:
    root = ET.Element("testsuites", name="tvdeploy policy check")
    for target in TARGETS:
        findings = [f for f in result.findings if f.target == target]
        if not findings:
            continue
        suite = ET.SubElement(root, "testsuite", name=target, tests=str(len(findings)),
                              failures=str(sum(f.status == "fail" for f in findings)),
                              skipped=str(sum(f.status in ("waived", "not-applicable") for f in findings)),
                              errors="0")
        for f in findings:
            name = f.object + (f" @ {f.node}" if f.node else "")
            case = ET.SubElement(suite, "testcase", classname=f"{f.rule} {f.title}", name=name)
            if f.status == "fail":
                el = ET.SubElement(case, "failure", message=f"[{f.severity}] {f.message}", type=f.severity)
                el.text = f.evidence
            elif f.status == "waived" and f.waiver is not None:
                ET.SubElement(case, "skipped", message=f"waived until {f.waiver.expires} by {f.waiver.approver}: "
                              f"{f.waiver.justification} ({f.waiver.file})")
            elif f.status == "not-applicable":
                ET.SubElement(case, "skipped", message=f"not applicable: {f.message}")
            elif f.evidence:
                ET.SubElement(case, "system-out").text = f.evidence
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
