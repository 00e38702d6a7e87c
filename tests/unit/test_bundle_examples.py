"""The shipped trust-root example verifies (its own signatures) and reads as documented."""

from __future__ import annotations

import json
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "bundles" / "examples" / "trust-root.example.json"


def test_example_trust_root_shows(cli) -> None:
    r = cli("trust", "show", EXAMPLE, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["version"] == 1 and doc["threshold"] == 2
    assert len(doc["signers"]) == 3 and len(doc["root_keys"]) == 2


def test_tampered_example_trust_root_is_refused(cli, tmp_path: Path) -> None:
    bad = tmp_path / "root.json"
    text = EXAMPLE.read_text().replace('"threshold":2', '"threshold":1')
    assert text != EXAMPLE.read_text()
    bad.write_text(text)
    r = cli("trust", "show", bad)
    assert r.code == 1 and r.stderr.startswith(f"error: {bad}")
