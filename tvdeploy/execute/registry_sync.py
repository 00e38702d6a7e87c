"""Bring every answering replica of the site registry up to the union of what they hold.

A replica that was down during an import lacks that import's images (and a delta's bases); a
node that dials it first would get "manifest unknown" instead of falling over to the next
manager. Before each import, every tagged manifest some replica holds and another lacks is
copied: its blobs through this machine (spooled to a file, re-hashed while sent, and checked by
the receiving registry), then the manifest by tag. Where two replicas tag the same name with
different digests, the first replica in site-file order wins (said in a warning).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvdeploy.errors import ConnectionFailed, VerificationError

if TYPE_CHECKING:
    from tvdeploy.connectors.registry import Registry
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

MAX_BLOB = 64 * 1024**3  # a single layer larger than this is refused


@dataclass(frozen=True)
class Tagged:
    repo: str
    tag: str
    digest: str


def contents(reg: Registry) -> dict[tuple[str, str], str]:
    """(repository, tag) -> manifest digest of one replica."""
    out: dict[tuple[str, str], str] = {}
    for repo in reg.catalog():
        for tag in reg.tags(repo):
            digest = reg.manifest_digest(repo, tag)
            if digest is not None:
                out[(repo, tag)] = digest
    return out


def plan_copies(held: dict[str, dict[tuple[str, str], str]]) -> tuple[dict[str, list[tuple[Tagged, str]]], list[str]]:
    """Pure: for each replica (dict order = site-file order), the tagged manifests to copy into
    it and from which replica; plus warnings for tags that differ between replicas."""
    wanted: dict[tuple[str, str], tuple[str, str]] = {}  # (repo, tag) -> (digest, source)
    warnings: list[str] = []
    for node, refs in held.items():
        for key, digest in sorted(refs.items()):
            if key not in wanted:
                wanted[key] = (digest, node)
            elif wanted[key][0] != digest:
                warnings.append(f"{key[0]}:{key[1]} is {digest[:19]} on {node} but {wanted[key][0][:19]} on "
                                f"{wanted[key][1]}; {wanted[key][1]}'s is kept")
    copies: dict[str, list[tuple[Tagged, str]]] = {}
    for node, refs in held.items():
        todo = [(Tagged(repo, tag, digest), source) for (repo, tag), (digest, source) in sorted(wanted.items())
                if refs.get((repo, tag)) != digest]
        if todo:
            copies[node] = todo
    return copies, warnings


def sync_replicas(regs: dict[str, Registry], reporter: Reporter) -> dict[str, int]:
    """Copy into each replica what the others hold and it lacks; returns node -> manifests copied.
    A replica that stops answering is left for the next import (warned)."""
    held: dict[str, dict[tuple[str, str], str]] = {}
    for node, reg in regs.items():
        try:
            held[node] = contents(reg)
        except ConnectionFailed as exc:
            reporter.warn(f"registry replica on {node} not compared: {exc.message}")
    copies, warnings = plan_copies(held)
    for w in warnings:
        reporter.warn(f"site registry: {w}")
    done: dict[str, int] = {}
    for node, todo in copies.items():
        reporter.info(f"registry replica on {node}: copying {len(todo)} image(s) it lacks from the other replicas")
        for item, source in todo:
            copy_manifest(regs[source], regs[node], item)
        done[node] = len(todo)
    return done


def copy_manifest(src: Registry, dst: Registry, item: Tagged) -> None:
    """Blobs the manifest names that *dst* lacks, then the manifest under its tag."""
    data, digest, media_type = src.get_manifest(item.repo, item.digest)
    try:
        manifest = json.loads(data)
        descs = [manifest["config"], *manifest["layers"]]
        blobs = [(str(d["digest"]), int(d["size"])) for d in descs]
    except (ValueError, KeyError, TypeError):
        raise VerificationError(f"{src.where}: {item.repo}@{digest[:19]}: not an image manifest this import "
                                "can copy") from None
    for blob, size in blobs:
        if dst.blob_exists(item.repo, blob):
            continue
        copy_blob(src, dst, item.repo, blob, size)
    dst.put_manifest(item.repo, item.tag, data, media_type or "application/vnd.oci.image.manifest.v1+json")


def copy_blob(src: Registry, dst: Registry, repo: str, digest: str, size: int) -> None:
    if size > MAX_BLOB:
        raise VerificationError(f"{src.where}: {repo}: blob {digest[:19]} of {size} bytes is larger than allowed")
    with tempfile.TemporaryFile(prefix="tvdeploy-blob-") as fh:
        for chunk in src.get_blob(repo, digest, size):
            fh.write(chunk)
        if fh.tell() != size:
            raise VerificationError(f"{src.where}: {repo}: blob {digest[:19]} is {fh.tell()} bytes, expected {size}")
        dst.upload_blob(repo, digest, fh, 0, size)  # re-hashed while sent, checked by the registry
