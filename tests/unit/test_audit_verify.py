"""`tvdeploy audit verify`: every tampering is caught, each in its own test, naming the first
bad record (line and seq); an intact log passes. Logs are written by the real recorder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.audit import recorder
from tvdeploy.audit.canonical import canonical_json
from tvdeploy.audit.log import checkpoints_path


def _make_log(n: int) -> Path:
    for i in range(n):
        recorder.record_global("test.event", objects=[{"type": "item", "name": f"item-{i}"}])
    return recorder.global_log_path()


@pytest.fixture
def pub(operator_key, tmp_path: Path) -> Path:
    from tvdeploy.keys.store import load_public_key, public_pem

    path = tmp_path / "operator.pub"
    path.write_bytes(public_pem(load_public_key(operator_key)))
    return path


@pytest.fixture
def other_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def _lines(log: Path) -> list[bytes]:
    return log.read_bytes().splitlines()


def _write(log: Path, lines: list[bytes]) -> None:
    log.write_bytes(b"".join(line + b"\n" for line in lines))


def _edit(line: bytes, **changes) -> bytes:
    doc = json.loads(line)
    doc.update(changes)
    return canonical_json(doc)


def _verify(cli, log: Path, pub: Path, *extra):
    return cli("audit", "verify", log, "--key", pub, *extra)


def _assert_bad(r, line: int, seq: int, reason: str) -> None:
    assert r.code == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("error: ")
    assert f"line {line} (seq {seq})" in lines[0], lines[0]
    assert reason in lines[0], lines[0]


# -- intact -------------------------------------------------------------------------------------


def test_intact_log_passes(cli, pub) -> None:
    log = _make_log(5)
    r = _verify(cli, log, pub)
    assert r.code == 0, r.stderr
    assert "intact (5 records" in r.stdout


def test_intact_log_with_checkpoints_passes(cli, pub) -> None:
    log = _make_log(55)
    recorder.write_checkpoint(log, None)
    r = _verify(cli, log, pub, "--checkpoints", checkpoints_path(log))
    assert r.code == 0, r.stderr
    assert "55 records, 2 checkpoints" in r.stdout


def test_intact_json_document(cli, pub) -> None:
    log = _make_log(3)
    r = _verify(cli, log, pub, "--json")
    assert r.code == 0
    doc = json.loads(r.stdout)
    assert doc["valid"] is True and doc["records"] == 3 and doc["first_bad"] is None


def test_empty_log_is_intact(cli, pub, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"")
    assert _verify(cli, log, pub).code == 0


# -- tampering ----------------------------------------------------------------------------------


def test_modified_record(cli, pub) -> None:
    log = _make_log(5)
    lines = _lines(log)
    lines[2] = _edit(lines[2], objects=[{"type": "item", "name": "something-else"}])
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 3, 3, "signature does not verify")


def test_modified_outcome_of_last_record(cli, pub) -> None:
    log = _make_log(3)
    lines = _lines(log)
    lines[2] = _edit(lines[2], outcome="failure")
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 3, 3, "the record was modified")


def test_reformatted_record_is_not_canonical(cli, pub) -> None:
    log = _make_log(3)
    lines = _lines(log)
    lines[1] = json.dumps(json.loads(lines[1]), indent=None).encode()  # same data, spaces added
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 2, 2, "canonical")


def test_removed_record(cli, pub) -> None:
    log = _make_log(5)
    lines = _lines(log)
    del lines[2]
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 3, 3, "seq 4 where seq 3 was expected: record(s) removed")


def test_removed_first_record(cli, pub) -> None:
    log = _make_log(3)
    _write(log, _lines(log)[1:])
    _assert_bad(_verify(cli, log, pub), 1, 1, "removed")


def test_reordered_records(cli, pub) -> None:
    log = _make_log(5)
    lines = _lines(log)
    lines[1], lines[3] = lines[3], lines[1]
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 2, 2, "seq 4 where seq 2 was expected")


def test_repeated_record(cli, pub) -> None:
    log = _make_log(3)
    lines = _lines(log)
    _write(log, lines[:2] + [lines[1]] + lines[2:])
    _assert_bad(_verify(cli, log, pub), 3, 3, "reordered or repeated")


def test_record_signed_by_another_key(cli, pub, other_key) -> None:
    from tvdeploy.audit.signing import sign
    from tvdeploy.keys.store import key_id

    log = _make_log(4)
    lines = _lines(log)
    doc = json.loads(lines[1])
    doc["actor"]["key_id"] = key_id(other_key.public_key())
    lines[1] = canonical_json(sign(other_key, doc))
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 2, 2, "signed by another key")


def test_record_resigned_by_another_key_claiming_ours(cli, pub, other_key) -> None:
    from tvdeploy.audit.signing import sign

    log = _make_log(3)
    lines = _lines(log)
    lines[0] = canonical_json(sign(other_key, _edit_doc(lines[0], outcome="refused")))
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 1, 1, "signature does not verify")


def _edit_doc(line: bytes, **changes) -> dict:
    doc = json.loads(line)
    doc.update(changes)
    return doc


def test_verified_against_the_given_key_not_the_log(cli, other_key, tmp_path: Path, operator_key) -> None:
    from tvdeploy.keys.store import public_pem

    log = _make_log(2)
    wrong = tmp_path / "wrong.pub"
    wrong.write_bytes(public_pem(other_key.public_key()))
    _assert_bad(_verify(cli, log, wrong), 1, 1, "signed by another key")


def test_tail_truncated_below_last_checkpoint(cli, pub) -> None:
    log = _make_log(60)  # automatic checkpoint at seq 50
    _write(log, _lines(log)[:45])
    r = _verify(cli, log, pub)  # audit.checkpoints beside the log is used by default
    _assert_bad(r, 46, 46, "log truncated: it ends at seq 45")
    assert "covers seq 50" in r.stderr


def test_tail_truncated_below_on_demand_checkpoint(cli, pub) -> None:
    log = _make_log(4)
    recorder.write_checkpoint(log, None)
    _write(log, _lines(log)[:3])
    _assert_bad(_verify(cli, log, pub, "--checkpoints", checkpoints_path(log)), 4, 4, "log truncated")


def test_torn_last_line(cli, pub) -> None:
    log = _make_log(3)
    data = log.read_bytes()
    log.write_bytes(data[: len(data) - 40])  # a crash during the last write
    _assert_bad(_verify(cli, log, pub), 3, 3, "incomplete last record")


def test_forged_checkpoint(cli, pub, other_key) -> None:
    from tvdeploy.audit.signing import sign

    log = _make_log(3)
    recorder.write_checkpoint(log, None)
    cps = checkpoints_path(log)
    doc = json.loads(cps.read_bytes())
    doc["seq"] = 2
    cps.write_bytes(canonical_json(sign(other_key, doc)) + b"\n")
    r = _verify(cli, log, pub)
    assert r.code == 1
    assert f"{cps}: line 1 (seq 2): checkpoint: signature does not verify" in r.stderr


def test_modified_checkpoint(cli, pub) -> None:
    log = _make_log(3)
    recorder.write_checkpoint(log, None)
    cps = checkpoints_path(log)
    cps.write_bytes(_edit(cps.read_bytes().strip(), seq=9) + b"\n")  # claim a longer log
    r = _verify(cli, log, pub)
    assert r.code == 1 and "checkpoint: signature does not verify" in r.stderr


def test_checkpoint_of_another_log(cli, pub, isolated_home: Path) -> None:
    log = _make_log(3)
    recorder.write_checkpoint(log, None)
    other = isolated_home / "other" / "audit.log"
    recorder.append_record(other, event="x.y", site=None)
    recorder.append_record(other, event="x.z", site=None)
    recorder.append_record(other, event="x.w", site=None)
    _assert_bad(_verify(cli, other, pub, "--checkpoints", checkpoints_path(log)), 3, 3,
                "does not match the signed checkpoint")


def test_json_document_names_first_bad(cli, pub) -> None:
    log = _make_log(4)
    lines = _lines(log)
    del lines[1]
    _write(log, lines)
    r = _verify(cli, log, pub, "--json")
    assert r.code == 1
    doc = json.loads(r.stdout)  # stdout is still exactly one document
    assert doc["valid"] is False and doc["records"] == 1
    assert doc["first_bad"]["line"] == 2 and doc["first_bad"]["seq"] == 2
    assert "removed" in doc["first_bad"]["reason"]
    assert r.stderr.startswith("error: ")


# -- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json at all", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1,2,3]", "not a JSON object"),
        (b'{"seq":1}', "missing field"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
    ids=["garbage", "binary", "array", "missing-fields", "deep-nesting"],
)
def test_hostile_lines(cli, pub, payload: bytes, reason: str) -> None:
    log = _make_log(2)
    _write(log, [*_lines(log), payload])
    _assert_bad(_verify(cli, log, pub), 3, 3, reason)


def test_unexpected_field(cli, pub) -> None:
    log = _make_log(2)
    lines = _lines(log)
    lines[1] = _edit(lines[1], extra="x")
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 2, 2, "unexpected field(s) extra")


def test_wrong_types(cli, pub) -> None:
    log = _make_log(2)
    lines = _lines(log)
    lines[0] = _edit(lines[0], seq="1")
    _write(log, lines)
    _assert_bad(_verify(cli, log, pub), 1, 1, "seq is not an integer")


def test_overlong_line(cli, pub) -> None:
    log = _make_log(1)
    _write(log, [*_lines(log), b"x" * (2 * 1024 * 1024)])
    r = _verify(cli, log, pub)
    assert r.code == 1 and "line 2 is longer than" in r.stderr


@pytest.mark.parametrize("what", ["log", "key", "checkpoints"])
def test_missing_files_are_one_line_errors(cli, pub, tmp_path: Path, what: str) -> None:
    log = _make_log(1)
    args = {"log": log, "key": pub, "checkpoints": checkpoints_path(log)}
    args[what] = tmp_path / "nope"
    r = cli("audit", "verify", args["log"], "--key", args["key"], "--checkpoints", args["checkpoints"])
    assert r.code == 1
    assert r.stderr.strip() == f"error: {tmp_path / 'nope'}: " + {
        "log": "audit log not found", "key": "public key file not found",
        "checkpoints": "checkpoints file not found"}[what]


def test_log_is_a_directory(cli, pub, tmp_path: Path) -> None:
    r = cli("audit", "verify", tmp_path, "--key", pub)
    assert r.code == 1 and "is a directory" in r.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"garbage\n", "checkpoint: not valid JSON"),
        (b'{"seq":1,"chain_hash"', "checkpoint: incomplete last line"),
        (b'{"chain_hash":"x","key_id":"k","seq":1,"sig":"!!","site":null,"time":"t"}\n',
         "checkpoint: seq or chain_hash malformed"),
        (b'{"seq":1}\n', "checkpoint: missing field"),
    ],
    ids=["garbage", "torn", "malformed", "missing-fields"],
)
def test_hostile_checkpoints_file(cli, pub, content: bytes, reason: str) -> None:
    log = _make_log(2)
    checkpoints_path(log).write_bytes(content)
    r = _verify(cli, log, pub)
    assert r.code == 1 and r.stderr.count("\n") == 1
    assert f"{checkpoints_path(log)}: line 1" in r.stderr and reason in r.stderr


def test_checkpoints_out_of_order(cli, pub) -> None:
    log = _make_log(3)
    recorder.write_checkpoint(log, None)
    recorder.record_global("x.y")
    recorder.write_checkpoint(log, None)
    cps = checkpoints_path(log)
    first, second = cps.read_bytes().splitlines()
    cps.write_bytes(second + b"\n" + first + b"\n")
    r = _verify(cli, log, pub)
    assert r.code == 1 and "line 2 (seq 3): checkpoint: seq 3 does not follow seq 4" in r.stderr
