"""The deploy lock's pure parts: the manager-clock expiry, Docker's timestamps, the JSON shape,
and when a lease of this machine counts as abandoned. (The atomic create, the compare-and-swap
and the races run against a real swarm: tests/integration/test_release_ops_lab.py.)"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from tvdeploy.execute.deploy_lock import PREFIX, Lease, _time, abandoned_here, owner_labels


def lease(labels: dict[str, str], age: float, ttl: int = 60) -> Lease:
    now = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
    return Lease("cfg", 7, {**labels, PREFIX + "ttl": str(ttl)}, now - timedelta(seconds=age), now)


def test_docker_timestamps_with_nanoseconds() -> None:
    assert _time("2026-12-02T10:00:00.123456789Z") == datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
    assert _time("2026-12-02T10:00:00Z") == datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
    assert _time("2026-12-02T11:00:00.5+01:00") == datetime(2026, 12, 2, 10, 0, 0, 500000, tzinfo=UTC)


def test_expiry_is_judged_on_the_managers_clock() -> None:
    labels = owner_labels("k" * 64, "release deploy r1", 60)
    assert not lease(labels, 59).expired and lease(labels, 60).expired
    doc = lease(labels, 10).to_json()
    assert doc["held"] is True and doc["command"] == "release deploy r1"
    assert doc["owner"] == {"key_id": "k" * 64, "host": socket.gethostname(), "pid": os.getpid()}
    assert doc["expires"] == "2026-12-02T10:00:50+00:00"


def test_a_lease_of_a_dead_process_here_is_abandoned_but_not_a_live_one_or_anothers() -> None:
    mine = owner_labels("k" * 64, "x", 60)
    assert not abandoned_here(lease(mine, 1), "k" * 64)  # this very process is alive
    dead = {**mine, PREFIX + "pid": str(2**22 + 12345)}  # above pid_max: no such process
    assert abandoned_here(lease(dead, 1), "k" * 64)
    assert not abandoned_here(lease(dead, 1), "other" * 8)  # another operator's key: wait for expiry
    elsewhere = {**dead, PREFIX + "host": "another-machine"}
    assert not abandoned_here(lease(elsewhere, 1), "k" * 64)  # cannot see processes elsewhere
    assert not abandoned_here(lease({**dead, PREFIX + "pid": "junk"}, 1), "k" * 64)
