"""The recorder: what every mutating command calls. Real files, real keys, real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tvdeploy.audit import recorder
from tvdeploy.audit.log import GENESIS, TornLogError, checkpoints_path, line_hash
from tvdeploy.audit.verify import verify_log
from tvdeploy.errors import TvdeployError


def _site(name: str = "plant-a", state_dir: Path | None = None) -> SimpleNamespace:
    # Only the two attributes the recorder reads; a full Site is tested in test_audit_cli.
    return SimpleNamespace(site=SimpleNamespace(name=name), state_dir=state_dir)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _public_key():
    from tvdeploy.keys.store import load_public_key, operator_key_name

    return load_public_key(operator_key_name())


def test_record_writes_a_signed_chained_record(operator_key, isolated_home: Path) -> None:
    recorder.record(_site(), "vm.create", objects=[{"type": "vm", "name": "tv-mgr-1"}])
    recorder.record(_site(), "vm.power_on", objects=[{"type": "vm", "name": "tv-mgr-1"}],
                    outcome="failure", error="vCenter refused: no permission")
    path = isolated_home / "sites" / "plant-a" / "audit" / "audit.log"
    first, second = _lines(path)
    assert first["seq"] == 1 and first["prev_hash"] == GENESIS
    assert second["seq"] == 2 and second["prev_hash"] == line_hash(path.read_bytes().splitlines()[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first["site"] == "plant-a" and first["outcome"] == "success" and first["error"] is None
    assert second["outcome"] == "failure" and second["error"] == "vCenter refused: no permission"
    from tvdeploy import __version__
    from tvdeploy.keys.store import key_id

    assert first["version"] == __version__
    assert first["actor"]["key_id"] == key_id(_public_key())
    assert first["actor"]["os_user"]
    assert set(first) == {"seq", "prev_hash", "time", "event", "actor", "version", "site", "objects",
                          "outcome", "error", "sig"}
    assert verify_log(path, _public_key()).valid


def test_files_are_private(operator_key, isolated_home: Path) -> None:
    recorder.record_global("key.generate", objects=[{"type": "key", "name": "x"}])
    path = isolated_home / "audit" / "audit.log"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_global_records_have_site_null(operator_key, isolated_home: Path) -> None:
    recorder.record_global("bundle.sign", objects=[{"type": "blob", "digest": "sha256:" + "a" * 64}])
    (rec,) = _lines(isolated_home / "audit" / "audit.log")
    assert rec["site"] is None and rec["event"] == "bundle.sign"


def test_state_dir_override_is_honoured(operator_key, tmp_path: Path) -> None:
    recorder.record(_site(state_dir=tmp_path / "st"), "tls.apply")
    assert (tmp_path / "st" / "audit" / "audit.log").exists()


def test_without_operator_key_the_error_says_how_to_make_one() -> None:
    with pytest.raises(TvdeployError, match=r"tvdeploy keys generate operator"):
        recorder.record_global("key.generate")


def test_checkpoint_every_50_records(operator_key, isolated_home: Path) -> None:
    for i in range(101):
        recorder.record_global("test.event", objects=[{"type": "n", "name": str(i)}])
    log = isolated_home / "audit" / "audit.log"
    cps = _lines(checkpoints_path(log))
    assert [c["seq"] for c in cps] == [50, 100]
    lines = log.read_bytes().splitlines()
    assert cps[1]["chain_hash"] == line_hash(lines[99])
    result = verify_log(log, _public_key(), checkpoints_path(log))
    assert result.valid and result.records == 101 and result.checkpoints == 2


def test_on_demand_checkpoint(operator_key, isolated_home: Path) -> None:
    for _ in range(3):
        recorder.record_global("test.event")
    log = isolated_home / "audit" / "audit.log"
    head = recorder.write_checkpoint(log, None)
    assert head.seq == 3
    assert _lines(checkpoints_path(log))[0]["seq"] == 3


def test_checkpoint_of_empty_or_missing_log_is_refused(operator_key, tmp_path: Path) -> None:
    with pytest.raises(TvdeployError, match="no audit log yet"):
        recorder.write_checkpoint(tmp_path / "audit.log", None)


@pytest.mark.parametrize("event", ["", "VM.create", "vm create", "vm.create\n", "../x", "vm..x"])
def test_bad_event_names_are_refused(operator_key, event) -> None:
    with pytest.raises(TvdeployError, match="not a valid event name"):
        recorder.record_global(event)


def test_float_in_objects_is_refused_and_nothing_written(operator_key, isolated_home: Path) -> None:
    with pytest.raises(TvdeployError, match="float"):
        recorder.record_global("x.y", objects=[{"type": "vm", "size": 1.5}])  # type: ignore[dict-item]
    log = isolated_home / "audit" / "audit.log"
    assert not log.exists() or log.read_bytes() == b""


# -- secrets never reach a record -------------------------------------------------------------


def test_a_value_held_by_a_secret_is_refused(operator_key, isolated_home: Path) -> None:
    from tvdeploy.config.secrets import Secret

    Secret("hunter2-but-longer-77")
    with pytest.raises(TvdeployError) as exc:
        recorder.record_global("vm.create", objects=[{"type": "vm", "name": "x-hunter2-but-longer-77"}])
    assert "hunter2-but-longer-77" not in str(exc.value)
    assert "objects[0].name" in str(exc.value)
    log = isolated_home / "audit" / "audit.log"
    assert not log.exists() or b"hunter2" not in log.read_bytes()


def test_a_secret_object_is_refused(operator_key) -> None:
    from tvdeploy.config.secrets import Secret

    with pytest.raises(TvdeployError, match="holds a secret"):
        recorder.record_global("vm.create", objects=[{"type": "vm", "name": Secret("zz")}])  # type: ignore[dict-item]
    with pytest.raises(TvdeployError, match="holds a secret"):
        recorder.record_global("vm.create", objects=[{"type": "vm", "name": str(Secret("zz"))}])


def test_a_private_key_is_refused(operator_key) -> None:
    with pytest.raises(TvdeployError, match="holds a secret"):
        recorder.record_global("x.y", objects=[{"type": "k", "pem": "-----BEGIN PRIVATE KEY-----\nAAA"}])


def test_a_secret_in_an_error_message_is_masked(operator_key, isolated_home: Path) -> None:
    from tvdeploy.config.secrets import Secret

    Secret("pa55word-of-vcenter")
    recorder.record_global("vm.create", outcome="failure", error="login failed for pa55word-of-vcenter")
    raw = (isolated_home / "audit" / "audit.log").read_text()
    assert "pa55word" not in raw and "login failed for ***" in raw


# -- crash and concurrency ----------------------------------------------------------------------


def test_torn_last_line_is_detected_not_extended(operator_key, isolated_home: Path) -> None:
    recorder.record_global("a.b")
    log = isolated_home / "audit" / "audit.log"
    with log.open("ab") as fh:
        fh.write(b'{"actor":{"key_id":"ab')  # a crash in the middle of a write
    before = log.read_bytes()
    with pytest.raises(TornLogError, match="incomplete"):
        recorder.record_global("a.c")
    assert log.read_bytes() == before


def test_key_is_loaded_once_per_process(operator_key, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvdeploy.keys import store

    calls = []
    real = store.load_private_key

    def counting(name, passphrase=None):
        calls.append(name)
        return real(name, passphrase)

    monkeypatch.setattr(store, "load_private_key", counting)
    for _ in range(5):
        recorder.record_global("a.b")
    assert len(calls) == 1


def test_encrypted_operator_key_prompts_at_most_once(isolated_home, monkeypatch, tmp_path) -> None:
    from tvdeploy.config.secrets import Secret
    from tvdeploy.keys.store import generate_key

    generate_key("operator", Secret("correct horse battery"))
    (tmp_path / "pp").write_text("correct horse battery\n")
    monkeypatch.setenv("TVDEPLOY_KEY_PASSPHRASE", f"file:{tmp_path / 'pp'}")
    recorder.record_global("a.b")
    (tmp_path / "pp").write_text("now wrong\n")  # a second load would fail
    recorder.record_global("a.c")
    assert verify_log(isolated_home / "audit" / "audit.log", _public_key()).records == 2


WRITER = """
import sys
from tvdeploy.audit.recorder import record_global
for i in range(int(sys.argv[1])):
    record_global("test.concurrent", objects=[{"type": "writer", "name": sys.argv[2] + "-" + str(i)}])
