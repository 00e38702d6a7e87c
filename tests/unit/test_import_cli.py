"""`bundle import` and `registry status` on bad input, without a lab: one `error:` line naming
the file and what is wrong, exit 1, no traceback, nothing written (no journal, no record) and no
node contacted (the site's SSH port is closed: reaching it would be a different error)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from tests import bundlekit as bk
from tests.unit.tls_helpers import SITE_DOC


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    doc = json.loads(json.dumps(SITE_DOC))
    doc["network"] = {"subnet": "127.0.0.0/24"}
    doc["nodes"] = [{"name": "n1", "role": "manager", "address": "127.0.0.1", "zone": "z"}]
    doc["ssh"] = {"user": "root", "port": _closed_port(), "known_hosts": "known_hosts"}
    doc["state_dir"] = "state"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def signed(tmp_path: Path, operator_key: str) -> tuple[Path, Path]:
    bundle = bk.make_bundle(tmp_path / "b.tar")
    keys = [bk.make_key(f"s{i}")[0] for i in (1, 2)]
    trust = bk.make_trust(tmp_path / "root.json", keys, 2, [bk.make_key("root")[0]])
    for k in keys:
        bk.sign_with(bundle, k)
    return bundle, trust


def _one_error(r) -> str:
    assert r.code == 1, (r.code, r.stdout, r.stderr)
    # progress lines (plain, not a terminal) may come first; exactly one error line
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def _nothing_written(site_file: Path) -> None:
    assert not (site_file.parent / "state" / "imports").exists()


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 1]))


def test_tampered_bundle_is_refused_before_anything(cli, site_file, signed, tmp_path) -> None:
    from tvdeploy.bundle.reader import read_bundle

    bundle, trust = signed
    read = read_bundle(bundle)
    largest = max(read.blob_digests, key=lambda d: read.files[f"blobs/sha256/{d}"].size)
    _flip(bundle, read.data_offsets[f"blobs/sha256/{largest}"] + 100)
    line = _one_error(cli("bundle", "import", site_file, bundle, "--trust", trust, "--yes"))
    assert line.startswith(f"error: {bundle}: blobs/sha256/{largest}: content does not match its digest")
    _nothing_written(site_file)


def test_unsigned_bundle_is_refused(cli, site_file, tmp_path, operator_key) -> None:
    bundle = bk.make_bundle(tmp_path / "u.tar")
    keys = [bk.make_key(f"s{i}")[0] for i in (1, 2)]
    trust = bk.make_trust(tmp_path / "root.json", keys, 2, [bk.make_key("root")[0]])
    line = _one_error(cli("bundle", "import", site_file, bundle, "--trust", trust, "--yes"))
    assert line == f"error: {bundle}: signed by 0 of the 2 distinct trusted keys required"
    _nothing_written(site_file)


def test_under_threshold_is_refused(cli, site_file, tmp_path, operator_key) -> None:
    bundle = bk.make_bundle(tmp_path / "h.tar")
    keys = [bk.make_key(f"s{i}")[0] for i in (1, 2)]
    trust = bk.make_trust(tmp_path / "root.json", keys, 2, [bk.make_key("root")[0]])
    bk.sign_with(bundle, keys[0])
    line = _one_error(cli("bundle", "import", site_file, bundle, "--trust", trust, "--yes"))
    assert line == f"error: {bundle}: signed by 1 of the 2 distinct trusted keys required"
    _nothing_written(site_file)


def test_truncated_bundle_is_refused(cli, site_file, signed, tmp_path) -> None:
    bundle, trust = signed
    cut = tmp_path / "cut.tar"
    cut.write_bytes(bundle.read_bytes()[:20000])
    line = _one_error(cli("bundle", "import", site_file, cut, "--trust", trust, "--yes"))
    assert line.startswith(f"error: {cut}: truncated tar")
    _nothing_written(site_file)


def test_missing_files(cli, site_file, signed, tmp_path) -> None:
    bundle, trust = signed
    assert _one_error(cli("bundle", "import", site_file, tmp_path / "nope.tar", "--trust", trust, "--yes")) \
        == f"error: {tmp_path / 'nope.tar'}: bundle not found"
    assert str(tmp_path / "none.json") in _one_error(
        cli("bundle", "import", site_file, bundle, "--trust", tmp_path / "none.json", "--yes"))
    assert str(tmp_path / "gone.yaml") in _one_error(
        cli("bundle", "import", tmp_path / "gone.yaml", bundle, "--trust", trust, "--yes"))
    _nothing_written(site_file)


def test_without_operator_key_nothing_is_read(cli, site_file, tmp_path) -> None:
    line = _one_error(cli("bundle", "import", site_file, tmp_path / "b.tar", "--trust", tmp_path / "r.json"))
    assert "operator key" in line
    _nothing_written(site_file)


def test_verified_bundle_then_unreachable_site_writes_nothing(cli, site_file, signed) -> None:
    bundle, trust = signed
    line = _one_error(cli("bundle", "import", site_file, bundle, "--trust", trust, "--yes"))
    assert line.startswith("error: node n1") and "127.0.0.1" in line
    _nothing_written(site_file)


def test_chunk_folder_with_a_corrupt_chunk_is_refused(cli, site_file, signed, tmp_path) -> None:
    bundle, trust = signed
    r = cli("bundle", "split", bundle, "--size", "8192", "-o", tmp_path / "chunks", "--key", "s1", "--key", "s2")
    assert r.code == 0, r.stderr
    chunk = sorted(p for p in (tmp_path / "chunks").iterdir() if p.suffix != ".json")[1]
    _flip(chunk, 600)
    line = _one_error(cli("bundle", "import", site_file, tmp_path / "chunks", "--trust", trust, "--yes"))
    assert chunk.name in line
    _nothing_written(site_file)


def test_without_trust_root_anywhere_is_refused(cli, site_file, signed) -> None:
    bundle, _trust = signed
    line = _one_error(cli("bundle", "import", site_file, bundle))
    assert "no trust root: pass --trust ROOT or set trust.root" in line
    _nothing_written(site_file)


def test_trust_root_from_the_site_file(cli, site_file, signed, tmp_path) -> None:
    # The site file pins the trust root; a tampered bundle is then refused against it.
    bundle, trust = signed
    site_file.write_text(site_file.read_text() + f"trust: {{root: {trust}}}\n")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bundle.read_bytes())
    _flip(bad, 1024 + 600)
    line = _one_error(cli("bundle", "import", site_file, bad, "--yes"))
    assert str(bad) in line
    _nothing_written(site_file)


def test_registry_status_before_tls_apply(cli, site_file) -> None:
    line = _one_error(cli("registry", "status", site_file, "--json"))
    assert "run tvdeploy tls apply first" in line


def test_import_is_a_bundle_command(cli) -> None:
    r = cli("bundle", "--help")
    assert r.code == 0 and "import" in r.stdout


def test_inventory_of_an_unreachable_site_writes_nothing(cli, site_file, tmp_path, operator_key) -> None:
    line = _one_error(cli("bundle", "inventory", site_file, "-o", tmp_path / "have.json"))
    assert line.startswith("error: node n1")
    assert not (tmp_path / "have.json").exists()


def test_inventory_usage_error_without_output(cli, site_file) -> None:
    assert cli("bundle", "inventory", site_file).code == 64
