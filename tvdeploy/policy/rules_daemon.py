"""Daemon settings (TVD-34x, CIS section 2): daemon.json as read over SSH, confirmed against
``GET /info`` where the engine reports the setting. One result per node."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tvdeploy.policy.model import Check, PolicyFacts, failed, not_applicable, passed
from tvdeploy.policy.registry import rule
from tvdeploy.policy.rules_engine import engines

# (daemon.json or {}, /info) -> None: pass; ("na", reason); ("fail", message, evidence); ("pass", evidence)
Judge = Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[str, ...]]


def _daemon_rule(id: str, title: str, severity: str, cis: str, remediation: str, judge: Judge) -> None:
    def check(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
        for eng in engines(facts):
            host = (facts.hosts or {}).get(eng.node)
            cfg = (host.daemon_json or {}) if host is not None else {}
            obj, node = f"node {eng.node}", eng.node
            verdict = judge(cfg, eng.info)
            loc = f"{node}:/etc/docker/daemon.json"
            if verdict[0] == "na":
                yield not_applicable(obj, verdict[1], node)
            elif verdict[0] == "fail":
                yield failed(obj, verdict[1], verdict[2], node, loc)
            else:
                yield passed(obj, verdict[1] if len(verdict) > 1 else "", node, loc)
    rule(id, title, "engine", severity, cis=(cis,), remediation=remediation, needs=("engines",))(check)


def _want(key: str, good: Callable[[Any], bool], message: str, default: Any = None) -> Judge:
    def judge(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
        value = cfg.get(key, default)
        ev = f"daemon.json {key}: {value if key in cfg else 'not set'}"
        return ("pass", ev) if good(value) else ("fail", message, ev)
    return judge


def _opts(info: Mapping[str, Any]) -> str:
    return " ".join(str(o) for o in info.get("SecurityOptions") or [])


def _tls(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    hosts = [str(h) for h in cfg.get("hosts") or []]
    tcp = [h for h in hosts if h.startswith("tcp://")]
    ev = f"hosts: {hosts}; tlsverify: {cfg.get('tlsverify')}"
    if tcp and cfg.get("tlsverify") is not True:
        return ("fail", "TCP socket without tlsverify", ev)
    return ("pass", ev)


def _insecure(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    reg = info.get("RegistryConfig") or {}
    cidrs = [c for c in reg.get("InsecureRegistryCIDRs") or [] if not str(c).startswith("127.")]
    names = [k for k, v in (reg.get("IndexConfigs") or {}).items() if not (v or {}).get("Secure", True)]
    listed = list(cfg.get("insecure-registries") or [])
    bad = sorted(set(cidrs) | set(names) | set(map(str, listed)))
    return ("fail", "insecure registries configured", f"insecure: {bad}") if bad else ("pass", "none")


def _base_size(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    if info.get("Driver") != "devicemapper":
        return ("na", f"storage driver {info.get('Driver')} has no base device size")
    opts = [o for o in cfg.get("storage-opts") or [] if str(o).startswith("dm.basesize")]
    return ("fail", "base device size changed", str(opts)) if opts else ("pass", "default base size")


def _logging(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    driver = str(info.get("LoggingDriver") or cfg.get("log-driver") or "json-file")
    ev = f"LoggingDriver: {driver}"
    return ("fail", "logs stay on the node", ev) if driver in ("json-file", "local", "none") else ("pass", ev)


def _seccomp(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    opts = _opts(info)
    if "seccomp" not in opts or cfg.get("seccomp-profile") == "unconfined":
        return ("fail", "no daemon-wide seccomp profile", f"SecurityOptions: {opts}")
    return ("pass", f"SecurityOptions: {opts}")


def _rootless(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    opts = _opts(info)
    return ("pass", "rootless") if "rootless" in opts else ("fail", "daemon runs as root", f"SecurityOptions: {opts}")


def _userns(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    opts = _opts(info)
    return ("pass", "userns") if "userns" in opts or cfg.get("userns-remap") else \
        ("fail", "user namespace remapping is off", f"SecurityOptions: {opts}")


def _authz(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    plugins = (info.get("Plugins") or {}).get("Authorization") or cfg.get("authorization-plugins") or []
    return ("pass", f"Authorization: {plugins}") if plugins else \
        ("fail", "no authorization plugin (any client certificate of the site CA has full control)",
         "Plugins.Authorization: none")


def _icc(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    v = cfg.get("icc")
    return ("pass", "icc: false") if v is False else \
        ("fail", "containers on the default bridge can talk to each other", f"daemon.json icc: {v}")


def _experimental(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    on = bool(info.get("ExperimentalBuild") or cfg.get("experimental"))
    return ("fail", "experimental features enabled", "ExperimentalBuild: true") if on \
        else ("pass", "ExperimentalBuild: false")


def _nnp(cfg: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[str, ...]:
    on = cfg.get("no-new-privileges") is True or "no-new-privileges" in _opts(info)
    ev = f"daemon.json no-new-privileges: {cfg.get('no-new-privileges')}"
    return ("pass", "no-new-privileges: true") if on else ("fail", "containers may acquire new privileges", ev)


_daemon_rule("TVD-341", "Daemon runs rootless where possible", "info", "2.1",
             "Consider rootless mode; a swarm manager needs root today.", _rootless)
_daemon_rule("TVD-342", "Inter-container traffic on the default bridge is off", "low", "2.2",
             'Set "icc": false in daemon.json.', _icc)
_daemon_rule("TVD-343", "Log level is info", "low", "2.3", 'Remove "log-level" or set it to "info".',
             _want("log-level", lambda v: v in (None, "info"), "log level is not info"))
_daemon_rule("TVD-344", "Docker may change iptables", "medium", "2.4", 'Remove "iptables": false.',
             _want("iptables", lambda v: v is not False, "iptables management is off"))
_daemon_rule("TVD-345", "No insecure registries", "high", "2.5", 'Remove "insecure-registries".', _insecure)
_daemon_rule("TVD-346", "aufs storage driver is not used", "medium", "2.6", "Use overlay2.",
             lambda cfg, info: ("fail", "aufs in use", "Driver: aufs") if info.get("Driver") == "aufs"
             else ("pass", f"Driver: {info.get('Driver')}"))
_daemon_rule("TVD-347", "TLS authentication for the daemon", "critical", "2.7",
             "Serve TCP only with tlsverify (tvdeploy tls apply).", _tls)
_daemon_rule("TVD-348", "Default ulimits are configured", "low", "2.8", 'Set "default-ulimits" (nofile, nproc).',
             _want("default-ulimits", bool, "no default ulimits"))
_daemon_rule("TVD-349", "User namespace support is enabled", "info", "2.9",
             'Consider "userns-remap" where the workload allows it.', _userns)
_daemon_rule("TVD-350", "Default cgroup usage is confirmed", "low", "2.10", 'Remove "cgroup-parent".',
             _want("cgroup-parent", lambda v: v in (None, ""), "daemon-wide cgroup parent changed"))
_daemon_rule("TVD-351", "Base device size is unchanged", "low", "2.11", "Remove dm.basesize.", _base_size)
_daemon_rule("TVD-352", "Authorization for client commands", "info", "2.12",
             "Add an authorization plugin if operators must be limited per command.", _authz)
_daemon_rule("TVD-353", "Centralized remote logging", "low", "2.13",
             'Set "log-driver" to a remote driver (syslog, gelf, fluentd).', _logging)
_daemon_rule("TVD-354", "No new privileges daemon-wide", "medium", "2.14",
             'Set "no-new-privileges": true in daemon.json.', _nnp)
_daemon_rule("TVD-355", "Userland proxy is disabled", "low", "2.16", 'Set "userland-proxy": false.',
             _want("userland-proxy", lambda v: v is False, "userland proxy is on"))
_daemon_rule("TVD-356", "Seccomp profile is applied daemon-wide", "medium", "2.17",
             "Keep the default seccomp profile (or a site profile) in daemon.json.", _seccomp)
_daemon_rule("TVD-357", "No experimental features", "medium", "2.18", 'Remove "experimental": true.', _experimental)
