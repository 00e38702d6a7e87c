"""vm commands fail with one line before any network traffic on bad local input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

SITE = {
    "version": 1,
    "site": {"name": "plant"},
    "vcenter": {
        "host": "127.0.0.1", "port": 9, "user": "u", "password": "env:TV_TEST_VC_PASSWORD",
        "fingerprint": "ab" * 32, "datacenter": "d", "cluster": "c", "datastore": "s", "folder": "f",
        "template": "t", "network": "n",
    },
    "network": {"subnet": "10.20.0.0/24"},
    "nodes": [{"name": "n1", "role": "manager", "address": "10.20.0.11", "zone": "z"}],
    "ssh": {"known_hosts": "known_hosts"},
}


def _site(tmp_path: Path, doc: dict) -> Path:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _one_error(r) -> str:
    assert r.code == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("verb", ["plan", "apply", "destroy", "list"])
def test_missing_site_file(cli, tmp_path: Path, verb: str) -> None:
    assert _one_error(cli("vm", verb, tmp_path / "nope.yaml")) == f"error: {tmp_path / 'nope.yaml'}: file not found"


def test_site_without_vcenter(cli, tmp_path: Path) -> None:
    doc = {k: v for k, v in SITE.items() if k != "vcenter"}
    assert "no vcenter section" in _one_error(cli("vm", "plan", _site(tmp_path, doc)))


def test_unset_password_variable_names_the_key_not_a_value(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TV_TEST_VC_PASSWORD", raising=False)
    line = _one_error(cli("vm", "apply", _site(tmp_path, SITE), "--yes"))
    assert line == "error: vcenter.password: environment variable TV_TEST_VC_PASSWORD is not set"


def test_inline_password_is_refused_by_the_site_model(cli, tmp_path: Path) -> None:
    doc = {**SITE, "vcenter": {**SITE["vcenter"], "password": "hunter2"}}
    line = _one_error_or_more(cli("vm", "plan", _site(tmp_path, doc)))
    assert "vcenter.password" in line and "hunter2" not in line


def _one_error_or_more(r) -> str:
    assert r.code == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    return r.stderr.splitlines()[0]
