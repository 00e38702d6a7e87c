"""Bare lab nodes (``lab up --bare``): Debian 12 on a root filesystem of their own, no Docker.

Such a node starts as bare as the security department's template VM, so ``tvdeploy engine
install`` can be tested honestly. It is started like any lab node (``nsenter --net``,
``unshare ... --kill-child``, the host's static ``tini`` as PID 1), but its boot script
(``BOOT_SCRIPT``) then builds the node's root inside its private mount namespace:

- an overlay: lower = the cached, unpacked mmdebstrap root (``tvdeploy.connectors.debroot``,
  shared and never written), upper = ``nodes/<name>/upper`` (the node's "disk": what it
  installs stays across node restarts, ``lab reset`` wipes it);
- ``/proc`` (of the node's PID namespace), ``/sys`` and ``/dev`` (recursive binds), a tmpfs
  ``/run``; ``nodes/<name>/docker`` over ``/var/lib/docker`` (on the host's filesystem: Docker's
  overlay2 cannot sit on an overlay); the node's own ``/etc/ssh`` (host key, authorized key,
  ``sshd_config``: as for every lab node) and ``/etc/hosts``;
- then ``exec chroot ROOT /usr/sbin/sshd -D``: whoever logs in lands in the node's root. If an
  engine was installed (``/etc/init.d/docker`` exists in the root), it is started first, as a VM
  starts its enabled service at boot.

No init system runs in a node: Debian's ``/etc/init.d/docker`` raises ulimits this machine refuses
(hard limit 20000), so the upper layer gets an ``/etc/default/docker`` (read by that script before
its ulimit lines) that makes them fail softly. A VM with systemd never reads it, and dpkg keeps it
(``--force-confold``) when docker.io is installed.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from tvdeploy.errors import RefusedError
from tvdeploy.lab import nodes
from tvdeploy.lab.labstate import LabState
from tvdeploy.state import write_atomic

ROOT = "root"  # mount point of the node's root (inside its mount namespace only)
UPPER = "upper"
WORK = "work"
WIPED_BY_RESET = ("docker", "log", UPPER, WORK)

BOOT_SCRIPT = """\
#!/bin/sh
# Boot of tvdeploy lab node {name} (bare: its own Debian 12 root, no Docker until installed).
set -eu
NODE_DIR={node_dir}
LOWER={lower}
ROOT="$NODE_DIR/root"
hostname {name}
# Mounts inherited from the host under /run (other labs' network namespace handles among
# them) would keep those namespaces alive in here: detach them.
for m in $(awk '$5 ~ "^/run/" {{print $5}}' /proc/self/mountinfo | sort -r); do
  umount -l "$m" 2>/dev/null || true
done
mkdir -p "$ROOT" "$NODE_DIR/upper" "$NODE_DIR/work"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$NODE_DIR/upper,workdir=$NODE_DIR/work" "$ROOT"
mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount -t tmpfs -o mode=0755,size=512m tmpfs "$ROOT/run"
mkdir -p "$ROOT/run/sshd" "$ROOT/run/lock" "$ROOT/var/lib/docker"
[ -e "$ROOT/etc/hosts" ] || : > "$ROOT/etc/hosts"  # mmdebstrap leaves it to the installer
mount --bind "$NODE_DIR/docker" "$ROOT/var/lib/docker"
mount --bind "$NODE_DIR/etc-ssh" "$ROOT/etc/ssh"
mount --bind "$NODE_DIR/etc-hosts" "$ROOT/etc/hosts"
if [ -x "$ROOT/etc/init.d/docker" ]; then
  chroot "$ROOT" /etc/init.d/docker start || true
fi
exec chroot "$ROOT" /usr/sbin/sshd -D -e
"""

DOCKER_DEFAULTS = """\
# tvdeploy lab (bare node, no init system): this machine refuses the ulimits that Debian's
# /etc/init.d/docker raises (hard limit 20000), so they fail softly here. A VM runs systemd.
ulimit() {
\tcommand ulimit "$@" 2>/dev/null && return 0
\t[ "$1" = "-n" ] && command ulimit -n "$(command ulimit -Hn)" 2>/dev/null
\treturn 0
}
"""


def boot_script(name: str, node_dir: Path, lower: Path) -> str:
    return BOOT_SCRIPT.format(name=name, node_dir=shlex.quote(str(node_dir)), lower=shlex.quote(str(lower)))


def root_of(node_dir: Path) -> Path:
    return node_dir / ROOT


def prepare_node_dir(node_dir: Path, name: str, authorized_key: str, lower: Path) -> str:
    """The files of a bare node (as nodes.prepare_node_dir, with the bare boot script and the
    upper layer's lab-only /etc/default/docker); returns its host public key line."""
    host_pub = nodes.prepare_node_dir(node_dir, name, authorized_key)
    (node_dir / "init.d-docker").unlink(missing_ok=True)  # the host's script: not used here
    write_atomic(node_dir / "boot.sh", boot_script(name, node_dir, lower).encode(), 0o755)
    defaults = node_dir / UPPER / "etc" / "default" / "docker"
    if not defaults.exists():
        defaults.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        (node_dir / UPPER).chmod(0o755)
        (node_dir / UPPER / "etc").chmod(0o755)
        write_atomic(defaults, DOCKER_DEFAULTS.encode(), 0o644)
    return host_pub


def lower_root() -> Path:
    """The shared, unpacked Debian root (built on first use: mmdebstrap, ~30-60 s)."""
    from tvdeploy.connectors.debroot import tree

    return tree()


def choose(st: LabState, bare: bool | None, lab_dir: Path) -> None:
    """`lab up --bare` makes a bare lab; without the flag a lab keeps what it is. A lab's nodes
    are all of one kind: switching needs `lab down` first."""
    if bare is None or bare == st.bare:
        return
    if st.nodes:
        have = "bare nodes" if st.bare else "nodes with Docker"
        raise RefusedError(f"{lab_dir}: this lab has {have}; run 'tvdeploy lab down --dir {lab_dir}' first")
    st.bare = bare
