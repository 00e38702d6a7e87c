"""Stream images out of a Docker engine (the build engine, given as DOCKER_HOST): a connector.

One ``GET /images/get?names=...`` for all images: the engine then writes each shared layer once
(later images link to it), so the build reads no layer twice. Before it, ``GET /images/NAME/json``
of each reference gives its image id and diff_ids: the progress bar per image.

The requests are plain HTTP/1.0 on the engine's socket rather than the docker SDK: an HTTP/1.0
response cannot be chunked, so the body arrives as the bare tar and is read in large blocks
(Python's chunked decoding ran at half the speed of ``docker save``), and requests/docker are
never imported. Unversioned API paths work on every engine version.

The engine is reached on its unix socket, or over TCP only with TLS and a client certificate
(Docker's ``DOCKER_TLS_VERIFY=1`` and ``DOCKER_CERT_PATH`` holding ca.pem, cert.pem, key.pem, as
``tvdeploy docker-env`` prints them): an engine's API on plain TCP answers anyone, and the
bundle's images would travel readable and replaceable.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from tvdeploy.errors import ConnectionFailed, TvdeployError

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
CONNECT_TIMEOUT_S = 10
# docker save first stages the images on the engine's disk before the first byte arrives.
READ_TIMEOUT_S = 1800
MAX_HEADERS = 64 * 1024
MAX_ERROR_BODY = 64 * 1024
MAX_INSPECT = 4 * 1024 * 1024


@dataclass(frozen=True)
class ImageHint:
    """What the engine said about an image before the stream: for progress per image."""

    ref: str
    config_hex: str
    diff_ids: tuple[str, ...]
    size: int


@dataclass(frozen=True)
class Engine:
    docker_host: str
    family: int
    address: Any
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None

    def fail(self, message: str) -> ConnectionFailed:
        return ConnectionFailed(f"build engine {self.docker_host}: {message}")


def connect(docker_host: str, environ: Mapping[str, str] | None = None) -> Engine:
    """Parse DOCKER_HOST: ``unix:///path``, or ``tcp://host:port`` with TLS (see the module)."""
    parsed = urllib.parse.urlsplit(docker_host)
    if parsed.scheme == "unix" and parsed.path:
        return Engine(docker_host, socket.AF_UNIX, parsed.path)
    if parsed.scheme in ("tcp", "https") and parsed.hostname:
        return Engine(docker_host, socket.AF_INET6 if ":" in parsed.hostname else socket.AF_INET,
                      (parsed.hostname, parsed.port or 2376), tls_context(docker_host, environ),
                      parsed.hostname)
    raise TvdeployError(f"--engine {docker_host}: expected unix:///path/docker.sock or tcp://HOST:PORT")


