"""Hostile bundles and trust roots (issue 7, item 6): each refused by ``bundle verify`` with ONE
line naming the bundle and what is wrong, exit 1, no traceback, nothing written."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle import dsse, statement
from tvdeploy.bundle.reader import read_bundle
from tvdeploy.bundle.sign import append_member

Members = list[tuple[tarfile.TarInfo, bytes]]


@dataclass
class Setup:
    dir: Path
    bundle: Path
    root: Path
    keys: dict[str, Any]


@pytest.fixture
def setup(operator_key: str, tmp_path: Path) -> Setup:
    """A bundle signed by signer-1 and signer-2; trust root: 2 of signer-1..3, root key root-1."""
    keys = {name: bk.make_key(name)[0] for name in ("signer-1", "signer-2", "signer-3", "root-1", "outsider")}
    work = tmp_path / "work"
    work.mkdir()
    bundle = bk.make_bundle(work / "bundle.tar")
    root = bk.make_trust(work / "root.json", [keys["signer-1"], keys["signer-2"], keys["signer-3"]], 2,
                         [keys["root-1"]])
    bk.sign_with(bundle, keys["signer-1"])
    bk.sign_with(bundle, keys["signer-2"])
    return Setup(work, bundle, root, keys)


def refused(cli, s: Setup, expected: str, bundle: Path | None = None, root: Path | None = None) -> str:
    bundle = bundle or s.bundle
    before = sorted(p.name for p in s.dir.iterdir())
    r = cli("bundle", "verify", bundle, "--trust", root or s.root)
    lines = r.stderr.strip().splitlines()
    assert r.code == 1, r.stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].endswith("more errors; -v shows all)")), r.stderr
    assert lines[0].startswith("error: "), r.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert sorted(p.name for p in s.dir.iterdir()) == before  # nothing written
    return lines[0]


def rewrite(s: Setup, edit: Callable[[Members], Members], fmt: int = tarfile.USTAR_FORMAT) -> Path:
    out = s.dir / "hostile.tar"
    bk.write_members(out, edit(bk.members(s.bundle)), fmt)
    return out


def insert_after_layout(item: tuple[tarfile.TarInfo, bytes]) -> Callable[[Members], Members]:
    return lambda ms: [ms[0], item, *ms[1:]]


def blob_names(ms: Members) -> list[str]:
    return [i.name for i, d in ms if i.name.startswith("blobs/sha256/") and i.size > 5000]


def replace(name: str, data: bytes) -> Callable[[Members], Members]:
    return lambda ms: [(i, data if i.name == name else d) for i, d in ms]


# ---- tar-level refusals -----------------------------------------------------------------------

TAR_CASES: list[tuple[str, Callable[[Members], Members], str]] = [
    ("dotdot", insert_after_layout(bk.entry("blobs/../../evil", b"x")), "blobs/../../evil: path with '..'"),
    ("dotdot-dir", insert_after_layout(bk.entry("../x", type_=tarfile.DIRTYPE)), "../x: path with '..'"),
    ("absolute", insert_after_layout(bk.entry("/etc/cron.d/evil", b"x")), "/etc/cron.d/evil: absolute path"),
    ("symlink", insert_after_layout(bk.entry("blobs/sha256/" + "a" * 64, type_=tarfile.SYMTYPE,
                                             link="/etc/shadow")), "is a symlink"),
    ("hardlink", insert_after_layout(bk.entry("release.json", type_=tarfile.LNKTYPE, link="/etc/shadow")),
     "release.json: is a hard link"),
    ("chardev", insert_after_layout(bk.entry("index.json", type_=tarfile.CHRTYPE)), "is a device file"),
    ("blockdev", insert_after_layout(bk.entry("index.json", type_=tarfile.BLKTYPE)), "is a device file"),
    ("fifo", insert_after_layout(bk.entry("index.json", type_=tarfile.FIFOTYPE)), "index.json: is a fifo"),
    ("duplicate", lambda ms: [*ms[:-1], next(m for m in ms if m[0].name == "index.json"), ms[-1]],
     "index.json: duplicate entry"),
    ("duplicate-blob", lambda ms: [ms[0], *ms[1:4], ms[3], *ms[4:]], "duplicate entry"),
    ("unknown-top-level", insert_after_layout(bk.entry("install.sh", b"rm -rf /")), "install.sh: unknown entry"),
    ("unknown-dir", insert_after_layout(bk.entry("etc", type_=tarfile.DIRTYPE)), "etc: unknown entry"),
    ("unclean-path", insert_after_layout(bk.entry("blobs//sha256", type_=tarfile.DIRTYPE)), "unclean path"),
    ("oversized-json", replace("release.json", b"{}" + b" " * (1024 * 1024)), "release.json: oversized"),
    ("malformed-json", replace("release.json", b'{"release": '), "release.json: malformed JSON"),
    ("duplicate-json-key", replace("oci-layout", b'{"imageLayoutVersion":"1.0.0","imageLayoutVersion":"9"}'),
     "oci-layout: duplicate key"),
    ("nan-json", replace("release.json", b'{"sequence": NaN}'), "release.json: NaN is not valid JSON"),
    ("blob-mismatch", lambda ms: [(i, d[:-1] + b"!" if i.name == blob_names(ms)[0] else d) for i, d in ms],
     "content does not match its digest"),
    ("missing-blob", lambda ms: [(i, d) for i, d in ms if i.name != blob_names(ms)[1]], "missing blob"),
    ("extra-blob", insert_after_layout(bk.entry("blobs/sha256/" + __import__("hashlib").sha256(b"x").hexdigest(),
                                                b"x")), "not listed in manifest.json"),
    ("missing-file", lambda ms: [(i, d) for i, d in ms if i.name != "inventory.json"], "inventory.json: missing"),
]


@pytest.mark.parametrize(("case", "edit", "expected"), TAR_CASES, ids=[c[0] for c in TAR_CASES])
def test_tar_level_refusals(cli, setup: Setup, case: str, edit: Callable[[Members], Members],
                            expected: str) -> None:
    hostile = rewrite(setup, edit)
    line = refused(cli, setup, expected, bundle=hostile)
    assert line.startswith(f"error: {hostile}: ")


def test_gnu_long_name_entry(cli, setup: Setup) -> None:
    hostile = rewrite(setup, insert_after_layout(bk.entry("signatures/" + "x" * 200, b"{}")), tarfile.GNU_FORMAT)
    refused(cli, setup, "GNU long-name entry", bundle=hostile)


def test_truncated_blob(cli, setup: Setup) -> None:
    bundle = read_bundle(setup.bundle)
    big = max((p for p in bundle.files if p.startswith("blobs/")), key=lambda p: bundle.files[p].size)
    cut = bundle.data_offsets[big] + 100
    hostile = setup.dir / "cut.tar"
    hostile.write_bytes(setup.bundle.read_bytes()[:cut])
    refused(cli, setup, f"truncated tar: {big} ends after 100 of", bundle=hostile)


@pytest.mark.parametrize("drop", [1, 512, 1024 + 1])
def test_truncated_tar(cli, setup: Setup, drop: int) -> None:
    hostile = setup.dir / "cut.tar"
    hostile.write_bytes(setup.bundle.read_bytes()[:-drop])
    refused(cli, setup, "truncated tar", bundle=hostile)


def test_truncated_to_nothing(cli, setup: Setup) -> None:
    hostile = setup.dir / "empty.tar"
    hostile.write_bytes(b"")
    refused(cli, setup, "truncated tar", bundle=hostile)


def test_data_after_the_end_of_the_archive(cli, setup: Setup) -> None:
    hostile = setup.dir / "tail.tar"
    hostile.write_bytes(setup.bundle.read_bytes() + b"#!/bin/sh\n")
    refused(cli, setup, "data after the end of the archive", bundle=hostile)


def test_bytes_hidden_in_padding(cli, setup: Setup) -> None:
    data = bytearray(setup.bundle.read_bytes())
    bundle = read_bundle(setup.bundle)
    record = bundle.files["index.json"]
    data[bundle.data_offsets["index.json"] + record.size] = 0x41
    hostile = setup.dir / "pad.tar"
    hostile.write_bytes(bytes(data))
    refused(cli, setup, "index.json: non-zero tar padding", bundle=hostile)


def test_corrupt_header_checksum(cli, setup: Setup) -> None:
    data = bytearray(setup.bundle.read_bytes())
    data[1024 + 10] ^= 0xFF  # the second header (after oci-layout's header and data block)
    hostile = setup.dir / "hdr.tar"
    hostile.write_bytes(bytes(data))
    refused(cli, setup, "malformed tar header at byte 1024", bundle=hostile)


def test_consistently_rewritten_content_loses_its_signatures(cli, setup: Setup) -> None:
    # Change release.json AND its manifest.json entry: integrity checks pass, signatures do not.
    import hashlib

    ms = bk.members(setup.bundle)
    rel = json.loads(next(d for i, d in ms if i.name == "release.json"))
    rel["sequence"] = 99
    new_rel = json.dumps(rel).encode()
    man = json.loads(next(d for i, d in ms if i.name == "manifest.json"))
    man["files"]["release.json"] = {"size": len(new_rel), "sha256": hashlib.sha256(new_rel).hexdigest()}
    edited = replace("manifest.json", json.dumps(man).encode())(replace("release.json", new_rel)(ms))
    hostile = bk.write_members(setup.dir / "rewritten.tar", edited)
    refused(cli, setup, "signed by 0 of the 2 distinct trusted keys required", bundle=hostile)
    r = cli("-v", "bundle", "verify", hostile, "--trust", setup.root)
    assert "signed statement is for other content" in r.stderr


# ---- signature and trust refusals --------------------------------------------------------------

def test_signature_by_untrusted_key(cli, setup: Setup) -> None:
    bundle = bk.make_bundle(setup.dir / "b2.tar")
    bk.sign_with(bundle, setup.keys["signer-1"])
    bk.sign_with(bundle, setup.keys["outsider"])
    refused(cli, setup, "signed by 1 of the 2 distinct trusted keys required", bundle=bundle)
    r = cli("bundle", "verify", bundle, "--trust", setup.root)
    assert "key is not in the trust root" in r.stderr


def test_signature_by_revoked_key(cli, setup: Setup) -> None:
    from tvdeploy.bundle import trust
    from tvdeploy.keys.store import key_id

    chain = trust.load_chain(setup.root)
    kid = key_id(setup.keys["signer-2"].public_key())
    chain = trust.next_version(chain, sign_with=[setup.keys["root-1"]], where="v2", revoke=[kid])
    v2 = setup.dir / "root-v2.json"
    v2.write_bytes(trust.chain_document(chain))
    refused(cli, setup, f"key {kid[:16]}: key is revoked", root=v2)


def test_same_key_counted_twice(cli, setup: Setup) -> None:
    bundle = bk.make_bundle(setup.dir / "b2.tar")
    key = setup.keys["signer-1"]
    bk.sign_with(bundle, key)
    read = read_bundle(bundle)
    from tvdeploy.keys.store import key_id

    kid = key_id(key.public_key())
    env = dsse.sign(statement.PAYLOAD_TYPE, statement.encode(statement.for_bundle(read)), key, kid)
    append_member(read, f"signatures/{kid}-2.json", env.to_json())
    refused(cli, setup, f"signed by 1 of the 2 distinct trusted keys required "
                        f"(signatures/{kid}-2.json: key {kid[:16]}: same key already counted)", bundle=bundle)


def test_two_signatures_in_one_envelope_by_one_key(cli, setup: Setup) -> None:
    bundle = bk.make_bundle(setup.dir / "b2.tar")
    key = setup.keys["signer-1"]
    read = read_bundle(bundle)
    from tvdeploy.keys.store import key_id

    kid = key_id(key.public_key())
    env = dsse.sign(statement.PAYLOAD_TYPE, statement.encode(statement.for_bundle(read)), key, kid)
    doubled = dsse.Envelope(env.payload_type, env.payload, env.signatures * 2)
    append_member(read, f"signatures/{kid}-1.json", doubled.to_json())
    refused(cli, setup, "same key already counted", bundle=bundle)


def test_forged_signature_bytes(cli, setup: Setup) -> None:
    bundle = bk.make_bundle(setup.dir / "b2.tar")
    bk.sign_with(bundle, setup.keys["signer-1"])
    read = read_bundle(bundle)
    from tvdeploy.keys.store import key_id

    kid = key_id(setup.keys["signer-2"].public_key())
    forged = dsse.Envelope(statement.PAYLOAD_TYPE, statement.encode(statement.for_bundle(read)),
                           (dsse.Signature(kid, b"\x00" * 64),))
    append_member(read, f"signatures/{kid}-1.json", forged.to_json())
    refused(cli, setup, "signature does not verify", bundle=bundle)


def test_malformed_signature_file(cli, setup: Setup) -> None:
    bundle = bk.make_bundle(setup.dir / "b2.tar")
    read = read_bundle(bundle)
    append_member(read, "signatures/" + "a" * 64 + "-1.json", b'{"payload": ')
    refused(cli, setup, "-1.json: malformed JSON", bundle=bundle)


def test_oversized_signature_file(cli, setup: Setup) -> None:
    from tvdeploy.bundle.reader import MAX_SIGNATURE

    bundle = bk.make_bundle(setup.dir / "b2.tar")
    append_member(read_bundle(bundle), "signatures/" + "b" * 64 + "-1.json", b" " * (MAX_SIGNATURE + 1))
    refused(cli, setup, f"-1.json: oversized ({MAX_SIGNATURE + 1} bytes; at most {MAX_SIGNATURE})", bundle=bundle)


def test_expired_trust_root(cli, setup: Setup) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    root = bk.make_trust(setup.dir / "old-root.json", [setup.keys["signer-1"], setup.keys["signer-2"]], 2,
                         [setup.keys["root-1"]], expires=past, now=past - timedelta(days=30))
    refused(cli, setup, "trust root version 1 expired on", root=root)


def test_trust_root_version_not_signed_by_predecessor(cli, setup: Setup) -> None:
    from tvdeploy.bundle import trust
    from tvdeploy.keys.store import key_id

    chain = trust.load_chain(setup.root)
    out = setup.keys["outsider"]
    forged = trust.make_version(
        version=2, expires=chain[0].expires, threshold=1,
        signers={key_id(out.public_key()): trust.signer_from_public(out.public_key())},
        root_keys={key_id(out.public_key()): trust._hex(out.public_key())},
        root_threshold=1, revoked=[], sign_with=[out])
    root = setup.dir / "forged-root.json"
    root.write_bytes(trust.chain_document([*chain, forged]))
    refused(cli, setup, "version 2 is not signed by its predecessor", root=root)


def test_expired_signer_key(cli, setup: Setup) -> None:
    from tvdeploy.bundle import trust
    from tvdeploy.keys.store import key_id

    v1 = trust.load_chain(setup.root)[0]
    kid = key_id(setup.keys["signer-1"].public_key())
    old = v1.signers[kid]
    signers = {**v1.signers, kid: trust.Signer(kid, old.public_hex, old.roles, datetime.now(UTC) - timedelta(days=1))}
    v2 = trust.make_version(version=2, expires=v1.expires, threshold=2, signers=signers, root_keys=v1.root_keys,
                            root_threshold=1, revoked=[], sign_with=[setup.keys["root-1"]])
    root = setup.dir / "root-v2.json"
    root.write_bytes(trust.chain_document([v1, v2]))
    refused(cli, setup, f"key {kid[:16]}: key expired on", root=root)


class RecordingSink:
    """Stands in for an importer's staging area: what was committed, what was thrown away."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.data = bytearray()
        self.committed: dict[str, bytes] = {}
        self.discarded: list[str] = []

    def begin(self, hexdigest: str, size: int) -> None:
        self.current, self.data = hexdigest, bytearray()

    def write(self, chunk: bytes | memoryview) -> None:
        self.data += chunk

    def commit(self) -> None:
        assert self.current is not None
        self.committed[self.current] = bytes(self.data)

    def discard(self) -> None:
        assert self.current is not None
        self.discarded.append(self.current)


def test_a_sink_gets_only_verified_blobs(setup: Setup) -> None:
    import hashlib

    from tvdeploy.errors import TvdeployError

    sink = RecordingSink()
    read_bundle(setup.bundle, sink=sink)
    assert sorted(sink.committed) == read_bundle(setup.bundle).blob_digests
    assert all(hashlib.sha256(d).hexdigest() == h for h, d in sink.committed.items())

    hostile = rewrite(setup, lambda ms: [(i, d[:-1] + b"!" if i.name == blob_names(ms)[0] else d) for i, d in ms])
    bad = blob_names(bk.members(setup.bundle))[0].rsplit("/", 1)[1]
    sink = RecordingSink()
    with pytest.raises(TvdeployError, match="content does not match its digest"):
        read_bundle(hostile, sink=sink)
    assert sink.discarded == [bad] and bad not in sink.committed
