"""Lab nodes: each a network + mount + UTS + PID namespace running sshd and Debian's dockerd.

How a node is started (LAB.md): ``nsenter --net`` (not ``ip netns exec``, which remounts /sys
and breaks dockerd's cgroup detection) into the node's network namespace, then
``unshare --mount --uts --pid --fork --mount-proc --propagation private --kill-child`` runs
``tini`` as the node's PID 1 (it reaps the orphans dockerd's shims leave), which runs the node's
boot script: hostname, bind mounts of the node's own /etc/docker, /var/lib/docker, /etc/ssh,
/etc/hosts, /var/log and init script, a tmpfs over /run, ``/etc/init.d/docker start``, then
``sshd -D``. /etc/hosts is the node's own (``etc-hosts``) because tvdeploy writes the site
registry's name into it, as on a VM: the host's file must never see those lines.
Killing the recorded ``unshare`` kills its child (--kill-child), the PID namespace's init,
and with it every process of the node; the node's mounts vanish with its mount namespace.
"""

from __future__ import annotations

import logging
import shlex
import socket
import subprocess
import time
from pathlib import Path

from tvdeploy.lab import proc
from tvdeploy.lab.labstate import NodeRecord
from tvdeploy.lab.sshkeys import ensure_keypair
from tvdeploy.state import write_atomic

log = logging.getLogger(__name__)

INIT_SCRIPT = Path("/etc/init.d/docker")

SSHD_CONFIG = """\
# tvdeploy lab node {name}: this node's own sshd (its /etc/ssh is {node_dir}/etc-ssh).
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
# The lab key is authorized here, inside the node's own directory, never in /root/.ssh.
AuthorizedKeysFile /etc/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
AcceptEnv LANG LC_*
"""

BOOT_SCRIPT = """\
#!/bin/sh
# Boot of tvdeploy lab node {name}; runs under tini, PID 1 of the node's PID namespace.
set -eu
NODE_DIR={node_dir}
hostname {name}
# Mounts inherited from the host under /run (other labs' network namespace handles among
# them) would keep those namespaces alive in here: detach them before /run becomes a tmpfs.
for m in $(awk '$5 ~ "^/run/" {{print $5}}' /proc/self/mountinfo | sort -r); do
  umount -l "$m" 2>/dev/null || true
done
mount -t tmpfs -o mode=0755,size=512m tmpfs /run
mkdir -p /run/sshd /run/lock
mount --bind "$NODE_DIR/etc-docker" /etc/docker
mount --bind "$NODE_DIR/docker" /var/lib/docker
mount --bind "$NODE_DIR/etc-ssh" /etc/ssh
mount --bind "$NODE_DIR/etc-hosts" /etc/hosts
mount --bind "$NODE_DIR/log" /var/log
mount --bind "$NODE_DIR/init.d-docker" /etc/init.d/docker
/etc/init.d/docker start
exec /usr/sbin/sshd -D -e
"""

NODE_DIRS = ("etc-docker", "docker", "etc-ssh", "log")
HOSTS_FILE = "etc-hosts"  # the node's own /etc/hosts (kept across node restarts, wiped by reset)
HOSTS = "127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


WAIT_READY = """\
# tvdeploy lab: like systemd's Type=notify, `start` returns once dockerd serves its API
# (or fails if dockerd died, e.g. on a bad daemon.json); at most 30 s.
_tv_wait_ready() {
\ti=0
\twhile [ $i -lt 150 ]; do
\t\ttail -c +$(( $1 + 1 )) "$DOCKER_LOGFILE" 2>/dev/null | grep -q "API listen on" && return 0
\t\tdocker -H unix:///var/run/docker.sock version >/dev/null 2>&1 && return 0
\t\tpid=$(cat "$DOCKER_SSD_PIDFILE" 2>/dev/null || true)
\t\t[ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && return 1
\t\tsleep 0.2; i=$((i+1))
\tdone
\treturn 0
}

"""


def tolerant_init_script(text: str) -> str:
    """Debian's /etc/init.d/docker, adapted for a lab node: the ulimits it raises are refused
    on this machine (hard limit 20000), so those lines fail softly; and `start` waits until
    dockerd answers, so `service docker restart` over SSH behaves like systemctl on a VM."""
    out: list[str] = []
    in_start = waited = False
    for line in text.splitlines():
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped == 'case "$1" in':
            out.append(WAIT_READY.rstrip("\n"))
        if stripped == "start)":
            in_start = True
        if stripped.startswith("ulimit ") and "||" not in stripped:
            if stripped.startswith("ulimit -n"):
                line = f'{indent}{stripped} 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true'
            else:
                line = f"{indent}{stripped} 2>/dev/null || true"
        if in_start and stripped.startswith("log_begin_msg"):
            out.append(f'{indent}_tv_log_size=$(stat -c %s "$DOCKER_LOGFILE" 2>/dev/null || echo 0)')
        if in_start and not waited and stripped == "log_end_msg $?":
            out.append(f"{indent}_tv_rc=$?")
            out.append(f'{indent}if [ "$_tv_rc" = 0 ]; then _tv_wait_ready "$_tv_log_size" || _tv_rc=1; fi')
            line = f"{indent}log_end_msg $_tv_rc"
            waited, in_start = True, False
        out.append(line)
    return "\n".join(out) + "\n"


