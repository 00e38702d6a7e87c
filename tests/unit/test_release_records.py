"""Release records kept in swarm configs (pure parsing): round trips, and damaged or hostile
records refused with a message naming the config."""

from __future__ import annotations

import base64
import json

import pytest

from tvdeploy.facts.services import read_records
from tvdeploy.release.records import (
    HistoryRecord,
    ImportRecord,
    RecordError,
    ServiceState,
    canonical,
    deployed,
    history_name,
    import_name,
    parse_json,
)

D1 = "sha256:" + "1" * 64


def config(name: str, kind: str, doc: object) -> dict[str, object]:
    data = doc if isinstance(doc, bytes) else canonical(doc)  # type: ignore[arg-type]
    return {"Spec": {"Name": name, "Labels": {"io.tvdeploy.record": kind}, "Data": base64.b64encode(data).decode()}}


def hist(time: str, outcome: str = "success", release: str = "r1") -> HistoryRecord:
    return HistoryRecord(release, 1, "deploy", outcome, time, "k" * 64, {"cloud": ServiceState(D1, "h")})


def test_round_trips() -> None:
    h = hist("2026-12-02T10:00:00.000001+00:00")
    assert HistoryRecord.from_json(json.loads(canonical(h.to_json())), "x") == h
    i = ImportRecord("r1", 3, "a" * 64, "t", {"cloud": D1}, {"cloud": "trueverit/cloud"}, ("k1",))
    assert ImportRecord.from_json(json.loads(canonical(i.to_json())), "x") == i
    assert i.repository("cloud") == "trueverit/cloud" and i.repository("other") == "trueverit/other"


def test_names_fit_the_swarm_limit_and_sort_by_time() -> None:
    a = history_name(999999, "2026-12-02T10:00:00.123456+00:00", "deadbeef")
    assert len(a) <= 64 and a.startswith("tvdeploy-history-20261202T100000")
    assert len(import_name(1, "f" * 64)) <= 64


def test_history_newest_first_and_deployed_is_the_newest_success() -> None:
    configs = [config("a", "history", hist("2026-12-02T10:00:00+00:00").to_json()),
               config("b", "history", hist("2026-12-02T11:00:00+00:00", "rolled-back", "r2").to_json()),
               config("c", "import", ImportRecord("r2", 2, "b" * 64, "t", {"cloud": D1}).to_json()),
               config("d", "import", ImportRecord("r1", 1, "a" * 64, "t", {"cloud": D1}).to_json()),
               {"Spec": {"Name": "unrelated", "Labels": {}, "Data": ""}}]
    history, imports, damaged = read_records(configs)
    assert [h.outcome for h in history] == ["rolled-back", "success"]
    assert [i.sequence for i in imports] == [2, 1]
    assert not damaged
    current = deployed(history)
    assert current is not None and current.release == "r1"


@pytest.mark.parametrize(("data", "message"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b"{" + b'"a": "' + b"x" * (300 * 1024) + b'"}', "larger than"),
    (canonical({"release": "r", "sequence": 1, "kind": "deploy", "outcome": "success", "time": "t",
                "services": {"cloud": {"digest": "sha256:short"}}}), "not a sha256 digest"),
    (canonical({"release": "r", "sequence": 1, "kind": "delete-everything", "outcome": "success", "time": "t",
                "services": {}}), "unknown"),
    (canonical({"release": "r", "sequence": "1", "kind": "deploy", "outcome": "success", "time": "t",
                "services": {}}), "sequence: expected an integer"),
])
def test_damaged_records_are_named_not_fatal(data: bytes, message: str) -> None:
    history, _imports, damaged = read_records([config("tvdeploy-history-x", "history", data)])
    assert history == [] and len(damaged) == 1
    assert "swarm config tvdeploy-history-x" in damaged[0] and message in damaged[0]


def test_parse_json_refuses_oversized() -> None:
    with pytest.raises(RecordError, match="larger than"):
        parse_json(b" " * (300 * 1024), "x")


def test_import_record_with_a_bad_digest_is_refused() -> None:
    with pytest.raises(RecordError, match="images.cloud: not a sha256 digest"):
        ImportRecord.from_json({"release": "r", "sequence": 1, "manifest_sha256": "a" * 64,
                                "images": {"cloud": "latest"}}, "cfg")
