"""Byte-level layer patches (tvdeploy/bundle/patch.py): made against a base as zstd prefix,
applied streaming with the output bounded by the declared size and checked against the declared
digest. The hostile cases: wrong rebuild bytes, a decompression bomb, a patch made against
another base, a truncated or garbled frame, data after the frame, a base that is not the named one."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import pytest
import pyzstd

from tvdeploy.bundle.patch import (
    CHUNK,
    MAX_LAYER,
    Base,
    PatchError,
    apply_patch,
    check_patch,
    make_patch,
    window_log,
)

SIZE = 6 * 1024 * 1024


def blob(size: int, seed: str) -> bytes:
    return random.Random(seed).randbytes(size)


def hotfix(old: bytes, at: int, size: int, seed: str = "fix") -> bytes:
    new = bytearray(old)
    new[at:at + size] = blob(size, seed)
    return bytes(new)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def base_of(data: bytes) -> Base:
    return Base.load(sha(data), [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)], len(data))


def pieces(data: bytes, n: int = 65536) -> list[bytes]:
    return [data[i:i + n] for i in range(0, len(data), n)]


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    old = blob(SIZE, "old")
    return old, hotfix(old, 2 * 1024 * 1024, 256 * 1024)


def test_patch_of_a_small_change_is_small_and_rebuilds_exactly(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    base = base_of(old)
    made = make_patch(base, pieces(new), len(new))
    assert made is not None
    assert made.result_hex == sha(new) and made.result_size == len(new)
    assert len(made.patch) < 2 * 256 * 1024  # about the changed stretch, not the layer
    out = b"".join(apply_patch(base, pieces(made.patch, 4096), made.result_hex, len(new)))
    assert out == new


def test_output_comes_in_bounded_chunks(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    base = base_of(old)
    made = make_patch(base, pieces(new), len(new))
    assert made is not None
    sizes = [len(c) for c in apply_patch(base, [made.patch], made.result_hex, len(new))]
    assert max(sizes) <= CHUNK and sum(sizes) == len(new)


def test_no_patch_when_it_would_not_be_smaller() -> None:
    base = base_of(blob(1024 * 1024, "a"))
    unrelated = blob(1024 * 1024, "b")
    assert make_patch(base, [unrelated], len(unrelated)) is None


def test_limit_gives_up_early(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    assert make_patch(base_of(old), pieces(new), len(new), limit=1000) is None


def test_wrong_digest_is_refused(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    base = base_of(old)
    made = make_patch(base, [new], len(new))
    assert made is not None
    with pytest.raises(PatchError, match="rebuilds to sha256:.*expected sha256:" + "0" * 64):
        check_patch(base, [made.patch], "0" * 64, len(new), name="blobs/sha256/abc")


def test_patch_against_another_base_rebuilds_wrong_bytes_and_is_refused(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    made = make_patch(base_of(old), [new], len(new))
    assert made is not None
    other = base_of(hotfix(old, 0, 64 * 1024, "other"))  # not the base the patch was made against
    with pytest.raises(PatchError):
        check_patch(other, [made.patch], made.result_hex, len(new))


def test_output_beyond_the_declared_size_is_a_bomb_and_never_yielded() -> None:
    base = base_of(b"x" * 4096)
    bomb = pyzstd.compress(b"\0" * (64 * 1024 * 1024))  # ~2 KiB that expand to 64 MiB
    assert len(bomb) < 64 * 1024
    declared = 3 * CHUNK + 5
    got = 0
    with pytest.raises(PatchError, match="decompression bomb"):
        for chunk in apply_patch(base, [bomb], sha(b""), declared):
            got += len(chunk)
    assert got <= declared


def test_short_result_is_refused(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    base = base_of(old)
    made = make_patch(base, [new], len(new))
    assert made is not None
    with pytest.raises(PatchError, match=f"rebuilds to {len(new)} bytes, expected {len(new) + 1}"):
        check_patch(base, [made.patch], made.result_hex, len(new) + 1)


def test_truncated_patch_is_refused(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    base = base_of(old)
    made = make_patch(base, [new], len(new))
    assert made is not None
    with pytest.raises(PatchError, match="truncated patch"):
        check_patch(base, [made.patch[:-10]], made.result_hex, len(new))


def test_garbled_patch_is_refused(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    base = base_of(old)
    made = make_patch(base, [new], len(new))
    assert made is not None
    bad = bytearray(made.patch)
    for i in range(20, len(bad), 97):
        bad[i] ^= 0x5A
    with pytest.raises(PatchError):
        check_patch(base, [bytes(bad)], made.result_hex, len(new))


def test_not_a_zstd_frame_is_refused() -> None:
    with pytest.raises(PatchError, match="not a zstd frame"):
        check_patch(base_of(b"abc" * 10), [b"PK\x03\x04 not zstd"], sha(b""), 0)


def test_data_after_the_frame_is_refused(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    base = base_of(old)
    made = make_patch(base, [new], len(new))
    assert made is not None
    with pytest.raises(PatchError, match="data after the end"):
        check_patch(base, [made.patch, b"\0" * 100], made.result_hex, len(new))
    with pytest.raises(PatchError, match="data after the end"):
        check_patch(base, [made.patch + pyzstd.compress(b"more")], made.result_hex, len(new))


def test_frame_asking_for_a_larger_window_than_the_sizes_need_is_refused() -> None:
    data = blob(4 * 1024 * 1024, "w")
    frame = pyzstd.compress(data, {pyzstd.CParameter.windowLog: 30, pyzstd.CParameter.contentSizeFlag: 0})
    base = base_of(b"tiny base")
    with pytest.raises(PatchError):
        check_patch(base, [frame], sha(data), 16)  # declared sizes need a 1 MiB window


def test_base_too_short_for_a_prefix_is_refused() -> None:
    with pytest.raises(PatchError, match="too small"):
        base_of(b"abc")


def test_base_must_hash_to_the_named_digest() -> None:
    with pytest.raises(PatchError, match="content hashes to"):
        Base.load("1" * 64, [b"some other layer"])
    with pytest.raises(PatchError, match="expected 5"):
        Base.load(sha(b"abcd"), [b"abcd"], 5)


def test_oversized_base_or_result_is_refused_without_reading() -> None:
    def never() -> Iterator[bytes]:
        raise AssertionError("read")
        yield b""

    with pytest.raises(PatchError, match="larger than patches allow"):
        Base.load("1" * 64, never(), MAX_LAYER + 1)
    with pytest.raises(PatchError, match="larger than patches allow"):
        check_patch(base_of(b"a" * 16), [b""], "0" * 64, MAX_LAYER + 1)


def test_window_covers_base_and_result() -> None:
    assert window_log(60 << 20, 60 << 20) == 27
    assert window_log(1, 1) == 20
    assert window_log(MAX_LAYER, MAX_LAYER) == 30
