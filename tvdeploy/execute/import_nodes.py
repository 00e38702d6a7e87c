"""``node-load`` mode of ``bundle import`` (sites without a registry): stream one ``docker load``
archive of the images a node lacks to every node over its TLS Docker API, then check every image
id and tag there (a loaded image is pinned by id: moby#43570)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tvdeploy.bundle.images import BundleFile, BundleImage
from tvdeploy.bundle.sizes import format_size
from tvdeploy.errors import ConnectionFailed, VerificationError
from tvdeploy.execute.import_patches import drop_rebuilt
from tvdeploy.execute.import_records import ImportResult, JournalFile, Moved
from tvdeploy.execute.site_registry import LOAD_TIMEOUT, docker_client, load
from tvdeploy.parallel import for_each
from tvdeploy.release import import_state as S
from tvdeploy.release import site_inventory as inv

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter


def to_nodes(site: Site, bf: BundleFile, images: list[BundleImage], journal: S.Journal, jfile: JournalFile,
             reporter: Reporter, result: ImportResult) -> None:
    lock = threading.Lock()

    def one(node: Any) -> Moved:
        stats = load_on_node(site, node, bf, images, reporter)
        with lock:
            for img in images:
                jfile.add(journal, {"loaded": f"{node.name}/{img.service}"})
        return stats

    start = time.monotonic()
    try:
        all_stats = for_each(site.nodes, one, limit=4, label=lambda n: f"node {n.name}")
    finally:
        drop_rebuilt(bf)  # patched layers rebuilt for the load by the delta check
    result.seconds["load"] = time.monotonic() - start
    result.bytes_moved = sum(s.moved for s in all_stats)
    result.bytes_skipped = sum(s.skipped for s in all_stats)
    result.nodes = [n.name for n in site.nodes]
    for img in images:
        result.images[img.service] = f"sha256:{img.config_hex}"
    reporter.info(f"{len(images)} images on {len(site.nodes)} node(s): {format_size(result.bytes_moved)} moved, "
                  f"{format_size(result.bytes_skipped)} skipped (already loaded)")


def load_on_node(site: Site, node: Any, bf: BundleFile, images: list[BundleImage], reporter: Reporter) -> Moved:
    """Load the images the node lacks (one streamed archive), then check every image id and tag."""
    import docker.errors

    from tvdeploy.bundle.dockerload import archive_size, stream

    stats = Moved()
    api = docker_client(site, node, timeout=LOAD_TIMEOUT).api
    try:
        missing = []
        for img in images:
            try:
                api.inspect_image(img.load_image().image_id)
                stats.skipped += img.size
            except docker.errors.ImageNotFound:
                missing.append(img)
        key = f"load.{node.name}"
        if missing:
            loads = [i.load_image() for i in missing]
            absent = frozenset(h for i in missing for h, _s in i.layers if h not in bf.shipped and h not in bf.patches)
            reporter.task(key, f"{node.name}: loading {len(missing)} image(s)", total=archive_size(loads, absent),
                          unit="bytes")
            with bf.open() as fh:
                def counted() -> Iterator[bytes]:
                    for chunk in stream(loads, lambda hexd, size: _blob(bf, fh, hexd, size), absent):
                        reporter.advance(key, len(chunk))
                        yield chunk
                load(api, counted(), node.name)
            stats.moved = sum(size for i in missing for h, size in i.blobs if h in bf.shipped or h in bf.patches)
            reporter.done(key, f"{node.name}: {len(missing)} image(s) loaded")
        for img in images:
            want = img.load_image().image_id
            try:
                info = api.inspect_image(want)
            except docker.errors.ImageNotFound:
                raise VerificationError(f"node {node.name}: image {img.service} ({want[:19]}) missing after load") \
                    from None
            if info.get("Id") != want:
                raise VerificationError(f"node {node.name}: image {img.service} has id {info.get('Id')}, "
                                        f"expected {want}")
            tag = img.load_image().tag
            if tag and tag not in (info.get("RepoTags") or []):
                repo, _, t = tag.rpartition(":")
                api.tag(want, repo, t)
    except docker.errors.APIError as exc:
        raise ConnectionFailed(f"node {node.name}: Docker API error: {exc.explanation or exc}") from None
    finally:
        api.close()
    return stats


def _blob(bf: BundleFile, fh: Any, hexd: str, size: int) -> Iterator[bytes]:
    """A blob for the load archive: from the bundle, or a patched layer rebuilt beforehand."""
    if hexd in bf.rebuilt:
        from tvdeploy.execute.import_patches import file_chunks

        return file_chunks(bf.rebuilt[hexd], hexd, size)
    return bf.chunks(fh, hexd)


def nodes_blobs(site: Site) -> set[str]:
    """Config and layer digests of the images present on EVERY node (what a delta may leave out)."""
    def one(node: Any) -> set[str]:
        api = docker_client(site, node).api
        try:
            return inv.node_blobs([api.inspect_image(i["Id"]) for i in api.images()])
        finally:
            api.close()

    sets = for_each(site.nodes, one, label=lambda n: f"node {n.name}")
    return set.intersection(*sets) if sets else set()
