"""Waivers with a fixed clock: a signed waiver silences its finding (reported as waived in every
format) until its expiry; expired, unsigned, wrongly signed or too-long waivers do not waive."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests import policykit as pk
from tvdeploy.config.load import load_site
from tvdeploy.errors import ConfigError
from tvdeploy.policy import gate, junit, sarif


def _stack_without_memory_limit() -> dict:
    doc = pk.stack("stack_good")
    del doc["services"]["cloud"]["deploy"]["resources"]["limits"]["memory"]
    return doc


def _check(tmp_path: Path, waiver_doc: dict | None, key, approvers, now=pk.NOW):
    waivers = [pk.write_waiver(tmp_path / "w.yaml", waiver_doc, key)] if waiver_doc is not None else []
    site_path = pk.write_site(tmp_path, waivers=waivers, approvers=approvers)
    return gate.check_stack(load_site(site_path), site_path, _stack_without_memory_limit(), now)


def test_without_waiver_the_gate_refuses(tmp_path: Path) -> None:
    result = _check(tmp_path, None, None, [])
    assert [f.rule for f in result.blocking] == ["TVD-105"]


def test_signed_waiver_waives_until_expiry_in_every_format(tmp_path: Path) -> None:
    key, entry = pk.approver(tmp_path)
    result = _check(tmp_path, pk.waiver_doc("TVD-105", {"service": "cloud"}), key, [entry])
    assert result.ok and not result.waiver_problems, result.waiver_problems
    f = next(f for f in result.findings if f.rule == "TVD-105" and f.object == "cloud")
    assert f.status == "waived" and f.waiver is not None and f.waiver.expires == "2027-01-15T00:00:00Z"
    # JSON
    doc = result.to_dict()
    j = next(x for x in doc["findings"] if x["rule"] == "TVD-105" and x["object"] == "cloud")
    assert j["status"] == "waived" and j["waiver"]["approver"] == "alice" and doc["summary"]["waived"] == 1
    # SARIF: a suppression with the justification
    s = sarif.render(result, "site.yaml", "0")
    res = next(r for r in s["runs"][0]["results"] if r["ruleId"] == "TVD-105")
    assert res["suppressions"][0]["kind"] == "external" and "CHG-42" in res["suppressions"][0]["justification"]
    # JUnit: skipped with the reason
    root = ET.fromstring(junit.render(result))
    case = next(c for c in root.iter("testcase") if c.get("classname", "").startswith("TVD-105") and
                c.get("name") == "cloud")
    skipped = case.find("skipped")
    assert skipped is not None and "waived until 2027-01-15" in skipped.get("message", "")
    # One day after expiry it no longer waives.
    later = _check(tmp_path, pk.waiver_doc("TVD-105", {"service": "cloud"}), key, [entry],
                   now=pk.NOW + timedelta(days=45))
    assert [f.rule for f in later.blocking] == ["TVD-105"]
    assert "expired on 2027-01-15T00:00:00Z: does not waive" in later.waiver_problems[0]


@pytest.mark.parametrize("case", ["unsigned", "wrong-key", "unlisted-approver", "tampered", "too-long",
                                  "other-scope"])
def test_waivers_that_do_not_waive(tmp_path: Path, case: str) -> None:
    key, entry = pk.approver(tmp_path)
    other, _ = pk.approver(tmp_path, "mallory")
    doc = pk.waiver_doc("TVD-105", {"service": "cloud"})
    sign_with, approvers = key, [entry]
    if case == "unsigned":
        sign_with = None
    elif case == "wrong-key":
        sign_with = other
    elif case == "unlisted-approver":
        approvers = []
    elif case == "too-long":
        doc = pk.waiver_doc("TVD-105", {"service": "cloud"}, expires="2027-07-01T00:00:00Z")
    elif case == "other-scope":
        doc = pk.waiver_doc("TVD-105", {"service": "edge"})
    path = pk.write_waiver(tmp_path / "w.yaml", doc, sign_with)
    if case == "tampered":
        path.write_text(path.read_text().replace("service: cloud", "service: cloud\n    ").replace(
            "CHG-42", "CHG-43"))
    site_path = pk.write_site(tmp_path, waivers=[path], approvers=approvers)
    result = gate.check_stack(load_site(site_path), site_path, _stack_without_memory_limit(), pk.NOW)
    assert [f.rule for f in result.blocking] == ["TVD-105"], case
    expected = {"unsigned": "unsigned", "wrong-key": "not approver alice's key",
                "unlisted-approver": "not listed in policies.approvers", "tampered": "does not verify",
                "too-long": "more than 180 days ahead", "other-scope": None}[case]
    if expected is None:
        assert not result.waiver_problems
    else:
        assert len(result.waiver_problems) == 1 and expected in result.waiver_problems[0]
        assert result.waiver_problems[0].startswith(str(path))


@pytest.mark.parametrize(("text", "expected"), [
    ("waiver: [1]\n", "waiver: expected exactly the keys"),
    ("nope: 1\n", "expected a mapping with waiver and signature"),
    ("waiver: {rule: TVD-105, scope: {rack: a}, justification: x, approver: a, issued: '2026-12-01',"
     " expires: '2027-01-01'}\n", "waiver.scope: expected one of"),
    ("waiver: {rule: TVD-105, scope: {node: a}, justification: x, approver: a, issued: 2026-12-01,"
     " expires: '2027-01-01'}\n", "waiver.issued: expected a non-empty string (quote dates)"),
    ("waiver: {rule: TVD-105, scope: {node: a}, justification: x, approver: a, issued: '2026-12-01',"
     " expires: 'soon'}\n", "is not a date"),
    ("waiver: {\n", "not valid YAML"),
])
def test_malformed_waiver_is_one_error_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad-waiver.yaml"
    path.write_text(text)
    site_path = pk.write_site(tmp_path, waivers=[path])
    with pytest.raises(ConfigError) as err:
        gate.check_stack(load_site(site_path), site_path, pk.stack("stack_good"), pk.NOW)
    assert str(err.value).startswith(str(path)) and expected in str(err.value), str(err.value)


def test_sign_waiver_cli_then_check(cli, operator_key: str, tmp_path: Path) -> None:
    import yaml

    from tests import bundlekit as bk
    from tvdeploy.keys.store import public_pem

    key, _ = bk.make_key("alice")
    (tmp_path / "alice.pub").write_bytes(public_pem(key.public_key()))
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(pk.waiver_doc("TVD-105", {"service": "cloud"})))
    r = cli("policy", "sign-waiver", path, "--key", "alice")
    assert r.code == 0, r.stderr
    signed = yaml.safe_load(path.read_text())
    assert set(signed["signature"]) == {"key_id", "sig"}
    site_path = pk.write_site(tmp_path, waivers=[path], approvers=[{"name": "alice", "key": "alice.pub"}])
    result = gate.check_stack(load_site(site_path), site_path, _stack_without_memory_limit(), pk.NOW)
    assert result.ok and result.summary()["waived"] == 1


def test_example_waiver_parses_and_is_unsigned(tmp_path: Path) -> None:
    from tvdeploy.config.yamlsafe import load_yaml_file
    from tvdeploy.policy import waivers
    from tvdeploy.resources import policies_dir

    path = policies_dir() / "examples" / "waiver.example.yaml"
    waiver, why = waivers.judge(path, load_yaml_file(path).data, {}, pk.NOW)
    assert waiver is None and why == "unsigned: does not waive"
