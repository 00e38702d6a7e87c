"""Verify a bundle against a trust root: integrity first, then who signed it.

Every file and blob is re-hashed by the reader. Each signature envelope is then judged on its
own; the bundle is accepted only when the trust root's threshold is met by DISTINCT keys that
are listed as bundle signers, not revoked and not expired, whose signature verifies over a
statement that matches this bundle exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tvdeploy.bundle import dsse, statement, trust
from tvdeploy.bundle.jsonsafe import JsonError, loads
from tvdeploy.bundle.reader import Bundle, read_bundle
from tvdeploy.errors import VerificationError
from tvdeploy.reporting import Reporter

VALID = "valid"


@dataclass(frozen=True)
class SignatureCheck:
    file: str
    key_id: str
    status: str  # "valid" or why it does not count


@dataclass(frozen=True)
class Verified:
    bundle: Bundle
    root: trust.Version
    checks: tuple[SignatureCheck, ...]

    @property
    def signers(self) -> list[str]:
        return [c.key_id for c in self.checks if c.status == VALID]


def judge(file: str, sig: dsse.Signature, env: dsse.Envelope, expected: dict[str, object],
          root: trust.Version, counted: set[str], now: datetime) -> SignatureCheck:
    kid = sig.keyid
    if kid in root.revoked:
        return SignatureCheck(file, kid, "key is revoked")
    signer = root.signers.get(kid)
    if signer is None:
        return SignatureCheck(file, kid, "key is not in the trust root")
    if trust.BUNDLE_ROLE not in signer.roles:
        return SignatureCheck(file, kid, "key may not sign bundles")
    if signer.expires is not None and signer.expires <= now:
        return SignatureCheck(file, kid, f"key expired on {trust.format_time(signer.expires)}")
    if env.payload_type != statement.PAYLOAD_TYPE:
        return SignatureCheck(file, kid, f"payload type {env.payload_type!r} is not an in-toto statement")
    if not dsse.verify(env, sig, trust.public_key(signer.public_hex)):
        return SignatureCheck(file, kid, "signature does not verify")
    try:
        doc = loads(env.payload)
    except JsonError:
        return SignatureCheck(file, kid, "signed statement is malformed")
    if doc != expected:
        return SignatureCheck(file, kid, "signed statement is for other content")
    if kid in counted:
        return SignatureCheck(file, kid, "same key already counted")
    counted.add(kid)
    return SignatureCheck(file, kid, VALID)


def verify_bundle(path: Path, trust_path: Path, *, reporter: Reporter | None = None,
                  now: datetime | None = None) -> Verified:
    now = now or datetime.now(UTC)
    _chain, root = trust.load_verified(trust_path, now)
    bundle = read_bundle(path, reporter=reporter)
    expected = statement.for_bundle(bundle)
    counted: set[str] = set()
    checks = [
        judge(file, sig, env, expected, root, counted, now)
        for file, env in sorted(bundle.signatures.items())
        for sig in env.signatures
    ]
    if len(counted) < root.threshold:
        problems = [c for c in checks if c.status != VALID]
        why = f" ({problems[0].file}: key {problems[0].key_id[:16]}: {problems[0].status})" if problems else ""
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise VerificationError(
            f"{path}: signed by {len(counted)} of the {root.threshold} distinct trusted keys required"
            f"{why}{more}",
            details=[f"{c.file}: key {c.key_id[:16]}: {c.status}" for c in problems[1:]],
        )
    return Verified(bundle, root, tuple(checks))
