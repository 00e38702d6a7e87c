"""The site inventory (HAVE.json): signed by the operator key, read back strictly. Hand-made
inventories (no site runs in unit tests): ``bundle inventory`` (issue 9) writes the same with
``make_inventory``."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle import inventory as I  # noqa: N812
from tvdeploy.errors import TvdeployError

DIGESTS = [f"sha256:{c * 64}" for c in "abc"]
RELEASE = {"release": "2026.11-1", "sequence": 3, "images": {"cloud": f"sha256:{'d' * 64}"}}


@pytest.fixture
def signer() -> tuple[object, str]:
    return bk.make_key("operator-a")


def write(tmp_path: Path, signer: tuple[object, str], digests: list[str] = DIGESTS,
          release: dict | None = RELEASE) -> Path:
    path = tmp_path / "HAVE.json"
    path.write_bytes(I.make_inventory("plant-7", digests, release, signer))  # type: ignore[arg-type]
    return path


def fails(path: Path, keys: list | None, *, starts: str) -> str:
    with pytest.raises(TvdeployError) as err:
        I.read_inventory(path, keys)
    msg = err.value.message
    assert "\n" not in msg and msg.startswith(f"{path}: {starts}"), msg
    return msg


def test_round_trip(tmp_path: Path, signer: tuple) -> None:
    path = write(tmp_path, signer, [*DIGESTS, "e" * 64, DIGESTS[0]])  # bare hex and a repeat are fine
    inv = I.read_inventory(path, [signer[0].public_key()])
    assert inv.site == "plant-7" and inv.key_id == signer[1]
    assert inv.digests == frozenset([*DIGESTS, f"sha256:{'e' * 64}"])
    assert inv.hexes == frozenset(c * 64 for c in "abce")
    assert inv.last_release == RELEASE
    envelope = json.loads(path.read_bytes())
    assert envelope["payloadType"] == I.PAYLOAD_TYPE
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload["blobs"] == sorted(inv.digests) and payload["type"] == "tvdeploy-site-inventory"


def test_default_is_the_local_operator_key(tmp_path: Path, operator_key: str) -> None:
    from tvdeploy.audit.recorder import signing_key

    path = write(tmp_path, signing_key(), release=None)
    inv = I.read_inventory(path)
    assert inv.last_release is None and len(inv.digests) == 3


def test_wrong_key(tmp_path: Path, signer: tuple) -> None:
    other = bk.make_key("operator-b")[0]
    msg = fails(write(tmp_path, signer), [other.public_key()], starts="inventory signature does not verify")
    assert signer[1][:16] in msg


def test_tampered_payload(tmp_path: Path, signer: tuple) -> None:
    path = write(tmp_path, signer)
    env = json.loads(path.read_bytes())
    doc = json.loads(base64.b64decode(env["payload"]))
    doc["blobs"].append(f"sha256:{'f' * 64}")  # claim a blob the site lacks
    env["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    path.write_text(json.dumps(env))
    fails(path, [signer[0].public_key()], starts="inventory signature does not verify")


def test_signature_claiming_another_key_id(tmp_path: Path, signer: tuple) -> None:
    other, other_id = bk.make_key("operator-b")
    path = write(tmp_path, signer)
    env = json.loads(path.read_bytes())
    env["signatures"][0]["keyid"] = other_id
    path.write_text(json.dumps(env))
    fails(path, [other.public_key()], starts="inventory signature does not verify")


def test_unsigned_inventory(tmp_path: Path, signer: tuple) -> None:
    path = tmp_path / "HAVE.json"
    path.write_text(json.dumps(I.inventory_document("plant-7", DIGESTS, None)))
    fails(path, [signer[0].public_key()], starts="not a signed site inventory (not a DSSE envelope")


def test_other_payload_type(tmp_path: Path, signer: tuple) -> None:
    from tvdeploy.bundle import dsse

    path = tmp_path / "HAVE.json"
    path.write_bytes(dsse.sign("application/vnd.in-toto+json", b"{}", signer[0], signer[1]).to_json())
    fails(path, [signer[0].public_key()], starts="not a site inventory (payload type")


@pytest.mark.parametrize(("payload", "what"), [
    (b"not json", "malformed JSON"),
    (b'{"a":1,"a":2}', "duplicate key"),
    (b"[]", "expected the keys"),
    (json.dumps({"type": "other", "version": 1, "site": "s", "created": "t", "blobs": [],
                 "last_release": None}).encode(), "not a tvdeploy-site-inventory"),
    (json.dumps({"type": "tvdeploy-site-inventory", "version": 1, "site": "s", "created": "t", "blobs": ["md5:1"],
                 "last_release": None}).encode(), "blobs: expected a list of sha256 digests"),
    (json.dumps({"type": "tvdeploy-site-inventory", "version": 1, "site": "s", "created": "t",
                 "blobs": [DIGESTS[0], DIGESTS[0]], "last_release": None}).encode(), "listed twice"),
    (json.dumps({"type": "tvdeploy-site-inventory", "version": 1, "site": "s", "created": "t", "blobs": [],
                 "last_release": {"release": "r", "sequence": 0}}).encode(), "last_release.sequence"),
    (json.dumps({"type": "tvdeploy-site-inventory", "version": 1, "site": "", "created": "t", "blobs": [],
                 "last_release": None}).encode(), "site: expected"),
])
def test_malformed_but_signed(tmp_path: Path, signer: tuple, payload: bytes, what: str) -> None:
    """Signed by the right key and still refused: the content is checked after the signature."""
    from tvdeploy.bundle import dsse

    path = tmp_path / "HAVE.json"
    path.write_bytes(dsse.sign(I.PAYLOAD_TYPE, payload, signer[0], signer[1]).to_json())
    msg = fails(path, [signer[0].public_key()], starts="malformed site inventory: ")
    assert what in msg


def test_truncated(tmp_path: Path, signer: tuple) -> None:
    path = write(tmp_path, signer)
    path.write_bytes(path.read_bytes()[:-20])
    fails(path, [signer[0].public_key()], starts="not a signed site inventory (malformed JSON")


def test_oversized(tmp_path: Path, signer: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(I, "MAX_FILE", 1000)
    path = write(tmp_path, signer, [f"sha256:{i:064x}" for i in range(50)])
    fails(path, [signer[0].public_key()], starts="oversized (")


def test_not_found_and_not_a_file(tmp_path: Path, signer: tuple) -> None:
    fails(tmp_path / "nope.json", None, starts="inventory not found")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fails(fifo, None, starts="not a regular file")
    fails(tmp_path, None, starts="not a regular file")


def test_make_refuses_bad_input(signer: tuple) -> None:
    with pytest.raises(I.InventoryFormatError, match="is not a sha256 digest"):
        I.make_inventory("s", ["sha256:xyz"], None, signer)  # type: ignore[arg-type]
    with pytest.raises(I.InventoryFormatError, match="last_release.images: 'Bad Svc'"):
        I.make_inventory("s", [], {"release": "r", "sequence": 1, "images": {"Bad Svc": DIGESTS[0]}},
                         signer)  # type: ignore[arg-type]
