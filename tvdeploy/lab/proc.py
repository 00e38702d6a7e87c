"""Running host commands and handling the lab's processes (by recorded pid + marker)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from tvdeploy.errors import TvdeployError

log = logging.getLogger(__name__)


class LabCommandError(TvdeployError):
    """A host command the lab needs failed."""


def run(argv: list[str], *, check: bool = True, timeout: float = 60, input: str | None = None) -> str:
    """Run *argv*, return stdout; a failure becomes one line naming the command and its stderr."""
    log.debug("run: %s", " ".join(argv))
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=input, check=False
        )
    except FileNotFoundError:
        raise LabCommandError(f"{argv[0]}: command not found (run 'tvdeploy lab doctor')") from None
    except subprocess.TimeoutExpired:
        raise LabCommandError(f"{' '.join(argv[:4])}: timed out after {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        last = err[-1] if err else f"exit {proc.returncode}"
        raise LabCommandError(f"{' '.join(argv[:6])}: {last}")
    return proc.stdout


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with
    the pid it identifies one process for good. None if gone or a zombie."""
    if pid <= 0:
        return None
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(pid: int, marker: str, started: int = 0) -> bool:
    """True if *pid* runs and is ours: same start time as recorded (or, for a record without
    one, its command line holds *marker*, the path of its boot script). A recycled pid of
    someone else's process is never taken for ours."""
    if pid <= 0 or not marker:
        return False
    now = start_time(pid)
    if now is None:
        return False
    if started:
        return now == started
    if marker in cmdline(pid):
        return True
    # /proc/PID/cmdline can read empty for a moment (seen while a process sets up
    # namespaces): look once more before calling it foreign.
    time.sleep(0.05)
    return marker in cmdline(pid)


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found.extend(int(x) for x in text)
    except OSError:
        pass
    return found


def kill_and_wait(pid: int, marker: str, started: int = 0, timeout: float = 20) -> None:
    """SIGKILL our process *pid* (and its children) and wait until they are gone. For a
    namespace's `unshare` (started with --kill-child) the child is the PID namespace's init:
    the kernel then kills every process in that namespace, and the init's exit completes only
    once they have all exited, so afterwards no process of the node is left."""
    if not is_alive(pid, marker, started):
        return
    victims = {v: start_time(v) for v in children(pid) + [pid]}
    for victim in victims:
        _signal(victim, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(start_time(v) != t for v, t in victims.items()):
            return
        time.sleep(0.05)
    raise LabCommandError(f"process {pid} did not exit within {timeout:.0f} s")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def pids_with_marker(marker: str) -> list[int]:
    """Every process whose command line mentions *marker* (a path inside the lab dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and marker in cmdline(int(entry.name)):
            found.append(int(entry.name))
    return found


def mounts_under(root: Path) -> list[str]:
    """Mount points of the host's mount namespace at or below *root*, deepest first."""
    prefix = str(root.resolve()).rstrip("/")
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].encode().decode("unicode_escape")  # mountinfo escapes space as \040
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all_under(root: Path) -> None:
    for point in mounts_under(root):
        run(["umount", "-l", point], check=False)
