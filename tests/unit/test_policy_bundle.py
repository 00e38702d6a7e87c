"""Image and bundle rules, read offline from real bundles (tests/bundlekit.py builds them):
a setuid file and a private key in a layer are found and named; signatures are judged against a
trust root; `policy check-bundle` renders every format."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests import bundlekit as bk
from tvdeploy.facts.policy_bundle import gather, scan_layer

PEM = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def layer(files: dict[str, tuple[bytes, int]], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Image(bk.FakeImage):
    def __init__(self, tag: str, layers: list[bytes], user: str = "65534", health: bool = True) -> None:
        super().__init__(tag, layers)
        self.user, self.health = user, health

    def config(self) -> bytes:
        cfg = {"User": self.user, "Env": ["PATH=/bin", "API_TOKEN=x"] if self.user == "0" else ["PATH=/bin"],
               "Cmd": ["/bin/busybox"]}
        if self.health:
            cfg["Healthcheck"] = {"Test": ["CMD", "/bin/busybox", "true"]}
        doc = {"architecture": "amd64", "os": "linux", "config": cfg,
               "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(x).hexdigest()}" for x in self.layers]},
               "history": [{"created_by": "ADD file:abc in /"}] + [{"created_by": "COPY . /srv"}] * (len(self.layers) - 1)}
        return json.dumps(doc, sort_keys=True).encode()


@pytest.fixture
def bundles(tmp_path: Path, isolated_home: Path) -> dict[str, Path]:
    clean = Image("trueverit/cloud:1", [bk.BASE_LAYER, layer({"srv/app": (b"app", 0o755)})])
    suid = Image("trueverit/edge:1", [bk.BASE_LAYER, layer({"usr/bin/su": (b"\x7fELF", 0o4755)})])
    keyed = Image("trueverit/auth:1", [bk.BASE_LAYER, layer({"srv/conf/deploy.pem": (PEM, 0o600),
                                                              "root/.aws/credentials": (b"[x]", 0o600)})],
                  user="0", health=False)
    return {"clean": bk.make_bundle(tmp_path / "clean.tar", [clean]),
            "bad": bk.make_bundle(tmp_path / "bad.tar", [clean, suid, keyed])}


def test_layer_scan_gzip_and_plain() -> None:
    for gz in (False, True):
        scan = scan_layer(io.BytesIO(layer({"bin/ping": (b"x", 0o2755), "home/a/.ssh/id_rsa": (b"k", 0o600),
                                            "etc/x.key": (PEM, 0o644), "usr/sbin/sshd": (b"x", 0o755)}, gz)))
        assert scan.setuid == ["/bin/ping (setgid, mode 2755)"]
        assert sorted(scan.secrets) == [("/etc/x.key", "PEM private key"), ("/home/a/.ssh/id_rsa", "SSH private key")]
        assert scan.sshd == ["/usr/sbin/sshd"]


def test_setuid_and_private_key_found_and_named(bundles: dict[str, Path]) -> None:
    from tvdeploy.policy import engine
    from tvdeploy.policy.model import PolicyFacts
    from tvdeploy.policy.packs import select

    bundle, images = gather(bundles["bad"], None, datetime.now(UTC))
    result = engine.run(select(["cis-docker", "trueverit"], None), PolicyFacts(images=images, bundle=bundle),
                        ("image", "bundle"), [], "high")
    fails = {(f.rule, f.object): f for f in result.findings if f.status == "fail"}
    assert "/usr/bin/su (setuid, mode 4755)" in fails[("TVD-203", "edge")].evidence
    ev = fails[("TVD-204", "auth")].evidence
    assert "/srv/conf/deploy.pem (PEM private key)" in ev and "/root/.aws/credentials (AWS credentials)" in ev
    assert ("TVD-201", "auth") in fails and ("TVD-206", "auth") in fails and ("TVD-202", "auth") in fails
    assert ("TVD-203", "cloud") not in fails and ("TVD-204", "cloud") not in fails
    assert fails[("TVD-001", str(bundles["bad"]))].message.startswith("no trust root given")
    assert not result.ok


def test_signatures_against_a_trust_root(bundles: dict[str, Path], tmp_path: Path) -> None:
    k1, _ = bk.make_key("s1")
    k2, _ = bk.make_key("s2")
    root_key, _ = bk.make_key("r1")
    now = datetime.now(UTC)
    trust = bk.make_trust(tmp_path / "root.json", [k1, k2], 2, [root_key], expires=now + timedelta(days=10))
    bk.sign_with(bundles["clean"], k1)
    facts, _ = gather(bundles["clean"], trust, now)
    assert facts.error == "signed by 1 of the 2 distinct trusted keys required"
    bk.sign_with(bundles["clean"], k2)
    facts, _ = gather(bundles["clean"], trust, now)
    assert facts.error == "" and len(facts.signers) == 2 and facts.days_left in (9, 10)


@pytest.mark.parametrize("fmt", ["table", "json", "sarif", "junit"])
def test_check_bundle_cli_formats(cli, bundles: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    args = ["policy", "check-bundle", bundles["bad"], "--format", fmt]
    r = cli(*args, *(["-o", out] if fmt != "table" else []))
    assert r.code == 1 and r.stderr.startswith("error: policy gate:") and "TVD-204" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    if fmt == "table":
        assert "TVD-203" in r.stdout and "/usr/bin/su" in r.stdout
    elif fmt == "json":
        doc = json.loads(out.read_text())
        assert doc["schema"] == 1 and {"rule", "cis", "target", "object", "node", "severity", "status",
                                       "evidence", "message"} <= set(doc["findings"][0])
    elif fmt == "junit":
        root = ET.fromstring(out.read_text())
        assert root.tag == "testsuites" and {s.get("name") for s in root.iter("testsuite")} == {"image", "bundle"}
    else:
        assert json.loads(out.read_text())["version"] == "2.1.0"


def test_check_bundle_clean_passes_at_high(cli, bundles: dict[str, Path]) -> None:
    r = cli("policy", "check-bundle", bundles["clean"], "--fail-on", "critical", "--json")
    doc = json.loads(r.stdout)
    assert r.code == 1  # unsigned, no trust root: TVD-001 is critical
    assert [f["rule"] for f in doc["findings"] if f["status"] == "fail" and f["severity"] == "critical"] == ["TVD-001"]


def test_check_bundle_missing_file(cli, tmp_path: Path) -> None:
    r = cli("policy", "check-bundle", tmp_path / "nope.tar")
    assert r.code == 1 and r.stderr.strip() == f"error: {tmp_path / 'nope.tar'}: bundle not found"


def test_gate_check_bundle_uses_the_site_trust_root(bundles: dict[str, Path], tmp_path: Path) -> None:
    import yaml

    from tests import policykit as pk
    from tvdeploy.config.load import load_site
    from tvdeploy.policy import gate

    k1, _ = bk.make_key("s1")
    root_key, _ = bk.make_key("r1")
    trust = bk.make_trust(tmp_path / "root.json", [k1], 1, [root_key])
    site_path = pk.write_site(tmp_path)
    doc = yaml.safe_load(site_path.read_text())
    doc["trust"] = {"root": "root.json"}
    site_path.write_text(yaml.safe_dump(doc))
    site = load_site(site_path)
    assert Path(site.trust.root) == trust
    refused = gate.check_bundle(site, site_path, bundles["clean"])
    assert [f.rule for f in refused.blocking] == ["TVD-001"] and "TVD-001" in refused.message()
    bk.sign_with(bundles["clean"], k1)
    assert gate.check_bundle(site, site_path, bundles["clean"]).ok
    bad = gate.check_bundle(site, site_path, bundles["bad"])
    assert {f.rule for f in bad.blocking} >= {"TVD-001", "TVD-203", "TVD-204", "TVD-201"}
