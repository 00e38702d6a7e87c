"""The trust root: which keys may sign bundles, how many must, until when.

A trust root file holds the chain of all its versions; each version is

    {"signed": {"type": "tvdeploy-trust-root", "version": N, "expires": "...Z",
                "threshold": M, "signers": {KEYID: {"public_key": HEX, "roles": ["bundle"],
                "expires": optional}}, "root_keys": {KEYID: {"public_key": HEX}},
                "root_threshold": K, "revoked": [KEYID, ...]},
     "signatures": [{"keyid": KEYID, "sig": BASE64}, ...]}

Signatures are Ed25519 over the DSSE PAE of the canonical JSON of ``signed``. Version 1 must be
signed by ``root_threshold`` of its own root keys; version N+1 by a threshold of version N's root
keys AND of its own, so whoever holds only new keys cannot rewrite who is trusted. Only the
newest version's expiry matters: older versions are history.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.audit.canonical import canonical_json
from tvdeploy.bundle import dsse
from tvdeploy.bundle.jsonsafe import JsonError, loads
from tvdeploy.errors import InputFileError, TvdeployError, VerificationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PAYLOAD_TYPE = "application/vnd.tvdeploy.trust-root+json"
DOC_TYPE = "tvdeploy-trust-root"
MAX_FILE = 1024 * 1024
MAX_VERSIONS = 1000
HEX64 = re.compile(r"[0-9a-f]{64}")
BUNDLE_ROLE = "bundle"


class TrustError(VerificationError):
    pass


@dataclass(frozen=True)
class Signer:
    key_id: str
    public_hex: str
    roles: tuple[str, ...]
    expires: datetime | None


@dataclass(frozen=True)
class Version:
    version: int
    expires: datetime
    threshold: int
    signers: dict[str, Signer]
    root_keys: dict[str, str]  # key id -> public key hex
    root_threshold: int
    revoked: tuple[str, ...]
    signed: dict[str, Any]
    signatures: tuple[tuple[str, bytes], ...]


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """An expiry: ``YYYY-MM-DD`` (midnight UTC) or ISO 8601 with a time zone."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (add Z for UTC)")
    return parsed.astimezone(UTC)


def public_key(hex_key: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))


def key_id_of_hex(hex_key: str) -> str:
    return hashlib.sha256(bytes.fromhex(hex_key)).hexdigest()


def signed_bytes(signed: dict[str, Any]) -> bytes:
    return dsse.pae(PAYLOAD_TYPE, canonical_json(signed))


# ---- parsing ----------------------------------------------------------------------------------

def _need(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise TrustError(f"{where}: {message}")


def _int(value: Any, where: str, minimum: int = 1) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= minimum, where,
          f"expected an integer >= {minimum}")
    return int(value)


def _key_hex(value: Any, key_id: str, where: str) -> str:
    _need(isinstance(value, str) and HEX64.fullmatch(value) is not None, where,
          "public_key: expected 64 hex digits (raw Ed25519 key)")
    _need(key_id_of_hex(value) == key_id, where, "key id is not the sha256 of its public key")
    return str(value)


