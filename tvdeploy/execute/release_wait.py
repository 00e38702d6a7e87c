"""The deploy gate: wait until services converge and are healthy, say why when they do not, and
check the data path from inside a running task.

Swarm marks a task ``running`` only once its health check passes, so "converged and healthy"
is: every task that should run runs the desired image and is running, as many as the service
wants, and the service's update (if any) completed. An update that swarm rolled back or paused
fails at once; otherwise a tier that has not converged when its timeout ends fails, naming the
service and the newest failed task's error, exit code and last health-check output.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import TvdeployError
from tvdeploy.facts.services import TaskFact, node_table, task_fact

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

FAILED_UPDATE = ("rollback_started", "rollback_paused", "rollback_completed", "paused")
TASK_DOWN = ("failed", "rejected", "shutdown", "complete", "orphaned", "remove")
EARLY_FAILURES = 3  # failed tasks of the new image before a created service is given up on
POLL = 1.0  # seconds between two looks at many services (two API calls each per look)
POLL_PER_SERVICE = 0.05  # fewer services pending, quicker looks: a hot-fix of one is seen done at once
POLL_MIN = 0.25


class GateFailed(TvdeployError):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"service {service}: {reason}")
        self.service = service
        self.reason = reason


@dataclass
class Watch:
    key: str  # compose name
    service_id: str
    image: str
    done: bool = False


def wait_converged(site: Site, api: Any, watches: list[Watch], timeout: float, reporter: Reporter,
                   completed: bool = False) -> None:
    """Until every watched service runs healthy tasks of its image; with *completed*, also until
    swarm ended each update (its monitor window passed without a failure)."""
    deadline = time.monotonic() + timeout
    nodes = node_table(site, api.nodes())
    what = "update completed" if completed else "converged and healthy"
    for w in watches:
        if not completed:
            reporter.task(f"svc:{w.key}", f"{w.key}: starting", total=None)
    last: dict[str, str] = {}
    while True:
        for w in [w for w in watches if not w.done]:
            state = service_state(site, api, w, nodes, completed)
            if state is not None and state != last.get(w.key):
                last[w.key] = state  # the live view: tasks running/desired, as they change
                reporter.advance(f"svc:{w.key}", 0, description=f"{w.key}: {state}")
                reporter.event("service.progress", service=w.key, state=state)
            if state is None:
                w.done = True
                if not completed:
                    reporter.done(f"svc:{w.key}", f"{w.key}: {what}")
                reporter.event("service.converged" if not completed else "service.completed", service=w.key,
                               image=w.image)
        if all(w.done for w in watches):
            return
        if time.monotonic() > deadline:
            w = next(w for w in watches if not w.done)
            raise GateFailed(w.key, f"not {what} within {timeout:.0f} s"
                             + diagnose(site, api, w, nodes))
        time.sleep(poll_interval(sum(not w.done for w in watches)))


def poll_interval(pending: int) -> float:
    """The manager answers two calls per pending service per look: look less often at many."""
    return min(POLL, max(POLL_MIN, POLL_PER_SERVICE * pending))


def service_state(site: Site, api: Any, w: Watch, nodes: dict[str, dict[str, str]],
                  completed: bool = False) -> str | None:
    """None when converged; else a short description. Raises GateFailed on a failed update."""
    svc = api.inspect_service(w.service_id)
    update = svc.get("UpdateStatus") or {}
    if update.get("State") in FAILED_UPDATE:
        raise GateFailed(w.key, f"update {update['State']} by swarm: {update.get('Message', '')}"
                         + diagnose(site, api, w, nodes))
    tasks = [task_fact(t, nodes) for t in api.tasks(filters={"service": w.service_id})]
    want = tasks_wanted(svc, tasks)
    active = [t for t in tasks if t.desired == "running"]
    good = [t for t in active if t.state == "running" and t.image == w.image]
    failed = [t for t in tasks if t.image == w.image and t.state in ("failed", "rejected")]
    if not svc.get("PreviousSpec") and len(failed) >= EARLY_FAILURES and not good:
        raise GateFailed(w.key, f"{len(failed)} tasks failed" + diagnose(site, api, w, nodes))
    converged = len(good) == len(active) and len(good) >= want
    if completed:
        converged = converged and update.get("State") in (None, "completed")
    starting = [t.state for t in active if t.state != "running"]
    return None if converged else f"{len(good)}/{want} running healthy" + (f", {starting[0]}" if starting else "")


def tasks_wanted(svc: dict[str, Any], tasks: list[TaskFact]) -> int:
    mode = (svc.get("Spec") or {}).get("Mode") or {}
    if "Replicated" in mode:
        return int(mode["Replicated"].get("Replicas", 1))
    return max(1, len([t for t in tasks if t.desired == "running"]))


def diagnose(site: Site, api: Any, w: Watch, nodes: dict[str, dict[str, str]]) -> str:
    """'; task on lab-mgr-2: ... (exit code 1); health check: ...' from the newest failed task."""
    tasks = sorted((task_fact(t, nodes) for t in api.tasks(filters={"service": w.service_id})),
                   key=lambda t: t.timestamp, reverse=True)
    bad = next((t for t in tasks if t.image == w.image and (t.state in TASK_DOWN or t.error)), None)
    bad = bad or next((t for t in tasks if t.image == w.image and t.state != "running"), None)
    if bad is None:
        return ""
    text = f"; task on {bad.node} {bad.state}"
    if bad.error:
        text += f": {bad.error}"
    if bad.exit_code:
        text += f" (exit code {bad.exit_code})"
    health = health_output(site, bad)
    if health:
        text += f"; health check: {health}"
    return text


def node_client(site: Site, node_name: str, timeout: int = 15) -> Any | None:
    from tvdeploy.connectors.docker_api import ClientCert, connect
    from tvdeploy.pki.ca import pki_paths

    node = next((n for n in site.nodes if n.name == node_name), None)
    if node is None:
        return None
    return connect(node.name, str(node.address), ClientCert.in_dir(pki_paths(site).client_dir), timeout=timeout)


def health_output(site: Site, task: TaskFact) -> str:
    """The last health-check output of the task's container, read on its node (best effort)."""
    if not task.container_id:
        return ""
    client = node_client(site, task.node)
    if client is None:
        return ""
    try:
        state = client.api.inspect_container(task.container_id).get("State") or {}
        log_entries = (state.get("Health") or {}).get("Log") or []
        return " ".join(str(log_entries[-1].get("Output", "")).split())[:300] if log_entries else ""
    except Exception as exc:  # noqa: BLE001 - diagnosis must never hide the real failure
        log.debug("no health output for %s: %s", task.container_id, exc)
        return ""
    finally:
        client.close()


