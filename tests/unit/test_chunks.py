"""Chunks for removable media (issue 8, item 1): split, verify a chunk folder, join, and reading a
chunk folder as one file. Real bundles from the bundle test kit, real keys and trust roots; no
server is needed."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from tests.unit import chunkkit as ck
from tvdeploy.bundle import chunksplit
from tvdeploy.bundle.chunkbundle import verify_bundle_path
from tvdeploy.bundle.chunkindex import parse_index
from tvdeploy.bundle.chunkio import ChunkedReader
from tvdeploy.bundle.chunkjoin import join_chunks
from tvdeploy.bundle.chunksplit import split_bundle
from tvdeploy.bundle.chunkverify import read_index, verify_chunk_dir
from tvdeploy.errors import InputFileError, RefusedError, TvdeployError, VerificationError
from tvdeploy.keys.store import key_id


@pytest.fixture
def c(tmp_path: Path) -> ck.Chunked:
    return ck.make_chunked(tmp_path / "work")


def signer(c: ck.Chunked, name: str = "signer-1") -> list:
    return [(c.keys[name], key_id(c.keys[name].public_key()))]


# ---- split / join round trip --------------------------------------------------------------------

@pytest.mark.parametrize("size", [512, 1000, 4096, 69632, 1 << 20])
def test_split_join_round_trip_is_byte_identical(tmp_path: Path, size: int) -> None:
    c = ck.make_chunked(tmp_path / "work", size=size)
    data = c.bundle.read_bytes()
    _raw, index = read_index(c.dir)
    assert index.size == len(data) and index.sha256 == hashlib.sha256(data).hexdigest()
    assert len(index.chunks) == -(-len(data) // size)
    assert all(ch.size == size for ch in index.chunks[:-1]) and 0 < index.chunks[-1].size <= size
    out = tmp_path / "joined.tar"
    join_chunks(c.dir, out, trust_path=c.root)
    assert out.read_bytes() == data


def test_chunk_files_and_names(c: ck.Chunked) -> None:
    names = sorted(p.name for p in c.dir.iterdir())
    assert names == [f"bundle.{i:03d}" for i in range(17)] + ["chunks.json", "chunks.sig"]
    assert b"".join(c.chunk(i).read_bytes() for i in range(17)) == c.bundle.read_bytes()
    assert len(list((c.dir / "chunks.sig").iterdir())) == 2
    doc = json.loads((c.dir / "chunks.json").read_bytes())
    assert doc["format"] == "tvdeploy-chunks/1" and doc["bundle"] == "bundle.tar" and doc["chunk_size"] == 4096


def test_join_leaves_chunks_untouched(c: ck.Chunked, tmp_path: Path) -> None:
    before = c.snapshot()
    join_chunks(c.dir, tmp_path / "a.tar")
    join_chunks(c.dir, tmp_path / "b.tar", trust_path=c.root)
    assert c.snapshot() == before


def test_join_refuses_an_existing_output(c: ck.Chunked, tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    out.write_bytes(b"keep me")
    with pytest.raises(RefusedError, match="already exists"):
        join_chunks(c.dir, out)
    assert out.read_bytes() == b"keep me"


def test_join_stops_at_a_corrupt_chunk_and_writes_nothing(c: ck.Chunked, tmp_path: Path) -> None:
    victim = c.chunk(5)
    data = bytearray(victim.read_bytes())
    data[10] ^= 1
    victim.write_bytes(bytes(data))
    before = c.snapshot()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(VerificationError, match=r"bundle\.005: corrupt"):
        join_chunks(c.dir, out_dir / "b.tar")
    assert list(out_dir.iterdir()) == []  # no output, no temporary file
    assert c.snapshot() == before


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p.unlink(), r"bundle\.003: missing"),
    (lambda p: os.truncate(p, 100), r"bundle\.003: truncated"),
    (lambda p: p.write_bytes(p.read_bytes() + b"x"), r"bundle\.003: too long"),
])
def test_join_names_a_bad_chunk(c: ck.Chunked, tmp_path: Path, edit, message: str) -> None:
    edit(c.chunk(3))
    with pytest.raises(VerificationError, match=message):
        join_chunks(c.dir, tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()


def test_join_free_space_preflight(c: ck.Chunked, tmp_path: Path) -> None:
    with pytest.raises(RefusedError, match=r"not enough free space .* need .*\(73728 bytes\), .*\(1000 bytes\) free"):
        join_chunks(c.dir, tmp_path / "b.tar", free_space=lambda p: 1000)
    assert not (tmp_path / "b.tar").exists()


def test_join_with_trust_checks_the_index_signatures_first(tmp_path: Path) -> None:
    c = ck.make_chunked(tmp_path / "work", index_signers=("signer-1",))
    with pytest.raises(VerificationError, match="signed by 1 of the 2"):
        join_chunks(c.dir, tmp_path / "b.tar", trust_path=c.root)
    assert not (tmp_path / "b.tar").exists()
    join_chunks(c.dir, tmp_path / "b.tar")  # without a trust root: chunks checked against the index only


# ---- split: pre-flight, refusals, nothing half-written -----------------------------------------

def test_split_free_space_preflight_writes_nothing(c: ck.Chunked, tmp_path: Path) -> None:
    out = tmp_path / "media" / "chunks"
    seen: list[Path] = []

    def tiny(path: Path) -> int:
        seen.append(path)
        return 5000

    with pytest.raises(RefusedError, match=r"not enough free space for 17 chunks of bundle\.tar: need .* bytes\), "
                                           r"4\.9 KiB \(5000 bytes\) free on "):
        split_bundle(c.bundle, 4096, out, signer(c), free_space=tiny)
    assert seen == [tmp_path] and not (tmp_path / "media").exists()


def test_split_into_an_existing_chunk_folder_is_refused(c: ck.Chunked) -> None:
    before = c.snapshot()
    with pytest.raises(RefusedError, match="already holds chunks.json"):
        split_bundle(c.bundle, 4096, c.dir, signer(c))
    assert c.snapshot() == before


def test_split_into_an_existing_empty_folder(c: ck.Chunked, tmp_path: Path) -> None:
    out = tmp_path / "usb"
    out.mkdir()
    (out / "lost+found").mkdir()
    split_bundle(c.bundle, 8192, out, signer(c))
    assert len(read_index(out)[1].chunks) == 9


class Boom(Exception):
    pass


class FailingReporter:
    """Fails after *after* bytes: stands in for a crash or a full medium half-way."""

    def __init__(self, after: int) -> None:
        self.after = after

    def advance(self, key: str, amount: int = 1, description: str | None = None) -> None:
        self.after -= amount
        if self.after < 0:
            raise Boom

    def __getattr__(self, name: str):
        return lambda *a, **k: None


@pytest.mark.parametrize("after", [0, 5000, 40000, 69000])
def test_a_failed_split_leaves_nothing_behind(c: ck.Chunked, tmp_path: Path, after: int) -> None:
    out = tmp_path / "new" / "chunks"
    with pytest.raises(Boom):
        split_bundle(c.bundle, 4096, out, signer(c), reporter=FailingReporter(after))
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(Boom):
        split_bundle(c.bundle, 4096, existing, signer(c), reporter=FailingReporter(after))
    assert list(existing.iterdir()) == []


def test_split_refusals(c: ck.Chunked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputFileError, match="bundle not found"):
        split_bundle(tmp_path / "nope.tar", 4096, tmp_path / "o", signer(c))
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty file"):
        split_bundle(tmp_path / "empty.tar", 4096, tmp_path / "o", signer(c))
    with pytest.raises(RefusedError, match="at least one signing key"):
        split_bundle(c.bundle, 4096, tmp_path / "o", [])
    (tmp_path / "link.tar").symlink_to(c.bundle)
    with pytest.raises(InputFileError, match="symlink"):
        split_bundle(tmp_path / "link.tar", 4096, tmp_path / "o", signer(c))
    monkeypatch.setattr(chunksplit, "MAX_CHUNKS", 10)
    with pytest.raises(RefusedError, match="makes 17 chunks .at most 10.; choose a larger --size"):
        split_bundle(c.bundle, 4096, tmp_path / "o", signer(c))
    assert not (tmp_path / "o").exists()


def test_split_memory_stays_flat(c: ck.Chunked, tmp_path: Path) -> None:
    """The copy buffer is bounded (4 MiB) whatever the chunk size; tracemalloc sees no growth
    with the file size."""
    import tracemalloc

    big = tmp_path / "big.tar"
    with open(big, "wb") as fh:
        fh.write(os.urandom(1 << 20) * 24)  # 24 MiB
    tracemalloc.start()
    split_bundle(big, 16 << 20, tmp_path / "o", signer(c))
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20, peak


# ---- verify a chunk folder ---------------------------------------------------------------------

def test_verify_clean_folder(c: ck.Chunked) -> None:
    report = verify_chunk_dir(c.dir, c.root)
    assert report.ok and report.problems == () and report.extra == ()
    assert len(report.signers) == 2 and report.root.threshold == 2


def test_one_corrupt_one_removed_names_exactly_those_two(c: ck.Chunked, tmp_path: Path) -> None:
    corrupt, removed = c.chunk(4), c.chunk(11)
    data = bytearray(corrupt.read_bytes())
    data[-1] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    saved = removed.read_bytes()
    removed.unlink()
    report = verify_chunk_dir(c.dir, c.root)
    assert report.bad_chunks == ["bundle.004", "bundle.011"]
    assert [p.kind for p in report.problems] == ["corrupt", "missing"]
    err = report.failure()
    assert err.message.endswith("2 of 17 chunks bad: bundle.004 (corrupt), bundle.011 (missing); copy those again")
    # restore just those two: clean again, and join gives the original
    corrupt.write_bytes(c.bundle.read_bytes()[4 * 4096:5 * 4096])
    removed.write_bytes(saved)
    assert verify_chunk_dir(c.dir, c.root).ok
    join_chunks(c.dir, tmp_path / "j.tar", trust_path=c.root)
    assert (tmp_path / "j.tar").read_bytes() == c.bundle.read_bytes()


@pytest.mark.parametrize(("edit", "kind"), [
    (lambda p: os.truncate(p, 1), "truncated"),
    (lambda p: os.truncate(p, 0), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "too long"),
    (lambda p: (p.unlink(), p.mkdir()), "not a regular file"),
    (lambda p: (p.unlink(), os.mkfifo(p)), "not a regular file"),  # must not block on the fifo
    (lambda p: (p.unlink(), p.symlink_to("/etc/hostname")), "not a regular file"),
])
def test_verify_kinds_of_bad_chunk(c: ck.Chunked, edit, kind: str) -> None:
    edit(c.chunk(7))
    report = verify_chunk_dir(c.dir, c.root)
    assert report.bad_chunks == ["bundle.007"] and report.problems[0].kind == kind


def test_symlinked_chunk_to_the_right_bytes_is_still_refused(c: ck.Chunked, tmp_path: Path) -> None:
    victim = c.chunk(2)
    elsewhere = tmp_path / "elsewhere"
    victim.rename(elsewhere)
    victim.symlink_to(elsewhere)
    report = verify_chunk_dir(c.dir, c.root)
    assert report.bad_chunks == ["bundle.002"] and "symlink" in report.problems[0].detail
    with pytest.raises(VerificationError, match=r"bundle\.002: not a regular file: a symlink"):
        join_chunks(c.dir, tmp_path / "j.tar")


def test_extra_files_are_reported_not_fatal(c: ck.Chunked) -> None:
    (c.dir / "README.txt").write_text("hello")
    (c.dir / ".bundle.003.part").write_bytes(b"left over")
    (c.dir / "chunks.sig" / "notes.txt").write_text("x")
    report = verify_chunk_dir(c.dir, c.root)
    assert report.ok
    assert report.extra == (".bundle.003.part", "README.txt", "chunks.sig/notes.txt")


def test_verify_missing_folder_or_index(tmp_path: Path, c: ck.Chunked) -> None:
    with pytest.raises(InputFileError, match="chunk folder not found"):
        verify_chunk_dir(tmp_path / "nope", c.root)
    with pytest.raises(InputFileError, match="not a folder"):
        verify_chunk_dir(c.bundle, c.root)
    (c.dir / "chunks.json").unlink()
    with pytest.raises(InputFileError, match="chunk index not found"):
        verify_chunk_dir(c.dir, c.root)


# ---- ChunkedReader -----------------------------------------------------------------------------

def test_chunked_reader_reads_and_seeks_like_the_file(tmp_path: Path) -> None:
    c = ck.make_chunked(tmp_path / "work", size=1000)
    data = c.bundle.read_bytes()
    _raw, index = read_index(c.dir)
    rng = random.Random(8)
    with ChunkedReader(c.dir, index) as fh:
        assert fh.read() == data
        assert fh.read(10) == b""
        for _ in range(300):
            pos = rng.randrange(0, len(data) + 50)
            n = rng.choice([0, 1, 511, 512, 999, 1000, 1001, 5000, 70000])
            assert fh.seek(pos) == pos
            assert fh.read(n) == data[pos:pos + n]
            assert fh.tell() == (min(pos + n, len(data)) if pos < len(data) else pos)
        fh.seek(-10, os.SEEK_END)
        assert fh.read() == data[-10:]
        fh.seek(995)
        buf = bytearray(2500)
        assert fh.readinto(memoryview(buf)) == 2500 and bytes(buf) == data[995:3495]  # spans 3 chunks
        with pytest.raises(ValueError):
            fh.seek(-1)
    assert fh.closed


def test_chunked_reader_refuses_a_chunk_changed_after_the_check(c: ck.Chunked) -> None:
    _raw, index = read_index(c.dir)
    os.truncate(c.chunk(1), 10)
    with ChunkedReader(c.dir, index) as fh:
        fh.read(4096)
        with pytest.raises(VerificationError, match=r"bundle\.001: 10 bytes where the index says 4096"):
            fh.read(10)


# ---- the bundle inside a chunk folder ------------------------------------------------------------

def test_verify_bundle_path_on_folder_and_file(c: ck.Chunked) -> None:
    on_dir = verify_bundle_path(c.dir, c.root)
    on_file = verify_bundle_path(c.bundle, c.root)
    assert on_dir.chunks is not None and on_dir.chunks.ok and on_file.chunks is None
    assert on_dir.verified.bundle.manifest_sha256 == on_file.verified.bundle.manifest_sha256
    assert sorted(on_dir.verified.signers) == sorted(on_file.verified.signers)
    assert on_dir.verified.bundle.blob_digests == on_file.verified.bundle.blob_digests


def test_verify_bundle_path_names_bad_chunks_first(c: ck.Chunked) -> None:
    c.chunk(9).unlink()
    with pytest.raises(VerificationError, match=r"1 of 17 chunks bad: bundle\.009 \(missing\); copy it again"):
        verify_bundle_path(c.dir, c.root)


def test_a_well_chunked_under_signed_bundle_is_still_refused(tmp_path: Path) -> None:
    """The index is trusted, but the bundle inside carries one signature: bundle checks still apply."""
    c = ck.make_chunked(tmp_path / "work", bundle_signers=("signer-1",))
    assert verify_chunk_dir(c.dir, c.root).ok
    with pytest.raises(VerificationError, match=r"chunks: signed by 1 of the 2 distinct trusted keys"):
        verify_bundle_path(c.dir, c.root)


def test_a_tampered_bundle_under_a_trusted_index_is_refused(tmp_path: Path) -> None:
    """Trusted keys signed the chunk index of a bundle whose blob was changed: the bundle reader,
    run over the chunks, still finds the blob that does not match its digest."""
    c = ck.make_chunked(tmp_path / "work")
    data = bytearray(c.bundle.read_bytes())
    pos = data.index(b"\x7fELF") + 100  # inside the shared busybox layer blob
    data[pos] ^= 1
    tampered = tmp_path / "tampered" / "bundle.tar"
    tampered.parent.mkdir()
    tampered.write_bytes(bytes(data))
    keys = [(c.keys[n], key_id(c.keys[n].public_key())) for n in ("signer-1", "signer-2")]
    out = tmp_path / "tampered-chunks"
    split_bundle(tampered, 4096, out, keys)
    assert verify_chunk_dir(out, c.root).ok
    with pytest.raises(VerificationError, match=r"tampered-chunks: blobs/sha256/[0-9a-f]{64}: content does not match"):
        verify_bundle_path(out, c.root)


def test_index_round_trips(c: ck.Chunked) -> None:
    raw, index = read_index(c.dir)
    assert parse_index(index.to_json()) == index and index.to_json() == raw


def test_a_planted_symlink_at_a_temporary_name_is_not_followed(c: ck.Chunked, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    (out / ".bundle.002.part").symlink_to(target)
    with pytest.raises(TvdeployError, match=r"\.bundle\.002\.part: cannot write: "):
        split_bundle(c.bundle, 4096, out, signer(c))
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == [".bundle.002.part"]  # ours removed, the plant left alone
    (tmp_path / ".j.tar.part").symlink_to(target)
    with pytest.raises(TvdeployError, match=r"\.j\.tar\.part: cannot write: "):
        join_chunks(c.dir, tmp_path / "j.tar")
    assert target.read_bytes() == b"precious" and not (tmp_path / "j.tar").exists()


def test_a_planted_file_or_hard_link_at_a_temporary_name_is_never_written_through(c: ck.Chunked,
                                                                                    tmp_path: Path) -> None:
    """The part files are created exclusively: a regular file or a hard link to another file
    already there under that name makes the run stop, and its content stays as it was."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "o"
    out.mkdir()
    os.link(victim, out / ".bundle.001.part")
    with pytest.raises(TvdeployError, match=r"\.bundle\.001\.part: cannot write: it already exists"):
        split_bundle(c.bundle, 4096, out, signer(c))
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == [".bundle.001.part"]
    (tmp_path / ".j.tar.part").write_bytes(b"planted")
    with pytest.raises(TvdeployError, match=r"\.j\.tar\.part: cannot write: it already exists"):
        join_chunks(c.dir, tmp_path / "j.tar")
    assert (tmp_path / ".j.tar.part").read_bytes() == b"planted" and not (tmp_path / "j.tar").exists()


