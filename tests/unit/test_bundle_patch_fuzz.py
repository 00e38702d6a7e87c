"""Bounded fuzzing of the two new hostile-input doors of issue 18: whatever bytes arrive as a
patch, ``apply_patch`` yields at most the declared size and then either ends with exactly the
declared bytes or raises PatchError; whatever bytes arrive as a compressed bundle, the reader
raises a one-line BundleError/CompressedBundleError (never another exception)."""

from __future__ import annotations

import hashlib
import random

import pyzstd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvdeploy.bundle.compress import ZSTD_MAGIC
from tvdeploy.bundle.patch import Base, PatchError, apply_patch, make_patch
from tvdeploy.errors import VerificationError

OLD = random.Random("fuzz-old").randbytes(64 * 1024)
NEW = OLD[:20_000] + random.Random("fuzz-new").randbytes(3000) + OLD[23_000:]
BASE = Base.from_verified(hashlib.sha256(OLD).hexdigest(), OLD)
GOOD = make_patch(BASE, [NEW], len(NEW))
assert GOOD is not None
NEW_HEX = hashlib.sha256(NEW).hexdigest()


def check_patch_bytes(patch: bytes, size: int = len(NEW)) -> None:
    out = 0
    try:
        for chunk in apply_patch(BASE, [patch[i:i + 997] for i in range(0, len(patch), 997)], NEW_HEX, size):
            out += len(chunk)
            assert out <= size
    except PatchError as exc:
        assert "\n" not in exc.message
        return
    assert out == size and patch == GOOD.patch  # only the real patch rebuilds the layer


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_patch_bytes(data: bytes) -> None:
    check_patch_bytes(ZSTD_MAGIC + data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(GOOD.patch) - 1), st.integers(1, 255), st.integers(0, 8))
def test_mutated_patch(at: int, xor: int, cut: int) -> None:
    bad = bytearray(GOOD.patch)
    bad[at] ^= xor
    check_patch_bytes(bytes(bad[:len(bad) - cut]))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3 * len(NEW)))
def test_declared_size_bounds_the_output(size: int) -> None:
    check_patch_bytes(GOOD.patch, size)
    check_patch_bytes(pyzstd.compress(b"\0" * (4 * len(NEW))), size)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_random_compressed_bundle(tmp_path_factory, data: bytes) -> None:
    from tvdeploy.bundle.reader import read_bundle

    path = tmp_path_factory.mktemp("fuzz") / "b.tar.zst"
    for body in (ZSTD_MAGIC + data, ZSTD_MAGIC + data + (len(data) % 7).to_bytes(4, "little") + b"\0"
                 + (0x8F92EAB1).to_bytes(4, "little")):
        path.write_bytes(body)
        try:
            read_bundle(path)
        except VerificationError as exc:
            assert "\n" not in exc.message and str(path) in exc.message
        else:
            raise AssertionError("random bytes accepted as a bundle")
