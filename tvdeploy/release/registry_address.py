"""Where the site registry is and how services name its images (pure: no I/O).

A replica of the registry runs on EVERY manager (``tvdeploy.execute.site_registry``), each with
its own storage, key and certificate, all filled by ``bundle import``: digests make any copy as
good as another. Services reference ``tv-registry:<port>/<repository>@sha256:<digest>`` — a NAME,
not one manager's IP — and every node maps that name to every manager's address in its
``/etc/hosts`` (a block tvdeploy owns; no DNS on an air-gapped site). dockerd (Go) gets all the
addresses of the name from /etc/hosts and dials them in order until one connects, so a pull goes
to the first manager whose replica answers (seen on the lab: a refused address is skipped at
once). Each replica's certificate carries the name (and its own IP, for tvdeploy, which reaches
each replica by address). Every node trusts the registry through
``/etc/docker/certs.d/tv-registry:<port>/`` (``ca.crt``, and ``client.cert``/``client.key``: the
registry refuses a client without a certificate from the site CA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvdeploy.errors import RefusedError

if TYPE_CHECKING:
    from tvdeploy.config.site import Site

SERVICE = "tv-registry"  # the swarm service of the site registry (one task per manager)
NAME = "tv-registry"  # the host name in image references, in /etc/hosts and in each certificate
IMAGE_KEY = "registry"  # the release's service name of the registry image
HOSTS_BEGIN = "# BEGIN tvdeploy site registry (managed by tvdeploy: every manager runs a replica)"
HOSTS_END = "# END tvdeploy site registry"


@dataclass(frozen=True)
class Replica:
    """One manager's copy of the registry, reached by tvdeploy at its address."""

    node: str
    address: str
    port: int

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Endpoint:
    """The registry as services see it (``host``), and its replicas in site-file order.
    ``node``/``address`` are the first manager's, for a caller that wants one replica."""

    node: str
    address: str
    port: int
    replicas: tuple[Replica, ...] = ()

    @property
    def host(self) -> str:
        return f"{NAME}:{self.port}"

    def reference(self, repository: str, digest: str) -> str:
        """The digest-pinned reference a service uses, e.g. ``tv-registry:5000/trueverit/cloud@sha256:...``."""
        return f"{self.host}/{repository}@{digest}"


def endpoint(site: Site) -> Endpoint:
    """A replica on every manager of the site file; the first one first."""
    if not site.managers:
        raise RefusedError(f"site {site.site.name}: no manager node for the site registry")
    port = site.registry.port
    replicas = tuple(Replica(n.name, str(n.address), port) for n in site.managers)
    return Endpoint(replicas[0].node, replicas[0].address, port, replicas)


def certs_d_dir(ep: Endpoint) -> str:
    """Where a node's dockerd finds the registry's CA and its own client certificate."""
    return f"/etc/docker/certs.d/{ep.host}"


def certs_d_path(ep: Endpoint) -> str:
    """The CA that signed every replica's certificate, as a node's dockerd reads it."""
    return f"{certs_d_dir(ep)}/ca.crt"


def hosts_block(ep: Endpoint) -> str:
    """The /etc/hosts lines that map the registry's name to every replica, in site-file order."""
    lines = [HOSTS_BEGIN, *(f"{r.address}\t{NAME}" for r in ep.replicas), HOSTS_END]
    return "\n".join(lines) + "\n"


def with_hosts_block(text: str, ep: Endpoint) -> str:
    """*text* (an /etc/hosts) with tvdeploy's block replaced (or appended); every other line,
    including any the operator wrote for the same name outside the block, is kept as it is."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip() == HOSTS_BEGIN:
            inside = True
        elif inside and line.strip() == HOSTS_END:
            inside = False
        elif not inside:
            out.append(line)
    body = "\n".join(out).rstrip("\n")
    return (body + "\n" if body else "") + hosts_block(ep)
