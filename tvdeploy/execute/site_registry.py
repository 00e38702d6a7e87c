"""The site registry: Distribution as swarm service ``tv-registry`` on one manager, TLS from the
site CA, storage on a named volume, reached at that manager's address and ``registry.port``.

Key placement (a choice): the registry's private key is made ON the registry manager with openssl
(only the CSR travels, as for dockerd) and stays in a file there, bind-mounted read-only into the
task, which is therefore pinned to that node by its swarm node id. A Docker secret would carry the
key through the swarm API and the raft log: exactly the "private key leaves the machine that
made it" the product rules out. Pinning also keeps the named volume (node-local storage) with
the task. The port is published in host mode on that manager, so the address is that manager's
IP whatever the site's ingress mesh can do.

Every node trusts the registry through ``/etc/docker/certs.d/<address>:<port>/ca.crt``. Where the
registry is (pure) is ``tvdeploy.release.registry_address``.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import ConnectionFailed, RefusedError, TvdeployError
from tvdeploy.pki.certinfo import sha256_fingerprint
from tvdeploy.pki.issue import keygen_command
from tvdeploy.release.registry_address import IMAGE_KEY, SERVICE, certs_d_path, endpoint

if TYPE_CHECKING:
    from tvdeploy.config.site import Node, Site
    from tvdeploy.connectors.registry import Registry
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

VOLUME = "tv-registry-data"
CERT_DIR = "/etc/docker/tvdeploy-registry"
KEY_FILE = f"{CERT_DIR}/key.pem"
CERT_FILE = f"{CERT_DIR}/cert.pem"
CONTAINER_CERTS = "/certs"
RENEW_BEFORE = timedelta(days=30)
READY_SECONDS = 90.0
LOAD_TIMEOUT = 900

def ca_file(site: Site) -> Path:
    from tvdeploy.pki.ca import pki_paths

    return pki_paths(site).cert


def open_registry(site: Site) -> Registry:
    from tvdeploy.connectors.registry import Registry

    ep = endpoint(site)
    return Registry(ep.address, ep.port, ca_file(site))


def docker_client(site: Site, node: Node, timeout: int = 15) -> Any:
    from tvdeploy.connectors.docker_api import ClientCert, connect
    from tvdeploy.pki.ca import pki_paths

    return connect(node.name, str(node.address), ClientCert.in_dir(pki_paths(site).client_dir), timeout=timeout)


def find_service(api: Any) -> dict[str, Any] | None:
    for svc in api.services(filters={"name": SERVICE}):
        if svc.get("Spec", {}).get("Name") == SERVICE:
            return dict(svc)
    return None


# -- the CA on every node ---------------------------------------------------------------------

def install_ca_everywhere(site: Site, pool: SSHPool, reporter: Reporter) -> None:
    """Every node's dockerd trusts the registry through certs.d (idempotent, parallel)."""
    from tvdeploy.connectors.ssh import FileSpec
    from tvdeploy.parallel import for_each

    ep = endpoint(site)
    ca_pem = ca_file(site).read_bytes()

    def one(node: Node) -> None:
        pool.get(node.name).put_files([FileSpec(certs_d_path(ep), ca_pem, 0o444)])

    for_each(site.nodes, one, label=lambda n: f"node {n.name}")
    reporter.info(f"site CA installed for {ep.host} on {len(site.nodes)} node(s)")


# -- key and certificate on the registry node ---------------------------------------------------

