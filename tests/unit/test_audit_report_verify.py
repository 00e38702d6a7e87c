"""`tvdeploy audit report-verify DIR --key PUB`: a signed report verifies; one changed byte, a
missing or damaged signature, a wrong key, a signature without its file each fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_audit_report import sample_facts
from tvdeploy.audit import report_model, report_render, report_sign


@pytest.fixture
def report_dir(tmp_path: Path, operator_key: str, cli) -> tuple[Path, Path]:
    from tvdeploy.audit.recorder import signing_key

    key, kid = signing_key()
    doc = report_model.build(sample_facts())
    out = tmp_path / "report"
    out.mkdir()
    for name, data in (("report.json", report_render.render_json(doc)), ("report.html", report_render.render_html(doc))):
        (out / name).write_bytes(data)
        (out / f"{name}.sig").write_bytes(report_sign.signature_doc(name, data, key, kid))
    pub = tmp_path / "operator.pub"
    r = cli("keys", "export-public", operator_key, "-o", pub)
    assert r.code == 0, r.stderr
    return out, pub


def test_a_signed_report_verifies(cli, report_dir: tuple[Path, Path]) -> None:
    out, pub = report_dir
    r = cli("audit", "report-verify", out, "--key", pub, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["valid"] is True and set(doc["files"]) == {"report.html", "report.json"}


def test_one_changed_byte_of_the_html_fails(cli, report_dir: tuple[Path, Path]) -> None:
    out, pub = report_dir
    data = bytearray((out / "report.html").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "report.html").write_bytes(bytes(data))
    r = cli("audit", "report-verify", out, "--key", pub)
    assert r.code == 1
    assert r.stderr.strip().splitlines() == [
        f"error: {out / 'report.html'}: signature does not verify with key "
        f"{r.stderr.split('with key ')[1][:16]}: the file was changed after it was signed"]


def test_a_missing_signature_fails(cli, report_dir: tuple[Path, Path]) -> None:
    out, pub = report_dir
    (out / "report.json.sig").unlink()
    r = cli("audit", "report-verify", out, "--key", pub)
    assert r.code == 1 and r.stderr.strip() == f"error: {out / 'report.json.sig'}: missing: the report has no signature here"


def test_a_damaged_signature_fails(cli, report_dir: tuple[Path, Path]) -> None:
    out, pub = report_dir
    (out / "report.html.sig").write_text("{]")
    r = cli("audit", "report-verify", out, "--key", pub)
    assert r.code == 1 and "report.html.sig: not a report signature" in r.stderr


def test_a_signature_moved_to_another_file_fails(cli, report_dir: tuple[Path, Path]) -> None:
    out, pub = report_dir
    (out / "report.html.sig").write_bytes((out / "report.json.sig").read_bytes())
    r = cli("audit", "report-verify", out, "--key", pub)
    assert r.code == 1 and "signs 'report.json', not report.html" in r.stderr


def test_another_key_fails(cli, report_dir: tuple[Path, Path], tmp_path: Path) -> None:
    out, _pub = report_dir
    assert cli("keys", "generate", "intruder", "--no-passphrase").code == 0
    other = tmp_path / "intruder.pub"
    assert cli("keys", "export-public", "intruder", "-o", other).code == 0
    r = cli("audit", "report-verify", out, "--key", other)
    assert r.code == 1 and "signed by key" in r.stderr and "not by the given key" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_pdf_signature_without_its_pdf_fails(cli, report_dir: tuple[Path, Path]) -> None:
    out, pub = report_dir
    (out / "report.pdf.sig").write_text("{}")
    r = cli("audit", "report-verify", out, "--key", pub)
    assert r.code == 1 and f"{out / 'report.pdf'}: missing" in r.stderr


def test_not_a_folder(cli, report_dir: tuple[Path, Path], tmp_path: Path) -> None:
    _out, pub = report_dir
    r = cli("audit", "report-verify", tmp_path / "nope", "--key", pub)
    assert r.code == 1 and "not a folder" in r.stderr


def test_since_must_be_a_date(cli, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "templates" / "site.example.yaml"
    r = cli("audit", "report", example, "-o", tmp_path / "r", "--since", "yesterday")
    assert r.code == 64 and "--since yesterday: expected a date" in r.stderr


def test_verify_a_log_file_still_needs_a_key(cli, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("")
    r = cli("audit", "verify", log)
    assert r.code == 64 and "--key is required" in r.stderr


def test_report_into_a_file_is_refused_in_one_line(cli, operator_key, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "templates" / "site.example.yaml"
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    r = cli("audit", "report", example, "-o", target)
    assert r.code == 1
    assert r.stderr.strip() == f"error: {target}: exists and is not a folder; give -o a folder for the report"
