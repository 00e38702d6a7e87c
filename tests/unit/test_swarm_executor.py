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


FORMATION = [
    Step("join-manager", "m2"),
    Step("join-manager", "m3"),
    Step("join-worker", "w1"),
    Step("join-worker", "w2"),
    Step("label", "m1"),
    Step("label", "m2"),
    Step("label", "m3"),
    Step("label", "w1"),
    Step("label", "w2"),
    Step("network-create", None, {"name": "a"}),
    Step("network-create", None, {"name": "b"}),
]


def test_formation_steps_form_one_group_and_everything_else_stays_alone() -> None:
    from tvdeploy.execute.swarm import _groups

    steps = [Step("unlock", "m1"), Step("init", "m1"), *FORMATION, Step("drain", "w9"), Step("label", "w3")]
    got = [[(s.kind, s.node) for s in g] for g in _groups(steps)]
    assert got[:2] == [[("unlock", "m1")], [("init", "m1")]]
    assert len(got[2]) == len(FORMATION)
    assert got[3:] == [[("drain", "w9")], [("label", "w3")]]
    assert _groups([]) == []


def test_formation_lanes_keep_manager_joins_in_one_lane_and_labels_after_joins() -> None:
    from tvdeploy.execute.swarm import formation_lanes

    lanes = formation_lanes(FORMATION)
    assert [s.node for s in lanes.managers] == ["m2", "m3"]  # raft: in plan order, one lane
    assert {k: [s.kind for s in v] for k, v in lanes.after_manager.items()} == {"m2": ["label"], "m3": ["label"]}
    others = [[(s.kind, s.node or s.detail["name"]) for s in lane] for lane in lanes.others]
    assert others == [
        [("join-worker", "w1"), ("label", "w1")],
        [("join-worker", "w2"), ("label", "w2")],
        [("label", "m1")],  # already a member: free to go at once
        [("network-create", "a"), ("network-create", "b")],
    ]
    placed = lanes.managers + [s for v in lanes.after_manager.values() for s in v] + [s for ln in lanes.others for s in ln]
    assert sorted(map(repr, placed)) == sorted(map(repr, FORMATION))  # each step exactly once


class _Recording(SwarmExecutor):
    """Steps are recorded, not sent (the real steps run against dockerd in the lab tests): this
    checks only the executor's ordering and overlap."""

    def __init__(self, fail: str | None = None) -> None:
        from tests.unit.test_plan_swarm import _site

        super().__init__(_site([["m1", "manager", "core"]]), {}, NullReporter(), sleep=lambda _s: None)
        import threading

        self.fail = fail
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, str | None]] = []
        self.active_manager_joins = 0
        self.max_manager_joins = 0
        self._cached = object()  # a manager is "chosen": no API call

    def _run_step(self, step: Step) -> None:
        import time

        with self.lock:
            self.log.append(("start", step.kind, step.node))
            if step.kind == "join-manager":
                self.active_manager_joins += 1
                self.max_manager_joins = max(self.max_manager_joins, self.active_manager_joins)
        time.sleep(0.05 if step.kind.startswith("join") else 0.01)
        with self.lock:
            if step.kind == "join-manager":
                self.active_manager_joins -= 1
            self.log.append(("end", step.kind, step.node))
        if self.fail is not None and step.node == self.fail:
            from tvdeploy.errors import TvdeployError

            raise TvdeployError(f"node {step.node}: join failed")


def test_formation_overlaps_lanes_but_never_two_manager_joins() -> None:
    from tvdeploy.plan.swarm import SwarmPlan

    ex = _Recording()
    ex.run(SwarmPlan(list(FORMATION)))
    assert ex.max_manager_joins == 1
    order = [(e, k, n) for e, k, n in ex.log]
    for node in ("m2", "m3", "w1", "w2"):
        kind = "join-manager" if node.startswith("m") else "join-worker"
        assert order.index(("end", kind, node)) < order.index(("start", "label", node))
    assert order.index(("end", "join-manager", "m2")) < order.index(("start", "join-manager", "m3"))
    # the worker joins ran beside the first manager join, not after all of them
    assert order.index(("start", "join-worker", "w1")) < order.index(("end", "join-manager", "m2"))
    assert len([e for e in order if e[0] == "end"]) == len(FORMATION)


def test_a_failed_manager_join_stops_the_later_ones_and_is_raised() -> None:
    from tvdeploy.errors import TvdeployError
    from tvdeploy.plan.swarm import SwarmPlan

    ex = _Recording(fail="m2")
    with pytest.raises(TvdeployError, match="node m2: join failed"):
        ex.run(SwarmPlan(list(FORMATION)))
    started = {(k, n) for e, k, n in ex.log if e == "start"}
    assert ("join-manager", "m3") not in started and ("label", "m2") not in started
    assert ("label", "w1") in started  # other lanes finish their work


class _Api:
    """Stand-ins for the Docker API (the real one answers in the lab tests): only the calls
    that _member_id makes."""

    def __init__(self, nodes: list[dict], info: dict | None = None) -> None:
        self._nodes, self._info = nodes, info or {}

    def nodes(self) -> list[dict]:
        return self._nodes

    def info(self) -> dict:
        return self._info


class _Client:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def info(self) -> dict:
        return self.api.info()


def test_a_node_just_joined_is_found_by_its_own_node_id() -> None:
    """Bug seen in the lab: a worker's label ran right after its join (beside the manager joins)
    and the managers' list did not show its hostname yet: "not a member of the swarm"."""
    manager = _Client(_Api([{"ID": "abc", "Description": {}, "Status": {"Addr": "0.0.0.0"}}]))
    ex = _executor()
    ex.clients["m1"] = _Client(_Api([], {"Swarm": {"NodeID": "abc"}}))
    assert ex._member_id(manager, "m1") == "abc"


def test_a_node_that_is_not_a_member_is_still_an_error() -> None:
    from tvdeploy.errors import TvdeployError

    manager = _Client(_Api([]))
    ex = _executor()
    ex.clients["m1"] = _Client(_Api([], {"Swarm": {"NodeID": ""}}))
    with pytest.raises(TvdeployError, match="node m1: not a member of the swarm"):
        ex._member_id(manager, "m1")
    del ex.clients["m1"]
    with pytest.raises(TvdeployError, match="not a member"):
        ex._member_id(manager, "m1")


def test_a_listed_node_is_found_without_asking_it() -> None:
    manager = _Client(_Api([{"ID": "xyz", "Description": {"Hostname": "m1"}, "Status": {"Addr": "10.0.0.1"}}]))
    assert _executor()._member_id(manager, "m1") == "xyz"
