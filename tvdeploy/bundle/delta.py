"""Deltas: a bundle that carries only the layers a site lacks.

``since(inventory)`` turns a verified site inventory into what ``write_bundle`` needs to leave
out layers; ``missing_base_blobs(bundle, site_digests)`` is what an import checks first: the
layers a delta expects on the site, and the bases its patches apply to, that the site does not
hold (an empty list means the delta can be imported; a full bundle never misses any).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from tvdeploy.bundle.writer import Since

if TYPE_CHECKING:
    from tvdeploy.bundle.inventory import Inventory
    from tvdeploy.bundle.reader import Bundle


def since(inventory: Inventory) -> Since:
    about: dict[str, object] = {"site": inventory.site, "inventory_created": inventory.created,
                                "inventory_sha256": inventory.sha256}
    if inventory.last_release is not None:
        about["release"] = inventory.last_release["release"]
        about["sequence"] = inventory.last_release["sequence"]
    return Since(inventory.hexes, about)


def missing_base_blobs(bundle: Bundle, site_digests: Iterable[str]) -> list[str]:
    """The ``sha256:<hex>`` digests *bundle* expects on the site (layers left out, bases of its
    patches) but *site_digests* (``sha256:`` digests or bare hex, e.g. ``Inventory.digests``)
    lacks, sorted."""
    have = {d.removeprefix("sha256:") for d in site_digests}
    return [f"sha256:{h}" for h in sorted(set(bundle.expected) | set(bundle.patch_bases)) if h not in have]


def expected_bytes(bundle: Bundle) -> int:
    return sum(bundle.expected.values())


def shipped_bytes(bundle: Bundle) -> int:
    from tvdeploy.bundle.layout import BLOB_PREFIX

    return sum(r.size for p, r in bundle.files.items() if p.startswith(BLOB_PREFIX))


def patched_bytes(bundle: Bundle) -> int:
    """Bytes of the layers a delta ships as patches, once rebuilt (the patches are shipped)."""
    return sum(p.size for p in bundle.patches.values())
