"""The build engine: a Docker Engine standing in for the connected-side build machine.

It runs in its own network, mount and PID namespaces (so its docker0, iptables rules and
/run/containerd are its own, never shared with another dockerd), with its own data root under
the lab dir and a unix socket at ``DIR/engine/docker.sock``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

from tvdeploy.errors import ConfigError
from tvdeploy.lab import proc
from tvdeploy.lab.labstate import EngineRecord
from tvdeploy.lab.layout import MAX_UNIX_SOCKET_PATH, LabLayout
from tvdeploy.lab.nodes import docker_ping
from tvdeploy.state import write_atomic

BOOT_SCRIPT = """\
#!/bin/sh
# Boot of the tvdeploy lab build engine, under tini in its own namespaces.
set -eu
for m in $(awk '$5 ~ "^/run/" {{print $5}}' /proc/self/mountinfo | sort -r); do
  umount -l "$m" 2>/dev/null || true
done
mount -t tmpfs -o mode=0755,size=256m tmpfs /run
ip link set lo up
exec /usr/sbin/dockerd --config-file {config} --data-root {data} --exec-root /run/docker \\
  --pidfile /run/docker.pid -H unix://{socket}
"""


def check_socket_path(layout: LabLayout) -> None:
    if len(str(layout.engine_socket)) > MAX_UNIX_SOCKET_PATH:
        raise ConfigError(
            f"{layout.dir}: lab dir path too long for the build engine's unix socket "
            f"({len(str(layout.engine_socket))} > {MAX_UNIX_SOCKET_PATH} characters); use a shorter --dir"
        )


def running(rec: EngineRecord, layout: LabLayout) -> bool:
    return proc.is_alive(rec.pid, rec.marker, rec.started) and docker_ping(layout.engine_socket)


def start(rec: EngineRecord, layout: LabLayout, timeout: float = 60) -> None:
    if running(rec, layout):
        return
    proc.kill_and_wait(rec.pid, rec.marker, rec.started)
    check_socket_path(layout)
    d = layout.engine_dir
    (d / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
    config = d / "daemon.json"
    write_atomic(config, json.dumps({"log-level": "warn"}).encode(), 0o644)
    layout.engine_socket.unlink(missing_ok=True)
    boot = d / "boot.sh"
    script = BOOT_SCRIPT.format(
        config=shlex.quote(str(config)), data=shlex.quote(str(d / "data")),
        socket=shlex.quote(str(layout.engine_socket)),
    )  # fmt: skip
    write_atomic(boot, script.encode(), 0o755)
    argv = [
        "unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private",
        "--kill-child", "tini", "-s", "--", "/bin/sh", str(boot),
    ]  # fmt: skip
    with open(d / "engine.log", "ab") as log_file:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True
        )
    rec.pid, rec.marker = child.pid, str(boot)
    rec.started = proc.start_time(child.pid) or 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker_ping(layout.engine_socket):
            return
        if not proc.is_alive(rec.pid, rec.marker, rec.started):
            raise proc.LabCommandError(f"build engine exited during start: {last_error(d / 'engine.log')}")
        time.sleep(0.2)
    raise proc.LabCommandError(f"build engine not ready after {timeout:.0f} s; see {d / 'engine.log'}")


def last_error(log_file: Path) -> str:
    """The last error-looking line of a log, to put the cause into the one error line."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return f"no log at {log_file}"
    for line in reversed(lines[-50:]):
        if "level=fatal" in line or "level=error" in line or "failed" in line.lower():
            return f"{line.strip()[:300]} (in {log_file})"
    return f"see {log_file}"


def stop(rec: EngineRecord) -> None:
    proc.kill_and_wait(rec.pid, rec.marker, rec.started)
    rec.pid = rec.started = 0


def memory_kib(rec: EngineRecord) -> int:
    from tvdeploy.lab.nodes import _rss_kib

    total = 0
    todo = [rec.pid] if proc.is_alive(rec.pid, rec.marker, rec.started) else []
    while todo:
        pid = todo.pop()
        total += _rss_kib(pid)
        todo.extend(proc.children(pid))
    return total


def socket_path(layout: LabLayout) -> Path:
    return layout.engine_socket
