"""What a site already holds, for building a delta bundle (`bundle inventory SITE -o HAVE.json`).

The file format (signed DSSE envelope) is ``tvdeploy.bundle.inventory``'s, which
``bundle build --since`` reads; this module only gathers the digests:
in ``site-registry`` mode, every config and layer of every tagged manifest in the
registry (plus the manifests); in ``node-load`` mode, the config and layer digests of images
present on EVERY node (a delta must carry what any node lacks). Layers in tvdeploy bundles are
uncompressed, so a node's diff ids are the bundle's layer digests.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tvdeploy.connectors.registry import Registry


def registry_blobs(reg: Registry) -> set[str]:
    out: set[str] = set()
    for repo in reg.catalog():
        for tag in reg.tags(repo):
            data, digest, _type = reg.get_manifest(repo, tag)
            out.add(digest)
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            for desc in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
                    out.add(desc["digest"])
    return out


def node_blobs(images: list[dict[str, Any]]) -> set[str]:
    """Config and layer digests of one node's images (``inspect_image`` documents)."""
    out: set[str] = set()
    for info in images:
        if isinstance(info.get("Id"), str):
            out.add(info["Id"])
        out.update(d for d in ((info.get("RootFS") or {}).get("Layers") or []) if isinstance(d, str))
    return out
