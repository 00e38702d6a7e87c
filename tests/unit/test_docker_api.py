"""The Docker API client's mutual TLS, against a loopback HTTPS server that requires a client
certificate from the site CA. The server stands in for dockerd's TLS listener (a fake, because
a unit test runs no engine; tests/integration/test_tls_lab.py does the same against real
dockerd on the lab). REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE point at an unrelated CA bundle."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.unit.tls_helpers import node_csr
from tvdeploy.config.secrets import Secret
from tvdeploy.connectors import docker_api
from tvdeploy.errors import ConnectionFailed
from tvdeploy.pki import ca as ca_mod
from tvdeploy.pki.certinfo import utcnow
from tvdeploy.pki.issue import ServerNames, issue_client_cert, sign_server_csr


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server naming
        body = json.dumps({"Version": "fake-20.10", "ApiVersion": "1.41"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _pki(root: Path, name: str):
    ca = ca_mod.create_ca(ca_mod.CAPaths(root / name), name, Secret("pw"), utcnow())
    issue_client_cert(ca, name, 1, utcnow())
    return ca


@pytest.fixture
def server(tmp_path):
    """A TLS server on 127.0.0.1 with a site-CA certificate, requiring site-CA client certs."""
    ca = _pki(tmp_path, "site")
    csr, key = node_csr("n1")
    cert = sign_server_csr(ca, csr, "n1", "site", ServerNames(("n1",), ("127.0.0.1",)), 1, utcnow())
    (tmp_path / "srv.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "srv.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    ctx.load_verify_locations(ca.paths.cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield ca, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hostile_env(tmp_path, monkeypatch):
    """Both variables set to an unrelated bundle, as on these machines (LAB.md)."""
    other = _pki(tmp_path, "unrelated")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other.paths.cert))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other.paths.cert))
    return other


def test_site_ca_wins_over_environment_bundles(server, hostile_env):
    ca, port = server
    certs = docker_api.ClientCert.in_dir(ca.paths.client_dir)
    assert docker_api.ping("n1", "127.0.0.1", certs, port=port)["Version"] == "fake-20.10"


def test_plain_docker_sdk_is_fooled_by_the_environment(server, hostile_env):
    """The pitfall itself: without pinning, the environment's bundle replaces the site CA."""
    import docker
    from docker.tls import TLSConfig

    ca, port = server
    d = ca.paths.client_dir
    tls = TLSConfig(client_cert=(str(d / "cert.pem"), str(d / "key.pem")), ca_cert=str(d / "ca.pem"),
                    verify=str(d / "ca.pem"))
    client = docker.DockerClient(base_url=f"https://127.0.0.1:{port}", tls=tls, version="1.41", timeout=5)
    with pytest.raises(Exception, match="certificate verify failed"):
        client.version()


def test_presented_certificate_is_verified(server, hostile_env):
    ca, port = server
    pem = docker_api.presented_certificate("n1", "127.0.0.1", docker_api.ClientCert.in_dir(ca.paths.client_dir),
                                           port=port)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")


def test_no_client_certificate_is_refused_naming_the_node(server):
    ca, port = server
    certs = docker_api.ClientCert.in_dir(ca.paths.client_dir)
    with pytest.raises(ConnectionFailed) as err:
        docker_api.ping("n1", "127.0.0.1", certs, port=port, with_client_cert=False)
    assert err.value.message.startswith(f"node n1 (127.0.0.1:{port}): ")


def test_client_certificate_of_another_ca_is_refused(server, tmp_path):
    _ca, port = server
    other = _pki(tmp_path, "other")
    # Trust the right CA for the server, but present the other CA's client certificate.
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "ca.pem").write_bytes(_ca.cert_pem)
    (d / "cert.pem").write_bytes((other.paths.client_dir / "cert.pem").read_bytes())
    (d / "key.pem").write_bytes((other.paths.client_dir / "key.pem").read_bytes())
    with pytest.raises(ConnectionFailed, match=r"^node n1 \(127\.0\.0\.1:\d+\): "):
        docker_api.ping("n1", "127.0.0.1", docker_api.ClientCert.in_dir(d), port=port)


def test_server_of_another_ca_is_refused_as_tls_failure(server, tmp_path):
    _ca, port = server
    other = _pki(tmp_path, "other")
    with pytest.raises(ConnectionFailed, match="TLS handshake failed"):
        docker_api.ping("n1", "127.0.0.1", docker_api.ClientCert.in_dir(other.paths.client_dir), port=port)


def test_unreachable_engine_is_one_line(tmp_path):
    ca = _pki(tmp_path, "site")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ConnectionFailed) as err:
        docker_api.ping("n1", "127.0.0.1", docker_api.ClientCert.in_dir(ca.paths.client_dir), port=port, timeout=3)
    assert err.value.message.startswith(f"node n1 (127.0.0.1:{port}): Docker API unreachable")
    assert "\n" not in err.value.message


def test_missing_client_files_name_the_file(tmp_path):
    with pytest.raises(Exception, match=r"ca\.pem: not found; run tvdeploy tls apply first"):
        docker_api.ping("n1", "127.0.0.1", docker_api.ClientCert.in_dir(tmp_path))
