"""The site inventory (HAVE.json): which blobs a site holds, signed by the operator key.

API (for ``bundle inventory SITE -o HAVE.json``, issue 9, and ``bundle build --since``):

    data = make_inventory(site_name, digests, last_release, signer)   # -> bytes to write
    #   digests: iterable of "sha256:<hex>" (or bare hex) blob digests the site holds
    #   last_release: None, or {"release": str, "sequence": int,
    #                           "images": {service: "sha256:<manifest digest>"}}  (images optional)
    #   signer: (Ed25519PrivateKey, key_id), e.g. tvdeploy.audit.recorder.signing_key()
    inv = read_inventory(path, trusted_keys=None)   # -> Inventory; raises a one-line TvdeployError
    #   trusted_keys: Ed25519 public keys; None = the local operator key (keys.store)
    inv.site, inv.created, inv.digests (frozenset of "sha256:<hex>"), inv.last_release,
    inv.key_id (who signed), inv.sha256 (of the file), inv.hexes (frozenset of bare hex)

The file is a DSSE envelope (the bundle's dsse module), payload type
``application/vnd.tvdeploy.site-inventory+json``, over canonical JSON:
``{type: "tvdeploy-site-inventory", version: 1, site, created, blobs: [sorted digests],
last_release}``. Signed because a delta built from a forged inventory would leave out layers the
site does not have: the import would then refuse it, but only on the site, after the trip.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.bundle import dsse
from tvdeploy.bundle.jsonsafe import JsonError, loads
from tvdeploy.errors import InputFileError, VerificationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PAYLOAD_TYPE = "application/vnd.tvdeploy.site-inventory+json"
DOC_TYPE = "tvdeploy-site-inventory"
VERSION = 1
MAX_BLOBS = 500_000
MAX_FILE = 64 * 1024 * 1024  # ~75 bytes a digest, base64'd: room for MAX_BLOBS
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
HEX64 = re.compile(r"[0-9a-f]{64}")
RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
SERVICE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class InventoryFormatError(ValueError):
    """What is wrong with an inventory's content (the caller names the file)."""


@dataclass(frozen=True)
class Inventory:
    path: Path
    site: str
    created: str
    digests: frozenset[str]  # "sha256:<hex>"
    last_release: dict[str, Any] | None
    key_id: str
    sha256: str

    @property
    def hexes(self) -> frozenset[str]:
        return frozenset(d.removeprefix("sha256:") for d in self.digests)


def normalize_digest(value: str) -> str:
    """"sha256:<hex>" for a digest given either way; ValueError otherwise."""
    text = value if value.startswith("sha256:") else f"sha256:{value}"
    if not DIGEST.fullmatch(text):
        raise InventoryFormatError(f"{value[:80]!r} is not a sha256 digest")
    return text


