"""Layers a delta ships as byte-level patches, rebuilt on the site (issue 18).

Each patched layer is rebuilt from its base, read back from the site registry (the base digest
is the one the signed statement names; its bytes are hashed against it while read), and the
patch blob from the bundle (re-hashed while read), streaming: ``tvdeploy.bundle.patch`` bounds
the output by the signed size and checks the signed digest at the end.

Every patched layer is rebuilt ONCE, into a file on the operator's machine (the import state
folder), BEFORE anything is pushed or loaded: a patch that rebuilds to other bytes, past its
size, or against a base the site lacks is refused with nothing written to the site. The push
(or load) then sends those files, re-hashed while sent; they are removed afterwards. Memory: one
base at a time (see patch.py: about twice the base, at most 2 x 512 MiB); disk: the rebuilt
layers. Registry mode reads bases back from the site registry (``rebuild_from_registry``);
node-load mode from the first node (``rebuild_for_nodes``: ``docker save`` of an image that holds
the base, the layer hashed against the named digest).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from tvdeploy.bundle.patch import CHUNK, MAX_LAYER, Base, PatchError, apply_patch, read_chunks
from tvdeploy.errors import RefusedError

if TYPE_CHECKING:
    from tvdeploy.bundle.images import BundleFile, BundleImage
    from tvdeploy.bundle.reader import Patch
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.registry import Registry


def repos_for(images: list[BundleImage], hexd: str) -> list[str]:
    """Repositories to look in for a base: those of the images using the patched layer first."""
    own = [img.repo for img in images if any(h == hexd for h, _s in img.layers)]
    rest = sorted({img.repo for img in images} - set(own))
    return list(dict.fromkeys(own)) + rest


def load_base(reg: Registry, patch: Patch, repos: list[str]) -> Base:
    digest = f"sha256:{patch.base}"
    for repo in repos:
        if reg.blob_exists(repo, digest):
            try:
                return Base.load(patch.base, reg.get_blob(repo, digest, MAX_LAYER))
            except PatchError as exc:
                raise PatchError(f"{reg.where}: {repo}: {exc.message}") from None
    raise RefusedError(f"{reg.where}: base blob {digest} of patched layer sha256:{patch.digest} is not on this "
                       "site; import the release the delta was built against first")


def rebuild_to_file(base: Base, bf: BundleFile, fh: BinaryIO, patch: Patch, workdir: Path) -> Path:
    """Apply *patch* into ``workdir/<layer hex>.layer`` (written under a temporary name, renamed
    only once the result matched the signed digest and size)."""
    name = f"{bf.bundle.path}: blobs/sha256/{patch.patch} (patch of layer sha256:{patch.digest[:12]})"
    tmp = workdir / f"{patch.digest}.partial"
    try:
        with open(tmp, "wb") as out:
            for chunk in apply_patch(base, bf.chunks(fh, patch.patch), patch.digest, patch.size, name=name):
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    final = workdir / f"{patch.digest}.layer"
    os.replace(tmp, final)
    return final


def rebuild_from_registry(reg: Registry, bf: BundleFile, images: list[BundleImage], workdir: Path) -> dict[str, Path]:
    """Every patched layer its own repository lacks, rebuilt once from its base read back from
    the registry into *workdir*, BEFORE any push: layer hex -> file. A patch that rebuilds to
    other bytes or past its size is refused with nothing written to the site."""
    out: dict[str, Path] = {}
    with bf.open() as fh:
        for hexd, patch in sorted(bf.patches.items()):
            if reg.blob_exists(repos_for(images, hexd)[0], f"sha256:{hexd}"):
                continue  # an earlier, interrupted import pushed it
            out[hexd] = rebuild_to_file(load_base(reg, patch, repos_for(images, hexd)), bf, fh, patch, workdir)
    return out


def drop_rebuilt(bf: BundleFile) -> None:
    """Remove the rebuilt layers' files (after the push or load, or when it failed)."""
    for path in bf.rebuilt.values():
        path.unlink(missing_ok=True)


# -- node-load mode -------------------------------------------------------------------------------

class _StreamReader:
    """read/readinto over the chunks of a Docker API response (``docker save`` of an image)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = iter(chunks)
        self.pending = b""

    def read(self, n: int = -1, /) -> bytes:
        while not self.pending:
            try:
                self.pending = bytes(next(self.chunks))
            except StopIteration:
                return b""
        if n < 0:
            n = len(self.pending)
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def readinto(self, view: memoryview, /) -> int:
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)


def base_from_node(api: Any, node_name: str, base_hex: str, workdir: Path) -> Path:
    """The base layer's bytes, from ``docker save`` of an image on the node that has it,
    spooled to *workdir* and checked against its digest."""
    from tvdeploy.bundle import tarin, tarout
    from tvdeploy.bundle.patchbase import layers_from_save

    holder = next((img["Id"] for img in api.images()
                   if f"sha256:{base_hex}" in ((api.inspect_image(img["Id"]).get("RootFS") or {}).get("Layers") or [])),
                  None)
    if holder is None:
        raise RefusedError(f"node {node_name}: base layer sha256:{base_hex} of a patch is not on this node")
    try:
        got = layers_from_save(_StreamReader(api.get_image(holder, chunk_size=CHUNK)), {base_hex}, workdir)
    except (tarin.TarStreamError, tarout.TruncatedSource, PatchError) as exc:
        raise RefusedError(f"node {node_name}: docker save of image {holder[:19]}: {exc}") from None
    if base_hex not in got:
        raise RefusedError(f"node {node_name}: image {holder[:19]} did not give base layer sha256:{base_hex}")
    return got[base_hex]


def rebuild_for_nodes(site: Site, bf: BundleFile, workdir: Path) -> dict[str, Path]:
    """node-load: every patched layer rebuilt once, on this machine, from its base read from the
    first node (every node holds it: the delta check asked all of them), checked against the
    signed digest and size, into *workdir*: layer hex -> file. Nothing is written to the site."""
    from tvdeploy.execute.site_registry import docker_client

    node = site.nodes[0]
    api = docker_client(site, node, timeout=600).api
    out: dict[str, Path] = {}
    bases: dict[str, Path] = {}
    try:
        with bf.open() as fh:
            for hexd, patch in sorted(bf.patches.items()):
                if patch.base not in bases:
                    bases[patch.base] = base_from_node(api, node.name, patch.base, workdir)
                with open(bases[patch.base], "rb") as bfh:
                    base = Base.load(patch.base, read_chunks(bfh, os.fstat(bfh.fileno()).st_size))
                out[hexd] = rebuild_to_file(base, bf, fh, patch, workdir)
    finally:
        api.close()
        for path in bases.values():
            path.unlink(missing_ok=True)
    return out


def file_chunks(path: Path, hexd: str, size: int) -> Iterator[bytes]:
    """A rebuilt layer's bytes from its file, re-hashed (a file changed meanwhile is refused)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in read_chunks(fh, size):
            digest.update(chunk)
            yield chunk
    if digest.hexdigest() != hexd:
        raise PatchError(f"{path}: rebuilt layer sha256:{hexd} changed on disk")
