"""Layers a delta ships as byte-level patches, rebuilt on the site (issue 18).

Each patched layer is rebuilt from its base, read back from the site registry (the base digest
is the one the signed statement names; its bytes are hashed against it while read), and the
patch blob from the bundle (re-hashed while read), streaming: ``tvdeploy.bundle.patch`` bounds
the output by the signed size and checks the signed digest at the end.

``check_patches`` rebuilds every patched layer the registry does not hold yet once, discarding
the bytes, BEFORE anything is pushed: a patch that rebuilds to other bytes, past its size, or
against a base the site lacks is refused with nothing written to the site. ``rebuilt`` then
rebuilds a layer again while it is uploaded (the registry checks the digest once more).
Memory: one base at a time (see patch.py: about twice the base, at most 2 x 512 MiB).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from tvdeploy.bundle.patch import MAX_LAYER, Base, PatchError, apply_patch, check_patch
from tvdeploy.errors import RefusedError

if TYPE_CHECKING:
    from tvdeploy.bundle.images import BundleFile, BundleImage
    from tvdeploy.bundle.reader import Patch
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


def rebuilt(reg: Registry, bf: BundleFile, fh: BinaryIO, patch: Patch, repos: list[str]) -> Iterator[bytes]:
    """The layer *patch* rebuilds, streamed (use it only once the iterator ended without error)."""
    base = load_base(reg, patch, repos)
    name = f"{bf.bundle.path}: blobs/sha256/{patch.patch} (patch of layer sha256:{patch.digest[:12]})"
    return apply_patch(base, bf.chunks(fh, patch.patch), patch.digest, patch.size, name=name)


def check_patches(reg: Registry, bf: BundleFile, images: list[BundleImage]) -> None:
    """Rebuild (and discard) every patched layer the registry lacks: refused before any push."""
    todo = [p for h, p in sorted(bf.patches.items())
            if not any(reg.blob_exists(repo, f"sha256:{h}") for repo in repos_for(images, h)[:1])]
    if not todo:
        return
    with bf.open() as fh:
        for patch in todo:
            base = load_base(reg, patch, repos_for(images, patch.digest))
            name = f"{bf.bundle.path}: blobs/sha256/{patch.patch} (patch of layer sha256:{patch.digest[:12]})"
            check_patch(base, bf.chunks(fh, patch.patch), patch.digest, patch.size, name=name)
