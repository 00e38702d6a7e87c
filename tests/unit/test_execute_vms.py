"""The executor refuses before touching vCenter: conflicts and a bad bound (no server: the
session is None and must never be used)."""

from __future__ import annotations

import pytest

from tvdeploy.errors import RefusedError
from tvdeploy.execute.vms import apply_plan
from tvdeploy.plan.vms import Plan, Step
from tvdeploy.reporting import NullReporter


def _never(*_a, **_k) -> None:
    raise AssertionError("nothing may be recorded for a refused apply")


def test_conflicts_refuse_the_whole_apply() -> None:
    plan = Plan((
        Step("create", "tv-mgr-1", power_on=True),
        Step("conflict", "tv-mgr-2", reason="existing VM has no tvdeploy marker; left alone"),
        Step("conflict", "tv-mgr-3", reason="disk is 80 GB, the site file says 40 GB: disks are never shrunk"),
    ))
    with pytest.raises(RefusedError) as exc:
        apply_plan(None, plan, None, None, "site-A", NullReporter(), _never)  # type: ignore[arg-type]
    assert exc.value.message == (
        "vm tv-mgr-2: conflict: existing VM has no tvdeploy marker; left alone; nothing was changed"
    )
    assert exc.value.details == [
        "vm tv-mgr-3: conflict: disk is 80 GB, the site file says 40 GB: disks are never shrunk"
    ]


def test_parallel_below_one_is_refused() -> None:
    with pytest.raises(RefusedError, match="--parallel must be at least 1"):
        apply_plan(None, Plan(()), None, None, "s", NullReporter(), _never, parallel=0)  # type: ignore[arg-type]
