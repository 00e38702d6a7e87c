"""Stage timeouts and task failures name the stage and the VM (no server: task objects are plain
stand-ins with the one attribute the waiter reads, ``info``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tvdeploy.connectors.vsphere import StageTimeout, TaskFailed, wait_for, wait_task


def _task(state: str, result=None, error=None) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(state=state, result=result, error=error))


def test_task_success_returns_its_result() -> None:
    assert wait_task(_task("success", result="vm-7"), "clone", "tv-mgr-1", 1) == "vm-7"


def test_stalled_task_names_stage_and_vm() -> None:
    with pytest.raises(StageTimeout, match=r"^vm tv-mgr-1: timed out after 0.2 s in stage clone$"):
        wait_task(_task("running"), "clone", "tv-mgr-1", 0.2)


def test_failed_task_names_stage_vm_and_fault() -> None:
    fault = SimpleNamespace(msg="Insufficient disk space on datastore 'ds-ssd-01'.")
    with pytest.raises(TaskFailed, match=r"^vm tv-edge-1: customization failed: Insufficient disk space"):
        wait_task(_task("error", error=fault), "customization", "tv-edge-1", 1)


def test_guest_ip_that_never_shows_times_out_naming_the_stage() -> None:
    with pytest.raises(StageTimeout, match=r"^vm tv-mgr-2: timed out after 0.3 s in stage guest IP 10.20.0.12$"):
        wait_for(lambda: False, "guest IP 10.20.0.12", "tv-mgr-2", 0.3)


def test_wait_for_returns_once_true() -> None:
    answers = [False, False, True]
    asked: list[bool] = []

    def check() -> bool:
        asked.append(answers[len(asked)])
        return asked[-1]

    assert wait_for(check, "guest IP", "n", 5) is None
    assert asked == answers  # polled until true, and not once more
