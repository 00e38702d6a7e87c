"""The vCenter pin is enforced inside every TLS handshake, before any request byte is sent.

A real TLS server on loopback (a thread in the test) records what it receives; an HTTPS client
built on tvdeploy's context must send nothing to a server whose certificate is not the pinned one.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tvdeploy.config.site import VCenter
from tvdeploy.connectors.vsphere import PinMismatch, check_certificate, tls_context
from tvdeploy.errors import ConnectionFailed, VerificationError


def _cert(tmp: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test vcenter")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cp, kp = tmp / "c.pem", tmp / "k.pem"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cp, kp, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class _Server:
    """Accepts TLS connections and keeps every application byte received."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(100):  # bounded: 10 s at most
            if self.stop.is_set():
                return
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(1)
                    data = tls.recv(65536)
                    self.received += data
                    if data:
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _vc(port: int, fingerprint: str) -> VCenter:
    return VCenter.model_validate({
        "host": "127.0.0.1", "port": port, "user": "u", "password": "env:X", "fingerprint": fingerprint,
        "datacenter": "d", "cluster": "c", "datastore": "s", "folder": "f", "template": "t", "network": "n",
    })


@pytest.fixture
def server(tmp_path: Path):
    cert, key, fp = _cert(tmp_path)
    s = _Server(cert, key)
    s.fingerprint = fp  # type: ignore[attr-defined]
    yield s
    s.close()


def test_wrong_pin_sends_no_request_byte(server) -> None:
    vc = _vc(server.port, "cd" * 32)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls_context(vc), timeout=5)
    with pytest.raises(PinMismatch) as exc:
        conn.request("POST", "/sdk", body=b"<Login>secret</Login>")
    assert exc.value.presented == server.fingerprint
    server.close()
    assert server.received == b""


def test_right_pin_talks(server) -> None:
    vc = _vc(server.port, server.fingerprint)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls_context(vc), timeout=5)
    conn.request("GET", "/about")
    assert conn.getresponse().read() == b"ok"
    server.close()
    assert server.received.startswith(b"GET /about")


def test_probe_error_names_both_fingerprints(server) -> None:
    vc = _vc(server.port, "cd" * 32)
    with pytest.raises(VerificationError) as exc:
        check_certificate(vc, tls_context(vc))
    fp = server.fingerprint.upper()
    assert "vcenter.fingerprint" in exc.value.message
    assert f"presented {fp[:2]}:{fp[2:4]}:" in exc.value.message
    assert "expected CD:CD:" in exc.value.message


def test_probe_of_a_closed_port_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    vc = _vc(port, "cd" * 32)
    with pytest.raises(ConnectionFailed, match=rf"vcenter.host: cannot reach vCenter at 127.0.0.1:{port}"):
        check_certificate(vc, tls_context(vc))
