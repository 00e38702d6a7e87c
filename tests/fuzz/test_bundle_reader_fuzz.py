"""Bounded fuzz of the bundle reader (the security boundary), about 60-90 s in CI.

Properties: whatever bytes it is given, the reader and ``verify`` either refuse with a
TvdeployError (one line at the CLI) or accept a bundle whose signed content is exactly that of
the original bundle; never another exception, never a hang. Each test repeats rounds of
hypothesis examples until its share of the time budget is spent, so the run takes about
TVDEPLOY_FUZZ_SECONDS (default 60) on a fast or a busy machine alike. Skip with
``-m "not fuzz"``.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import bundlekit as bk
from tvdeploy.bundle import statement
from tvdeploy.bundle.reader import read_bundle
from tvdeploy.bundle.sign import sign_bundle
from tvdeploy.bundle.verify import verify_bundle
from tvdeploy.errors import TvdeployError

pytestmark = pytest.mark.fuzz

BUDGET_S = float(os.environ.get("TVDEPLOY_FUZZ_SECONDS", "60"))
ROUND = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def for_share(share: float, fuzz: Any) -> None:
    """Run rounds of the hypothesis test *fuzz* until *share* of the budget is spent."""
    deadline = time.monotonic() + BUDGET_S * share
    rounds = 0
    while rounds == 0 or time.monotonic() < deadline:
        fuzz()
        rounds += 1


class Original:
    """One small bundle signed by 2 of 2 signers, and its trust root (built once)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from tvdeploy.keys.store import key_id

        self.dir = Path(tempfile.mkdtemp(prefix="tvdeploy-fuzz-"))
        images = [bk.service_image("cloud", 700), bk.service_image("edge", 900)]
        path = bk.make_bundle(self.dir / "b.tar", images)
        signers = [Ed25519PrivateKey.generate() for _ in range(2)]
        root = Ed25519PrivateKey.generate()
        for key in signers:
            sign_bundle(path, key, key_id(key.public_key()))
        self.root = bk.make_trust(self.dir / "root.json", signers, 2, [root],
                                  expires=datetime.now(UTC) + timedelta(days=30))
        self.data = path.read_bytes()
        self.statement = statement.for_bundle(read_bundle(path))
        verify_bundle(path, self.root)


_ORIGINAL: Original | None = None


def original() -> Original:
    global _ORIGINAL
    if _ORIGINAL is None:
        _ORIGINAL = Original()
    return _ORIGINAL


@pytest.fixture(autouse=True, scope="module")
def _cleanup() -> Any:
    yield
    global _ORIGINAL
    if _ORIGINAL is not None:
        import shutil

        shutil.rmtree(_ORIGINAL.dir, ignore_errors=True)
        _ORIGINAL = None


def check(data: bytes, *, derived: bool = True) -> None:
    """*derived*: the bytes come from the original bundle, so anything accepted must carry its
    signed content; otherwise (arbitrary tars, random bytes) the reader or ``verify`` must refuse
    them with a TvdeployError: nothing but a signed bundle passes."""
    orig = original()
    fd, name = tempfile.mkstemp(dir=orig.dir, suffix=".tar")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            bundle = read_bundle(path)
        except TvdeployError:
            return
        if derived:
            assert statement.for_bundle(bundle) == orig.statement
        try:
            verify_bundle(path, orig.root)
        except TvdeployError:
            return
        assert derived, "bytes that are not the signed bundle passed verify"
    finally:
        path.unlink(missing_ok=True)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("truncate"), st.integers(min_value=0), st.just(0)),
    st.tuples(st.just("insert"), st.integers(min_value=0), st.binary(min_size=1, max_size=1024)),
    st.tuples(st.just("block"), st.integers(min_value=0), st.binary(min_size=512, max_size=512)),
    st.tuples(st.just("dup"), st.integers(min_value=0), st.integers(min_value=1, max_value=8)),
    st.tuples(st.just("drop"), st.integers(min_value=0), st.integers(min_value=1, max_value=8)),
)


def mutate(data: bytes, ops: list[tuple[str, int, Any]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, arg in ops:
        if not buf:
            break
        pos %= len(buf)
        block = pos - pos % 512
        if kind == "flip":
            buf[pos] ^= arg
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "block":
            buf[block:block + 512] = arg
        elif kind == "dup":
            buf[block:block] = buf[block:block + 512 * arg]
        elif kind == "drop":
            del buf[block:block + 512 * arg]
    return bytes(buf)


@ROUND
@given(st.lists(mutation, min_size=1, max_size=4))
def _mutated_bundles(ops: list[tuple[str, int, Any]]) -> None:
    check(mutate(original().data, ops))


HEADER_FIELDS = st.sampled_from([(100, 8), (124, 12), (148, 8), (156, 1), (157, 100), (257, 8), (345, 155)])


@ROUND
@given(st.integers(min_value=0), HEADER_FIELDS, st.binary(min_size=1, max_size=155))
def _header_fields(index: int, field: tuple[int, int], value: bytes) -> None:
    # Aim at tar headers: type flags, sizes, link names, checksums, ustar prefixes.
    data = bytearray(original().data)
    headers = [i for i in range(0, len(data), 512) if data[i + 257:i + 262] == b"ustar"]
    at = headers[index % len(headers)] + field[0]
    data[at:at + field[1]] = (value * field[1])[: field[1]]
    check(bytes(data))


NAMES = st.sampled_from([
    "oci-layout", "index.json", "release.json", "inventory.json", "manifest.json", "blobs", "blobs/sha256",
    "signatures", "../x", "/etc/passwd", "blobs/sha256/" + "0" * 64, "signatures/" + "a" * 64 + "-1.json",
    "blobs/sha256/../../x", "./index.json", "blobs//sha256", "x" * 99, "signatures/..", "",
])
TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"Z"])
JSONISH = st.one_of(st.binary(max_size=64), st.sampled_from([b"{}", b"[]", b'{"a":1,"a":2}', b"[" * 5000,
                                                             b'{"imageLayoutVersion":"1.0.0"}', b"NaN"]))


@ROUND
@given(st.lists(st.tuples(NAMES, TYPES, JSONISH, NAMES), max_size=12),
       st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
def _arbitrary_tars(entries: list[tuple[str, bytes, bytes, str]], fmt: int) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, type_, data, link in entries:
            info = tarfile.TarInfo(name)
            info.type = type_
            info.linkname = link
            if type_ in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    check(buf.getvalue(), derived=False)


@ROUND
@given(st.binary(max_size=4096))
def _random_bytes(data: bytes) -> None:
    check(data, derived=False)


def test_mutated_bundles_are_refused_or_unchanged() -> None:
    for_share(0.4, _mutated_bundles)


def test_header_fields_overwritten() -> None:
    for_share(0.2, _header_fields)


def test_arbitrary_tars_are_refused() -> None:
    for_share(0.25, _arbitrary_tars)


def test_random_bytes_are_refused() -> None:
    for_share(0.15, _random_bytes)
