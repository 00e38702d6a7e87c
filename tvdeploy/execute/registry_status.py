"""``registry status``: the site registry as services see it, and each manager's replica."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import ConnectionFailed
from tvdeploy.execute.site_registry import find_service, open_replica
from tvdeploy.release.registry_address import endpoint

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.registry import Registry

log = logging.getLogger(__name__)

def status(site: Site) -> dict[str, Any]:
    """``{"state", "address", "size_bytes", "repositories": [{"name", "digests"}], "replicas":
    [{"node", "address", "state", "missing"}]}``.

    state: "running" (every replica answers over mutual TLS), "degraded" (some do), "unreachable"
    (a service, but no replica answers), "absent" (no service). address: what services pull
    from. size_bytes / repositories: the union over the replicas (the distinct blobs and
    manifests of every tagged image). A replica's "missing": the manifests other replicas hold
    and it lacks (the next import copies them)."""
    from tvdeploy.facts.services import manager_client

    ep = endpoint(site)
    doc: dict[str, Any] = {"state": "absent", "address": ep.host, "size_bytes": 0, "repositories": [],
                           "replicas": []}
    client = manager_client(site)
    try:
        if find_service(client.api) is None:
            return doc
    finally:
        client.close()
    held: dict[str, dict[str, str]] = {}  # node -> "repo@digest" -> tag
    sizes: dict[str, int] = {}
    for replica in ep.replicas:
        with open_replica(site, replica) as reg:
            try:
                held[replica.node] = _contents(reg, sizes)
            except ConnectionFailed as exc:
                doc["replicas"].append({"node": replica.node, "address": replica.where, "state": "unreachable",
                                        "error": exc.message})
                continue
        doc["replicas"].append({"node": replica.node, "address": replica.where, "state": "running"})
    union = {ref for refs in held.values() for ref in refs}
    for rep in doc["replicas"]:
        if rep["state"] == "running":
            rep["missing"] = len(union - set(held[rep["node"]]))
    running = sum(1 for r in doc["replicas"] if r["state"] == "running")
    doc["state"] = "running" if running == len(ep.replicas) else "degraded" if running else "unreachable"
    repos: dict[str, set[str]] = {}
    for ref in union:
        repo, digest = ref.split("@", 1)
        repos.setdefault(repo, set()).add(digest)
    doc["repositories"] = [{"name": r, "digests": sorted(d)} for r, d in sorted(repos.items())]
    doc["size_bytes"] = sum(sizes.values())
    return doc


def _contents(reg: Registry, sizes: dict[str, int]) -> dict[str, str]:
    """Every tagged manifest of one replica (``repo@digest`` -> tag); blob and manifest sizes
    go into *sizes* (keyed by digest, so the union counts each once)."""
    import json

    out: dict[str, str] = {}
    for repo in reg.catalog():
        for tag in reg.tags(repo):
            data, digest, _type = reg.get_manifest(repo, tag)
            out[f"{repo}@{digest}"] = tag
            sizes[digest] = len(data)
            try:
                manifest = json.loads(data)
                for desc in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
                    if isinstance(desc.get("digest"), str) and isinstance(desc.get("size"), int):
                        sizes[desc["digest"]] = desc["size"]
            except (ValueError, AttributeError):
                log.debug("%s:%s: manifest not parsed for sizes", repo, tag)
    return out