class ChangingReporter:
    """Changes the bundle on disk while it is being split (another process writing to it)."""

    def __init__(self, bundle: Path, change) -> None:
        self.bundle, self.change, self.fired = bundle, change, False

    def advance(self, key: str, amount: int = 1, description: str | None = None) -> None:
        if not self.fired:
            self.fired = True
            self.change(self.bundle)

    def __getattr__(self, name: str):
        return lambda *a, **k: None


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.open("ab").write(b"\0" * 512), "grew while being split; nothing was kept"),
    (lambda p: os.truncate(p, 10000), r"shrank while being split \(chunk 2 got 1808 of 4096 bytes\)"),
])
def test_a_bundle_changing_during_split_is_refused(c: ck.Chunked, tmp_path: Path, change, message: str) -> None:
    out = tmp_path / "o"
    with pytest.raises(VerificationError, match=message):
        split_bundle(c.bundle, 4096, out, signer(c), reporter=ChangingReporter(c.bundle, change))
    assert not out.exists()


def test_read_bundle_path_reads_a_folder_like_the_file(c: ck.Chunked) -> None:
    from tvdeploy.bundle.chunkbundle import read_bundle_path

    on_dir, on_file = read_bundle_path(c.dir), read_bundle_path(c.bundle)
    assert on_dir.files == on_file.files and on_dir.docs == on_file.docs
    assert on_dir.signatures == on_file.signatures and on_dir.size == on_file.size
    data = bytearray(c.chunk(3).read_bytes())
    data[100] ^= 1
    c.chunk(3).write_bytes(bytes(data))  # the (unsigned) index is a map only: the reader still checks every byte
    with pytest.raises(VerificationError, match=r"chunks: "):
        read_bundle_path(c.dir)
