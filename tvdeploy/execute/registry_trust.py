"""Every node's side of the site registry: it can find it, trust it, and is let in.

Per node, in one read and at most three writes over SSH (all idempotent):
- ``/etc/hosts``: tvdeploy's block mapping ``tv-registry`` to every manager's address
  (``tvdeploy.release.registry_address``), written atomically where /etc/hosts is a plain file
  and in place where it is a bind mount (a rename over a mount point fails);
- ``/etc/docker/certs.d/tv-registry:<port>/ca.crt``: the site CA;
- ``client.key`` + ``client.cert`` beside it: the key made ON the node (only a CSR travels), the
  certificate signed here (EKU clientAuth), reissued when missing, not from the site CA or
  expiring within 30 days. dockerd presents it on every pull: the registry refuses anonymous
  clients.

A node that SSH cannot reach is reported and skipped (the next import catches it up): losing a
node must not stop an import to the others.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import ConnectionFailed
from tvdeploy.pki.issue import keygen_command
from tvdeploy.release.registry_address import certs_d_dir, certs_d_path, endpoint, with_hosts_block

if TYPE_CHECKING:
    from tvdeploy.config.site import Node, Site
    from tvdeploy.connectors.ssh import SSHConnection, SSHPool
    from tvdeploy.reporting import Reporter

RENEW_BEFORE = timedelta(days=30)
HOSTS = "/etc/hosts"
SPLIT = "----tvdeploy-hosts----"


@dataclass
class NodeTrust:
    node: str
    changed: list[str]  # "hosts", "ca", "client certificate (why)"
    error: str | None = None


def client_cert_reason(cert_pem: bytes, has_key: bool, ca_cert: Any, now: datetime) -> str | None:
    """Why a node's registry client certificate must be (re)issued, or None when it is fine."""
    from cryptography import x509

    if not has_key or b"BEGIN CERTIFICATE" not in cert_pem:
        return "none yet"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # noqa: BLE001 - any parse or signature failure means: issue again
        return "not issued by the site CA"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "expires within 30 days"
    return None


def hosts_write_command() -> str:
    """Replace /etc/hosts with stdin: rename where it is a plain file, else rewrite in place."""
    return ("set -e; umask 022; tmp=$(mktemp /etc/hosts.tvdeploy.XXXXXX); cat > \"$tmp\"; chmod 644 \"$tmp\"; "
            "if mv -f \"$tmp\" /etc/hosts 2>/dev/null; then :; else cat \"$tmp\" > /etc/hosts; rm -f \"$tmp\"; fi")


def install_trust_everywhere(site: Site, pool: SSHPool, reporter: Reporter, now: datetime) -> list[NodeTrust]:
    """Every node: hosts block, CA, client certificate (parallel, bounded)."""
    from tvdeploy.parallel import for_each
    from tvdeploy.pki.ca import ca_passphrase, load_ca, pki_paths

    ca_pem = pki_paths(site).cert.read_bytes()
    signer: list[Any] = []  # the CA key, loaded once and only when a certificate is due
    lock = threading.Lock()

    def ca() -> Any:
        with lock:
            if not signer:
                signer.append(load_ca(pki_paths(site), ca_passphrase(site)))
            return signer[0]

    def one(node: Node) -> NodeTrust:
        try:
            return trust_node(site, pool.get(node.name), node, ca_pem, ca, now)
        except ConnectionFailed as exc:
            return NodeTrust(node.name, [], exc.message)

    results = for_each(site.nodes, one, label=lambda n: f"node {n.name}")
    for r in results:
        if r.error:
            reporter.warn(f"node {r.node}: registry trust not updated ({r.error}); the next import retries")
    changed = [r for r in results if r.changed]
    if changed:
        reporter.info("registry trust updated on " + ", ".join(f"{r.node} ({', '.join(r.changed)})" for r in changed))
    return results


def trust_node(site: Site, conn: SSHConnection, node: Node, ca_pem: bytes, ca: Callable[[], Any],
               now: datetime) -> NodeTrust:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from tvdeploy.connectors.ssh import FileSpec
    from tvdeploy.pki.issue import sign_client_csr

    ep = endpoint(site)
    d = certs_d_dir(ep)
    q = shlex.quote
    current = conn.run(f"cat {q(d)}/ca.crt 2>/dev/null; echo {SPLIT}; cat {q(d)}/client.cert 2>/dev/null; "
                       f"test -s {q(d)}/client.key || echo nokey; echo {SPLIT}; cat {HOSTS}", check=False).stdout
    parts = current.split(SPLIT + "\n")
    if len(parts) != 3:
        raise ConnectionFailed(f"node {node.name}: could not read its registry trust files")
    ca_now, client_now, hosts_now = parts
    out = NodeTrust(node.name, [])
    files: list[FileSpec] = []
    if ca_now.encode() != ca_pem:
        files.append(FileSpec(certs_d_path(ep), ca_pem, 0o444))
        out.changed.append("ca")
    why = client_cert_reason(client_now.encode(), "nokey" not in client_now,
                             x509.load_pem_x509_certificate(ca_pem), now)
    then = ""
    if why is not None:
        staged = f"{d}/client.key.tvdeploy-new"  # no .key suffix: dockerd ignores it until the move
        csr = conn.run(keygen_command(d, staged, f"{node.name} registry client")).stdout.encode()
        signer = ca()
        cert = sign_client_csr(signer, csr, node.name, site.site.name, site.pki.server_cert_days, now)
        files.append(FileSpec(f"{d}/client.cert.tvdeploy-new", cert.public_bytes(serialization.Encoding.PEM), 0o444))
        then = f"mv -f {q(staged)} {q(d)}/client.key; mv -f {q(d)}/client.cert.tvdeploy-new {q(d)}/client.cert"
        out.changed.append(f"client certificate: {why}")
    if files:
        conn.put_files(files, then=then)
    wanted = with_hosts_block(hosts_now, ep)
    if wanted != hosts_now:
        conn.run(hosts_write_command(), input=wanted.encode())
        out.changed.append("hosts")
    return out