def _needs_certificate(cert_pem: bytes, ca_cert: Any, names: Any, now: datetime) -> str | None:
    """Why the registry certificate must be (re)issued, or None when it is fine."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # noqa: BLE001 - any parse or signature failure means: issue again
        return "not issued by the site CA"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "expires within 30 days"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        ips = set()
    if not set(names.ips) <= ips:
        return "addresses changed"
    return None


def ensure_certificate(site: Site, pool: SSHPool, reporter: Reporter, now: datetime) -> str | None:
    """Key made on the registry node, CSR signed here; returns the new certificate's sha256,
    or None when the node's certificate is still good."""
    from cryptography.hazmat.primitives import serialization

    from tvdeploy.pki.ca import ca_passphrase, load_ca, load_ca_cert, pki_paths
    from tvdeploy.pki.issue import ServerNames, sign_server_csr

    ep = endpoint(site)
    conn = pool.get(ep.node)
    names = ServerNames(dns=(ep.node, SERVICE), ips=tuple(str(n.address) for n in site.managers))
    current = conn.run(f"cat {CERT_FILE} 2>/dev/null; test -s {KEY_FILE} || echo nokey", check=False).stdout
    why = "no certificate" if "BEGIN CERTIFICATE" not in current or "nokey" in current else \
        _needs_certificate(current.encode(), load_ca_cert(pki_paths(site)), names, now)
    if why is None:
        return None
    ca = load_ca(pki_paths(site), ca_passphrase(site))
    staged = KEY_FILE + ".tvdeploy-new"
    csr = conn.run(keygen_command(CERT_DIR, staged, SERVICE)).stdout.encode()
    cert = sign_server_csr(ca, csr, ep.node, site.site.name, names, site.pki.server_cert_days, now)
    from tvdeploy.connectors.ssh import FileSpec

    conn.put_files([FileSpec(CERT_FILE + ".tvdeploy-new", cert.public_bytes(serialization.Encoding.PEM), 0o444)],
                   then=f"mv -f {shlex.quote(staged)} {KEY_FILE}; mv -f {CERT_FILE}.tvdeploy-new {CERT_FILE}")
    reporter.info(f"registry certificate issued on {ep.node} ({why})")
    return sha256_fingerprint(cert)


# -- the registry image and the service ---------------------------------------------------------

def ensure_image(api: Any, image_id: str, archive: Callable[[], Iterator[bytes]], node: str) -> bool:
    """Load the registry image onto *node* unless its id is there; True when loaded now."""
    import docker.errors

    try:
        api.inspect_image(image_id)
        return False
    except docker.errors.ImageNotFound:
        pass
    load(api, archive(), node)
    if api.inspect_image(image_id)["Id"] != image_id:
        raise TvdeployError(f"node {node}: loaded registry image id differs from {image_id}")
    return True


def load(api: Any, data: Iterator[bytes], node: str) -> None:
    """``docker load`` of a streamed archive; an error in dockerd's answer is one line."""
    import docker.errors
    import requests

    try:
        for msg in api.load_image(data):
            if isinstance(msg, dict) and msg.get("error"):
                raise TvdeployError(f"node {node}: docker load failed: {str(msg['error'])[:200]}")
    except docker.errors.APIError as exc:
        raise TvdeployError(f"node {node}: docker load failed: {exc.explanation or exc}") from None
    except requests.exceptions.RequestException as exc:
        raise ConnectionFailed(f"node {node}: docker load interrupted: {str(exc)[:200]}") from None


def service_spec(node_id: str, image_id: str, port: int) -> dict[str, Any]:
    """Arguments of ``create_service`` for the registry (pure: tested as data)."""
    from docker.types import ContainerSpec, EndpointSpec, Mount, Placement, RestartPolicy, TaskTemplate

    container = ContainerSpec(
        image_id,  # by image id: the task never tries to pull (the node has no route out)
        env={"REGISTRY_HTTP_TLS_CERTIFICATE": f"{CONTAINER_CERTS}/cert.pem",
             "REGISTRY_HTTP_TLS_KEY": f"{CONTAINER_CERTS}/key.pem",
             "REGISTRY_HTTP_ADDR": ":5000"},
        mounts=[Mount(CONTAINER_CERTS, CERT_DIR, type="bind", read_only=True),
                Mount("/var/lib/registry", VOLUME, type="volume")],
    )
    template = TaskTemplate(container, placement=Placement(constraints=[f"node.id=={node_id}", "node.role==manager"]),
                            restart_policy=RestartPolicy(condition="any", delay=2_000_000_000))
    return {
        "task_template": template,
        "name": SERVICE,
        "labels": {"tvdeploy.role": "site-registry"},
        "mode": {"Replicated": {"Replicas": 1}},
        "endpoint_spec": EndpointSpec(ports={port: (5000, "tcp", "host")}),
    }


