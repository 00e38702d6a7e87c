"""Replay protection and the import journal: pure decisions, data-driven."""

from __future__ import annotations

import pytest

from tvdeploy.errors import RefusedError
from tvdeploy.release import import_state as S

A = "a" * 64
B = "b" * 64


def done(seq: int, digest: str = A, release: str = "r") -> S.Completed:
    return S.Completed(release, seq, digest)


@pytest.mark.parametrize(("seq", "digest", "last", "refused"), [
    (1, A, None, None),                                  # first import
    (2, B, done(1), None),                               # newer
    (5, B, done(1), None),                               # skipping sequences is fine
    (1, B, done(2), "not greater than the last completed import"),  # rollback
    (2, B, done(2), "not greater than the last completed import"),  # same sequence, other content
    (2, A, done(2), "already imported"),                 # the same bundle again
])
def test_replay_decisions(seq, digest, last, refused) -> None:
    if refused is None:
        S.check_replay("r", seq, digest, last)
        return
    with pytest.raises(RefusedError, match=refused):
        S.check_replay("r", seq, digest, last)


def test_latest_takes_the_highest_of_operator_and_site_copies() -> None:
    # A fresh operator machine (no local record) still sees the site's record.
    assert S.latest([None, done(3)]) == done(3)
    assert S.latest([done(4), done(3)]) == done(4)
    assert S.latest([None, None]) is None


def test_journal_round_trip_and_torn_last_line() -> None:
    j = S.Journal(A, "r", 2, "site-registry")
    data = S.encode(j.header()) + S.encode({"blob": "trueverit/cloud@sha256:" + B}) \
        + S.encode({"image": "cloud", "digest": "sha256:" + B}) + S.encode({"loaded": "n1/cloud"}) \
        + b'{"blob": "trueverit/edge@sha'  # a crash in the middle of a write
    parsed = S.parse_journal(data)
    assert parsed is not None and parsed.same_bundle(A, "site-registry")
    assert not parsed.same_bundle(B, "site-registry") and not parsed.same_bundle(A, "node-load")
    assert parsed.blobs == {"trueverit/cloud@sha256:" + B}
    assert parsed.images == {"cloud": "sha256:" + B} and parsed.nodes == {"n1/cloud"}


@pytest.mark.parametrize("data", [
    b"", b"not json\n", b"[]\n", b'{"format": "other"}\n',
    b'{"format": "tvdeploy-import-journal/1", "sequence": 0, "manifest_sha256": "' + A.encode() + b'"}\n',
    b'{"format": "tvdeploy-import-journal/1", "sequence": 1, "manifest_sha256": "short"}\n',
    b"\xff\xfe" * 10,
])
def test_unusable_journal_starts_afresh(data: bytes) -> None:
    assert S.parse_journal(data) is None


@pytest.mark.parametrize(("doc", "message"), [
    ([], "expected a JSON object"),
    ({"sequence": "1", "manifest_sha256": A}, "sequence"),
    ({"sequence": True, "manifest_sha256": A}, "sequence"),
    ({"sequence": 1, "manifest_sha256": 5}, "manifest_sha256"),
])
def test_damaged_completed_record(doc, message) -> None:
    with pytest.raises(ValueError, match=message):
        S.Completed.from_json(doc, "last.json")


def test_delta_with_all_base_blobs_present_passes() -> None:
    assert S.missing_base({"sha256:" + A: ["cloud", "edge"]}, {"sha256:" + A}) is None
    assert S.missing_base({}, set()) is None


def test_delta_missing_base_blobs_lists_them() -> None:
    needed = {f"sha256:{c * 64}": ["edge", "cloud"] for c in "0123456"}
    refusal = S.missing_base(needed, {"sha256:" + "0" * 64})
    assert refusal is not None
    assert refusal.message.startswith("delta bundle: 6 base blob(s) it expects are not on this site: "
                                      f"sha256:{'1' * 64} (used by cloud, edge); ")
    assert refusal.message.endswith("; and 1 more") and len(refusal.details) == 1


def test_one_import_per_site_at_a_time(tmp_path) -> None:
    from tests.unit.tls_helpers import make_site
    from tvdeploy.execute.import_records import import_lock

    site = make_site(tmp_path)
    with import_lock(site):
        with pytest.raises(RefusedError, match="another bundle import of site plant-t is running"), import_lock(site):
            pass
    with import_lock(site):  # released
        pass
