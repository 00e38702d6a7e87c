"""The lab's declared deviations, as signed waivers (what a real site's security officer would
sign for a known exception): a lab approver key of its own (in the lab dir, never in the
operator's key store), and one waiver file per deviation, re-signed on every `lab up` so it
never expires while the lab is used (expiry 90 days ahead, under the 180-day limit).

Deviations: the stand-in registry image (Debian's docker-registry binary) runs as root, and the
lab's kernel lacks ESP (plain overlay networks) — each reported by the policy checks, and waived
here with the reason, never silently passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

APPROVER = "lab-approver"
DAYS = 90
HEADER = "# Written and signed by `tvdeploy lab up` (tvdeploy/lab/waivers.py): a lab deviation.\n"
_REGISTRY = "the site registry service (tv-registry) is tvdeploy's own"
WAIVERS = {
    "registry-root": ("TVD-201", {"image": "registry"},
                      "lab stand-in: Debian's docker-registry binary packaged as an image runs as root; a real "
                      "site's registry image runs as a non-root user"),
    # tv-registry drops every capability, has a read-only root and memory/CPU/PIDs limits; what
    # remains is in its nature:
    "registry-service-tvd-114": ("TVD-114", {"service": "tv-registry"},
                                 f"{_REGISTRY}: it publishes the site's registry port (registry.port) on every "
                                 "manager, in host mode, for the nodes' pulls (client certificates required)"),
    "registry-service-tvd-117": ("TVD-117", {"service": "tv-registry"},
                                 f"{_REGISTRY}: it runs as root to read its key (0400 root on the node, made there) "
                                 "and write its volume; no capabilities, read-only root filesystem"),
    "registry-service-tvd-131": ("TVD-131", {"service": "tv-registry"},
                                 f"{_REGISTRY}: the registry cannot come from itself; it starts by image id from "
                                 "the signed bundle the first import loaded onto each manager"),
}


@dataclass(frozen=True)
class LabWaivers:
    approver_key: Path  # public
    files: list[Path]


def ensure(lab_dir: Path, now: datetime | None = None) -> LabWaivers:
    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tvdeploy.keys.store import key_id, public_pem
    from tvdeploy.policy.waivers import sign
    from tvdeploy.state import ensure_dir, write_atomic

    folder = ensure_dir(lab_dir / "waivers")
    private_file, public_file = folder / f"{APPROVER}.key", folder / f"{APPROVER}.pub"
    if private_file.exists():
        loaded = serialization.load_pem_private_key(private_file.read_bytes(), password=None)
        assert isinstance(loaded, Ed25519PrivateKey)
        key = loaded
    else:
        key = Ed25519PrivateKey.generate()
        write_atomic(private_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), mode=0o600)
    write_atomic(public_file, public_pem(key.public_key()), mode=0o644)
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    files = []
    for name, (rule, scope, why) in WAIVERS.items():
        waiver = {"rule": rule, "scope": scope, "justification": why, "approver": APPROVER,
                  "issued": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "expires": (issued + timedelta(days=DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        signed = sign({"waiver": waiver}, key, key_id(key.public_key()))
        path = folder / f"{name}.yaml"
        write_atomic(path, (HEADER + yaml.safe_dump(signed, sort_keys=False)).encode(), mode=0o644)
        files.append(path)
    for stale in set(folder.glob("*.yaml")) - set(files):  # a deviation the lab no longer has
        if stale.read_text(errors="replace").startswith(HEADER):  # only what `lab up` wrote itself
            stale.unlink()
    return LabWaivers(public_file, files)