def prepare_node_dir(node_dir: Path, name: str, authorized_key: str) -> str:
    """Create the node's files; return its host public key line (kept across resets)."""
    for sub in NODE_DIRS:
        (node_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o755)
    node_dir.chmod(0o755)
    etc_ssh = node_dir / "etc-ssh"
    host_pub = ensure_keypair(etc_ssh / "ssh_host_ed25519_key", f"root@{name}")
    write_atomic(etc_ssh / "sshd_config", SSHD_CONFIG.format(name=name, node_dir=node_dir).encode(), 0o644)
    write_atomic(etc_ssh / "authorized_keys", (authorized_key + "\n").encode(), 0o600)
    script = tolerant_init_script(INIT_SCRIPT.read_text())
    write_atomic(node_dir / "init.d-docker", script.encode(), 0o755)
    boot = BOOT_SCRIPT.format(name=name, node_dir=shlex.quote(str(node_dir)))
    write_atomic(node_dir / "boot.sh", boot.encode(), 0o755)
    if not (node_dir / HOSTS_FILE).exists():
        write_atomic(node_dir / HOSTS_FILE, HOSTS.format(name=name).encode(), 0o644)
    return host_pub


def has_own_hosts(node: NodeRecord) -> bool:
    """True when the running node has its own /etc/hosts mounted (nodes booted by an older
    boot script share the host's file and must be restarted before tvdeploy writes to it)."""
    pid = init_pid(node)
    if pid is None:
        return False
    try:
        info = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False
    return any(line.split()[4] == "/etc/hosts" for line in info.splitlines() if len(line.split()) > 4)


def ensure_mount_points() -> None:
    # /var/lib/docker does not exist before docker.io first runs; bind mounts need targets.
    for p in ("/etc/docker", "/var/lib/docker", "/etc/ssh"):
        Path(p).mkdir(parents=True, exist_ok=True)


def launch(node: NodeRecord, node_dir: Path) -> None:
    boot = node_dir / "boot.sh"
    argv = [
        "nsenter", f"--net=/run/netns/{node.netns}",
        "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
        "--propagation", "private", "--kill-child",
        "tini", "-s", "--", "/bin/sh", str(boot),
    ]  # fmt: skip
    log_file = open(node_dir / "node.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True
        )
    finally:
        log_file.close()
    node.pid, node.marker = child.pid, str(boot)
    node.started = proc.start_time(child.pid) or 0


def init_pid(node: NodeRecord) -> int | None:
    """Host pid of the node's PID 1 (tini), the process whose namespaces we enter."""
    if not proc.is_alive(node.pid, node.marker, node.started):
        return None
    kids = proc.children(node.pid)
    return kids[0] if kids else None


def enter(node: NodeRecord) -> list[str]:
    """argv prefix that runs a command inside the node, as if logged in on it."""
    pid = init_pid(node)
    if pid is None:
        raise proc.LabCommandError(f"node {node.name} is not running (tvdeploy lab up)")
    argv = ["nsenter", "-t", str(pid), "--mount", "--uts", "--pid", "--net", "--"]
    return argv + ["chroot", str(Path(node.marker).parent / "root")] if node.bare else argv


def docker_socket(node: NodeRecord) -> Path | None:
    pid = init_pid(node)
    if not pid:
        return None
    root = f"/proc/{pid}/root" + (str(Path(node.marker).parent / "root") if node.bare else "")
    return Path(f"{root}/run/docker.sock")


def docker_ping(sock: Path | None, timeout: float = 2.0) -> bool:
    """GET /_ping on a Docker unix socket: answers OK when the engine is up."""
    if sock is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = s.recv(4096)
    except OSError:
        return False
    return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]


def ssh_port_open(address: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_ready(node: NodeRecord, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_alive(node.pid, node.marker, node.started):
            raise proc.LabCommandError(f"node {node.name} exited during boot; see nodes/{node.name}/node.log")
        if (node.bare or docker_ping(docker_socket(node))) and ssh_port_open(node.address):
            return  # a bare node has no Docker to wait for
        time.sleep(0.2)
    raise proc.LabCommandError(
        f"node {node.name}: dockerd or sshd not ready after {timeout:.0f} s (its log: "
        f"nodes/{node.name}/log/docker.log; 'tvdeploy lab reset' wipes its Docker config)"
    )


def stop(node: NodeRecord) -> None:
    proc.kill_and_wait(node.pid, node.marker, node.started)


def dockerd_service(node: NodeRecord, action: str, timeout: float = 60) -> None:
    """`/etc/init.d/docker ACTION` inside the node, the way a real host is driven over SSH."""
    proc.run(enter(node) + ["/etc/init.d/docker", action], timeout=timeout)


def memory_kib(node: NodeRecord) -> int:
    """Resident memory of every process of the node (sum of VmRSS)."""
    root = init_pid(node)
    if root is None:
        return 0
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _rss_kib(pid)
        todo.extend(proc.children(pid))
    return total


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