def _check_release(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not set(value) <= {"release", "sequence", "images"}:
        raise InventoryFormatError("last_release: expected {release, sequence, images}")
    release, seq = value.get("release"), value.get("sequence")
    if not isinstance(release, str) or not RELEASE_ID.fullmatch(release):
        raise InventoryFormatError("last_release.release: not a release id")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise InventoryFormatError("last_release.sequence: expected an integer >= 1")
    images = value.get("images", {})
    if not isinstance(images, Mapping):
        raise InventoryFormatError("last_release.images: expected {service: digest}")
    for svc, digest in images.items():
        if not isinstance(svc, str) or not SERVICE.fullmatch(svc):
            raise InventoryFormatError(f"last_release.images: {str(svc)[:64]!r} is not a service name")
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise InventoryFormatError(f"last_release.images.{svc}: not a sha256 digest")
    return {"release": release, "sequence": seq, "images": dict(sorted(images.items()))}


def inventory_document(site_name: str, digests: Iterable[str], last_release: Mapping[str, Any] | None,
                       created: str | None = None) -> dict[str, Any]:
    if not isinstance(site_name, str) or not site_name or len(site_name) > 253:
        raise InventoryFormatError("site: expected the site's name")
    blobs = sorted({normalize_digest(d) for d in digests})
    if len(blobs) > MAX_BLOBS:
        raise InventoryFormatError(f"blobs: more than {MAX_BLOBS}")
    return {
        "type": DOC_TYPE, "version": VERSION, "site": site_name,
        "created": created or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "blobs": blobs, "last_release": _check_release(last_release),
    }


def make_inventory(site_name: str, digests: Iterable[str], last_release: Mapping[str, Any] | None,
                   signer: tuple[Ed25519PrivateKey, str]) -> bytes:
    """The signed inventory file's bytes (write them with state.write_atomic)."""
    from tvdeploy.audit.canonical import canonical_json

    key, kid = signer
    payload = canonical_json(inventory_document(site_name, digests, last_release))
    return dsse.sign(PAYLOAD_TYPE, payload, key, kid).to_json()


def parse_document(payload: bytes) -> dict[str, Any]:
    """The checked inventory document of a (verified) payload."""
    try:
        doc = loads(payload, limit=MAX_FILE)
    except JsonError as exc:
        raise InventoryFormatError(str(exc)) from None
    keys = {"type", "version", "site", "created", "blobs", "last_release"}
    if not isinstance(doc, dict) or set(doc) != keys:
        raise InventoryFormatError(f"expected the keys {', '.join(sorted(keys))}")
    if doc["type"] != DOC_TYPE or doc["version"] != VERSION:
        raise InventoryFormatError(f"not a {DOC_TYPE} version {VERSION}")
    if not isinstance(doc["created"], str) or len(doc["created"]) > 64:
        raise InventoryFormatError("created: expected a time")
    blobs = doc["blobs"]
    if not isinstance(blobs, list) or not all(isinstance(b, str) and DIGEST.fullmatch(b) for b in blobs):
        raise InventoryFormatError("blobs: expected a list of sha256 digests")
    if len(set(blobs)) != len(blobs):
        raise InventoryFormatError("blobs: a digest is listed twice")
    return inventory_document(doc["site"], blobs, doc["last_release"], doc["created"])


def _read(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputFileError(f"{path}: inventory not found") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InputFileError(f"{path}: not a regular file, expected a site inventory")
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise InputFileError(f"{path}: oversized ({st.st_size} bytes; at most {MAX_FILE})")
    return data


def _local_operator_key() -> list[Ed25519PublicKey]:
    from tvdeploy.keys.store import load_public_key, operator_key_name

    return [load_public_key(operator_key_name())]


def read_inventory(path: Path, trusted_keys: list[Ed25519PublicKey] | None = None) -> Inventory:
    """Read *path* and check that one of *trusted_keys* (default: the local operator key)
    signed it. Every problem is a one-line error naming the file."""
    import hashlib

    from tvdeploy.keys.store import key_id

    path = Path(path)
    data = _read(path)
    try:
        env = dsse.parse(data)
    except dsse.EnvelopeError as exc:
        raise InputFileError(f"{path}: not a signed site inventory ({exc})") from None
    if env.payload_type != PAYLOAD_TYPE:
        raise InputFileError(f"{path}: not a site inventory (payload type {env.payload_type[:80]!r})")
    keys = {key_id(k): k for k in (trusted_keys if trusted_keys is not None else _local_operator_key())}
    signer = next((s.keyid for s in env.signatures
                   if s.keyid in keys and dsse.verify(env, s, keys[s.keyid])), None)
    if signer is None:
        ids = ", ".join(sorted(re.sub(r"[^0-9a-f]", "?", s.keyid[:16]) for s in env.signatures))
        raise VerificationError(f"{path}: inventory signature does not verify with the trusted operator key(s) "
                                f"(signed by key {ids}); use --inventory-key FILE for another operator's key")
    try:
        doc = parse_document(env.payload)
    except InventoryFormatError as exc:
        raise InputFileError(f"{path}: malformed site inventory: {exc}") from None
    return Inventory(path, doc["site"], doc["created"], frozenset(doc["blobs"]), doc["last_release"], signer,
                     hashlib.sha256(data).hexdigest())
