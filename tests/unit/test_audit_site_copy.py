"""The rules of the site's copies of the audit log (pure): what to append, when a copy diverged,
and which records each side lacks."""

from __future__ import annotations

import hashlib
import json

import pytest

from tvdeploy.audit import site_copy


def _log(*seqs: int, tag: str = "") -> bytes:
    return b"".join(json.dumps({"seq": s, "event": f"e{s}{tag}"}).encode() + b"\n" for s in seqs)


def _remote(data: bytes | None) -> site_copy.RemoteFile:
    if data is None:
        return site_copy.RemoteFile(0, None)
    return site_copy.RemoteFile(len(data), hashlib.sha256(data).hexdigest())


def test_a_missing_copy_gets_the_whole_log_but_never_a_torn_line() -> None:
    local = _log(1, 2) + b'{"seq":3'
    assert site_copy.to_append(local, _remote(None)) == _log(1, 2)


def test_a_prefix_copy_gets_only_what_it_lacks() -> None:
    assert site_copy.to_append(_log(1, 2, 3), _remote(_log(1))) == _log(1, 2, 3)[len(_log(1)):]
    assert site_copy.to_append(_log(1, 2), _remote(_log(1, 2))) == b""


@pytest.mark.parametrize("remote", [_log(1, 2, 3, 4), _log(1, tag="x"), _log(1, 3)])
def test_a_copy_that_is_not_a_prefix_is_never_appended_to(remote: bytes) -> None:
    with pytest.raises(site_copy.Diverged):
        site_copy.to_append(_log(1, 2, 3), _remote(remote))


def test_probe_output_parses() -> None:
    files = site_copy.parse_probe("12 " + "a" * 64 + "\n0 -\n", 2)
    assert files == [site_copy.RemoteFile(12, "a" * 64), site_copy.RemoteFile(0, None)]
    with pytest.raises(ValueError):
        site_copy.parse_probe("0 -\n", 2)


def test_scripts_quote_paths() -> None:
    assert "'/var/log/tvdeploy/audit/a b.log'" in site_copy.append_script("/var/log/tvdeploy/audit/a b.log", 5)
    assert site_copy.remote_paths("lab") == ("/var/log/tvdeploy/audit/lab.log", "/var/log/tvdeploy/audit/lab.checkpoints")


def test_a_record_removed_from_one_manager_is_named() -> None:
    sides = [site_copy.side_of("local", _log(1, 2, 3, 4, 5)), site_copy.side_of("node m1", _log(1, 2, 3, 4, 5)),
             site_copy.side_of("node m2", _log(1, 2, 4, 5))]
    gaps = site_copy.compare(sides)
    assert [g.message() for g in gaps] == ["node m2: record(s) missing: seq 3"]


def test_records_missing_locally_and_a_changed_record_are_named() -> None:
    sides = [site_copy.side_of("local", _log(1, 2)), site_copy.side_of("node m1", _log(1, 2, 3, 4)),
             site_copy.side_of("node m2", _log(1) + _log(2, tag="x") + _log(3, 4))]
    msgs = [g.message() for g in site_copy.compare(sides)]
    assert "local: record(s) missing: seq 3-4" in msgs
    assert "node m2: record(s) that differ from another side: seq 2" in msgs


def test_without_a_local_log_the_copies_are_compared_with_each_other() -> None:
    sides = [site_copy.side_of("node m1", _log(1, 2, 3)), site_copy.side_of("node m2", _log(1, 2, 3)),
             site_copy.side_of("node m3", _log(2, 3) + b"garbage\n")]
    msgs = [g.message() for g in site_copy.compare(sides)]
    assert msgs == ["node m3: record(s) missing: seq 1", "node m3: 1 line(s) that are not audit records"]


def test_seq_ranges() -> None:
    assert site_copy.seq_ranges([9, 3, 4, 5, 11, 12]) == "3-5, 9, 11-12"
    assert site_copy.seq_ranges([]) == ""
