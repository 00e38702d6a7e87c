"""Compose units (pure)."""

from __future__ import annotations

import pytest

from tvdeploy.release import units


@pytest.mark.parametrize(("text", "ns"), [("10s", 10 * 10**9), ("1m30s", 90 * 10**9), ("500ms", 5 * 10**8),
                                          ("0s", 0), (2, 2 * 10**9), ("1h", 3600 * 10**9)])
def test_durations(text: object, ns: int) -> None:
    assert units.duration_ns(text) == ns  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "10", "s", "10 s", "1x", "-1s", "10s junk"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        units.duration_ns(bad)


def test_sizes_cpus_modes() -> None:
    assert units.size_bytes("128M") == 128 << 20 and units.size_bytes("1g") == 1 << 30
    assert units.size_bytes(512) == 512
    assert units.nano_cpus("0.5") == 500_000_000
    assert units.file_mode("0400") == 0o400 and units.file_mode(0o444) == 0o444
    for bad in ("lots", "-1"):
        with pytest.raises(ValueError):
            units.nano_cpus(bad)
    with pytest.raises(ValueError):
        units.size_bytes("12 parsecs")
    with pytest.raises(ValueError):
        units.file_mode("0999")


def test_the_gate_looks_quickly_at_few_services_and_slowly_at_many() -> None:
    from tvdeploy.execute.release_wait import POLL, POLL_MIN, poll_interval

    assert poll_interval(1) == POLL_MIN  # a hot-fix: done is seen within a quarter second
    assert poll_interval(18) >= 0.9  # a whole stack: at most 40 calls a second on the manager
    assert all(POLL_MIN <= poll_interval(n) <= POLL for n in range(0, 40))
