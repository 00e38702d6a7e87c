"""The lab's real secrets (vCenter password, CA passphrase) appear in no plan, output, error,
audit record or state file after read-only commands run with -v against the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.lab


def _secret_values(site_file: Path) -> list[str]:
    from tvdeploy.config.load import load_site
    from tvdeploy.config.secrets import resolve_secret

    site = load_site(site_file)
    values = [resolve_secret(site.vcenter.password, "vcenter.password").reveal()]
    if site.pki.ca_passphrase:
        values.append(resolve_secret(site.pki.ca_passphrase, "pki.ca_passphrase").reveal())
    assert all(len(v) >= 8 for v in values)
    return values


def _scan(root: Path, secrets: list[str], skip: tuple[Path, ...]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink() or any(path.is_relative_to(s) for s in skip):
            continue
        try:
            if path.stat().st_size > 4 * 1024 * 1024:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        found += [f"{path}" for s in secrets if s.encode() in data]
    return found


def test_secrets_absent_from_outputs_audit_and_state(lab, lab_home, cli, monkeypatch) -> None:
    monkeypatch.setenv("TVDEPLOY_HOME", str(lab_home))
    secrets = _secret_values(lab.site_file)
    outputs = []
    for argv in (
        ("site", "show", lab.site_file, "-v"),
        ("site", "show", lab.site_file, "--json"),
        ("vm", "plan", lab.site_file, "-v"),
        ("vm", "list", lab.site_file, "--json"),
        ("tls", "plan", lab.site_file, "-v"),
        ("audit", "show", lab.site_file, "--json"),
    ):
        r = cli(*argv)
        outputs.append((argv, r.stdout + r.stderr))
    # An error path too: a wrong pinned fingerprint makes vm plan fail with one line.
    bad = lab.site_file.with_name("site-badpin.yaml")
    text = lab.site_file.read_text()
    fp = lab.status["vcenter"]["fingerprint"]
    bad.write_text(text.replace(fp, "0" * 64))
    try:
        r = cli("vm", "plan", bad, "-v")
        assert r.code == 1
        outputs.append((("vm", "plan", "badpin"), r.stdout + r.stderr))
    finally:
        bad.unlink()
    for argv, text in outputs:
        for s in secrets:
            assert s not in text, f"secret leaked in output of {argv}"
    # The audit log, checkpoints, PKI and every other state file; the secret files themselves
    # (and the simulator's own copy of its password) are where the secrets live by design.
    leaks = _scan(lab.dir, secrets, skip=(lab.dir / "secrets", lab.dir / "vcenter", lab.dir / "nodes"))
    leaks += _scan(lab_home, secrets, skip=())
    assert leaks == []