def parse_version(doc: Any, where: str) -> Version:
    _need(isinstance(doc, dict) and set(doc) == {"signed", "signatures"}, where, "expected {signed, signatures}")
    signed, sigs = doc["signed"], doc["signatures"]
    fields = {"type", "version", "expires", "threshold", "signers", "root_keys", "root_threshold", "revoked"}
    _need(isinstance(signed, dict) and set(signed) == fields, where, f"signed: expected keys {sorted(fields)}")
    _need(signed["type"] == DOC_TYPE, where, f"signed.type: expected {DOC_TYPE!r}")
    version = _int(signed["version"], f"{where}: signed.version")
    try:
        expires = parse_time(signed["expires"]) if isinstance(signed["expires"], str) else None
    except ValueError:
        expires = None
    _need(expires is not None, where, "signed.expires: expected an ISO 8601 UTC time")
    assert expires is not None
    signers: dict[str, Signer] = {}
    _need(isinstance(signed["signers"], dict), where, "signed.signers: expected a mapping")
    for kid, entry in signed["signers"].items():
        w = f"{where}: signed.signers.{kid[:16]}"
        _need(HEX64.fullmatch(kid) is not None, w, "key id: expected 64 hex digits")
        _need(isinstance(entry, dict) and {"public_key", "roles"} <= set(entry) <= {"public_key", "roles", "expires"},
              w, "expected {public_key, roles[, expires]}")
        roles = entry["roles"]
        _need(isinstance(roles, list) and all(isinstance(r, str) for r in roles), w, "roles: expected a list")
        sexp = None
        if "expires" in entry:
            try:
                sexp = parse_time(entry["expires"]) if isinstance(entry["expires"], str) else None
            except ValueError:
                sexp = None
            _need(sexp is not None, w, "expires: expected an ISO 8601 UTC time")
        signers[kid] = Signer(kid, _key_hex(entry["public_key"], kid, w), tuple(roles), sexp)
    root_keys: dict[str, str] = {}
    _need(isinstance(signed["root_keys"], dict) and bool(signed["root_keys"]), where,
          "signed.root_keys: expected a non-empty mapping")
    for kid, entry in signed["root_keys"].items():
        w = f"{where}: signed.root_keys.{kid[:16]}"
        _need(HEX64.fullmatch(kid) is not None, w, "key id: expected 64 hex digits")
        _need(isinstance(entry, dict) and set(entry) == {"public_key"}, w, "expected {public_key}")
        root_keys[kid] = _key_hex(entry["public_key"], kid, w)
    revoked = signed["revoked"]
    _need(isinstance(revoked, list) and all(isinstance(k, str) and HEX64.fullmatch(k) for k in revoked),
          where, "signed.revoked: expected a list of key ids")
    _need(not (set(revoked) & (set(signers) | set(root_keys))), where,
          "signed.revoked: a revoked key is still listed as a signer or root key")
    threshold = _int(signed["threshold"], f"{where}: signed.threshold")
    _need(threshold <= len(signers), where, f"signed.threshold: {threshold} is more than the {len(signers)} signers")
    root_threshold = _int(signed["root_threshold"], f"{where}: signed.root_threshold")
    _need(root_threshold <= len(root_keys), where,
          f"signed.root_threshold: {root_threshold} is more than the {len(root_keys)} root keys")
    _need(isinstance(sigs, list), where, "signatures: expected a list")
    parsed_sigs = []
    for i, s in enumerate(sigs):
        _need(isinstance(s, dict) and set(s) == {"keyid", "sig"} and isinstance(s["keyid"], str)
              and isinstance(s["sig"], str), where, f"signatures[{i}]: expected {{keyid, sig}}")
        try:
            raw = base64.b64decode(s["sig"].encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise TrustError(f"{where}: signatures[{i}]: sig is not base64") from None
        parsed_sigs.append((s["keyid"], raw))
    return Version(version, expires, threshold, signers, root_keys, root_threshold, tuple(revoked),
                   signed, tuple(parsed_sigs))


def load_chain(path: Path) -> list[Version]:
    from tvdeploy.inputs import read_input

    data = read_input(path, "trust root", MAX_FILE)
    try:
        doc = loads(data, limit=MAX_FILE)
    except JsonError as exc:
        raise InputFileError(f"{path}: trust root: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"versions"} or not isinstance(doc["versions"], list) \
            or not doc["versions"]:
        raise InputFileError(f"{path}: not a trust root (expected {{versions: [...]}})")
    if len(doc["versions"]) > MAX_VERSIONS:
        raise InputFileError(f"{path}: more than {MAX_VERSIONS} versions")
    try:
        return [parse_version(v, f"{path}: versions[{i}]") for i, v in enumerate(doc["versions"])]
    except TrustError as exc:
        raise TrustError(exc.message) from None


def chain_document(chain: list[Version]) -> bytes:
    versions = [
        {"signed": v.signed,
         "signatures": [{"keyid": k, "sig": base64.b64encode(s).decode("ascii")} for k, s in v.signatures]}
        for v in chain
    ]
    return canonical_json({"versions": versions}) + b"\n"


# ---- verification -----------------------------------------------------------------------------

def count_signed_by(version: Version, keys: dict[str, str]) -> set[str]:
    """Distinct key ids among *keys* whose signature over *version* verifies."""
    from cryptography.exceptions import InvalidSignature

    message = signed_bytes(version.signed)
    good: set[str] = set()
    for kid, sig in version.signatures:
        if kid in keys and kid not in good:
            try:
                public_key(keys[kid]).verify(sig, message)
            except InvalidSignature:
                continue
            good.add(kid)
    return good


def verify_chain(chain: list[Version], where: str, now: datetime | None = None) -> Version:
    """Walk the chain from version 1; return the newest version, which must not be expired."""
    now = now or datetime.now(UTC)
    previous: Version | None = None
    for v in chain:
        expected = 1 if previous is None else previous.version + 1
        if v.version != expected:
            raise TrustError(f"{where}: version {v.version} where version {expected} was expected")
        own = count_signed_by(v, v.root_keys)
        if len(own) < v.root_threshold:
            raise TrustError(f"{where}: version {v.version} is signed by {len(own)} of the "
                             f"{v.root_threshold} required of its own root keys")
        if previous is not None:
            prev = count_signed_by(v, previous.root_keys)
            if len(prev) < previous.root_threshold:
                raise TrustError(f"{where}: version {v.version} is not signed by its predecessor: "
                                 f"{len(prev)} of the {previous.root_threshold} required root keys "
                                 f"of version {previous.version}")
        previous = v
    assert previous is not None
    if previous.expires <= now:
        raise TrustError(f"{where}: trust root version {previous.version} expired on "
                         f"{format_time(previous.expires)}")
    return previous


def load_verified(path: Path, now: datetime | None = None) -> tuple[list[Version], Version]:
    chain = load_chain(path)
    return chain, verify_chain(chain, str(path), now)


# ---- building ---------------------------------------------------------------------------------

def _hex(pub: Ed25519PublicKey) -> str:
    from tvdeploy.keys.store import raw_public_bytes

    return raw_public_bytes(pub).hex()


def make_version(*, version: int, expires: datetime, threshold: int, signers: dict[str, Signer],
                 root_keys: dict[str, str], root_threshold: int, revoked: list[str],
                 sign_with: list[Ed25519PrivateKey]) -> Version:
    signer_docs: dict[str, Any] = {}
    for kid, s in sorted(signers.items()):
        entry: dict[str, Any] = {"public_key": s.public_hex, "roles": list(s.roles)}
        if s.expires is not None:
            entry["expires"] = format_time(s.expires)
        signer_docs[kid] = entry
    signed = {
        "type": DOC_TYPE,
        "version": version,
        "expires": format_time(expires),
        "threshold": threshold,
        "signers": signer_docs,
        "root_keys": {kid: {"public_key": h} for kid, h in sorted(root_keys.items())},
        "root_threshold": root_threshold,
        "revoked": sorted(set(revoked)),
    }
    message = signed_bytes(signed)
    sigs = []
    seen = set()
    for key in sign_with:
        kid = key_id_of_hex(_hex(key.public_key()))
        if kid not in seen:
            seen.add(kid)
            sigs.append({"keyid": kid, "sig": base64.b64encode(key.sign(message)).decode("ascii")})
    return parse_version({"signed": signed, "signatures": sigs}, f"version {version}")


def signer_from_public(pub: Ed25519PublicKey, roles: tuple[str, ...] = (BUNDLE_ROLE,)) -> Signer:
    h = _hex(pub)
    return Signer(key_id_of_hex(h), h, roles, None)


def init_chain(*, signers: list[Ed25519PublicKey], threshold: int, root_keys: list[Ed25519PrivateKey],
               root_threshold: int | None, expires: datetime, now: datetime | None = None) -> list[Version]:
    signer_map = {s.key_id: s for s in (signer_from_public(p) for p in signers)}
    roots = {key_id_of_hex(_hex(k.public_key())): _hex(k.public_key()) for k in root_keys}
    rt = root_threshold if root_threshold is not None else len(roots)
    if threshold < 1 or threshold > len(signer_map):
        raise TvdeployError(f"--threshold {threshold}: must be between 1 and the {len(signer_map)} distinct signers")
    if rt < 1 or rt > len(roots):
        raise TvdeployError(f"--root-threshold {rt}: must be between 1 and the {len(roots)} distinct root keys")
    v1 = make_version(version=1, expires=expires, threshold=threshold, signers=signer_map, root_keys=roots,
                      root_threshold=rt, revoked=[], sign_with=root_keys)
    verify_chain([v1], "new trust root", now)
    return [v1]


def next_version(chain: list[Version], *, sign_with: list[Ed25519PrivateKey], where: str,
                 add: list[Ed25519PublicKey] | None = None, revoke: list[str] | None = None,
                 threshold: int | None = None, expires: datetime | None = None,
                 now: datetime | None = None) -> list[Version]:
    """The chain plus one version with the changes; refused unless the result verifies."""
    current = chain[-1]
    signers = dict(current.signers)
    roots = dict(current.root_keys)
    revoked = list(current.revoked)
    for pub in add or []:
        s = signer_from_public(pub)
        if s.key_id in revoked:
            raise TvdeployError(f"key {s.key_id[:16]} was revoked; a revoked key cannot come back")
        if s.key_id in signers:
            raise TvdeployError(f"key {s.key_id[:16]} is already a signer")
        signers[s.key_id] = s
    for kid in revoke or []:
        if kid not in signers and kid not in roots:
            raise TvdeployError(f"key {kid[:16]} is neither a signer nor a root key of version {current.version}")
        signers.pop(kid, None)
        roots.pop(kid, None)
        revoked.append(kid)
    new_threshold = threshold if threshold is not None else current.threshold
    if new_threshold < 1 or new_threshold > len(signers):
        raise TvdeployError(f"threshold {new_threshold} cannot be met by the {len(signers)} remaining signers")
    if not roots:
        raise TvdeployError("no root key would remain")
    root_threshold = min(current.root_threshold, len(roots))
    new = make_version(version=current.version + 1, expires=expires or current.expires,
                       threshold=new_threshold, signers=signers, root_keys=roots,
                       root_threshold=root_threshold, revoked=revoked, sign_with=sign_with)
    out = [*chain, new]
    verify_chain(out, where, now)
    return out


def resolve_key_id(version: Version, text: str) -> str:
    """A full key id or a unique prefix of at least 8 hex digits."""
    known = set(version.signers) | set(version.root_keys) | set(version.revoked)
    if HEX64.fullmatch(text):
        return text
    if len(text) < 8 or not re.fullmatch(r"[0-9a-f]+", text):
        raise TvdeployError(f"{text!r}: give a key id (64 hex digits) or a prefix of 8 or more")
    matches = [k for k in known if k.startswith(text)]
    if len(matches) != 1:
        raise TvdeployError(f"{text!r}: matches {len(matches)} keys of version {version.version}")
    return matches[0]
