"""What a bundle holds: release, images, digests, sizes, signers (as claimed; ``bundle verify``
decides whether they count). The bundle (a file or a chunk folder) is read through the checking
reader all the same.

Sizes per image: ``shipped`` is what of the image (config and layers) the bundle carries,
``patched`` the rebuilt size of the layers a delta ships as byte-level patches (the patch itself
counts as shipped), ``expected`` what a delta leaves to the site (patch bases are the site's
previous layers: not counted per image). Images share blobs, so per-image figures may
count a blob more than once; the bundle's totals count each blob once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvdeploy.bundle.chunkbundle import read_bundle_path
from tvdeploy.bundle.delta import expected_bytes, patched_bytes, shipped_bytes
from tvdeploy.bundle.layout import BLOB_PREFIX
from tvdeploy.bundle.reader import Bundle
from tvdeploy.reporting import Reporter


def image_sizes(bundle: Bundle, inv: dict[str, Any]) -> tuple[int, int, int]:
    """(bytes shipped, bytes patched, bytes expected on site) of one image of the inventory:
    a layer shipped as a patch counts its patch as shipped and its rebuilt size as patched."""
    shipped = patched = expected = 0
    digests = [inv.get("config"), *(lay.get("digest") for lay in inv.get("layers", []) if isinstance(lay, dict))]
    for digest in digests:
        hexdigest = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
        record = bundle.files.get(BLOB_PREFIX + hexdigest)
        patch = bundle.patches.get(hexdigest)
        if record is not None:
            shipped += record.size
        elif patch is not None:
            patched += patch.size
            shipped += bundle.files[BLOB_PREFIX + patch.patch].size
        elif hexdigest in bundle.expected:
            expected += bundle.expected[hexdigest]
    return shipped, patched, expected


def inspect_bundle(path: Path, reporter: Reporter | None = None) -> dict[str, Any]:
    bundle = read_bundle_path(path, reporter=reporter)
    release = bundle.release
    inventory = bundle.inventory.get("images", {})
    images = {}
    for svc, img in release["images"].items():
        inv = inventory.get(svc, {}) if isinstance(inventory, dict) else {}
        inv = inv if isinstance(inv, dict) else {}
        shipped, patched, expected = image_sizes(bundle, inv)
        images[svc] = {
            "reference": img["reference"],
            "digest": img["digest"],
            "size": inv.get("size"),
            "layers": len(inv.get("layers", [])),
            "created": inv.get("created"),
            "shipped_bytes": shipped,
            "patched_bytes": patched,
            "expected_bytes": expected,
        }
    return {
        "bundle": str(path),
        "size": bundle.size,
        "release": release["release"],
        "sequence": release["sequence"],
        "manifest_sha256": bundle.manifest_sha256,
        "blobs": len(bundle.blob_digests),
        "delta": bundle.is_delta,
        "since": bundle.since if bundle.is_delta else None,
        "shipped": {"blobs": len(bundle.blob_digests), "bytes": shipped_bytes(bundle)},
        "expected_on_site": {"blobs": len(bundle.expected), "bytes": expected_bytes(bundle)},
        "patched": {"layers": len(bundle.patches), "bytes": patched_bytes(bundle)},
        "compressed": bundle.compressed,
        "images": images,
        "signatures": [
            {"file": name, "key_id": sig.keyid}
            for name, env in sorted(bundle.signatures.items()) for sig in env.signatures
        ],
    }
