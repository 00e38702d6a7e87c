"""Every certificate of a site with its expiry: the CA and operator certificate (local) and each
node's server certificate (read over SSH). A node that cannot be read is listed with its error."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import TvdeployError
from tvdeploy.parallel import for_each
from tvdeploy.pki.certinfo import cert_info, signed_by, utcnow

if TYPE_CHECKING:
    from cryptography import x509

    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.reporting import Reporter


def _load(pem: bytes | str | None) -> x509.Certificate | None:
    from cryptography import x509 as _x509

    if not pem:
        return None
    try:
        return _x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError:
        return None


def describe(name: str, kind: str, pem: bytes | str | None, ca: x509.Certificate | None,
             now: datetime) -> dict[str, Any]:
    """One row: subject, expiry, days left and a state (ok, renew, expired, missing, foreign)."""
    cert = _load(pem)
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


def site_status(site: Site, pool: SSHPool, reporter: Reporter) -> dict[str, Any]:
    from tvdeploy.facts.host import gather
    from tvdeploy.pki.ca import pki_paths

    now = utcnow()
    paths = pki_paths(site)
    ca_pem = paths.cert.read_bytes() if paths.cert.is_file() else None
    ca = _load(ca_pem)
    client = paths.client_dir / "cert.pem"
    rows = [
        describe("site CA", "ca", ca_pem, ca, now),
        describe("operator", "client", client.read_bytes() if client.is_file() else None, ca, now),
    ]

    def node_row(name: str) -> dict[str, Any]:
        try:
            facts = gather(name, pool.get(name))
        except TvdeployError as exc:
            return {"name": name, "kind": "server", "state": f"error: {exc.message}"}
        row = describe(name, "server", facts.server_cert_pem, ca, now)
        if facts.clock_offset is not None:
            row["clock_offset_seconds"] = round(facts.clock_offset, 3)
        for w in facts.warnings:
            reporter.warn(w)
        return row

    rows += for_each([n.name for n in site.nodes], node_row)
    return {"site": site.site.name, "ca_file": str(paths.cert), "certificates": rows}
