"""Release records kept in the swarm itself (pure data + parsing; the swarm I/O is in execute/
and facts/).

Two kinds, each a swarm config (replicated by raft to every manager, readable through the Docker
API of any manager with the site's client certificate: a second operator machine sees the same
records, and no local state file is needed):

- an **import** record per release imported on the site (`bundle import`): release, sequence,
  bundle manifest digest, signers, service -> image digest and repository;
- a **history** record per deploy, hot-fix or rollback, and per failed attempt: kind, outcome,
  time, operator key id, the release, and per service the digest and the spec hash tvdeploy
  read back after it converged (drift = the live spec no longer hashes to it).

Config names carry the sequence and time so they sort, and the content is canonical JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

LABEL_KIND = "io.tvdeploy.record"
IMPORT_KIND = "import"
HISTORY_KIND = "history"
MAX_RECORD = 256 * 1024
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
KINDS = ("deploy", "hotfix", "rollback")
OUTCOMES = ("success", "failed", "rolled-back")


class RecordError(ValueError):
    """A damaged or foreign record; the message names it."""


def _str(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise RecordError(f"{where}: {key}: expected a string")
    return value


def _int(doc: dict[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"{where}: {key}: expected an integer")
    return value


def _digests(doc: Any, where: str) -> dict[str, str]:
    if not isinstance(doc, dict):
        raise RecordError(f"{where}: expected {{service: digest}}")
    for svc, digest in doc.items():
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise RecordError(f"{where}.{svc}: not a sha256 digest")
    return {str(k): v for k, v in doc.items()}


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def parse_json(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > MAX_RECORD:
        raise RecordError(f"{where}: record larger than {MAX_RECORD} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{where}: expected a JSON object")
    return doc


@dataclass(frozen=True)
class ImportRecord:
    release: str
    sequence: int
    manifest_sha256: str
    time: str
    images: dict[str, str]  # service -> sha256:<manifest digest>
    repositories: dict[str, str] = field(default_factory=dict)  # service -> repository (trueverit/cloud)
    signers: tuple[str, ...] = ()
    mode: str = "site-registry"

    def repository(self, service: str) -> str:
        return self.repositories.get(service) or f"trueverit/{service}"

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sequence": self.sequence, "manifest_sha256": self.manifest_sha256,
                "time": self.time, "images": dict(self.images), "repositories": dict(self.repositories),
                "signers": list(self.signers), "mode": self.mode}

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str) -> ImportRecord:
        repos = doc.get("repositories") or {}
        signers = doc.get("signers") or []
        if not isinstance(repos, dict) or not all(isinstance(v, str) for v in repos.values()):
            raise RecordError(f"{where}: repositories: expected {{service: repository}}")
        if not isinstance(signers, list) or not all(isinstance(s, str) for s in signers):
            raise RecordError(f"{where}: signers: expected a list of key ids")
        return cls(_str(doc, "release", where), _int(doc, "sequence", where), _str(doc, "manifest_sha256", where),
                   str(doc.get("time", "")), _digests(doc.get("images"), f"{where}: images"),
                   {str(k): v for k, v in repos.items()}, tuple(signers), str(doc.get("mode", "site-registry")))


@dataclass(frozen=True)
class ServiceState:
    digest: str
    spec_sha256: str = ""  # hash of the live spec read back after convergence ("" = unknown)

    def to_json(self) -> dict[str, str]:
        return {"digest": self.digest, "spec_sha256": self.spec_sha256}


@dataclass(frozen=True)
class HistoryRecord:
    release: str
    sequence: int
    kind: str  # deploy | hotfix | rollback
    outcome: str  # success | failed | rolled-back
    time: str  # UTC, ISO 8601
    operator: str  # operator key id
    services: dict[str, ServiceState]  # the effective service -> state after this operation
    manifest_sha256: str = ""
    signers: tuple[str, ...] = ()
    error: str = ""
    changed: tuple[str, ...] = ()
    hotfix_service: str = ""
    hotfix_release: str = ""  # the release a hot-fix took its digest from

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sequence": self.sequence, "kind": self.kind, "outcome": self.outcome,
                "time": self.time, "operator": self.operator, "manifest_sha256": self.manifest_sha256,
                "signers": list(self.signers), "error": self.error, "changed": list(self.changed),
                "hotfix_service": self.hotfix_service, "hotfix_release": self.hotfix_release,
                "services": {k: v.to_json() for k, v in sorted(self.services.items())}}

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str) -> HistoryRecord:
        kind, outcome = _str(doc, "kind", where), _str(doc, "outcome", where)
        if kind not in KINDS or outcome not in OUTCOMES:
            raise RecordError(f"{where}: kind/outcome: unknown ({kind}/{outcome})")
        raw = doc.get("services")
        if not isinstance(raw, dict):
            raise RecordError(f"{where}: services: expected a mapping")
        services = {}
        for name, st in raw.items():
            if not isinstance(st, dict):
                raise RecordError(f"{where}: services.{name}: expected a mapping")
            digest = _digests({name: st.get("digest")}, f"{where}: services")[name]
            services[str(name)] = ServiceState(digest, str(st.get("spec_sha256", "")))
        return cls(_str(doc, "release", where), _int(doc, "sequence", where), kind, outcome,
                   _str(doc, "time", where), str(doc.get("operator", "")), services,
                   str(doc.get("manifest_sha256", "")), tuple(str(s) for s in doc.get("signers") or []),
                   str(doc.get("error", "")), tuple(str(s) for s in doc.get("changed") or []),
                   str(doc.get("hotfix_service", "")), str(doc.get("hotfix_release", "")))


def history_name(sequence: int, time: str, nonce: str) -> str:
    """A config name that sorts by time: tvdeploy-history-20261202T101500Z-000007-1a2b (<= 64)."""
    compact = re.sub(r"[^0-9TZ]", "", time.replace("+00:00", "Z"))[:16]
    return f"tvdeploy-{HISTORY_KIND}-{compact}-{sequence:06d}-{nonce[:8]}"


def import_name(sequence: int, manifest_sha256: str) -> str:
    """One name per imported bundle: recording the same import twice is a no-op."""
    return f"tvdeploy-{IMPORT_KIND}-{sequence:06d}-{manifest_sha256[:16]}"


def deployed(history: list[HistoryRecord]) -> HistoryRecord | None:
    """The newest successful operation: what the site runs (history is newest first)."""
    return next((h for h in history if h.succeeded), None)
