"""Where the site registry is and how services name its images (pure: no I/O).

The registry runs on the first manager of the site file and is addressed by that manager's IP
and ``registry.port`` (no DNS on an air-gapped site). Every node trusts it through
``/etc/docker/certs.d/<address>:<port>/ca.crt``, and services reference
``<address>:<port>/<repository>@sha256:<digest>`` (ARCHITECTURE.md, images on an air-gapped site).
The executor that deploys the registry is ``tvdeploy.execute.site_registry``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvdeploy.errors import RefusedError

if TYPE_CHECKING:
    from tvdeploy.config.site import Site

SERVICE = "tv-registry"  # the swarm service of the site registry
IMAGE_KEY = "registry"  # the release's service name of the registry image


@dataclass(frozen=True)
class Endpoint:
    node: str
    address: str
    port: int

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    def reference(self, repository: str, digest: str) -> str:
        """The digest-pinned reference a service uses, e.g. ``10.0.0.11:5000/trueverit/cloud@sha256:...``."""
        return f"{self.host}/{repository}@{digest}"


def endpoint(site: Site) -> Endpoint:
    """The registry runs on the first manager of the site file."""
    if not site.managers:
        raise RefusedError(f"site {site.site.name}: no manager node for the site registry")
    node = site.managers[0]
    return Endpoint(node.name, str(node.address), site.registry.port)


def certs_d_path(ep: Endpoint) -> str:
    """Where a node's dockerd finds the CA that signed the registry's certificate."""
    return f"/etc/docker/certs.d/{ep.host}/ca.crt"
