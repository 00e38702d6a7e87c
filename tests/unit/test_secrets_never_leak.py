"""A planted secret never appears in site show/validate output, errors, or audit records."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_site_validation import GOOD

PLANTED = "S3cr3t-planted-VALUE-8d41"


def _site(tmp_path: Path) -> Path:
    (tmp_path / "vc-password").write_text(PLANTED + "\n")
    f = tmp_path / "site.yaml"
    f.write_text(
        GOOD.replace("password: env:VC_PW", "password: file:vc-password")
        + "pki: {ca_passphrase: env:PLANTED_CA_PASS}\n"
    )
    return f


def test_secret_not_in_show_or_validate(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PLANTED_CA_PASS", PLANTED)
    f = _site(tmp_path)
    for argv in (("site", "show", f), ("site", "show", f, "--json"), ("site", "validate", f, "-v")):
        r = cli(*argv)
        assert r.code == 0, r.stderr
        assert PLANTED not in r.stdout + r.stderr


def test_inline_secret_error_does_not_echo_it(cli, tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(GOOD.replace("password: env:VC_PW", f"password: {PLANTED}"))
    for extra in ((), ("-v",), ("--json",)):
        r = cli("site", "validate", f, *extra)
        assert r.code == 1
        assert PLANTED not in r.stdout + r.stderr


def test_resolved_secret_repr_is_masked(tmp_path: Path) -> None:
    from tvdeploy.config.secrets import resolve_secret

    (tmp_path / "s").write_text(PLANTED)
    secret = resolve_secret(f"file:{tmp_path / 's'}", "vcenter.password")
    assert secret.reveal() == PLANTED
    assert PLANTED not in repr(secret) + str(secret) + f"{secret}" + repr([secret])


def test_missing_secret_error_names_key_not_value(cli, tmp_path: Path) -> None:
    import pytest

    from tvdeploy.config.secrets import resolve_secret
    from tvdeploy.errors import SecretError

    with pytest.raises(SecretError) as info:
        resolve_secret("env:TVDEPLOY_TEST_UNSET_VAR", "pki.ca_passphrase")
    assert str(info.value) == "pki.ca_passphrase: environment variable TVDEPLOY_TEST_UNSET_VAR is not set"


def test_secret_not_in_any_audit_report_file(cli, operator_key, tmp_path: Path, monkeypatch) -> None:
    """`audit report` of a site whose secrets are planted: no file of the report (nor its output)
    holds one, even where a person copied one into a waiver's justification. Nothing is reachable
    (vCenter on a closed loopback port, no pinned host key, no client certificate): each section
    says so instead."""
    import json

    import yaml

    monkeypatch.setenv("PLANTED_CA_PASS", PLANTED)
    f = _site(tmp_path)
    waiver = tmp_path / "waiver.yaml"
    waiver.write_text(yaml.safe_dump({"waiver": {
        "rule": "TVD-506", "scope": {"node": "mgr-1"}, "justification": f"asked by admin ({PLANTED})",
        "approver": "alice", "issued": "2026-01-01T00:00:00Z", "expires": "2026-02-01T00:00:00Z"}}))
    text = f.read_text().replace("host: vc.example", "host: 127.0.0.1\n  port: 9")
    f.write_text(text + f"policies: {{waivers: [{waiver}]}}\n")
    out = tmp_path / "report"
    r = cli("audit", "report", f, "-o", out, "--json")
    assert r.code == 0, r.stderr
    assert PLANTED not in r.stdout + r.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["report.html", "report.html.sig", "report.json", "report.json.sig"]
    for p in out.iterdir():
        assert PLANTED.encode() not in p.read_bytes(), p
    doc = json.loads((out / "report.json").read_text())
    assert doc["policy"]["waivers"]["rows"][0]["justification"] == "asked by admin (***)"
    assert doc["inventory"]["vms"]["error"] and doc["services"]["error"]
