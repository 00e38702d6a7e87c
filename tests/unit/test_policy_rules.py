"""The rule registry, the packs (good and bad), the 117-row CIS coverage, and their CLI verbs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.errors import ConfigError, InputFileError
from tvdeploy.policy import packs
from tvdeploy.policy.coverage import counts, coverage
from tvdeploy.policy.registry import all_rules


def test_every_rule_is_complete() -> None:
    rules = all_rules()
    assert len(rules) >= 100
    for rid, r in rules.items():
        assert r.id == rid and r.title and r.remediation, rid
        assert r.target in ("stack", "image", "bundle", "engine", "host", "swarm")


def test_coverage_lists_117_with_at_least_85_automated() -> None:
    table = coverage()
    c = counts(table)
    assert c["total"] == 117 and len({r["cis"] for r in table}) == 117
    assert c["automated"] >= 85, c
    assert c["automated"] + c["manual"] + c["not-applicable"] == 117
    for row in table:
        assert row["status"] in ("automated", "manual", "not-applicable")
        assert row["reason"], row
        assert (row["rule"] is None) == (row["status"] == "manual"), row
    by = {r["cis"]: r for r in table}
    for na in ("2.15", "5.1", "5.14"):  # reported, never passed
        assert by[na]["status"] == "not-applicable"
    assert by["3.18"]["rule"] == "TVD-418" and by["5.32"]["rule"] == "TVD-112"


def test_coverage_and_rules_cli(cli) -> None:
    r = cli("policy", "coverage", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc) == 117 and sum(d["status"] == "automated" for d in doc) >= 85
    assert set(doc[0]) >= {"cis", "title", "rule", "status", "reason"}
    r = cli("policy", "coverage")
    assert r.code == 0 and "117 recommendations" in r.stdout
    r = cli("--json", "policy", "rules")
    rules = json.loads(r.stdout)
    assert {"id", "title", "target", "severity", "cis", "remediation"} <= set(rules[0])


def test_shipped_packs_load() -> None:
    chosen = packs.select(["cis-docker", "trueverit"], None)
    assert "TVD-418" in chosen and "TVD-131" in chosen
    assert chosen["TVD-205"].params == {"max_mb": 300}
    assert chosen["TVD-101"].packs == ("cis-docker", "trueverit")


@pytest.mark.parametrize(("text", "expected"), [
    ("pack: mine\nrules: {TVD-999: {}}\n", "rules.TVD-999: unknown rule id"),
    ("pack: other\nrules: {TVD-101: {}}\n", "pack: must be 'mine'"),
    ("pack: mine\nrules: {TVD-101: {severity: huge}}\n", "rules.TVD-101.severity: must be one of"),
    ("pack: mine\nrules: {TVD-205: {params: {max_gb: 1}}}\n", "rules.TVD-205.params.max_gb: unknown parameter"),
    ("pack: mine\nrules: {TVD-205: {params: {max_mb: big}}}\n", "rules.TVD-205.params.max_mb: expected a int"),
    ("pack: mine\nrulez: {}\n", "rulez: unknown key"),
    ("pack: mine\nrules: [\n", "not valid YAML"),
    ("pack: mine\nrules: {}\n", "rules: expected a mapping of rule ids"),
])
def test_bad_pack_is_one_line_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        packs.select(["mine.yaml"], tmp_path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_missing_pack(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="policy pack not found"):
        packs.select(["no-such-pack"], tmp_path)


def test_later_pack_overrides(tmp_path: Path) -> None:
    (tmp_path / "strict.yaml").write_text("pack: strict\nrules: {TVD-205: {severity: critical, params: {max_mb: 50}}}\n")
    chosen = packs.select(["trueverit", "strict.yaml"], tmp_path)
    assert chosen["TVD-205"].severity == "critical" and chosen["TVD-205"].params == {"max_mb": 50}


def test_policy_check_usage_and_input_errors(cli, tmp_path: Path) -> None:
    from tests import policykit as pk

    site = pk.write_site(tmp_path)
    r = cli("policy", "check", site, "--target", "bogus")
    assert r.code == 64 and "--target bogus: expected one of" in r.stderr
    r = cli("policy", "check", site, "--target", "image")
    assert r.code == 1 and r.stderr.strip() == "error: --target image/bundle: give the bundle to check with --bundle"
    r = cli("policy", "check", site, "--format", "xml")
    assert r.code == 64
    r = cli("policy", "check", tmp_path / "missing.yaml")
    assert r.code == 1 and r.stderr.count("\n") == 1 and "missing.yaml" in r.stderr
