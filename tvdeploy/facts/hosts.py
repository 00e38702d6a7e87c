"""The host facts of every node of a site, read over SSH in parallel (one probe per node). A node
that cannot be read is given as its error, so one unreachable node hides no other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tvdeploy.errors import TvdeployError
from tvdeploy.facts.host import HostFacts, gather
from tvdeploy.parallel import for_each

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool


def gather_all(site: Site, pool: SSHPool) -> dict[str, HostFacts | TvdeployError]:
    """Node name -> its facts, or the error that kept them from being read."""

    def one(name: str) -> HostFacts | TvdeployError:
        try:
            return gather(name, pool.get(name))
        except TvdeployError as exc:
            return exc

    names = [n.name for n in site.nodes]
    return dict(zip(names, for_each(names, one), strict=True))