def check_data_path(site: Site, api: Any, service_id: str, key: str, url: str, timeout: float = 45.0) -> str:
    """Fetch *url* from inside a running task of the service; returns the body, raises GateFailed."""
    deadline = time.monotonic() + timeout
    last = "no running task"
    while time.monotonic() < deadline:
        nodes = node_table(site, api.nodes())
        running = [task_fact(t, nodes) for t in api.tasks(filters={"service": service_id, "desired-state": "running"})]
        task = next((t for t in running if t.state == "running" and t.container_id), None)
        if task is not None:
            code, output = exec_in(site, task, ["timeout", "8", "wget", "-q", "-O-", url])
            if code == 0:
                return output
            last = f"{' '.join(shlex.quote(a) for a in ['wget', url])} in a task on {task.node} exited {code}: " \
                   f"{' '.join(output.split())[:300]}"
        time.sleep(2)
    raise GateFailed(key, f"data path check failed: {last}")


def exec_in(site: Site, task: TaskFact, argv: list[str]) -> tuple[int, str]:
    client = node_client(site, task.node, timeout=30)
    if client is None:
        return 1, f"node {task.node} is not declared in the site file"
    try:
        exec_id = client.api.exec_create(task.container_id, argv, stdout=True, stderr=True)["Id"]
        output = client.api.exec_start(exec_id).decode(errors="replace")
        code = client.api.exec_inspect(exec_id).get("ExitCode")
        return (int(code) if isinstance(code, int) else 1), output
    except Exception as exc:  # noqa: BLE001 - reported as the gate's reason
        return 1, str(exc)[:300]
    finally:
        client.close()
