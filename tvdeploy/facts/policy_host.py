"""Host facts for the policy checks: ONE probe script per node (one SSH round trip) and a pure
parser. The probe prints sections headed by ``@@tvpolicy <name>``: stat lines of the Docker
files (owner, group and the permission bits in octal), daemon.json, audit rules (``auditctl -l``
or the rules files), the docker group, the mount holding /var/lib/docker and the listening TCP
sockets (from /proc/net/tcp*, so no ``ss`` is needed)."""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any, Protocol

from tvdeploy.policy.model import FileStat, HostFacts

log = logging.getLogger(__name__)

MARK = "@@tvpolicy "
UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system")
FILES = (
    *(f"{d}/docker.service" for d in UNIT_DIRS), *(f"{d}/docker.socket" for d in UNIT_DIRS),
    "/etc/docker", "/etc/docker/daemon.json", "/etc/docker/tls/ca.pem", "/etc/docker/tls/server-cert.pem",
    "/etc/docker/tls/server-key.pem", "/var/run/docker.sock", "/run/containerd/containerd.sock",
    "/etc/default/docker", "/etc/sysconfig/docker", "/usr/bin/dockerd", "/usr/sbin/dockerd", "/run/containerd",
    "/var/lib/docker",
    "/etc/containerd/config.toml", "/usr/bin/containerd", "/usr/bin/containerd-shim",
    "/usr/bin/containerd-shim-runc-v1", "/usr/bin/containerd-shim-runc-v2", "/usr/bin/runc",
)
STAT = "stat -L -c '%n|%F|%a|%u|%g|%U|%G'"

PROBE = f"""
sec() {{ printf '\\n{MARK}%s\\n' "$1"; }}
sec stat
for p in {' '.join(FILES)}; do [ -e "$p" ] && {STAT} "$p"; done
[ -f /etc/docker/daemon.json ] && grep -o '"tls[a-z]*" *: *"[^"]*"' /etc/docker/daemon.json \\
  | sed 's/.*: *"//; s/"$//' | while read -r p; do [ -e "$p" ] && {STAT} "$p"; done
[ -d /etc/docker/certs.d ] && find /etc/docker/certs.d -maxdepth 2 -type f -exec {STAT} {{}} +
if [ -f /etc/docker/daemon.json ]; then sec daemon-json; cat /etc/docker/daemon.json; fi
if command -v auditctl >/dev/null 2>&1; then sec auditctl; auditctl -l 2>&1; fi
if ls /etc/audit/rules.d/*.rules /etc/audit/audit.rules >/dev/null 2>&1; then
  sec audit-files; cat /etc/audit/rules.d/*.rules /etc/audit/audit.rules 2>/dev/null; fi
if getent group docker >/dev/null 2>&1; then sec group; getent group docker; fi
sec mount; df -P /var/lib/docker 2>/dev/null | tail -n 1
sec tcp; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
sec init; cat /proc/1/comm 2>/dev/null
"""


class Runner(Protocol):
    def run(self, cmd: str, input: bytes | None = None, check: bool = True) -> Any: ...


def split_sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


def parse_stats(text: str) -> dict[str, FileStat]:
    files: dict[str, FileStat] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 7:
            continue
        path, kind, mode, uid, gid, owner, group = parts
        try:
            files[path] = FileStat(path, kind.replace("regular empty file", "regular file"),
                                   int(mode, 8), int(uid), int(gid), owner, group)
        except ValueError:
            log.debug("unreadable stat line: %r", line)
    return files


def parse_daemon_json(text: str | None) -> tuple[dict[str, Any] | None, str]:
    if text is None:
        return None, ""
    if not text.strip():
        return {}, ""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return {}, f"daemon.json is not valid JSON: {exc}"
    return (data, "") if isinstance(data, dict) else ({}, "daemon.json is not a JSON object")


def parse_audit(sections: dict[str, str]) -> tuple[tuple[str, ...] | None, str]:
    for key, source in (("auditctl", "auditctl -l"), ("audit-files", "/etc/audit rules files")):
        text = sections.get(key)
        if text is None or (key == "auditctl" and "No rules" in text and "audit-files" in sections):
            continue
        lines = tuple(ln.strip() for ln in text.splitlines() if ln.strip().startswith(("-w", "-a")))
        return lines, source
    return None, ""


def watched_paths(rules: tuple[str, ...]) -> set[str]:
    """Paths named by watch rules (-w PATH) and syscall rules (-F path=/dir=). Exact paths:
    never a substring match (a containerd rule must not count for containerd-shim)."""
    out: set[str] = set()
    for line in rules:
        tokens = line.split()
        for i, tok in enumerate(tokens):
            if tok == "-w" and i + 1 < len(tokens):
                out.add(tokens[i + 1].rstrip("/"))
            elif tok == "-F" and i + 1 < len(tokens) and tokens[i + 1].startswith(("path=", "dir=")):
                out.add(tokens[i + 1].split("=", 1)[1].rstrip("/"))
    return out


def parse_group(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    fields = text.strip().split(":")
    return tuple(m for m in (fields[3] if len(fields) > 3 else "").split(",") if m)


def _hex_addr(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def parse_listeners(text: str) -> tuple[tuple[str, int], ...]:
    """LISTEN sockets (state 0A) of /proc/net/tcp and tcp6: (address, port)."""
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A" or ":" not in parts[1]:
            continue
        addr, _, port = parts[1].partition(":")
        try:
            out.add((_hex_addr(addr), int(port, 16)))
        except ValueError:
            continue
    return tuple(sorted(out))


def parse_probe(node: str, output: str) -> HostFacts:
    s = split_sections(output)
    data, error = parse_daemon_json(s.get("daemon-json"))
    rules, source = parse_audit(s)
    mount = s.get("mount", "").split()
    return HostFacts(
        node=node, files=parse_stats(s.get("stat", "")), daemon_json=data, daemon_json_error=error,
        audit_rules=rules, audit_source=source, docker_group=parse_group(s.get("group")),
        docker_root_mount=mount[5] if len(mount) >= 6 else "", listeners=parse_listeners(s.get("tcp", "")),
        init=s.get("init", "").strip(),
    )


def gather(node: str, conn: Runner) -> HostFacts:
    """Run the probe on *conn*: one round trip."""
    result = conn.run(PROBE, check=False)
    return parse_probe(node, result.stdout)
