"""What a bundle holds: release, images, digests, sizes, signers (as claimed; ``bundle verify``
decides whether they count). The bundle is read through the checking reader all the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvdeploy.bundle.reader import read_bundle
from tvdeploy.reporting import Reporter


def inspect_bundle(path: Path, reporter: Reporter | None = None) -> dict[str, Any]:
    bundle = read_bundle(path, reporter=reporter)
    release = bundle.release
    inventory = bundle.inventory.get("images", {})
    images = {}
    for svc, img in release["images"].items():
        inv = inventory.get(svc, {}) if isinstance(inventory, dict) else {}
        images[svc] = {
            "reference": img["reference"],
            "digest": img["digest"],
            "size": inv.get("size"),
            "layers": len(inv.get("layers", [])),
            "created": inv.get("created"),
        }
    return {
        "bundle": str(path),
        "size": bundle.size,
        "release": release["release"],
        "sequence": release["sequence"],
        "manifest_sha256": bundle.manifest_sha256,
        "blobs": len(bundle.blob_digests),
        "images": images,
        "signatures": [
            {"file": name, "key_id": sig.keyid}
            for name, env in sorted(bundle.signatures.items()) for sig in env.signatures
        ],
    }
