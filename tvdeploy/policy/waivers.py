"""Waivers: a signed, expiring exception for one rule on one scope.

    waiver:
      rule: TVD-506
      scope: {node: lab-mgr-1}    # exactly one of node, service, image, object
      justification: the lab kernel has no ESP
      approver: alice             # names an entry of the site file's policies.approvers
      issued: "2026-12-02T00:00:00Z"
      expires: "2027-03-01T00:00:00Z"   # required; at most 180 days after issued and after now
    signature: {key_id: <sha256 of the raw key>, sig: <base64 Ed25519 over DSSE PAE of the waiver>}

``judge`` is the one place that decides whether a waiver counts (the trust door): an unsigned,
wrongly signed, expired or too-long waiver, or one by a key that is not the named approver's,
does not waive. A waived finding is always reported as waived.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tvdeploy.errors import ConfigError
from tvdeploy.policy.model import Finding, WaiverRef

PAYLOAD_TYPE = "application/vnd.tvdeploy.waiver+json"
MAX_DAYS = 180
SCOPES = ("node", "service", "image", "object")
FIELDS = {"rule", "scope", "justification", "approver", "issued", "expires"}


@dataclass(frozen=True)
class Waiver:
    file: str
    rule: str
    scope: str
    value: str
    justification: str
    approver: str
    expires: datetime

    def ref(self) -> WaiverRef:
        from tvdeploy.bundle.trust import format_time

        return WaiverRef(self.file, self.justification, self.approver, format_time(self.expires))

    def matches(self, f: Finding) -> bool:
        if f.rule != self.rule:
            return False
        if self.scope == "node":
            return f.node == self.value
        if self.scope == "service":
            return f.target in ("stack", "engine") and f.object == self.value
        if self.scope == "image":
            return f.target == "image" and self.value in (f.object, f.location)
        return f.object == self.value


def parse(path: Path, data: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The waiver mapping and signature mapping (None: unsigned); structure errors raise."""
    def bad(message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}")
    if not isinstance(data, dict) or set(map(str, data)) - {"waiver", "signature"} or "waiver" not in data:
        raise bad("expected a mapping with waiver and signature")
    w = data["waiver"]
    if not isinstance(w, dict) or set(map(str, w)) != FIELDS:
        raise bad(f"waiver: expected exactly the keys {', '.join(sorted(FIELDS))}")
    for key in FIELDS - {"scope"}:
        if not isinstance(w[key], str) or not w[key].strip():
            raise bad(f"waiver.{key}: expected a non-empty string (quote dates)")
    scope = w["scope"]
    if not isinstance(scope, dict) or len(scope) != 1 or next(iter(scope)) not in SCOPES or \
            not isinstance(next(iter(scope.values())), str):
        raise bad(f"waiver.scope: expected one of {{{', '.join(SCOPES)}: NAME}}")
    sig = data.get("signature")
    if sig is not None and (not isinstance(sig, dict) or set(sig) != {"key_id", "sig"}
                            or not all(isinstance(v, str) for v in sig.values())):
        raise bad("signature: expected {key_id, sig}")
    return w, sig


def signed_bytes(waiver: dict[str, Any]) -> bytes:
    from tvdeploy.audit.canonical import canonical_json
    from tvdeploy.bundle.dsse import pae

    return pae(PAYLOAD_TYPE, canonical_json(waiver))


def judge(path: Path, data: Any, approvers: dict[str, str], now: datetime) -> tuple[Waiver | None, str]:
    """(the waiver, "") when it counts; (None, why not) otherwise. *approvers*: name -> public
    key hex (raw 32 bytes). Structure errors raise ConfigError naming the file."""
    from tvdeploy.bundle.trust import format_time, key_id_of_hex, parse_time, public_key

    w, sig = parse(path, data)
    try:
        issued, expires = parse_time(w["issued"]), parse_time(w["expires"])
    except ValueError as exc:
        raise ConfigError(f"{path}: waiver: {exc}") from None
    if sig is None:
        return None, "unsigned: does not waive"
    key_hex = approvers.get(w["approver"])
    if key_hex is None:
        return None, f"approver {w['approver']!r} is not listed in policies.approvers: does not waive"
    if sig["key_id"] != key_id_of_hex(key_hex):
        return None, f"signed by key {sig['key_id'][:16]}, not approver {w['approver']}'s key: does not waive"
    try:
        raw = base64.b64decode(sig["sig"], validate=True)
        public_key(key_hex).verify(raw, signed_bytes(w))
    except (binascii.Error, ValueError, Exception):  # noqa: BLE001 - InvalidSignature and malformed alike
        return None, "signature does not verify: does not waive"
    if expires <= now:
        return None, f"expired on {format_time(expires)}: does not waive"
    if expires - issued > timedelta(days=MAX_DAYS) or expires - now > timedelta(days=MAX_DAYS):
        return None, f"expiry {format_time(expires)} is more than {MAX_DAYS} days ahead: does not waive"
    if issued > now + timedelta(days=1):
        return None, f"issued in the future ({format_time(issued)}): does not waive"
    (scope, value), = w["scope"].items()
    return Waiver(str(path), w["rule"], scope, value, w["justification"], w["approver"], expires), ""


def sign(data: dict[str, Any], private_key: Any, key_id: str) -> dict[str, Any]:
    """*data* with a signature by *private_key* (the approver's)."""
    w, _sig = parse(Path("<waiver>"), data)
    sig = base64.b64encode(private_key.sign(signed_bytes(w))).decode()
    return {"waiver": w, "signature": {"key_id": key_id, "sig": sig}}


def load(paths: list[Path], approvers: dict[str, str], now: datetime) -> tuple[list[Waiver], list[str]]:
    """Every waiver file: those that count, and one line per file that does not (and why)."""
    from tvdeploy.config.yamlsafe import YamlError, load_yaml_file

    good, problems = [], []
    for path in paths:
        try:
            doc = load_yaml_file(path)
        except YamlError as exc:
            raise ConfigError(f"{path}: " + (f"line {exc.line}: " if exc.line else "") + exc.message) from None
        waiver, why = judge(path, doc.data, approvers, now)
        if waiver is None:
            problems.append(f"{path}: {why}")
        else:
            good.append(waiver)
    return good, problems


def approver_keys(site: Any) -> dict[str, str]:
    """name -> raw public key hex, from the site file's policies.approvers."""
    from tvdeploy.keys.store import raw_public_bytes, read_public_key_file

    return {a.name: raw_public_bytes(read_public_key_file(Path(a.key))).hex() for a in site.policies.approvers}
