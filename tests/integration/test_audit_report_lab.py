"""`audit report` on the real lab after a deploy, a failed (rolled-back) deploy and a hot-fix: four signed
files that verify and stop verifying after one changed byte; the HTML in headless Chromium (every
section, every running digest, no request leaving the file); the PDF's text; drift made by hand;
the log read from the managers' copies when the local one is gone; a record removed from one
manager's copy named; no secret of the site file in any file.

One lab of this module's own (3 nodes, 18 services, tests/integration/release_lab.py): vm apply,
deploy
lab-v1, deploy lab-v2-broken (rolled back), hot-fix cloud from a signed bundle, policy
check. Set TVDEPLOY_TEST_REPORT_LAB_DIR (and _HOME) to reuse a lab across runs (reset, not
removed); with TVDEPLOY_TEST_REPORT_LAB_KEEP=1 too, a lab this module deployed before is used as
it is (no reset, no deploy: for working on the tests).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import run_lab
from tests.integration.release_lab import ReleaseLab, build
from tests.integration.swarm_helpers import wait_for

pytestmark = pytest.mark.lab

HOTFIX_RELEASE = "lab-hotfix-cloud"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class ReportLab:
    dir: Path
    home: Path
    site: Path
    trust: Path
    pub: Path
    base: Path


def _tv(home: Path, *args: object, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TVDEPLOY_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _hotfix(lab: ReleaseLab) -> None:
    """A one-service hot-fix from a signed bundle (as in test_release_ops_lab, but a full bundle:
    the import's policy gate cannot read a delta's base layers yet and refuses it)."""
    from tvdeploy.lab import images

    api = images._client(lab.engine)
    images._build(api, "trueverit/cloud:3", images.app_context("cloud", "3", "small"))
    spec = lab.dir / "hotfix-cloud.yaml"
    spec.write_text(yaml.safe_dump({"release": HOTFIX_RELEASE, "sequence": 4, "images": {"cloud": "trueverit/cloud:3"}}))
    bundle = lab.dir / "hotfix-cloud.tar"
    lab.ok("bundle", "build", spec, "--engine", lab.engine, "-o", bundle, "--key", "signer-1", "--key", "signer-2")
    lab.ok("bundle", "import", lab.site, bundle, "--trust", lab.trust, "--yes")
    lab.ok("release", "hotfix", lab.site, "cloud", "--release", HOTFIX_RELEASE, "--yes")


@pytest.fixture(scope="module")
def report_lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("report")
    reuse = os.environ.get("TVDEPLOY_TEST_REPORT_LAB_DIR")
    lab_dir = Path(reuse) if reuse else base / "lab"
    home = Path(os.environ.get("TVDEPLOY_TEST_REPORT_LAB_HOME", base / "home"))
    if reuse and os.environ.get("TVDEPLOY_TEST_REPORT_LAB_KEEP") == "1":
        # Developer shortcut: the reused lab is already deployed by an earlier run of this module.
        lab = ReleaseLab(lab_dir, home, lab_dir / "site.yaml", base / "root.json", {}, "")
        pubs: list[object] = []
        for name in ("signer-1", "signer-2"):
            lab.ok("keys", "export-public", name, "-o", base / f"{name}.pub", "--force")
            pubs += ["--signer", base / f"{name}.pub"]
        lab.ok("trust", "init", "-o", lab.trust, *pubs, "--threshold", 2, "--root-key", "root-1",
               "--expires", "2099-12-31")
        lab.ok("keys", "export-public", "operator", "-o", base / "operator.pub", "--force")
        yield ReportLab(lab_dir, home, lab.site, lab.trust, base / "operator.pub", base)
        return
    try:
        if reuse and (lab_dir / "site.yaml").exists():
            run_lab("up", "--dir", lab_dir, home=home)
            run_lab("reset", "--dir", lab_dir, home=home)
            for stale in ("imports", "audit", "policy"):
                shutil.rmtree(lab_dir / "state" / stale, ignore_errors=True)
        lab = build(base, lab_dir, home)
        lab.ok("vm", "apply", lab.site, "--yes")  # the VMs on the vCenter simulator, pointing at the nodes
        lab.ok("release", "deploy", lab.site, "lab-v1", "--yes")
        failed = lab.tv("release", "deploy", lab.site, "lab-v2-broken", "--yes")
        assert failed.returncode == 1, failed.stderr[-2000:]  # fails by design and is rolled back
        _hotfix(lab)
        policy = lab.tv("policy", "check", lab.site, "--json")
        assert policy.returncode in (0, 1), policy.stderr[-2000:]
        lab.ok("keys", "export-public", "operator", "-o", base / "operator.pub", "--force")
        yield ReportLab(lab_dir, home, lab.site, lab.trust, base / "operator.pub", base)
    finally:
        if not reuse:
            _tv(home, "lab", "down", "--dir", lab_dir, timeout=300)


def _report(lab: ReportLab, out: Path, *extra: object, site: Path | None = None) -> dict[str, Any]:
    r = _ok(_tv(lab.home, "audit", "report", site or lab.site, "-o", out, "--trust", lab.trust, "--json", *extra))
    summary: dict[str, Any] = json.loads(r.stdout)
    summary["stderr"] = r.stderr
    return summary


def _doc(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "report.json").read_text())
    return doc


def _status(lab: ReportLab) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_ok(_tv(lab.home, "release", "status", lab.site, "--json")).stdout)
    return doc


@pytest.fixture(scope="module")
def first_report(report_lab: ReportLab) -> Path:
    out = report_lab.base / "report-1"
    _report(report_lab, out, "--pdf")
    return out


def test_four_signed_files_that_verify_and_fail_after_one_byte(report_lab: ReportLab, first_report: Path) -> None:
    out = first_report
    assert {p.name for p in out.iterdir()} == {"report.html", "report.json", "report.pdf", "report.html.sig",
                                               "report.json.sig", "report.pdf.sig"}
    r = _ok(_tv(report_lab.home, "audit", "report-verify", out, "--key", report_lab.pub))
    assert "intact" in r.stdout
    tampered = report_lab.base / "tampered"
    shutil.copytree(out, tampered)
    data = bytearray((tampered / "report.html").read_bytes())
    data[len(data) // 3] ^= 0x20
    (tampered / "report.html").write_bytes(bytes(data))
    r = _tv(report_lab.home, "audit", "report-verify", tampered, "--key", report_lab.pub)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "report.html: signature does not verify" in r.stderr and "changed after it was signed" in r.stderr


def test_content_from_live_facts_and_the_verified_log(report_lab: ReportLab, first_report: Path) -> None:
    doc = _doc(first_report)
    assert doc["schema"] == "tvdeploy-audit-report/1"
    assert doc["summary"]["sections_not_read"] == []
    assert doc["identity"]["site"] == "lab" and len(doc["identity"]["operator_key_id"]) == 64
    vms = doc["inventory"]["vms"]["rows"]
    assert sorted(v["name"] for v in vms) == ["lab-mgr-1", "lab-mgr-2", "lab-mgr-3"]
    assert all(v["power"] == "poweredOn" and v["cpus"] >= 1 and v["memory_mb"] >= 256 for v in vms)
    nodes = doc["inventory"]["nodes"]["rows"]
    assert len(nodes) == 3 and all(n["engine"] and n["tls_cert_expires"] and n["swarm_cert_expires"] for n in nodes)
    assert doc["inventory"]["swarm"]["autolock"] is True
    assert len(doc["inventory"]["site_ca"]["fingerprint"]) == 64
    services = doc["services"]["rows"]
    assert doc["services"]["kind"] == "hotfix" and len(services) == 18 and doc["services"]["drifted"] == []
    releases = {r["release"]: r for r in doc["provenance"]["releases"]}
    assert set(releases) == {"lab-v1", "lab-v2", "lab-v2-broken", HOTFIX_RELEASE}
    assert all(len(r["signers"]) == 2 and all(s["name"] in ("signer-1", "signer-2") for s in r["signers"])
               for r in releases.values())
    assert doc["provenance"]["trust_root"]["version"] == 1
    assert [(h["kind"], h["outcome"]) for h in doc["provenance"]["history"]] == [
        ("hotfix", "success"), ("deploy", "rolled-back"), ("deploy", "success")]
    cloud = next(s for s in services if s["name"] == "cloud")
    assert cloud["running_digests"] == [cloud["digest"]]  # the hot-fixed digest, as recorded
    events = [(r["event"], r["outcome"]) for r in doc["changes"]["records"]]
    assert ("release.deploy", "success") in events
    assert any(e == "release.deploy" and o != "success" for e, o in events)  # the failed deploy is there
    assert doc["policy"]["summary"]["rules"] > 0 and doc["policy"]["findings"]
    integ = doc["integrity"]
    assert integ["valid"] is True and integ["head"]["seq"] == integ["records"] and integ["last_checkpoint"]
    assert integ["site_copies"]["valid"] is True and len(integ["site_copies"]["copies"]) == 3


def _chromium(*args: str, user_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/setup installs it)")
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def _page_requests(netlog: Path) -> list[str]:
    """URLs the PAGE asked for (the browser's own background requests have no origin)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})
            and e["params"].get("initiator") != "not an origin"]


