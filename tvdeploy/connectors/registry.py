"""The site registry's HTTP API (Distribution, API v2) over TLS verified against the site CA.

``requests`` lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's CA (LAB.md): the
session here has ``trust_env`` off and ``verify`` set to the site CA file, so only the site CA is
trusted, whatever the environment says. No certificate is pinned or relaxed here. The registry
verifies clients too (mutual TLS): the session presents *client_cert* (the operator's certificate
from the site CA); a registry that refuses the client is named with what to do.

Blob bodies are streamed from an iterable of chunks with a known length (Content-Length, never
chunked transfer encoding), so a layer is never held in memory. Large blobs go up in PATCH
chunks; a blob the registry holds in another repository is mounted instead of sent.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from tvdeploy.errors import ConnectionFailed, InputFileError, VerificationError

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

TIMEOUT = 30.0
CHUNK = 1024 * 1024
UPLOAD_CHUNK = 64 * 1024 * 1024  # blobs larger than this go up in PATCH chunks of this size
MAX_MANIFEST = 4 * 1024 * 1024
MAX_LIST = 10_000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = ", ".join([
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

Progress = Callable[[int], None]


class RegistryError(ConnectionFailed):
    """The registry refused a request or could not be reached; names the registry and object."""


class BlobBody:
    """A request body of exactly *size* bytes read from *fh* at *offset*, in 1 MiB chunks,
    hashed on the way: the registry checks the digest too, but a bundle file changed after it
    was verified is named here, not in a registry error code."""

    def __init__(self, fh: Any, offset: int, size: int, progress: Progress | None = None) -> None:
        self.fh, self.offset, self.size, self.progress = fh, offset, size, progress
        self.sha256 = hashlib.sha256()
        self.sent = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        self.fh.seek(self.offset)
        remaining = self.size
        while remaining:
            data = self.fh.read(min(CHUNK, remaining))
            if not data:
                raise InputFileError(f"bundle ended {remaining} bytes early while sending a blob")
            self.sha256.update(data)
            remaining -= len(data)
            self.sent += len(data)
            if self.progress is not None:
                self.progress(len(data))
            yield data


def _check_repo(repo: str) -> str:
    if not REPO.match(repo) or len(repo) > 255:
        raise VerificationError(f"{repo!r}: not a valid repository name")
    return repo


def _check_digest(digest: str) -> str:
    if not DIGEST.match(digest):
        raise VerificationError(f"{digest!r}: not a sha256 digest")
    return digest


@dataclass
class Registry:
    """One registry endpoint, e.g. ``Registry("10.0.0.11", 5000, Path(".../ca.pem"),
    (Path(".../client/cert.pem"), Path(".../client/key.pem")))``."""

    address: str
    port: int
    ca: Path
    client_cert: tuple[Path, Path] | None = None  # (certificate, key) presented to the registry
    timeout: float = TIMEOUT
    upload_chunk: int = UPLOAD_CHUNK

    def __post_init__(self) -> None:
        import requests

        if not self.ca.is_file():
            raise InputFileError(f"{self.ca}: site CA certificate not found; run tvdeploy tls apply first")
        for path in self.client_cert or ():
            if not path.is_file():
                raise InputFileError(f"{path}: operator client certificate not found; run tvdeploy tls apply first")
        self.base = f"https://{self.address}:{self.port}"
        self.session = requests.Session()
        self.session.trust_env = False  # no REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE/proxy variables
        self.session.verify = str(self.ca)  # the site CA is the only trust anchor
        if self.client_cert is not None:
            self.session.cert = (str(self.client_cert[0]), str(self.client_cert[1]))

    @property
    def where(self) -> str:
        return f"registry {self.address}:{self.port}"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, url: str, what: str, ok: tuple[int, ...], **kw: Any) -> requests.Response:
        import requests

        url = url if url.startswith("https://") else self.base + url
        kw.setdefault("timeout", self.timeout)
        try:
            resp = self.session.request(method, url, allow_redirects=False, **kw)
        except requests.exceptions.SSLError as exc:
            if _client_refused(str(exc)):
                raise RegistryError(f"{self.where}: refused this client: the registry requires a client "
                                    "certificate from the site CA (tvdeploy tls apply issues the operator's)") from None
            raise RegistryError(f"{self.where}: TLS verification against the site CA failed: "
                                f"{_short(str(exc))}") from None
        except requests.exceptions.Timeout:
            raise RegistryError(f"{self.where}: {what}: timed out") from None
        except requests.exceptions.ConnectionError as exc:
            raise RegistryError(f"{self.where}: unreachable: {_short(str(exc))}") from None
        if resp.status_code not in ok:
            raise RegistryError(f"{self.where}: {what}: {_error_text(resp)}")
        return resp

    def _location(self, resp: requests.Response, what: str) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{self.where}: {what}: no upload location in the answer")
        url = urljoin(self.base + "/", loc)
        if not url.startswith(self.base + "/"):
            # An upload URL elsewhere would send site images to another host.
            raise RegistryError(f"{self.where}: {what}: upload location {loc!r} points off this registry")
        return url

    # -- API --------------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: the registry answers over verified TLS."""
        self._request("GET", "/v2/", "API check", (200,))

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self._request("HEAD", f"/v2/{_check_repo(repo)}/blobs/{_check_digest(digest)}",
                             f"{repo}: blob {digest[:19]}", (200, 404))
        return resp.status_code == 200

    def mount_blob(self, repo: str, digest: str, source: str) -> str | None:
        """Link a blob *source* holds into *repo* without moving bytes. Returns None when
        mounted, else the upload session the registry opened instead (use it for the upload)."""
        what = f"{repo}: mount blob {digest[:19]} from {source}"
        resp = self._request("POST", f"/v2/{_check_repo(repo)}/blobs/uploads/", what, (201, 202),
                             params={"mount": _check_digest(digest), "from": _check_repo(source)})
        return None if resp.status_code == 201 else self._location(resp, what)

    def start_upload(self, repo: str) -> str:
        what = f"{repo}: start upload"
        return self._location(self._request("POST", f"/v2/{_check_repo(repo)}/blobs/uploads/", what, (202,)), what)

    def upload_blob(self, repo: str, digest: str, fh: Any, offset: int, size: int,
                    progress: Progress | None = None, location: str | None = None) -> None:
        """Send *size* bytes of *fh* from *offset* as blob *digest*: monolithic (one PUT) up to
        ``upload_chunk`` bytes, else PATCH chunks then a closing PUT."""
        _check_digest(digest)
        what = f"{repo}: upload blob {digest[:19]}"
        url = location or self.start_upload(repo)
        hasher = hashlib.sha256()
        done = 0
        if size > self.upload_chunk:
            while done < size:
                n = min(self.upload_chunk, size - done)
                body = BlobBody(fh, offset + done, n, progress)
                body.sha256 = hasher
                resp = self._request("PATCH", url, what, (202,), data=body, timeout=None, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{done}-{done + n - 1}", "Content-Length": str(n)})
                url = self._location(resp, what)
                done += n
            final = b""
            self._check_sent(hasher, digest, what)
            self._request("PUT", url, what, (201,), params={"digest": digest}, data=final,
                          headers={"Content-Type": "application/octet-stream", "Content-Length": "0"})
            return
        body = BlobBody(fh, offset, size, progress)
        self._request("PUT", url, what, (201,), params={"digest": digest}, data=body, timeout=None,
                      headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        self._check_sent(body.sha256, digest, what)

    def get_blob(self, repo: str, digest: str, limit: int) -> Iterator[bytes]:
        """The bytes of blob *digest* of *repo*, streamed in 1 MiB chunks; more than *limit*
        bytes (by Content-Length or as they come) is refused before they are read. The caller
        checks the digest (a registry is trusted for transport, not for content)."""
        what = f"{repo}: blob {_check_digest(digest)[:19]}"
        resp = self._request("GET", f"/v2/{_check_repo(repo)}/blobs/{digest}", what, (200,), stream=True)
        try:
            length = resp.headers.get("Content-Length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise RegistryError(f"{self.where}: {what}: {length} bytes, more than the {limit} expected")
            got = 0
            for chunk in resp.iter_content(CHUNK):
                got += len(chunk)
                if got > limit:
                    raise RegistryError(f"{self.where}: {what}: more than the {limit} bytes expected")
                yield chunk
        except OSError as exc:
            raise RegistryError(f"{self.where}: {what}: {_short(str(exc))}") from None
        finally:
            resp.close()

    def _check_sent(self, hasher: Any, digest: str, what: str) -> None:
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise VerificationError(f"{self.where}: {what}: the bundle's bytes no longer match the digest "
                                    "(bundle changed after verification?)")

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str = OCI_MANIFEST) -> str:
        """PUT a manifest by tag or digest; returns the digest the registry computed, which
        must be the sha256 of *data*."""
        what = f"{repo}: put manifest {reference[:19]}"
        resp = self._request("PUT", f"/v2/{_check_repo(repo)}/manifests/{reference}", what, (201,),
                             data=data, headers={"Content-Type": media_type})
        expected = f"sha256:{hashlib.sha256(data).hexdigest()}"
        got = resp.headers.get("Docker-Content-Digest", expected)
        if got != expected:
            raise VerificationError(f"{self.where}: {what}: registry stored digest {got}, expected {expected}")
        return expected

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, digest of the bytes, media type); a digest reference is checked against the bytes."""
        what = f"{repo}: manifest {reference[:19]}"
        resp = self._request("GET", f"/v2/{_check_repo(repo)}/manifests/{reference}", what, (200,),
                             headers={"Accept": MANIFEST_TYPES})
        data = resp.content
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"{self.where}: {what}: manifest larger than {MAX_MANIFEST} bytes")
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if reference.startswith("sha256:") and digest != reference:
            raise VerificationError(f"{self.where}: {what}: served content hashes to {digest}")
        return data, digest, resp.headers.get("Content-Type", "")

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest of a tag (HEAD), or None when the registry does not have it."""
        what = f"{repo}: manifest {reference[:19]}"
        resp = self._request("HEAD", f"/v2/{_check_repo(repo)}/manifests/{reference}", what, (200, 404),
                             headers={"Accept": MANIFEST_TYPES})
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if digest is None or not DIGEST.match(digest):
            _data, digest, _type = self.get_manifest(repo, reference)
        return digest

    def _paged(self, path: str, key: str, what: str) -> list[str]:
        """Every item of a paginated list; a repository without manifests (only blobs, e.g.
        after an interrupted first push) answers 404 and lists nothing."""
        out: list[str] = []
        url: str | None = f"{path}?n=1000"
        while url is not None and len(out) < MAX_LIST:
            resp = self._request("GET", url, what, (200, 404))
            if resp.status_code == 404:
                return out
            try:
                items = resp.json().get(key) or []
            except ValueError:
                raise RegistryError(f"{self.where}: {what}: malformed JSON answer") from None
            out += [str(i) for i in items]
            link = resp.headers.get("Link", "")
            m = re.match(r"<([^>]+)>", link)
            url = m.group(1) if m and m.group(1).startswith("/v2/") else None
        return out

    def catalog(self) -> list[str]:
        return sorted(self._paged("/v2/_catalog", "repositories", "catalog"))

    def tags(self, repo: str) -> list[str]:
        return sorted(self._paged(f"/v2/{_check_repo(repo)}/tags/list", "tags", f"{repo}: tags"))


def _error_text(resp: Any) -> str:
    """HTTP status plus the registry's first error code/message, e.g. "400 DIGEST_INVALID: ..."."""
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        if errors:
            detail = f" {errors[0].get('code', '')}: {str(errors[0].get('message', ''))[:160]}"
    except (ValueError, AttributeError):
        pass
    return f"HTTP {resp.status_code}{detail}"


def _client_refused(text: str) -> bool:
    """The server's TLS alert for a missing or unknown client certificate (TLS 1.3 / 1.2)."""
    return any(m in text for m in ("CERTIFICATE_REQUIRED", "certificate required", "BAD_CERTIFICATE",
                                   "bad certificate", "UNKNOWN_CA", "unknown ca"))


def _short(text: str) -> str:
    for marker in ("[SSL", "certificate verify failed", "Connection refused", "No route to host", "timed out"):
        i = text.find(marker)
        if i >= 0:
            return text[i:].split("'))")[0].split("\")")[0][:200]
    return text[:200]
