"""The deploy lock (``tvdeploy.execute.deploy_lock``) for commands that may run before the swarm
exists: ``swarm bootstrap`` and ``bundle import`` hold it whenever the site's swarm answers; a
site with no swarm yet has nowhere to keep the lease (and nothing another operator could be
deploying to)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tvdeploy.errors import TvdeployError

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter


@contextmanager
def hold_if_swarm(site: Site, command: str, reporter: Reporter) -> Iterator[None]:
    """The lease for the block when a manager's swarm answers; refused (exit 1, naming the owner
    and the expiry) when another command holds it."""
    from tvdeploy.audit.recorder import prepare as unlock_operator_key
    from tvdeploy.execute.deploy_lock import hold
    from tvdeploy.facts.services import manager_client

    try:
        manager_client(site, timeout=10).close()
    except TvdeployError:
        yield
        return
    unlock_operator_key()  # the lease names the operator's key id
    with hold(site, command, reporter):
        yield
