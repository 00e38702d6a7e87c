"""``bundle build`` end to end through the CLI against a stand-in engine on a unix socket.

No dockerd may run in unit tests, so a small HTTP server in a thread plays the build engine's
two endpoints (image inspect and ``/images/get``), serving a synthetic ``docker save`` archive;
tests/integration/test_bundle_lab.py runs the same command against the lab's real engine.
"""

from __future__ import annotations

import json
import socketserver
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle.reader import read_bundle


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, images: list[bk.FakeImage], save_status: int = 200,
                 truncate: bool = False) -> None:
        self.images = {img.tag: img for img in images}
        self.save_status = save_status
        self.truncate = truncate
        self.requests: list[str] = []
        super().__init__(path, Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up early (as tvdeploy does after a refusal) is not news


class Handler(BaseHTTPRequestHandler):
    server: FakeEngine

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if status != 200 or b"{" in body[:1] else
                         "application/x-tar")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.requests.append(self.path)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/images/get":
            if self.server.save_status != 200:
                self._send(self.server.save_status, b'{"message":"write /var/lib/docker/tmp: no space left"}')
                return
            names = urllib.parse.parse_qs(url.query)["names"]
            if any(n not in self.server.images for n in names):
                self._send(404, b'{"message":"reference does not exist"}')
                return
            data = bk.docker_save([self.server.images[n] for n in names])
            self._send(200, data[: len(data) // 2] if self.server.truncate else data)
            return
        ref = urllib.parse.unquote(url.path.removeprefix("/images/").removesuffix("/json"))
        img = self.server.images.get(ref)
        if img is None:
            self._send(404, json.dumps({"message": f"No such image: {ref}"}).encode())
            return
        import hashlib

        layers = [f"sha256:{hashlib.sha256(lay).hexdigest()}" for lay in img.layers]
        self._send(200, json.dumps({"Id": f"sha256:{img.config_hex}", "RootFS": {"Layers": layers},
                                    "Size": sum(map(len, img.layers))}).encode())


def serve(tmp_path: Path, **kw: object) -> Iterator[tuple[str, FakeEngine]]:
    sock = tmp_path / "engine.sock"
    server = FakeEngine(str(sock), bk.default_images(), **kw)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"unix://{sock}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, FakeEngine]]:
    yield from serve(tmp_path)


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "engine.sock")


def spec_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "release.yaml"
    path.write_text("release: r1\nsequence: 4\nimages:\n" + "".join(
        f"  {img.tag.split('/')[1].split(':')[0]}: {img.tag}\n" for img in bk.default_images()) + extra)
    return path


def test_build_through_the_cli(cli, operator_key: str, engine: tuple[str, FakeEngine], tmp_path: Path) -> None:
    host, server = engine
    out = tmp_path / "out" / "b.tar"
    out.parent.mkdir()
    r = cli("bundle", "build", spec_file(tmp_path), "--engine", host, "-o", out)
    assert r.code == 0, r.stderr
    assert r.stdout.strip().startswith(f"{out}: release r1 (sequence 4), 3 images, 10 blobs")
    # One save request for all images, after the save request went out: inspections.
    assert [p.split("?")[0] for p in server.requests].count("/images/get") == 1
    bundle = read_bundle(out)
    assert bundle.release["sequence"] == 4
    assert [p.name for p in out.parent.iterdir()] == ["b.tar"]

    from tvdeploy.audit.recorder import global_log_path

    last = json.loads(global_log_path().read_text().splitlines()[-1])
    assert last["event"] == "bundle.build"
    assert last["objects"][0]["digest"] == f"sha256:{bundle.manifest_sha256}"
    assert {o["name"] for o in last["objects"][1:]} == {"cloud", "edge", "iot-flow"}


def test_build_json_output(cli, operator_key: str, engine: tuple[str, FakeEngine], tmp_path: Path) -> None:
    host, _ = engine
    r = cli("bundle", "build", spec_file(tmp_path), "--engine", host, "-o", tmp_path / "b.tar", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["release"]["release"] == "r1" and doc["blobs"] == 10


def test_image_the_engine_lacks(cli, operator_key: str, engine: tuple[str, FakeEngine], tmp_path: Path) -> None:
    host, _ = engine
    r = cli("bundle", "build", spec_file(tmp_path, "  ghost: trueverit/ghost:1\n"), "--engine", host,
            "-o", tmp_path / "b.tar")
    assert (r.code, r.stderr.strip()) == (1, f"error: image trueverit/ghost:1 not found in build engine {host}")
    assert not (tmp_path / "b.tar").exists()


def test_engine_fails_the_save(cli, operator_key: str, tmp_path: Path) -> None:
    for host, _ in serve(tmp_path, save_status=500):
        r = cli("bundle", "build", spec_file(tmp_path), "--engine", host, "-o", tmp_path / "b.tar")
        assert (r.code, r.stderr.strip()) == (
            1, f"error: build engine {host}: HTTP 500: write /var/lib/docker/tmp: no space left")
    assert written(tmp_path) == ["release.yaml"]


def test_engine_stream_cut_short(cli, operator_key: str, tmp_path: Path) -> None:
    for host, _ in serve(tmp_path, truncate=True):
        r = cli("bundle", "build", spec_file(tmp_path), "--engine", host, "-o", tmp_path / "b.tar")
        assert r.code == 1
        # Progress lines of the images may come first in a pipe; the error is one line.
        assert r.stderr.splitlines()[-1] == f"error: build engine {host}: stream ended early: 6144 bytes missing"
    assert written(tmp_path) == ["release.yaml"]


def test_socket_that_is_not_an_engine(cli, operator_key: str, tmp_path: Path) -> None:
    import socket

    path = tmp_path / "mute.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(4)

    def answer() -> None:
        for _ in range(2):
            conn, _ = srv.accept()
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-OpenSSH\r\n")
            conn.close()

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    r = cli("bundle", "build", spec_file(tmp_path), "--engine", f"unix://{path}", "-o", tmp_path / "b.tar")
    srv.close()
    assert (r.code, r.stderr.strip()) == (1, f"error: build engine unix://{path}: not a Docker engine (no HTTP "
                                             "response)")


def test_plain_tcp_engine_is_refused_in_one_line(cli, operator_key: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "nothing"))
    r = cli("bundle", "build", spec_file(tmp_path), "--engine", "tcp://127.0.0.1:2375", "-o", tmp_path / "b.tar")
    assert r.code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: --engine tcp://127.0.0.1:2375: plain TCP is refused")
    assert "DOCKER_TLS_VERIFY=1" in r.stderr and not (tmp_path / "b.tar").exists()


class TlsEngine(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The stand-in engine on TCP loopback behind mutual TLS (a client certificate is required)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, certs: Path, images: list[bk.FakeImage]) -> None:
        import ssl

        self.images = {img.tag: img for img in images}
        self.save_status, self.truncate = 200, False
        self.requests: list[str] = []
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs / "ca.pem"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_cert_chain(str(certs / "server-cert.pem"), str(certs / "server-key.pem"))
        super().__init__(("127.0.0.1", 0), Handler)

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, addr = super().get_request()
        return self.ctx.wrap_socket(sock, server_side=True), addr

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def _tls_files(folder: Path) -> Path:
    """A test CA (ca.pem), a client certificate in Docker's names (cert.pem, key.pem) and the
    server's pair for 127.0.0.1 (server-cert.pem, server-key.pem)."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test engine CA")])

    def issue(name: str, key: object, ca: bool = False, san: list[x509.GeneralName] | None = None) -> bytes:
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())  # type: ignore[attr-defined]
             .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    folder.mkdir(parents=True)
    (folder / "ca.pem").write_bytes(issue("test engine CA", ca_key, ca=True))
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    (folder / "server-cert.pem").write_bytes(issue("engine", server_key, san=[x509.IPAddress(ip_address("127.0.0.1"))]))
    (folder / "server-key.pem").write_bytes(pem_key(server_key))
    (folder / "cert.pem").write_bytes(issue("operator", client_key))
    (folder / "key.pem").write_bytes(pem_key(client_key))
    return folder


def test_tcp_engine_with_mutual_tls(cli, operator_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certs = _tls_files(tmp_path / "certs")
    server = TlsEngine(certs, bk.default_images())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host = f"tcp://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
        monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
        r = cli("bundle", "build", spec_file(tmp_path), "--engine", host, "-o", tmp_path / "b.tar")
        assert r.code == 0, r.stderr
        assert read_bundle(tmp_path / "b.tar").release["sequence"] == 4
        (certs / "key.pem").write_bytes(b"not a key")
        r = cli("bundle", "build", spec_file(tmp_path), "--engine", host, "-o", tmp_path / "c.tar")
        assert r.code == 1 and r.stderr.startswith(f"error: {certs}: unusable TLS files for the build engine")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