def tls_context(docker_host: str, environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """Mutual TLS from Docker's variables; refuses plain TCP in one line."""
    env = os.environ if environ is None else environ
    cert_dir = Path(env.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    files = [cert_dir / n for n in ("ca.pem", "cert.pem", "key.pem")]
    if env.get("DOCKER_TLS_VERIFY", "") in ("", "0") or not all(f.is_file() for f in files):
        raise TvdeployError(
            f"--engine {docker_host}: plain TCP is refused (the engine would answer anyone, and the images "
            "travel readable and replaceable); use unix:///path/docker.sock, or TLS: DOCKER_TLS_VERIFY=1 and "
            "DOCKER_CERT_PATH=DIR holding ca.pem, cert.pem and key.pem")
    ca, cert, key = files
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TvdeployError(f"{cert_dir}: unusable TLS files for the build engine: {exc}") from None
    return ctx


def _request(engine: Engine, path: str) -> tuple[int, BinaryIO]:
    """Send GET *path*; return the status and the body as a buffered stream."""
    body = _send(engine, path)
    return _response(engine, body), body


def _send(engine: Engine, path: str) -> BinaryIO:
    sock = socket.socket(engine.family, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(engine.address)
        if engine.tls is not None:
            sock = engine.tls.wrap_socket(sock, server_hostname=engine.server_hostname)
        sock.settimeout(READ_TIMEOUT_S)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: tvdeploy\r\n\r\n".encode("ascii"))
        body = cast(BinaryIO, sock.makefile("rb", buffering=CHUNK))
    except OSError as exc:  # ssl.SSLError too: a certificate that does not verify
        sock.close()
        raise engine.fail(f"cannot connect: {exc.strerror or exc}") from None
    sock.close()  # the file object keeps the connection open until it is closed
    return body


def _response(engine: Engine, body: BinaryIO) -> int:
    """Read the status line and headers; return the status."""
    try:
        status_line = body.readline(1024)
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            body.close()
            raise engine.fail("not a Docker engine (no HTTP response)")
        seen = 0
        while True:
            line = body.readline(8192)
            seen += len(line)
            if line in (b"\r\n", b"\n", b"") or seen > MAX_HEADERS:
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                body.close()
                raise engine.fail("answered HTTP/1.0 with a chunked body")
    except OSError as exc:
        body.close()
        raise engine.fail(f"no answer: {exc.strerror or exc}") from None
    return int(parts[1])


def _error(engine: Engine, status: int, body: BinaryIO) -> str:
    data = body.read(MAX_ERROR_BODY)
    body.close()
    try:
        message = json.loads(data).get("message", "")
    except (ValueError, AttributeError):
        message = data.decode("utf-8", "replace").strip()
    return f"HTTP {status}: {message}"[:300]


def hints(engine: Engine, docker_host: str, refs: list[str]) -> list[ImageHint]:
    out = []
    for ref in refs:
        status, body = _request(engine, f"/images/{urllib.parse.quote(ref, safe='/:')}/json")
        if status == 404:
            body.close()
            raise TvdeployError(f"image {ref} not found in build engine {docker_host}")
        if status != 200:
            raise engine.fail(_error(engine, status, body))
        with body:
            try:
                info = json.loads(body.read(MAX_INSPECT))
            except ValueError:
                raise engine.fail(f"image {ref}: unreadable inspect answer") from None
        config_hex = str(info.get("Id", "")).removeprefix("sha256:")
        diff_ids = tuple((info.get("RootFS") or {}).get("Layers") or ())
        out.append(ImageHint(ref, config_hex, diff_ids, int(info.get("Size") or 0)))
    return out


class SaveStream:
    """The ``docker save`` tar of some images. The request is sent on creation; the response
    status is read at the first read, so work can be done while the engine stages the images."""

    def __init__(self, engine: Engine, refs: list[str]) -> None:
        self.engine = engine
        query = urllib.parse.urlencode([("names", r) for r in refs])
        self.body = _send(engine, f"/images/get?{query}")
        self.refs = list(refs)
        self.started = False

    def wait(self) -> None:
        """Wait for the engine's answer (after staging); raise if it is an error."""
        if not self.started:
            self.started = True
            status = _response(self.engine, self.body)
            if status != 200:
                raise self.engine.fail(_error(self.engine, status, self.body))

    def read(self, n: int = -1, /) -> bytes:
        self.wait()
        return self.body.read(n)

    def readinto(self, view: memoryview, /) -> int:
        self.wait()
        return self.body.readinto(view)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> SaveStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def early_refs(spec_path: Path) -> list[str] | None:
    """The image references of a release spec, read without validating it (None if it cannot
    be read): enough to send the save request before the slow imports of validation."""
    from tvdeploy.config.yamlsafe import YamlError, load_yaml_file

    try:
        data = load_yaml_file(spec_path).data
    except (YamlError, TvdeployError):
        return None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict) or not all(isinstance(v, str) for v in images.values()):
        return None
    return list(dict.fromkeys(images.values()))


def start_early(docker_host: str, spec_path: Path) -> SaveStream | None:
    """Send the save request now if the spec and engine allow; errors are left for the real
    path to report in order (the spec's first, then the engine's)."""
    refs = early_refs(spec_path)
    if not refs:
        return None
    try:
        return SaveStream(connect(docker_host), refs)
    except TvdeployError:
        return None


def save_stream(engine: Engine, docker_host: str, refs: list[str]) -> SaveStream:
    """Ask for the ``docker save`` tar of all *refs* (close the stream when done)."""
    return SaveStream(engine, refs)