def wait_ready(registry: Registry, timeout: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    last: TvdeployError | None = None
    while time.monotonic() < deadline:
        try:
            registry.ping()
            return
        except ConnectionFailed as exc:
            last = exc
            time.sleep(0.25)
    raise ConnectionFailed(f"{registry.where}: did not answer within {timeout:.0f} s after deploy"
                           + (f" ({last.message})" if last else ""))


@dataclass
class Deployed:
    created: bool
    image_loaded: bool
    certificate_sha256: str | None


def ensure_registry(site: Site, pool: SSHPool, registry: Registry, image_id: str | None,
                    archive: Callable[[], Iterator[bytes]] | None, reporter: Reporter, now: datetime) -> Deployed:
    """Make the site registry exist and answer. *image_id*/*archive*: the registry image of the
    bundle (needed only when the service does not exist yet)."""
    ep = endpoint(site)
    node = site.node(ep.node)
    install_ca_everywhere(site, pool, reporter)
    cert_sha = ensure_certificate(site, pool, reporter, now)
    api = docker_client(site, node, timeout=LOAD_TIMEOUT).api
    try:
        existing = find_service(api)
        if existing is not None:
            if cert_sha is not None:
                # A new certificate on disk: restart the task so the registry reads it.
                api.update_service(existing["ID"], existing["Version"]["Index"], **restart_args(existing))
            wait_ready(registry)
            return Deployed(False, False, cert_sha)
        if image_id is None or archive is None:
            raise RefusedError(f"site {site.site.name}: no site registry yet, and the bundle carries no "
                               f"registry image (release.json images.{IMAGE_KEY}); import a bundle "
                               "that carries it first")
        reporter.info(f"loading the registry image onto {ep.node}")
        loaded = ensure_image(api, image_id, archive, ep.node)
        node_id = (api.info().get("Swarm") or {}).get("NodeID")
        if not node_id:
            raise RefusedError(f"node {ep.node}: not in a swarm; run tvdeploy swarm bootstrap first")
        api.create_service(**service_spec(node_id, image_id, ep.port))
        reporter.info(f"service {SERVICE} created on {ep.node}, {ep.host}")
        wait_ready(registry)
        return Deployed(True, loaded, cert_sha)
    finally:
        api.close()


def restart_args(existing: dict[str, Any]) -> dict[str, Any]:
    """``update_service`` arguments that keep the spec and bump ForceUpdate (a task restart)."""
    spec = existing["Spec"]
    template = dict(spec["TaskTemplate"])
    template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
    return {"task_template": template, "name": spec["Name"], "labels": spec.get("Labels"),
            "mode": spec.get("Mode"), "endpoint_spec": spec.get("EndpointSpec")}


# -- status ----------------------------------------------------------------------------------

def status(site: Site) -> dict[str, Any]:
    """``{"state", "address", "size_bytes", "repositories": [{"name", "digests"}]}``.

    state: "running" (answers over TLS), "absent" (no service), "unreachable" (a service, but
    the API does not answer). size_bytes: the distinct blobs (configs, layers) and manifests of
    every tagged image, as the registry describes them."""
    import json

    ep = endpoint(site)
    doc: dict[str, Any] = {"state": "absent", "address": ep.host, "size_bytes": 0, "repositories": []}
    api = docker_client(site, site.node(ep.node)).api
    try:
        try:
            if find_service(api) is None:
                return doc
        except Exception as exc:  # noqa: BLE001 - docker/requests errors: say which node
            from tvdeploy.connectors.docker_api import describe_error

            raise describe_error(ep.node, ep.address, 2376, exc) from None
    finally:
        api.close()
    with open_registry(site) as reg:
        try:
            reg.ping()
        except ConnectionFailed:
            doc["state"] = "unreachable"
            return doc
        doc["state"] = "running"
        sizes: dict[str, int] = {}
        repos = []
        for repo in reg.catalog():
            digests: set[str] = set()
            for tag in reg.tags(repo):
                data, digest, _type = reg.get_manifest(repo, tag)
                digests.add(digest)
                sizes[digest] = len(data)
                try:
                    manifest = json.loads(data)
                    for desc in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
                        if isinstance(desc.get("digest"), str) and isinstance(desc.get("size"), int):
                            sizes[desc["digest"]] = desc["size"]
                except (ValueError, AttributeError):
                    log.debug("%s:%s: manifest not parsed for sizes", repo, tag)
            repos.append({"name": repo, "digests": sorted(digests)})
        doc["size_bytes"] = sum(sizes.values())
        doc["repositories"] = repos
    return doc