"""


def test_concurrent_writers_keep_one_chain(operator_key, isolated_home: Path) -> None:
    env = dict(os.environ, TVDEPLOY_HOME=str(isolated_home))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, "30", f"w{n}"], env=env) for n in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    log = isolated_home / "audit" / "audit.log"
    result = verify_log(log, _public_key(), checkpoints_path(log))
    assert result.valid, result.first_bad
    assert result.records == 120 and result.checkpoints == 2
    names = {r["objects"][0]["name"] for r in _lines(log)}
    assert len(names) == 120


# -- repair after a crash -----------------------------------------------------------------------


def test_repair_keeps_the_fragment_and_records_itself(operator_key, isolated_home: Path, cli) -> None:
    recorder.record_global("a.b")
    log = isolated_home / "audit" / "audit.log"
    with log.open("ab") as fh:
        fh.write(b'{"actor":{"key_id":"ab')
    r = cli("audit", "repair", log, "--yes")
    assert r.code == 0, r.stderr
    kept = list(log.parent.glob("audit.log.torn-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b'{"actor":{"key_id":"ab'
    recorder.record_global("a.c")  # appending works again
    records = _lines(log)
    assert [r["event"] for r in records] == ["a.b", "audit.repair", "a.c"]
    assert records[1]["objects"][0]["size"] == "22"
    assert verify_log(log, _public_key()).valid


def test_repair_needs_confirmation_without_terminal(operator_key, isolated_home: Path, cli) -> None:
    recorder.record_global("a.b")
    log = isolated_home / "audit" / "audit.log"
    with log.open("ab") as fh:
        fh.write(b"{")
    r = cli("audit", "repair", log)
    assert r.code == 1 and "pass --yes" in r.stderr
    assert log.read_bytes().endswith(b"{")


def test_repair_of_an_intact_log_changes_nothing(operator_key, isolated_home: Path, cli) -> None:
    recorder.record_global("a.b")
    log = isolated_home / "audit" / "audit.log"
    before = log.read_bytes()
    r = cli("audit", "repair", log, "--yes")
    assert r.code == 0 and "nothing to repair" in r.stdout
    assert log.read_bytes() == before


def test_torn_checkpoints_file_blocks_before_the_record_is_written(operator_key, isolated_home) -> None:
    for _ in range(49):
        recorder.record_global("a.b")
    log = isolated_home / "audit" / "audit.log"
    checkpoints_path(log).write_bytes(b'{"seq":')
    before = log.read_bytes()
    with pytest.raises(TornLogError, match="audit repair"):
        recorder.record_global("a.b")  # seq 50 is due a checkpoint
    assert log.read_bytes() == before
    recorder.repair(log)
    recorder.record_global("a.b")
    result = verify_log(log, _public_key(), checkpoints_path(log))
    assert result.valid and result.checkpoints == 1, result.first_bad


def test_long_error_is_shortened(operator_key, isolated_home: Path) -> None:
    recorder.record_global("a.b", outcome="failure", error="x" * 10_000)
    (rec,) = _lines(isolated_home / "audit" / "audit.log")
    assert len(rec["error"]) == recorder.MAX_ERROR and rec["error"].endswith("...")


def test_oversized_record_is_refused(operator_key, isolated_home: Path) -> None:
    objects = [{"type": "blob", "name": "n" * 200} for _ in range(6000)]
    with pytest.raises(TvdeployError, match="record too large"):
        recorder.record_global("a.b", objects=objects)


def test_repair_refuses_a_tail_longer_than_a_record(operator_key, isolated_home: Path) -> None:
    from tvdeploy.audit.log import MAX_LINE

    recorder.record_global("a.b")
    log = isolated_home / "audit" / "audit.log"
    with log.open("ab") as fh:
        fh.write(b"x" * (MAX_LINE + 10))
    size = log.stat().st_size
    with pytest.raises(TvdeployError, match="longer than a record"):
        recorder.repair(log)
    assert log.stat().st_size == size
