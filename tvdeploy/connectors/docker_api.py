"""The Docker Engine API of a node over mutual TLS (port 2376), verified against the site CA.

``requests`` lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's CA per request
(Session.merge_environment_settings), which silently swaps the site CA for the system bundle
(LAB.md). The client below turns ``trust_env`` off (which also ignores proxy variables: nodes are
reached directly) and sets ``verify`` to the site CA after construction, so the site CA wins.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import ConnectionFailed, InputFileError

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

API_PORT = 2376
API_VERSION = "1.41"  # Engine 20.10; fixed so that building the client sends no request
TIMEOUT = 15


@dataclass(frozen=True)
class ClientCert:
    """The operator's client certificate folder (DOCKER_CERT_PATH layout)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, folder: Path) -> ClientCert:
        return cls(ca=folder / "ca.pem", cert=folder / "cert.pem", key=folder / "key.pem")

    def check(self) -> None:
        for p in (self.ca, self.cert, self.key):
            if not p.is_file():
                raise InputFileError(f"{p}: not found; run tvdeploy tls apply first")


def connect(node: str, address: str, certs: ClientCert, port: int = API_PORT,
            timeout: int = TIMEOUT, with_client_cert: bool = True) -> docker.DockerClient:
    """A DockerClient for *node*, verifying the engine against the site CA. *with_client_cert*
    False leaves the operator certificate out (tests use it to show the API refuses such a
    client). Nothing is sent until the first call."""
    import docker
    from docker.tls import TLSConfig

    certs.check()
    client_cert = (str(certs.cert), str(certs.key)) if with_client_cert else None
    tls = TLSConfig(client_cert=client_cert, ca_cert=str(certs.ca), verify=str(certs.ca))
    client = docker.DockerClient(base_url=f"https://{address}:{port}", tls=tls, version=API_VERSION,
                                 timeout=timeout)
    pin_ca(client, certs.ca)
    return client


def pin_ca(client: docker.DockerClient, ca: Path) -> None:
    """Make the site CA the only trust anchor regardless of the environment."""
    api: Any = client.api
    api.trust_env = False  # no REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE/proxy variables
    api.verify = str(ca)


def describe_error(node: str, address: str, port: int, exc: BaseException) -> ConnectionFailed:
    """One line naming the node, telling TLS failures from unreachable engines."""
    import requests

    where = f"node {node} ({address}:{port})"
    text = str(exc)
    inner: BaseException | None = exc
    while inner is not None:
        if isinstance(inner, ssl.SSLError):
            return ConnectionFailed(f"{where}: Docker API TLS handshake failed: "
                                    f"{inner.reason or inner.strerror or inner}")
        inner = inner.__cause__ or inner.__context__
    if isinstance(exc, requests.exceptions.SSLError) or "SSL" in text or "certificate" in text:
        return ConnectionFailed(f"{where}: Docker API TLS handshake failed: {_short(text)}")
    if isinstance(exc, requests.exceptions.Timeout):
        return ConnectionFailed(f"{where}: Docker API timed out")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ConnectionFailed(f"{where}: Docker API unreachable: {_short(text)}")
    return ConnectionFailed(f"{where}: Docker API error: {_short(text)}")


def _short(text: str) -> str:
    for marker in ("[SSL", "Connection refused", "No route to host", "timed out", "Errno"):
        i = text.find(marker)
        if i >= 0:
            return text[i:].split("'))")[0].split("\")")[0][:200]
    return text[:200]


def ping(node: str, address: str, certs: ClientCert, port: int = API_PORT,
         timeout: int = TIMEOUT, with_client_cert: bool = True) -> dict[str, Any]:
    """The engine's version document, or ConnectionFailed naming the node."""
    import requests

    client = connect(node, address, certs, port, timeout, with_client_cert)
    try:
        version: dict[str, Any] = client.version()
        return version
    except (requests.exceptions.RequestException, OSError) as exc:
        raise describe_error(node, address, port, exc) from None
    except Exception as exc:  # noqa: BLE001 - docker.errors.APIError and friends
        raise describe_error(node, address, port, exc) from None
    finally:
        client.close()


def presented_certificate(node: str, address: str, certs: ClientCert, port: int = API_PORT,
                          timeout: float = 5.0) -> bytes:
    """The PEM certificate the node's API presents, over a fully verified mutual-TLS handshake
    (site CA, IP SAN checked): used to confirm a rotation reached the engine."""
    import socket

    certs.check()
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.load_cert_chain(str(certs.cert), str(certs.key))
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=address) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise describe_error(node, address, port, exc) from None
    if not der:
        raise ConnectionFailed(f"node {node} ({address}:{port}): no certificate presented")
    return ssl.DER_cert_to_PEM_cert(der).encode()
