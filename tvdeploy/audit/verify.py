"""Verify an audit log against a given public key (never a key found in the log itself).

Every record must be canonical JSON with exactly the record fields, carry the next seq, the hash
of the line before it, and a valid signature by the given key; every checkpoint must be signed
by that key and match the record it names; a log that ends before its last checkpoint was cut.
The first failure is reported with its file, line and seq. Streams the log: memory stays flat.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.audit import log as audit_log
from tvdeploy.audit.canonical import is_canonical
from tvdeploy.audit.signing import verify as verify_sig

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

RECORD_FIELDS = frozenset(
    {"seq", "prev_hash", "time", "event", "actor", "version", "site", "objects", "outcome", "error", "sig"}
)
CHECKPOINT_FIELDS = frozenset({"seq", "chain_hash", "time", "key_id", "site", "sig"})
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MAX_CHECKPOINTS = 1_000_000


@dataclass(frozen=True)
class BadEntry:
    file: str
    line: int
    seq: int | None
    reason: str


@dataclass(frozen=True)
class Checkpoint:
    line: int
    seq: int
    chain_hash: str
    site: str | None


@dataclass(frozen=True)
class VerifyResult:
    log: str
    key_id: str
    records: int  # intact records read before the first bad one
    checkpoints: int
    first_bad: BadEntry | None

    @property
    def valid(self) -> bool:
        return self.first_bad is None

    def document(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "log": self.log,
            "key_id": self.key_id,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "first_bad": asdict(self.first_bad) if self.first_bad else None,
        }


class _Bad(Exception):
    def __init__(self, entry: BadEntry) -> None:
        super().__init__(entry.reason)
        self.entry = entry


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(line: bytes, fields: frozenset[str]) -> tuple[dict[str, Any] | None, str]:
    """The JSON object on *line* with exactly *fields*, or None and the reason."""
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return None, "not valid JSON"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    missing = sorted(fields - doc.keys())
    extra = sorted(doc.keys() - fields)
    if missing:
        return None, f"missing field(s) {', '.join(missing)}"
    if extra:
        return None, f"unexpected field(s) {', '.join(extra)}"
    if not is_canonical(line):
        return None, "not in canonical JSON form (the line was edited)"
    return doc, ""


def _record_shape(doc: dict[str, Any]) -> str:
    """Why the record's fields have the wrong types, or ''."""
    actor = doc["actor"]
    checks = [
        (_is_int(doc["seq"]), "seq is not an integer"),
        (isinstance(doc["prev_hash"], str) and HEX64.fullmatch(doc["prev_hash"]), "prev_hash is not a sha256"),
        (isinstance(doc["time"], str) and TIME.fullmatch(doc["time"]), "time is not a UTC time in ms"),
        (isinstance(doc["event"], str), "event is not a string"),
        (isinstance(actor, dict) and isinstance(actor.get("key_id"), str)
         and isinstance(actor.get("os_user"), str), "actor is not {os_user, key_id}"),
        (isinstance(doc["version"], str), "version is not a string"),
        (doc["site"] is None or isinstance(doc["site"], str), "site is not a string or null"),
        (isinstance(doc["objects"], list), "objects is not a list"),
        (isinstance(doc["outcome"], str), "outcome is not a string"),
        (doc["error"] is None or isinstance(doc["error"], str), "error is not a string or null"),
    ]
    for ok, reason in checks:
        if not ok:
            return reason
    return ""


