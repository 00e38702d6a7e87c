"""Every certificate of a site with its expiry: the CA and operator certificate (local) and each
node's server certificate (from its host facts, read over SSH by tvdeploy.facts.hosts). A node
that could not be read is listed with its error."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import TvdeployError
from tvdeploy.pki.certinfo import cert_info, parse_cert, signed_by, utcnow

if TYPE_CHECKING:
    from cryptography import x509

    from tvdeploy.config.site import Site
    from tvdeploy.facts.host import HostFacts
    from tvdeploy.reporting import Reporter


def describe(name: str, kind: str, pem: bytes | str | None, ca: x509.Certificate | None,
             now: datetime) -> dict[str, Any]:
    """One row: subject, expiry, days left and a state (ok, renew, expired, missing, foreign)."""
    cert = parse_cert(pem)
    if cert is None:
        return {"name": name, "kind": kind, "state": "missing" if pem is None else "unreadable"}
    info = cert_info(cert)
    doc: dict[str, Any] = {"name": name, "kind": kind, **info.to_json(now)}
    if info.days_left(now) <= 0:
        doc["state"] = "expired"
    elif ca is not None and kind != "ca" and not signed_by(cert, ca):
        doc["state"] = "not signed by the site CA"
    elif kind != "ca" and info.needs_renewal(now):
        doc["state"] = "renew (tls apply)"
    else:
        doc["state"] = "ok"
    return doc


def site_status(site: Site, host_facts: dict[str, HostFacts | TvdeployError], reporter: Reporter) -> dict[str, Any]:
    """The ``tls status`` document from the local PKI and the nodes' facts (tvdeploy.facts.hosts);
    the facts' warnings (clock offsets) go to *reporter*."""
    from tvdeploy.pki.ca import pki_paths

    now = utcnow()
    paths = pki_paths(site)
    ca_pem = paths.cert.read_bytes() if paths.cert.is_file() else None
    ca = parse_cert(ca_pem)
    client = paths.client_dir / "cert.pem"
    rows = [
        describe("site CA", "ca", ca_pem, ca, now),
        describe("operator", "client", client.read_bytes() if client.is_file() else None, ca, now),
    ]
    for name, facts in host_facts.items():
        if isinstance(facts, TvdeployError):
            rows.append({"name": name, "kind": "server", "state": f"error: {facts.message}"})
            continue
        row = describe(name, "server", facts.server_cert_pem, ca, now)
        if facts.clock_offset is not None:
            row["clock_offset_seconds"] = round(facts.clock_offset, 3)
        for w in facts.warnings:
            reporter.warn(w)
        rows.append(row)
    return {"site": site.site.name, "ca_file": str(paths.cert), "certificates": rows}