def test_html_in_headless_chromium_has_every_section_and_digest_and_fetches_nothing(
        report_lab: ReportLab, first_report: Path, tmp_path: Path) -> None:
    html = first_report / "report.html"
    shot = tmp_path / "report.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1400,3000", html.as_uri(), user_dir=tmp_path / "ud1")
    assert shot.is_file() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    netlog = tmp_path / "net.json"
    r = _chromium(f"--log-net-log={netlog}", "--dump-dom", html.as_uri(), user_dir=tmp_path / "ud2")
    dom = r.stdout
    for section in ("identity", "inventory", "services", "provenance", "policy", "changes", "integrity"):
        assert f'data-section="{section}"' in dom
    running = {d for s in _status(report_lab)["services"] for d in s["running_digests"]}
    assert len(running) >= 17
    for digest in running:
        assert digest in dom
    attrs = re.findall(r"""(?i)\b(?:src|href|action|srcset|poster|data)\s*=\s*["']([^"']*)""", dom)
    assert all(a.startswith(("#", "data:")) for a in attrs), attrs
    assert _page_requests(netlog) == []
    # The detector works: a page that asks for one loopback image is caught.
    canary = tmp_path / "canary.html"
    canary.write_text('<html><body><img src="http://127.0.0.1:9/canary.png"></body></html>')
    _chromium(f"--log-net-log={tmp_path / 'canary.json'}", "--dump-dom", canary.as_uri(), user_dir=tmp_path / "ud3")
    assert _page_requests(tmp_path / "canary.json") == ["http://127.0.0.1:9/canary.png"]


