"""The swarm of a formed site, over the Docker API only: ``swarm status`` (every node as the swarm
sees it, with the expiry of the TLS server certificate each node's API presents) and ``swarm
unlock`` (managers that came back locked, unlocked with the escrowed key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tvdeploy.errors import InputFileError
from tvdeploy.execute.swarm_session import Clients, client_cert, observe_swarm, open_clients
from tvdeploy.parallel import for_each
from tvdeploy.plan.swarm import Step, SwarmPlan, plan_swarm
from tvdeploy.plan.swarm_status import status_document, status_findings

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.facts.swarm_model import SwarmFacts
    from tvdeploy.reporting import Reporter


def require_clients(site: Site, clients: Clients) -> None:
    """Open a client per node, or refuse when there is no operator client certificate yet."""
    from tvdeploy.pki.ca import pki_paths

    open_clients(site, clients)
    if not clients:
        raise InputFileError(
            f"{pki_paths(site).client_dir}: no operator client certificate; "
            "run tvdeploy swarm bootstrap (or tls apply) first"
        )


def cert_expiry(site: Site) -> dict[str, str | None]:
    """Each node's TLS *server* certificate expiry, read from the certificate its Docker API
    presents in a verified mutual-TLS handshake (what clients actually get; swarm's own node
    certificates rotate automatically within swarm.cert_expiry_hours and are not shown)."""
    from cryptography import x509

    from tvdeploy.connectors.docker_api import presented_certificate
    from tvdeploy.errors import TvdeployError

    certs = client_cert(site)
    if certs is None:
        return {}

    def one(name: str) -> str | None:
        node = site.node(name)
        try:
            pem = presented_certificate(name, str(node.address), certs, timeout=5.0)
        except TvdeployError:
            return None
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")

    names = [n.name for n in site.nodes]
    return dict(zip(names, for_each(names, one), strict=True))


def swarm_status(site: Site, clients: Clients, facts: SwarmFacts | None = None) -> dict[str, Any]:
    """The ``swarm status`` document; *facts* when they were just observed."""
    facts = facts if facts is not None else observe_swarm(site, clients)
    findings = status_findings(site, facts, plan_swarm(site, facts))
    return status_document(site, facts, cert_expiry(site), findings)


def unlock_locked(site: Site, clients: Clients, reporter: Reporter) -> list[str]:
    """Unlock every manager whose swarm is locked; returns their names."""
    from tvdeploy.execute.swarm import SwarmExecutor

    facts = observe_swarm(site, clients)
    locked = [n.name for n in site.managers if facts.local[n.name].local_state == "locked"]
    if locked:
        SwarmExecutor(site, clients, reporter).run(SwarmPlan([Step("unlock", name) for name in locked]))
    return locked
