"""The lab's signed waivers: one file per declared deviation; a deviation the lab no longer has
is removed, a file the operator put there is left alone."""

from __future__ import annotations

from pathlib import Path

import yaml

from tvdeploy.lab import waivers as W


def test_one_signed_file_per_deviation_and_stale_ones_removed(tmp_path: Path) -> None:
    folder = tmp_path / "waivers"
    folder.mkdir()
    stale = folder / "registry-service-tvd-104.yaml"  # written by an older `lab up`
    stale.write_text(W.HEADER + "waiver: {rule: TVD-104}\n")
    mine = folder / "operator-own.yaml"  # not the lab's: kept
    mine.write_text("waiver: {rule: TVD-106}\n")
    result = W.ensure(tmp_path)
    assert sorted(p.name for p in result.files) == sorted(f"{name}.yaml" for name in W.WAIVERS)
    assert not stale.exists() and mine.exists()
    rules = {yaml.safe_load(p.read_text())["waiver"]["rule"] for p in result.files}
    assert rules == {rule for rule, _scope, _why in W.WAIVERS.values()}
    assert (folder / f"{W.APPROVER}.key").stat().st_mode & 0o777 == 0o600
