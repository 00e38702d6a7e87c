"""`lab doctor`: can this machine run a lab? A pure check over gathered facts, so the verdict
(and its exact apt command) is testable without root or a missing package."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# Debian packages the lab uses (same list as .ci/setup).
PACKAGES = (
    "docker.io", "openssh-server", "busybox-static", "docker-registry", "skopeo", "golang-go",
    "golang-github-vmware-govmomi-dev", "iproute2", "iptables", "tini", "procps", "psmisc",
)  # fmt: skip
# Commands used directly, with the package that provides them (util-linux is essential).
COMMANDS = {
    "ip": "iproute2", "iptables": "iptables", "nsenter": "util-linux", "unshare": "util-linux",
    "dockerd": "docker.io", "docker": "docker.io", "sshd": "openssh-server", "tini": "tini",
    "busybox": "busybox-static", "docker-registry": "docker-registry", "skopeo": "skopeo", "go": "golang-go",
}  # fmt: skip


@dataclass(frozen=True)
class Facts:
    euid: int
    installed: frozenset[str]
    commands: frozenset[str]
    netns: bool  # /proc/self/ns/net exists (network namespaces)
    pidns: bool
    overlay: bool  # overlayfs in /proc/filesystems (dockerd's overlay2)
    bridge_ok: bool = True


@dataclass
class Diagnosis:
    problems: list[str] = field(default_factory=list)
    missing_packages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def apt_command(self) -> str | None:
        if not self.missing_packages:
            return None
        return "apt-get install -y " + " ".join(self.missing_packages)

    def summary(self) -> str:
        text = f"this machine cannot run the lab: {'; '.join(self.problems)}"
        return text


def diagnose(facts: Facts) -> Diagnosis:
    d = Diagnosis()
    if facts.euid != 0:
        d.problems.append("not root (the lab makes namespaces, bridges and firewall rules; run as root)")
    missing = [p for p in PACKAGES if p not in facts.installed]
    for cmd, pkg in COMMANDS.items():
        if cmd not in facts.commands and pkg not in missing and pkg != "util-linux":
            missing.append(pkg)
    if missing:
        d.missing_packages = missing
        d.problems.append(f"missing Debian packages: {' '.join(missing)} (apt-get install -y {' '.join(missing)})")
    absent = sorted(c for c, pkg in COMMANDS.items() if pkg == "util-linux" and c not in facts.commands)
    if absent:
        d.problems.append(f"missing commands {' '.join(absent)} (apt-get install -y util-linux)")
    if not facts.netns:
        d.problems.append("kernel without network namespaces (/proc/self/ns/net missing)")
    if not facts.pidns:
        d.problems.append("kernel without PID namespaces (/proc/self/ns/pid missing)")
    if not facts.overlay:
        d.problems.append("kernel without overlayfs (dockerd needs overlay2)")
    return d


def gather() -> Facts:
    installed: set[str] = set()
    if shutil.which("dpkg-query"):
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *PACKAGES],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        for line in out.splitlines():
            name, _, status = line.partition(" ")
            if status.endswith("install ok installed"):
                installed.add(name.split(":")[0])
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    commands = frozenset(c for c in COMMANDS if shutil.which(c, path=path))
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    return Facts(
        euid=os.geteuid(),
        installed=frozenset(installed),
        commands=commands,
        netns=Path("/proc/self/ns/net").exists(),
        pidns=Path("/proc/self/ns/pid").exists(),
        overlay="overlay" in filesystems,
    )
