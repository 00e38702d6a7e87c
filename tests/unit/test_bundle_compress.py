"""Compressed bundles (tvdeploy/bundle/compress.py): the plain tar in the zstd seekable format,
read back with random access; truncated, damaged or foreign compressed files refused with one
line naming the file. Real bundles from the bundle test kit."""

from __future__ import annotations

import hashlib
import io
import random
import subprocess
from pathlib import Path

import pytest
import pyzstd

from tests import bundlekit as bk
from tvdeploy.bundle.compress import (
    CompressedBundleError,
    PlainReader,
    compress_file,
    file_is_compressed,
    open_plain,
)


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    return bk.make_bundle(tmp_path / "b.tar")


@pytest.fixture
def packed(tmp_path: Path, plain: Path) -> Path:
    return compress_file(plain, tmp_path / "b.tar.zst").path


def reader(path: Path) -> PlainReader:
    fh = open(path, "rb")  # noqa: SIM115 - closed with the test process
    out = open_plain(fh, str(path))
    assert isinstance(out, PlainReader)
    return out


def test_round_trip_gives_the_plain_bytes(plain: Path, packed: Path) -> None:
    assert file_is_compressed(packed) and not file_is_compressed(plain)
    assert packed.stat().st_size < plain.stat().st_size
    r = reader(packed)
    assert r.plain_size == plain.stat().st_size
    assert r.read() == plain.read_bytes()


def test_the_zstd_command_reads_it_too(plain: Path, packed: Path) -> None:
    out = subprocess.run(["zstd", "-d", "-c", str(packed)], capture_output=True, check=True).stdout
    assert out == plain.read_bytes()


def test_random_access_across_frames(tmp_path: Path) -> None:
    FRAME = 1024 * 1024  # noqa: N806 - small frames: the same code paths, less data
    data = random.Random(3).randbytes(FRAME + 3 * 1024 * 1024) + b"tail" * 1000
    src = tmp_path / "big.tar"
    src.write_bytes(data)
    r = reader(compress_file(src, tmp_path / "big.zst", workers=2, frame=FRAME).path)
    for offset in (FRAME + 17, 5, FRAME - 3, len(data) - 100, 0):
        r.seek(offset)
        assert r.tell() == offset
        assert r.read(4096) == data[offset:offset + 4096]
    buf = bytearray(1000)
    r.seek(FRAME - 500)
    n = r.readinto(memoryview(buf))
    assert 0 < n <= 1000 and bytes(buf[:n]) == data[FRAME - 500:FRAME - 500 + n]


def test_plain_file_is_returned_as_is(plain: Path) -> None:
    with open(plain, "rb") as fh:
        assert open_plain(fh, str(plain)) is fh
        assert fh.tell() == 0


def test_compressing_twice_is_refused(packed: Path, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="already compressed"):
        compress_file(packed, tmp_path / "again.zst")


@pytest.mark.parametrize("cut", [1, 9, 40, 1000])
def test_truncated_compressed_bundle_is_refused_when_opened(packed: Path, tmp_path: Path, cut: int) -> None:
    short = tmp_path / "short.tar.zst"
    short.write_bytes(packed.read_bytes()[:-cut])
    with pytest.raises(CompressedBundleError, match=f"{short}: truncated compressed bundle"):
        reader(short)


def test_plain_zstd_stream_without_seek_table_is_refused(plain: Path, tmp_path: Path) -> None:
    other = tmp_path / "zstd-cli.tar.zst"
    other.write_bytes(pyzstd.compress(plain.read_bytes()))
    with pytest.raises(CompressedBundleError, match="no seek table"):
        reader(other)


def test_damaged_frame_is_refused_when_read(packed: Path, tmp_path: Path) -> None:
    data = bytearray(packed.read_bytes())
    for i in range(100, len(data) - 200, 53):
        data[i] ^= 0xA5
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(bytes(data))
    with pytest.raises(CompressedBundleError, match=f"{bad}: (damaged|truncated) compressed bundle"):
        r = reader(bad)
        while r.read(1 << 20):
            pass


def test_absurd_seek_table_is_refused_before_loading(tmp_path: Path) -> None:
    bad = tmp_path / "table.zst"
    # a zstd magic, then a footer claiming 2**32-1 frames
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64 + (0xFFFFFFFF).to_bytes(4, "little") + b"\0"
                    + (0x8F92EAB1).to_bytes(4, "little"))
    with pytest.raises(CompressedBundleError, match="malformed seek table"):
        reader(bad)


def test_frame_needing_a_huge_window_is_refused(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(200_000)
    body = io.BytesIO()
    with pyzstd.SeekableZstdFile(body, "w", level_or_option={pyzstd.CParameter.windowLog: 30,
                                                             pyzstd.CParameter.contentSizeFlag: 0}) as zf:
        zf.write(data * 60)
    path = tmp_path / "window.zst"
    path.write_bytes(body.getvalue())
    with pytest.raises(CompressedBundleError, match="damaged compressed bundle"):
        r = reader(path)
        while r.read(1 << 20):
            pass


def test_compressed_bytes_hash_like_the_plain(plain: Path, packed: Path) -> None:
    r = reader(packed)
    h = hashlib.sha256()
    while data := r.read(65536):
        h.update(data)
    assert h.hexdigest() == hashlib.sha256(plain.read_bytes()).hexdigest()


def test_follower_compresses_while_the_bundle_is_written_then_signed(tmp_path: Path) -> None:
    from tvdeploy.bundle.compress import Follower
    from tvdeploy.bundle.writer import write_bundle

    images = [bk.service_image(s, 300_000) for s in bk.SERVICES]
    follower = Follower(tmp_path / "f.tar.zst")
    out = tmp_path / "f.tar"
    write_bundle(out, bk.spec_for(images), io.BytesIO(bk.docker_save(images)), follower=follower)
    assert follower.mark == out.stat().st_size - 1024  # final: all but the end-of-archive blocks
    key, _kid = bk.make_key("signer-f")
    bk.sign_with(out, key)  # rewrites from the end-of-archive blocks on
    done = follower.finish()
    assert done.plain_size == out.stat().st_size
    assert reader(done.path).read() == out.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_follower_abort_leaves_nothing(tmp_path: Path) -> None:
    from tvdeploy.bundle.compress import Follower

    src = tmp_path / "src"
    src.write_bytes(b"x" * 10_000)
    follower = Follower(tmp_path / "out.zst")
    follower.attach(src)
    follower.advance(5000)
    follower.abort()
    follower.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