def read_checkpoints(path: Path, public_key: Ed25519PublicKey) -> list[Checkpoint]:
    """The checkpoints in *path*, each signed by *public_key*, seqs strictly increasing."""
    out: list[Checkpoint] = []
    for number, line, complete in audit_log.read_lines(path, what="checkpoints file"):
        def bad(reason: str, seq: int | None = None, n: int = number) -> _Bad:
            return _Bad(BadEntry(str(path), n, seq, f"checkpoint: {reason}"))

        if not complete:
            raise bad("incomplete last line (a write was interrupted)")
        doc, why = _parse(line, CHECKPOINT_FIELDS)
        if doc is None:
            raise bad(why)
        seq = doc["seq"] if _is_int(doc["seq"]) else None
        if seq is None or seq < 1 or not (isinstance(doc["chain_hash"], str) and HEX64.fullmatch(doc["chain_hash"])):
            raise bad("seq or chain_hash malformed")
        if not verify_sig(public_key, doc):
            raise bad("signature does not verify with the given key (forged or modified)", seq)
        if out and seq <= out[-1].seq:
            raise bad(f"seq {seq} does not follow seq {out[-1].seq}", seq)
        if len(out) >= MAX_CHECKPOINTS:
            raise bad("too many checkpoints", seq)
        out.append(Checkpoint(number, seq, doc["chain_hash"], doc["site"]))
    return out


def _check_record(doc: dict[str, Any], *, expected_seq: int, prev_hash: str,
                  public_key: Ed25519PublicKey, key_id: str) -> str:
    """Why this record breaks the chain, or ''."""
    shape = _record_shape(doc)
    if shape:
        return shape
    if not verify_sig(public_key, doc):
        named = doc["actor"]["key_id"]
        if named != key_id:
            return f"signed by another key (record names key id {named[:16]}..., expected {key_id[:16]}...)"
        return "signature does not verify: the record was modified"
    if doc["actor"]["key_id"] != key_id:
        return "actor.key_id does not name the signing key"
    seq = doc["seq"]
    if seq != expected_seq:
        if seq > expected_seq:
            return f"seq {seq} where seq {expected_seq} was expected: record(s) removed"
        return f"seq {seq} where seq {expected_seq} was expected: records reordered or repeated"
    if doc["prev_hash"] != prev_hash:
        return "prev_hash does not match the line before it: a record was removed, reordered or modified"
    return ""


def verify_log(log_path: Path, public_key: Ed25519PublicKey,
               checkpoints_path: Path | None = None) -> VerifyResult:
    """Verify the log at *log_path* (and its checkpoints file, when given) against *public_key*."""
    from tvdeploy.keys.store import key_id as key_id_of

    kid = key_id_of(public_key)
    checkpoints: list[Checkpoint] = []
    records = 0

    def result(bad: BadEntry | None) -> VerifyResult:
        return VerifyResult(str(log_path), kid, records, len(checkpoints), bad)

    try:
        if checkpoints_path is not None:
            checkpoints = read_checkpoints(checkpoints_path, public_key)
        by_seq = {cp.seq: cp for cp in checkpoints}
        prev_hash, number = audit_log.GENESIS, 0
        for number, line, complete in audit_log.read_lines(log_path):
            expected = records + 1

            def bad(reason: str, n: int = number, seq: int = expected) -> _Bad:
                return _Bad(BadEntry(str(log_path), n, seq, reason))

            if not complete:
                raise bad("incomplete last record (a write was interrupted: torn line)")
            doc, why = _parse(line, RECORD_FIELDS)
            if doc is None:
                raise bad(why)
            why = _check_record(doc, expected_seq=expected, prev_hash=prev_hash,
                                public_key=public_key, key_id=kid)
            if why:
                raise bad(why)
            prev_hash = audit_log.line_hash(line)
            cp = by_seq.get(expected)
            if cp is not None and (cp.chain_hash != prev_hash or cp.site != doc["site"]):
                raise bad(f"does not match the signed checkpoint for seq {cp.seq} "
                          f"({checkpoints_path} line {cp.line}): the log was rewritten")
            records += 1
        if checkpoints and checkpoints[-1].seq > records:
            last = checkpoints[-1]
            raise _Bad(BadEntry(
                str(log_path), number + 1, records + 1,
                f"log truncated: it ends at seq {records} but the signed checkpoint "
                f"({checkpoints_path} line {last.line}) covers seq {last.seq}",
            ))
    except _Bad as exc:
        return result(exc.entry)
    return result(None)
