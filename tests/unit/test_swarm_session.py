"""When a bootstrap may start the swarm init before TLS is applied to every node (pure), and
that the early init starts once, for its node only. The init itself runs against real dockerd
in tests/integration/test_swarm_lab.py; here its run is replaced by a recorder."""

from __future__ import annotations

import threading

import pytest

from tests.unit.test_plan_swarm import _site
from tvdeploy.execute.swarm_session import EarlyInit, SwarmView, early_init_step
from tvdeploy.facts.swarm_model import SwarmFacts
from tvdeploy.plan import tls as T
from tvdeploy.plan.swarm import Step, SwarmPlan
from tvdeploy.reporting import NullReporter

SITE = _site([["m1", "manager", "core"], ["m2", "manager", "core"], ["w1", "worker", "edge"]])
INIT = Step("init", "m1")


def _tls(nodes_with_steps: set[str]) -> T.TlsPlan:
    def node(name: str) -> T.NodePlan:
        steps = (T.Step(T.RESTART, "config changed", name),) if name in nodes_with_steps else ()
        return T.NodePlan(name, "10.0.0.1", "sysvinit", steps, None, "{}", None, False)  # type: ignore[arg-type]

    return T.TlsPlan("t", (), tuple(node(n) for n in ("m1", "m2", "w1")))


def _view(tls: T.TlsPlan | None, steps: list[Step], problems: list[str] | None = None) -> SwarmView:
    return SwarmView(None, tls, SwarmFacts(local={}), SwarmPlan(steps, problems or []))


@pytest.mark.parametrize(
    ("tls_nodes", "steps", "problems", "expected"),
    [
        ({"m1", "m2", "w1"}, [INIT, Step("join-manager", "m2")], [], INIT),  # fresh formation
        ({"m2", "w1"}, [INIT, Step("join-manager", "m2")], [], None),  # m1's API unchanged: no signal
        (set(), [INIT], [], None),  # no TLS change: the normal pass inits
        ({"m1"}, [Step("join-worker", "w1")], [], None),  # swarm exists
        ({"m1"}, [Step("unlock", "m1"), INIT], [], None),  # init is not first
        ({"m1"}, [INIT], ["something is wrong"], None),
        ({"m1"}, [], [], None),
    ],
)
def test_early_init_only_for_a_fresh_formation(tls_nodes, steps, problems, expected) -> None:
    assert early_init_step(SITE, _view(_tls(tls_nodes), steps, problems)) == expected


def test_no_tls_plan_no_early_init() -> None:
    assert early_init_step(SITE, _view(None, [INIT])) is None


class _Recorded(EarlyInit):
    def __init__(self, fail: bool = False) -> None:
        super().__init__(SITE, INIT, NullReporter())
        self.runs: list[str] = []
        self.fail = fail
        self.release = threading.Event()

    def _run(self) -> None:
        self.release.wait(5)
        self.runs.append(threading.current_thread().name)
        if self.fail:
            self._error = RuntimeError("init failed")


def test_early_init_starts_once_for_its_node_and_finish_waits() -> None:
    early = _Recorded()
    early.ready("m2")
    early.ready("w1")
    assert early.join() is False and early.finish() == 0  # not started yet
    early.ready("m1")
    early.ready("m1")  # a second signal starts nothing more
    early.release.set()
    assert early.finish() == 1
    assert len(early.runs) == 1


def test_early_init_error_is_raised_by_finish() -> None:
    early = _Recorded(fail=True)
    early.ready("m1")
    early.release.set()
    with pytest.raises(RuntimeError, match="init failed"):
        early.finish()
