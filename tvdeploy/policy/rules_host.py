"""Host rules (TVD-4xx): every node's Docker files, read over SSH. Permission bits are compared
as bits: a file passes "644 or stricter" only when ``mode & ~0o644 == 0`` (a mode of 622 has the
group- and world-write bits and fails, where a decimal comparison would pass it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tvdeploy.policy.model import Check, FileStat, HostFacts, PolicyFacts, failed, not_applicable, passed
from tvdeploy.policy.registry import rule

UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system")
Finder = Callable[[HostFacts], list[FileStat]]


def hosts(facts: PolicyFacts) -> Iterator[HostFacts]:
    found = facts.hosts or {}
    yield from (found[n] for n in sorted(found))


def _unit(name: str) -> Finder:
    return lambda h: [h.files[p] for p in (f"{d}/{name}" for d in UNIT_DIRS) if p in h.files][:1]


def _path(*paths: str) -> Finder:
    return lambda h: [h.files[p] for p in paths if p in h.files][:1]


def _tls(key: str, default: str) -> Finder:
    return lambda h: _path(str((h.daemon_json or {}).get(key) or default))(h)


def _certs_d(h: HostFacts) -> list[FileStat]:
    return [f for p, f in sorted(h.files.items()) if p.startswith("/etc/docker/certs.d/")]


def fmt(f: FileStat) -> str:
    return f"{f.path}: {f.owner}:{f.group} mode {f.mode:04o}"


def _file_rule(id: str, cis: str, what: str, find: Finder, owner: str | None, group: str | None,
               mode: int | None, severity: str) -> None:
    if mode is not None:
        title, why = f"{what}: mode {mode:o} or stricter", f"mode allows more than {mode:04o}"
        fix = f"chmod {mode:o} the file (bits beyond {mode:04o} must be off)."
    else:
        title, why = f"{what}: owned by {owner}:{group}", f"not owned by {owner}:{group}"
        fix = f"chown {owner}:{group} the file."

    def check(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
        for h in hosts(facts):
            found = find(h)
            if not found:
                yield not_applicable(f"{what}", f"not present on node {h.node}", h.node)
            for f in found:
                bad = (f.mode & ~mode & 0o7777) if mode is not None else (f.owner != owner or f.group != group)
                loc = f"{h.node}:{f.path}"
                yield (failed(f.path, why, fmt(f), h.node, loc) if bad else passed(f.path, fmt(f), h.node, loc))
    rule(id, title, "host", severity, cis=(cis,), remediation=fix)(check)


# (owner rule, mode rule, CIS owner, CIS mode, what, finder, group, most permissive mode)
_TABLE = [
    ("TVD-401", "TVD-402", "3.1", "3.2", "docker.service", _unit("docker.service"), "root", 0o644),
    ("TVD-403", "TVD-404", "3.3", "3.4", "docker.socket", _unit("docker.socket"), "root", 0o644),
    ("TVD-405", "TVD-406", "3.5", "3.6", "/etc/docker", _path("/etc/docker"), "root", 0o755),
    ("TVD-407", "TVD-408", "3.7", "3.8", "registry certificates", _certs_d, "root", 0o444),
    ("TVD-409", "TVD-410", "3.9", "3.10", "TLS CA certificate", _tls("tlscacert", "/etc/docker/tls/ca.pem"),
     "root", 0o444),
    ("TVD-411", "TVD-412", "3.11", "3.12", "server certificate",
     _tls("tlscert", "/etc/docker/tls/server-cert.pem"), "root", 0o444),
    ("TVD-413", "TVD-414", "3.13", "3.14", "server key", _tls("tlskey", "/etc/docker/tls/server-key.pem"),
     "root", 0o400),
    ("TVD-415", "TVD-416", "3.15", "3.16", "Docker socket", _path("/var/run/docker.sock", "/run/docker.sock"),
     "docker", 0o660),
    ("TVD-417", "TVD-418", "3.17", "3.18", "daemon.json", _path("/etc/docker/daemon.json"), "root", 0o644),
    ("TVD-419", "TVD-420", "3.19", "3.20", "/etc/default/docker", _path("/etc/default/docker"), "root", 0o644),
    ("TVD-422", "TVD-421", "3.22", "3.21", "/etc/sysconfig/docker", _path("/etc/sysconfig/docker"), "root", 0o644),
    ("TVD-423", "TVD-424", "3.23", "3.24", "containerd socket", _path("/run/containerd/containerd.sock"),
     "root", 0o660),
]
for _own, _mod, _cis_own, _cis_mod, _what, _find, _grp, _mode in _TABLE:
    _sev = "high" if _mod in ("TVD-414", "TVD-416", "TVD-418") else "medium"
    _file_rule(_own, _cis_own, _what, _find, "root", _grp, None, "medium")
    _file_rule(_mod, _cis_mod, _what, _find, None, None, _mode, _sev)

AUDITED = [("1.1.3", "/usr/bin/dockerd /usr/sbin/dockerd"), ("1.1.4", "/run/containerd"),
           ("1.1.5", "/var/lib/docker"),
           ("1.1.6", "/etc/docker"), ("1.1.7", "docker.service"), ("1.1.8", "/run/containerd/containerd.sock"),
           ("1.1.9", "docker.socket"), ("1.1.10", "/etc/default/docker"), ("1.1.11", "/etc/docker/daemon.json"),
           ("1.1.12", "/etc/containerd/config.toml"), ("1.1.13", "/etc/sysconfig/docker"),
           ("1.1.14", "/usr/bin/containerd"), ("1.1.15", "/usr/bin/containerd-shim"),
           ("1.1.16", "/usr/bin/containerd-shim-runc-v1"), ("1.1.17", "/usr/bin/containerd-shim-runc-v2"),
           ("1.1.18", "/usr/bin/runc")]


def _audit_rule(id: str, cis: str, targets: str) -> None:
    target = targets.split()[0]
    find = _unit(target) if not target.startswith("/") else _path(*targets.split())

    def check(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
        from tvdeploy.facts.policy_host import watched_paths

        for h in hosts(facts):
            found = find(h)
            if not found:
                yield not_applicable(target, f"not present on node {h.node}", h.node)
                continue
            path = found[0].path
            if h.audit_rules is None:
                yield failed(path, "no audit rules on the node (auditd not installed)", "auditctl: absent; "
                             "/etc/audit/rules.d: absent", h.node, f"{h.node}:{path}")
                continue
            watched = watched_paths(h.audit_rules)
            ok = path in watched
            yield (passed(path, f"{h.audit_source}: -w {path}", h.node) if ok else
                   failed(path, "not audited", f"{h.audit_source}: no rule for {path}", h.node, f"{h.node}:{path}"))
    rule(id, f"Audit rule for {target}", "host", "medium", cis=(cis,),
         remediation=f"Add '-w {target if target.startswith('/') else '<unit path>'} -p rwxa -k docker' to "
                     "/etc/audit/rules.d/docker.rules and reload auditd.")(check)


for _n, (_cis, _target) in enumerate(AUDITED):
    _audit_rule(f"TVD-{431 + _n}", _cis, _target)


@rule("TVD-450", "Containers have a partition of their own", "host", "low", cis=("1.1.1",),
      remediation="Mount a separate filesystem on /var/lib/docker.")
def docker_partition(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for h in hosts(facts):
        ev = f"/var/lib/docker is on the mount {h.docker_root_mount or 'unknown'}"
        yield (failed("/var/lib/docker", "shares the root filesystem", ev, h.node)
               if h.docker_root_mount in ("/", "") else passed("/var/lib/docker", ev, h.node))


@rule("TVD-451", "Only trusted users control the Docker daemon", "host", "medium", cis=("1.1.2",),
      remediation="Remove users from the docker group (gpasswd -d USER docker); operators use the TLS API.",
      params={"allowed_users": []})
def docker_group(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for h in hosts(facts):
        members = list(h.docker_group or ())
        extra = [m for m in members if m not in params["allowed_users"]]
        ev = f"docker group: {members if h.docker_group is not None else 'absent'}"
        yield (failed("group docker", f"untrusted members: {extra}", ev, h.node, f"{h.node}:/etc/group")
               if extra else passed("group docker", ev, h.node))