def test_pdf_text_has_every_digest_and_the_policy_summary(report_lab: ReportLab, first_report: Path) -> None:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    text = subprocess.run(["pdftotext", str(first_report / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = re.sub(r"\s+", "", text)
    for s in _doc(first_report)["services"]["rows"]:
        for digest in [s["digest"], *s["running_digests"]]:
            assert digest in flat, s["name"]
    assert "Policysummary:" in flat


def test_no_secret_of_the_site_file_in_any_report_file(report_lab: ReportLab, first_report: Path) -> None:
    from tests.integration.test_secrets_lab import _secret_values

    secrets = _secret_values(report_lab.site)
    text = subprocess.run(["pdftotext", str(first_report / "report.pdf"), "-"], capture_output=True, text=True,
                          check=False).stdout
    for path in first_report.iterdir():
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), path
    assert not any(s in text for s in secrets)


def test_an_expired_waiver_is_marked(report_lab: ReportLab) -> None:
    waiver = report_lab.dir / "expired-waiver.yaml"
    waiver.write_text(yaml.safe_dump({"waiver": {
        "rule": "TVD-506", "scope": {"node": "lab-mgr-1"}, "justification": "the lab kernel has no ESP",
        "approver": "alice", "issued": "2026-01-01T00:00:00Z", "expires": "2026-02-01T00:00:00Z"}}))
    doc = yaml.safe_load(report_lab.site.read_text())
    doc.setdefault("policies", {})["waivers"] = [str(waiver)]
    site = report_lab.dir / "site-waiver.yaml"
    site.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = report_lab.base / "report-waiver"
    _report(report_lab, out, site=site)
    rows = _doc(out)["policy"]["waivers"]["rows"]
    assert [(w["rule"], w["approver"], w["state"]) for w in rows] == [("TVD-506", "alice", "expired")]
    assert "EXPIRED" in (out / "report.html").read_text()


def test_a_digest_changed_by_hand_shows_as_drift(report_lab: ReportLab) -> None:
    from tvdeploy.config.load import load_site
    from tvdeploy.facts.services import manager_client, observe

    site = load_site(report_lab.site)
    client = manager_client(site)
    try:
        facts = observe(site, client.api, "trueverit", with_tasks=False)
        cloud = facts.services["alerting"]
        v2 = next(r for r in facts.imports if r.release == "lab-v2").images["alerting"]
        assert v2 != cloud.digest
        new_image = cloud.image.rsplit("@", 1)[0] + "@" + v2
        # docker service update --image NEW --no-resolve-image, by hand through the manager's API
        current = client.api.inspect_service(cloud.id)
        template = dict(current["Spec"]["TaskTemplate"])
        template["ContainerSpec"] = {**template["ContainerSpec"], "Image": new_image}
        client.api.update_service(cloud.id, current["Version"]["Index"], task_template=template,
                                  fetch_current_spec=True)
        wait_for(lambda: any(t["Status"]["State"] == "running" and t["Spec"]["ContainerSpec"]["Image"] == new_image
                             for t in client.api.tasks(filters={"service": cloud.id})), timeout=180)
    finally:
        client.close()
    out = report_lab.base / "report-drift"
    summary = _report(report_lab, out)
    assert summary["summary"]["drifted"] == ["alerting"]
    row = next(s for s in _doc(out)["services"]["rows"] if s["name"] == "alerting")
    assert row["drift"] is True and v2 in row["running_digests"] and row["digest"] != v2
    html = (out / "report.html").read_text()
    assert re.search(r'<tr class="drift" data-service="alerting">', html)
    assert "drift on 1: alerting" in html


def _copy_path(lab: ReportLab, node: str) -> Path:
    return lab.dir / "nodes" / node / "log" / "tvdeploy" / "audit" / "lab.log"  # the node's /var/log


def test_local_log_lost_show_and_report_read_the_sites_copy(report_lab: ReportLab) -> None:
    from tvdeploy.audit.recorder import site_log_path
    from tvdeploy.config.load import load_site

    local = site_log_path(load_site(report_lab.site))
    before = local.read_bytes()
    aside = report_lab.base / "audit-aside"
    shutil.copytree(local.parent, aside, dirs_exist_ok=True)
    for f in local.parent.iterdir():  # the laptop is gone: its log and checkpoints
        f.unlink()
    try:
        r = _ok(_tv(report_lab.home, "audit", "show", report_lab.site, "--json"))
        shown = json.loads(r.stdout)
        assert shown["source"].startswith("node lab-mgr-") and "no local audit log" in r.stderr
        assert len(shown["records"]) == before.count(b"\n")
        _ok(_tv(report_lab.home, "audit", "verify", report_lab.site))
        out = report_lab.base / "report-lost"
        _report(report_lab, out)
        integ = _doc(out)["integrity"]
        assert integ["valid"] is True and "site's copy" in integ["source"]
        assert integ["records"] == before.count(b"\n")
        assert not local.exists()  # the report wrote no record, so no second chain was started
        _ok(_tv(report_lab.home, "audit", "report-verify", out, "--key", report_lab.pub))
        # The new operator machine takes the site's log back and goes on with its chain.
        restored = json.loads(_ok(_tv(report_lab.home, "audit", "restore", report_lab.site, "--json")).stdout)
        assert restored["records"] == before.count(b"\n")
        assert local.read_bytes().startswith(before) and local.read_bytes().count(b"\n") == restored["records"] + 1
        _ok(_tv(report_lab.home, "audit", "verify", report_lab.site))
        r = _tv(report_lab.home, "audit", "restore", report_lab.site)
        assert r.returncode == 1 and "a local audit log exists" in r.stderr
    finally:
        if not local.exists():
            shutil.copytree(aside, local.parent, dirs_exist_ok=True)


def test_a_record_removed_from_one_managers_copy_is_reported(report_lab: ReportLab) -> None:
    copy = _copy_path(report_lab, "lab-mgr-2")
    original = copy.read_bytes()
    lines = original.split(b"\n")
    try:
        copy.write_bytes(b"\n".join(lines[:4] + lines[5:]))  # seq 5 removed on lab-mgr-2 only
        r = _tv(report_lab.home, "audit", "verify", report_lab.site)
        assert r.returncode == 1
        first = r.stderr.strip().splitlines()[0]
        assert first.startswith("error: node lab-mgr-2:") and "seq 5" in first
        doc = json.loads(_tv(report_lab.home, "audit", "verify", report_lab.site, "--json").stdout)
        assert {"side": "node lab-mgr-2", "kind": "missing", "seqs": [5]} in \
            [{k: g[k] for k in ("side", "kind", "seqs")} for g in doc["gaps"]]
        out = report_lab.base / "report-gap"
        summary = _report(report_lab, out)
        # The damaged copy is evidence: the report's own record is not appended to it.
        assert "lab-mgr-2" in summary["stderr"] and "not a prefix" in summary["stderr"]
        integ = _doc(out)["integrity"]
        assert integ["site_copies"]["valid"] is False
        assert "node lab-mgr-2: record(s) missing: seq 5" in integ["site_copies"]["problems"]
        assert "node lab-mgr-2: record(s) missing: seq 5" in (out / "report.html").read_text()
        # A damaged line (not a record) is named too.
        copy.write_bytes(original + b"not a record\n")
        r = _tv(report_lab.home, "audit", "verify", report_lab.site)
        assert r.returncode == 1 and "lab-mgr-2" in r.stderr.splitlines()[0]
    finally:
        copy.write_bytes(original)
    # Put right, the next command catches the copy up and every side agrees again.
    _report(report_lab, report_lab.base / "report-healed")
    _ok(_tv(report_lab.home, "audit", "verify", report_lab.site))
