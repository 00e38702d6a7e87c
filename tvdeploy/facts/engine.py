"""What a node has of Docker Engine's packages: one probe command (over SSH) and a pure parser.

The probe prints three sections: the node's OS (``ID VERSION_ID`` of /etc/os-release and
dpkg's architecture), ``dpkg-query -W`` of the packages a bundle carries (name, version, dpkg's
status abbreviation: ``ii`` = installed), and the running engine's version (``docker version``
server side, empty when no engine answers).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

SEP = "--tvdeploy-engine--"


def probe_command(names: list[str]) -> str:
    q = " ".join(shlex.quote(n) for n in names)
    return (
        '(. /etc/os-release 2>/dev/null; echo "${ID:-unknown} ${VERSION_ID:-unknown}"); '
        "dpkg --print-architecture 2>/dev/null || echo unknown; "
        f"echo {SEP}; "
        f"dpkg-query -W -f='${{Package}}\\t${{Version}}\\t${{db:Status-Abbrev}}\\n' {q} 2>/dev/null; "
        f"echo {SEP}; "
        "docker version --format '{{.Server.Version}}' 2>/dev/null || true"
    )


@dataclass(frozen=True)
class Installed:
    version: str
    complete: bool  # dpkg status "ii": unpacked and configured (an interrupted install is not)


@dataclass(frozen=True)
class EngineFacts:
    os_id: str
    os_version: str
    architecture: str
    packages: dict[str, Installed] = field(default_factory=dict)
    running_version: str = ""  # the engine that answers, "" when none


def parse(output: str) -> EngineFacts:
    """The probe's output; a malformed section reads as 'nothing known' (never a crash)."""
    parts = output.split(SEP + "\n")
    head = parts[0].split()
    os_id, os_version, arch = (head + ["unknown"] * 3)[:3]
    packages: dict[str, Installed] = {}
    for line in (parts[1] if len(parts) > 1 else "").splitlines():
        cols = line.split("\t")
        if len(cols) != 3 or not cols[0] or not cols[1]:
            continue  # known to dpkg but never installed: no version
        packages[cols[0]] = Installed(cols[1], cols[2].strip() == "ii")
    running = (parts[2] if len(parts) > 2 else "").strip().splitlines()
    return EngineFacts(os_id, os_version, arch, packages, running[0].strip() if running else "")
