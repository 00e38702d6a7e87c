"""The site registry: Distribution as the global swarm service ``tv-registry``, one replica on
EVERY manager, so images stay pullable with any one manager down (issue 13). Each replica: TLS
from the site CA, clients verified against the site CA too (``REGISTRY_HTTP_TLS_CLIENTCAS``: an
anonymous client on the site network is refused), storage on the node-local named volume, the
port published in host mode on its manager. Services pull ``tv-registry:<port>/...``: every node
maps that name to every manager in /etc/hosts and dockerd dials them in order
(``tvdeploy.release.registry_address``; the node side is ``tvdeploy.execute.registry_trust``).
``bundle import`` fills every replica that is up (``tvdeploy.execute.import_registry``).

Key placement (a choice): each replica's private key is made ON its manager with openssl (only
the CSR travels, as for dockerd) and stays in a file there at the same path on every manager,
bind-mounted read-only into the task. A Docker secret would carry the key through the swarm API
and the raft log: exactly the "private key leaves the machine that made it" the product rules
out. Each certificate names ``tv-registry`` (what dockerd checks) and its manager's address (what
tvdeploy checks: it reaches each replica by address).

A manager whose Docker API does not answer is skipped (reported as down); the next import
deploys and fills its replica.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import ConnectionFailed, RefusedError, TvdeployError
from tvdeploy.pki.certinfo import sha256_fingerprint
from tvdeploy.pki.issue import keygen_command
from tvdeploy.release.registry_address import IMAGE_KEY, NAME, SERVICE, Replica, endpoint

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
CLIENT_CA_FILE = f"{CERT_DIR}/ca.pem"  # the CA the replica verifies clients against
CONTAINER_CERTS = "/certs"
RENEW_BEFORE = timedelta(days=30)
READY_SECONDS = 90.0
LOAD_TIMEOUT = 900


def ca_file(site: Site) -> Path:
    from tvdeploy.pki.ca import pki_paths

    return pki_paths(site).cert


def client_cert(site: Site) -> tuple[Path, Path]:
    """The operator's client certificate and key, which every replica requires."""
    from tvdeploy.pki.ca import pki_paths

    d = pki_paths(site).client_dir
    return d / "cert.pem", d / "key.pem"


def open_replica(site: Site, replica: Replica) -> Registry:
    from tvdeploy.connectors.registry import Registry

    return Registry(replica.address, replica.port, ca_file(site), client_cert(site))


def open_registry(site: Site) -> Registry:
    """The first replica (site-file order) that answers; the first one when none does (its
    error then names it)."""
    first: Registry | None = None
    for replica in endpoint(site).replicas:
        reg = open_replica(site, replica)
        try:
            reg.ping()
        except ConnectionFailed:
            if first is None:
                first = reg
            else:
                reg.close()
            continue
        if first is not None:
            first.close()
        return reg
    assert first is not None  # endpoint() refuses a site without managers
    return first


def catch_up_replicas(site: Site, reporter: Reporter) -> dict[str, int]:
    """Copy into each answering replica what the other answering replicas hold and it lacks
    (``tvdeploy.execute.registry_sync``); node -> manifests copied."""
    from tvdeploy.execute.registry_sync import sync_replicas

    regs: dict[str, Registry] = {}
    try:
        for replica in endpoint(site).replicas:
            reg = open_replica(site, replica)
            try:
                reg.ping()
            except ConnectionFailed:
                reg.close()
                continue
            regs[replica.node] = reg
        return sync_replicas(regs, reporter) if len(regs) > 1 else {}
    finally:
        for reg in regs.values():
            reg.close()


def sync(site: Site, reporter: Reporter) -> dict[str, int]:
    """``registry sync``: ``catch_up_replicas`` under the deploy lock, audited when it copied."""
    from tvdeploy.audit.recorder import record
    from tvdeploy.execute.site_lock import hold_if_swarm

    with hold_if_swarm(site, "registry sync", reporter):
        copied = catch_up_replicas(site, reporter)
    if copied:
        record(site, "registry.sync", objects=[{"type": "replica", "name": node, "copied": str(n)}
                                               for node, n in copied.items()])
    return copied


