"""Which swarm steps the executor may run side by side (pure; the steps themselves run against
real dockerd in tests/integration/test_swarm_lab.py)."""

from __future__ import annotations

import pytest

from tvdeploy.execute.swarm import SwarmExecutor, _batches
from tvdeploy.plan.swarm import Step
from tvdeploy.reporting import NullReporter


def test_only_consecutive_worker_joins_and_labels_are_batched() -> None:
    steps = [
        Step("init", "m1"),
        Step("join-manager", "m2"),
        Step("join-manager", "m3"),
        Step("join-worker", "w1"),
        Step("join-worker", "w2"),
        Step("label", "m1"),
        Step("label", "w1"),
        Step("network-create", None, {"name": "a"}),
        Step("drain", "w9"),
        Step("drain", "w8"),
        Step("join-worker", "w3"),
    ]
    got = [[(s.kind, s.node) for s in b] for b in _batches(steps)]
    assert got == [
        [("init", "m1")],
        [("join-manager", "m2")],
        [("join-manager", "m3")],  # raft: one at a time
        [("join-worker", "w1"), ("join-worker", "w2")],
        [("label", "m1"), ("label", "w1")],
        [("network-create", None)],
        [("drain", "w9")],
        [("drain", "w8")],  # never two drains at once
        [("join-worker", "w3")],
    ]
    assert _batches([]) == []


def _executor() -> SwarmExecutor:
    from tests.unit.test_plan_swarm import _site

    return SwarmExecutor(_site([["m1", "manager", "core"]]), {}, NullReporter(), sleep=lambda _s: None)


def test_update_out_of_sequence_is_read_again_and_retried() -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("rpc error: code = Unknown desc = update out of sequence")

    _executor()._versioned(attempt)
    assert len(calls) == 3


def test_other_update_errors_and_endless_conflicts_are_raised() -> None:
    def conflict() -> None:
        raise RuntimeError("update out of sequence")

    def other() -> None:
        raise RuntimeError("node not found")

    with pytest.raises(RuntimeError, match="out of sequence"):
        _executor()._versioned(conflict)
    with pytest.raises(RuntimeError, match="not found"):
        _executor()._versioned(other)
