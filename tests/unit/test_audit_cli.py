"""`tvdeploy audit show SITE` and `tvdeploy audit checkpoint SITE` on the example site."""

from __future__ import annotations

import json
from pathlib import Path

from tvdeploy.audit import recorder
from tvdeploy.config.load import load_site

EXAMPLE = Path(__file__).resolve().parents[2] / "templates" / "site.example.yaml"


def _record(n: int) -> Path:
    site = load_site(EXAMPLE)
    for i in range(n):
        recorder.record(site, "vm.create", objects=[{"type": "vm", "name": f"tv-node-{i}"}])
    return recorder.site_log_path(site)


def test_record_goes_to_the_site_state_folder(operator_key, isolated_home: Path) -> None:
    assert _record(1) == isolated_home / "sites" / "plant-a" / "audit" / "audit.log"


def test_show_lists_records(cli, operator_key) -> None:
    _record(3)
    r = cli("audit", "show", EXAMPLE)
    assert r.code == 0, r.stderr
    assert "vm.create" in r.stdout and "vm:tv-node-2" in r.stdout


def test_show_last_json(cli, operator_key) -> None:
    _record(5)
    r = cli("audit", "show", EXAMPLE, "--last", "2", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["site"] == "plant-a"
    assert [rec["seq"] for rec in doc["records"]] == [4, 5]
    assert "sig" not in doc["records"][0]


def test_show_without_records(cli) -> None:
    r = cli("audit", "show", EXAMPLE)
    assert r.code == 0 and "no records yet" in r.stdout


def test_show_warns_about_a_torn_line(cli, operator_key) -> None:
    log = _record(2)
    with log.open("ab") as fh:
        fh.write(b'{"seq":3')
    r = cli("audit", "show", EXAMPLE, "--json")
    assert r.code == 0
    assert len(json.loads(r.stdout)["records"]) == 2
    assert "incomplete" in r.stderr


def test_checkpoint_command(cli, operator_key) -> None:
    log = _record(3)
    r = cli("audit", "checkpoint", EXAMPLE)
    assert r.code == 0, r.stderr
    assert "checkpoint at seq 3" in r.stdout
    cp = json.loads((log.parent / "audit.checkpoints").read_bytes())
    assert cp["seq"] == 3 and cp["site"] == "plant-a"


def test_checkpoint_without_log_is_one_error_line(cli, operator_key) -> None:
    r = cli("audit", "checkpoint", EXAMPLE)
    assert r.code == 1
    assert r.stderr.count("\n") == 1 and "nothing to checkpoint" in r.stderr


def test_checkpoint_then_verify_with_exported_key(cli, operator_key, tmp_path: Path) -> None:
    log = _record(4)
    assert cli("audit", "checkpoint", EXAMPLE).code == 0
    assert cli("keys", "export-public", operator_key, "-o", tmp_path / "op.pub").code == 0
    r = cli("audit", "verify", log, "--key", tmp_path / "op.pub")
    assert r.code == 0 and "4 records, 1 checkpoint;" in r.stdout


def test_missing_site_file(cli, tmp_path: Path) -> None:
    r = cli("audit", "show", tmp_path / "nope.yaml")
    assert r.code == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