def docker_client(site: Site, node: Node, timeout: int = 15) -> Any:
    from tvdeploy.connectors.docker_api import ClientCert, connect
    from tvdeploy.pki.ca import pki_paths

    return connect(node.name, str(node.address), ClientCert.in_dir(pki_paths(site).client_dir), timeout=timeout)


def find_service(api: Any) -> dict[str, Any] | None:
    for svc in api.services(filters={"name": SERVICE}):
        if svc.get("Spec", {}).get("Name") == SERVICE:
            return dict(svc)
    return None


# -- key and certificate on each manager -------------------------------------------------------

def replica_names(replica: Replica) -> Any:
    """SANs of a replica's certificate: the registry's name, its node's name and address."""
    from tvdeploy.pki.issue import ServerNames

    return ServerNames(dns=(NAME, replica.node), ips=(replica.address,))


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
        dns = set(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        ips, dns = set(), set()
    if not set(names.ips) <= ips:
        return "addresses changed"
    if not set(names.dns) <= dns:
        return "names changed"
    return None


def ensure_certificate(site: Site, pool: SSHPool, replica: Replica, reporter: Reporter, now: datetime) -> str | None:
    """Key made on the replica's manager, CSR signed here, the site CA beside them (the clients'
    CA); returns the new certificate's sha256 (or the CA's, when only it changed): the replica
    must restart to read it. None when nothing changed."""
    from cryptography.hazmat.primitives import serialization

    from tvdeploy.connectors.ssh import FileSpec
    from tvdeploy.pki.ca import ca_passphrase, load_ca, load_ca_cert, pki_paths
    from tvdeploy.pki.issue import sign_server_csr

    conn = pool.get(replica.node)
    names = replica_names(replica)
    ca_pem = ca_file(site).read_bytes()
    split = "----tvdeploy-ca----"
    current = conn.run(f"cat {CERT_FILE} 2>/dev/null; test -s {KEY_FILE} || echo nokey; echo {split}; "
                       f"cat {CLIENT_CA_FILE} 2>/dev/null", check=False).stdout
    cert_now, _, ca_now = current.partition(split + "\n")
    why = "no certificate" if "BEGIN CERTIFICATE" not in cert_now or "nokey" in cert_now else \
        _needs_certificate(cert_now.encode(), load_ca_cert(pki_paths(site)), names, now)
    files = [] if ca_now.encode() == ca_pem else [FileSpec(CLIENT_CA_FILE, ca_pem, 0o444)]
    if why is None:
        if files:
            conn.put_files(files)
            reporter.info(f"registry client CA installed on {replica.node}")
            return sha256_fingerprint(load_ca_cert(pki_paths(site)))
        return None
    ca = load_ca(pki_paths(site), ca_passphrase(site))
    staged = KEY_FILE + ".tvdeploy-new"
    csr = conn.run(keygen_command(CERT_DIR, staged, SERVICE)).stdout.encode()
    cert = sign_server_csr(ca, csr, replica.node, site.site.name, names, site.pki.server_cert_days, now)
    files.append(FileSpec(CERT_FILE + ".tvdeploy-new", cert.public_bytes(serialization.Encoding.PEM), 0o444))
    conn.put_files(files, then=f"mv -f {shlex.quote(staged)} {KEY_FILE}; mv -f {CERT_FILE}.tvdeploy-new {CERT_FILE}")
    reporter.info(f"registry certificate issued on {replica.node} ({why})")
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


# The registry's own limits (CIS 5.11, 5.12, 5.29): serving blobs is I/O, not memory or CPU.
REGISTRY_LIMITS = {"MemoryBytes": 512 * 1024 * 1024, "NanoCPUs": 1_000_000_000, "Pids": 256}
REGISTRY_RESERVATIONS = {"MemoryBytes": 64 * 1024 * 1024}


def service_spec(image_id: str, port: int) -> dict[str, Any]:
    """Arguments of ``create_service`` for the registry (pure: tested as data): one task on
    every manager (global mode), its port in host mode there; no capabilities (it listens on an
    unprivileged port, and root owning its key and data needs none), a read-only root filesystem
    (it writes only to its volume; /tmp is a tmpfs), memory, CPU and PIDs limited."""
    from docker.types import ContainerSpec, EndpointSpec, Mount, Placement, RestartPolicy, TaskTemplate

    container = ContainerSpec(
        image_id,  # by image id: the task never tries to pull (the node has no route out)
        env={"REGISTRY_HTTP_TLS_CERTIFICATE": f"{CONTAINER_CERTS}/cert.pem",
             "REGISTRY_HTTP_TLS_KEY": f"{CONTAINER_CERTS}/key.pem",
             "REGISTRY_HTTP_TLS_CLIENTCAS": f"[{CONTAINER_CERTS}/ca.pem]",  # clients need a site certificate
             "REGISTRY_HTTP_ADDR": ":5000"},
        mounts=[Mount(CONTAINER_CERTS, CERT_DIR, type="bind", read_only=True),
                Mount("/var/lib/registry", VOLUME, type="volume"),
                Mount("/tmp", None, type="tmpfs", tmpfs_size=64 * 1024 * 1024)],
        cap_drop=["ALL"],
        read_only=True,
    )
    resources = {"Limits": dict(REGISTRY_LIMITS), "Reservations": dict(REGISTRY_RESERVATIONS)}
    template = TaskTemplate(container, placement=Placement(constraints=["node.role==manager"]),
                            restart_policy=RestartPolicy(condition="any", delay=2_000_000_000),
                            resources=resources)  # a plain dict: docker-py's Resources has no Pids
    return {
        "task_template": template,
        "name": SERVICE,
        "labels": {"tvdeploy.role": "site-registry"},
        "mode": {"Global": {}},
        "endpoint_spec": EndpointSpec(ports={port: (5000, "tcp", "host")}),
    }


def spec_is_current(existing: dict[str, Any], port: int) -> bool:
    """The live service is the one ``service_spec`` describes (mode, client CA, port, hardening),
    so an older registry (single replica, or without limits and capabilities dropped) is replaced."""
    spec = existing.get("Spec") or {}
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    env = container.get("Env") or []
    ports = (spec.get("EndpointSpec") or {}).get("Ports") or []
    limits = (template.get("Resources") or {}).get("Limits") or {}
    return ("Global" in (spec.get("Mode") or {})
            and f"REGISTRY_HTTP_TLS_CLIENTCAS=[{CONTAINER_CERTS}/ca.pem]" in env
            and any(p.get("PublishedPort") == port and p.get("PublishMode") == "host" for p in ports)
            and "ALL" in (container.get("CapabilityDrop") or []) and container.get("ReadOnly") is True
            and all(limits.get(k) == v for k, v in REGISTRY_LIMITS.items()))


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
    image_loaded: list[str] = field(default_factory=list)  # managers that got the image now
    certificates: dict[str, str] = field(default_factory=dict)  # manager -> new certificate sha256
    up: list[Replica] = field(default_factory=list)  # replicas that answer, site-file order
    down: dict[str, str] = field(default_factory=dict)  # manager -> why its replica is not served

    @property
    def certificate_sha256(self) -> str | None:
        return next(iter(self.certificates.values()), None)


def ensure_registry(site: Site, pool: SSHPool, image_id: str | None, archive: Callable[[], Iterator[bytes]] | None,
                    reporter: Reporter, now: datetime) -> Deployed:
    """Make a replica exist and answer on every manager whose Docker API answers. *image_id* /
    *archive*: the registry image of the bundle (without it, a manager that lacks the image
    gets it from another manager)."""
    from tvdeploy.execute.registry_trust import install_trust_everywhere
    from tvdeploy.facts.services import manager_client

    ep = endpoint(site)
    install_trust_everywhere(site, pool, reporter, now)
    apis, deployed = _manager_apis(site)
    try:
        client = manager_client(site, timeout=LOAD_TIMEOUT)
        try:
            existing = find_service(client.api)
            image_id = _image_for(site, existing, image_id)
            if image_id is None:
                raise RefusedError(f"site {site.site.name}: no site registry yet, and the bundle carries no "
                                   f"registry image (release.json images.{IMAGE_KEY}); import a bundle "
                                   "that carries it first")
            for replica in list(ep.replicas):
                api = apis.get(replica.node)
                if api is None:
                    continue
                sha = ensure_certificate(site, pool, replica, reporter, now)
                if sha is not None:
                    deployed.certificates[replica.node] = sha
                source = archive or _copy_from(apis, image_id, replica.node)
                if source is None:
                    deployed.down[replica.node] = "no manager holds the registry image to copy"
                    continue
                if ensure_image(api, image_id, source, replica.node):
                    deployed.image_loaded.append(replica.node)
                    reporter.info(f"registry image loaded onto {replica.node}")
            _ensure_service(client.api, existing, image_id, ep.port, bool(deployed.certificates), deployed, reporter)
        finally:
            client.close()
    finally:
        for api in apis.values():
            api.close()
    for replica in ep.replicas:
        if replica.node in deployed.down:
            continue
        with open_replica(site, replica) as reg:
            try:
                wait_ready(reg)
            except ConnectionFailed as exc:
                deployed.down[replica.node] = exc.message
                continue
        deployed.up.append(replica)
    for node, why in deployed.down.items():
        reporter.warn(f"registry replica on {node} not served ({why}); the next import fills it")
    if not deployed.up:
        first = next(iter(deployed.down.items()))
        raise ConnectionFailed(f"site {site.site.name}: no registry replica answers ({first[0]}: {first[1]})")
    return deployed


def _manager_apis(site: Site) -> tuple[dict[str, Any], Deployed]:
    """The Docker API of every manager that answers; the others are recorded as down."""
    from tvdeploy.connectors.docker_api import describe_error

    apis: dict[str, Any] = {}
    deployed = Deployed(False)
    for node in site.managers:
        api = docker_client(site, node).api
        try:
            api.ping()
        except Exception as exc:  # noqa: BLE001 - docker/requests errors: this manager is down
            deployed.down[node.name] = describe_error(node.name, str(node.address), 2376, exc).message
            api.close()
            continue
        api.timeout = LOAD_TIMEOUT  # a short ping, then room for a docker load
        apis[node.name] = api
    return apis, deployed


def _image_for(site: Site, existing: dict[str, Any] | None, bundle_image: str | None) -> str | None:
    """The registry image id: the live service's (a running registry is not replaced by an
    import), else the bundle's."""
    if existing is not None:
        image = existing["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        if isinstance(image, str) and image.startswith("sha256:"):
            return image
    return bundle_image


def _copy_from(apis: dict[str, Any], image_id: str, target: str) -> Callable[[], Iterator[bytes]] | None:
    """``docker save`` of *image_id* from another manager that has it (streamed into the load)."""
    import docker.errors

    for node, api in apis.items():
        if node == target:
            continue
        try:
            api.inspect_image(image_id)
        except docker.errors.ImageNotFound:
            continue
        return _saved(api, image_id)
    return None


def _saved(api: Any, image_id: str) -> Callable[[], Iterator[bytes]]:
    def archive() -> Iterator[bytes]:
        yield from api.get_image(image_id)

    return archive


def _ensure_service(api: Any, existing: dict[str, Any] | None, image_id: str, port: int, restart: bool,
                    deployed: Deployed, reporter: Reporter) -> None:
    if existing is not None and spec_is_current(existing, port):
        if restart:
            # A new certificate (or client CA) on disk: restart the tasks so the registry reads it.
            api.update_service(existing["ID"], existing["Version"]["Index"], **restart_args(existing))
        return
    if existing is not None:
        # An older single-replica registry: replaced (its volume, and so its images, stay).
        api.remove_service(existing["ID"])
        _wait_gone(api)
        reporter.info(f"service {SERVICE}: replaced by the current spec (one replica per manager, hardened); "
                      "its images stay in its volume")
    api.create_service(**service_spec(image_id, port))
    deployed.created = True
    reporter.info(f"service {SERVICE} created: a replica on every manager, {NAME}:{port}")


def _wait_gone(api: Any, timeout: float = 60.0) -> None:
    """Until no task of the removed service holds the host port any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not api.containers(filters={"label": f"com.docker.swarm.service.name={SERVICE}"}) \
                and find_service(api) is None:
            return
        time.sleep(0.5)


def restart_args(existing: dict[str, Any]) -> dict[str, Any]:
    """``update_service`` arguments that keep the spec and bump ForceUpdate (a task restart)."""
    spec = existing["Spec"]
    template = dict(spec["TaskTemplate"])
    template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
    return {"task_template": template, "name": spec["Name"], "labels": spec.get("Labels"),
            "mode": spec.get("Mode"), "endpoint_spec": spec.get("EndpointSpec")}
