"""Helpers for policy tests: a small site file, approver keys, waivers signed with a fixed clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "unit" / "data" / "policy"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def stack(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


def write_site(tmp: Path, *, packs: list[str] | None = None, waivers: list[Path] = (),
               approvers: list[dict[str, str]] = (), fail_on: str = "high") -> Path:
    (tmp / "known_hosts").write_text("")
    doc = {
        "version": 1, "site": {"name": "plant-a"},
        "network": {"subnet": "10.0.0.0/24"},
        "nodes": [{"name": "mgr-1", "role": "manager", "address": "10.0.0.11", "zone": "core"}],
        "ssh": {"known_hosts": "known_hosts"},
        "policies": {"packs": packs or ["cis-docker", "trueverit"], "waivers": [str(w) for w in waivers],
                     "fail_on": fail_on, "approvers": list(approvers)},
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def approver(tmp: Path, name: str = "alice") -> tuple[Any, dict[str, str]]:
    """An Ed25519 key pair: (private key, approvers entry with its public key file)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tvdeploy.keys.store import public_pem

    key = Ed25519PrivateKey.generate()
    pub = tmp / f"{name}.pub"
    pub.write_bytes(public_pem(key.public_key()))
    return key, {"name": name, "key": str(pub)}


def waiver_doc(rule: str, scope: dict[str, str], *, approver: str = "alice",
               issued: str = "2026-12-01T00:00:00Z", expires: str = "2027-01-15T00:00:00Z") -> dict[str, Any]:
    return {"waiver": {"rule": rule, "scope": scope, "justification": "lab kernel lacks ESP; tracked in CHG-42",
                       "approver": approver, "issued": issued, "expires": expires}}


def write_waiver(path: Path, doc: dict[str, Any], key: Any | None) -> Path:
    from tvdeploy.keys.store import key_id
    from tvdeploy.policy import waivers

    if key is not None:
        doc = waivers.sign(doc, key, key_id(key.public_key()))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
