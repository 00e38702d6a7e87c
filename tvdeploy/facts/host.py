"""Host facts over SSH: one probe script (one round trip) and pure parsers for each section.

The probe prints sections headed by ``@@tvdeploy <name>``; a section that is absent means the
thing it reads does not exist (no daemon.json, no certificate). Every parser takes text and
returns plain data, so recorded output from real hosts drives the unit tests.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

MARK = "@@tvdeploy "
TLS_DIR = "/etc/docker/tls"
CA_PATH = f"{TLS_DIR}/ca.pem"
CERT_PATH = f"{TLS_DIR}/server-cert.pem"
KEY_PATH = f"{TLS_DIR}/server-key.pem"
DAEMON_JSON = "/etc/docker/daemon.json"
DROPIN_PATH = "/etc/systemd/system/docker.service.d/tvdeploy.conf"
CLOCK_WARN_SECONDS = 5.0  # certificates are back-dated 5 minutes; raft and TLS suffer well before

# Modules that matter: IPVS for the ingress routing mesh, ESP + GCM for encrypted overlays.
_MODULE_RE = "ip_vs|esp4|esp6|xfrm_user|xfrm_algo|gcm|ghash-generic|ghash_generic"

PROBE = f"""
sec() {{ printf '\\n{MARK}%s\\n' "$1"; }}
sec clock; date +%s.%N
sec os-release; cat /etc/os-release 2>/dev/null
sec init; cat /proc/1/comm 2>/dev/null; [ -d /run/systemd/system ] && echo systemd-booted
sec hostname; hostname; hostname -I 2>/dev/null || true
sec dockerd; command -v dockerd && dockerd --version 2>&1
sec swarm; docker info --format '{{{{json .Swarm}}}}' 2>&1; echo "rc=$?"
if [ -f {DAEMON_JSON} ]; then sec daemon-json; cat {DAEMON_JSON}; fi
if [ -f {DROPIN_PATH} ]; then sec dropin; cat {DROPIN_PATH}; fi
if [ -f {CA_PATH} ]; then sec ca-cert; cat {CA_PATH}; fi
if [ -f {CERT_PATH} ]; then sec server-cert; cat {CERT_PATH}; fi
if [ -f {KEY_PATH} ]; then sec server-key; stat -c '%a %U' {KEY_PATH};
  openssl pkey -in {KEY_PATH} -pubout -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; fi
sec dockerd-age; echo "now $(date +%s)"
e=$(ps -o etimes= -C dockerd 2>/dev/null | sort -n | head -n1); [ -n "$e" ] && echo "etimes $e"
stat -c 'mtime %Y %n' {DAEMON_JSON} {DROPIN_PATH} {CA_PATH} {CERT_PATH} {KEY_PATH} 2>/dev/null
sec df; df -Pk /var/lib/docker 2>/dev/null || df -Pk /
sec uname; uname -r
if [ -r /proc/modules ]; then sec modules; grep -E '^({_MODULE_RE}) ' /proc/modules; fi
m=/lib/modules/$(uname -r)
if [ -r $m/modules.builtin ]; then sec modules-builtin; grep -E '/({_MODULE_RE})\\.ko' $m/modules.builtin; fi
if [ -r $m/modules.dep ]; then sec modules-dep; grep -oE '^[^:]*/({_MODULE_RE})\\.ko[^:]*:' $m/modules.dep; fi
[ -e /proc/net/ip_vs ] && {{ sec ip-vs; echo present; }}
sec crypto; grep -E '^name' /proc/crypto 2>/dev/null | sort -u
sec xfrm; ip xfrm state >/dev/null 2>&1; echo "rc=$?"
"""

CLOCK_PROBE = "date +%s.%N"


class Runner(Protocol):
    """What the facts need from a connection (tvdeploy.connectors.ssh.SSHConnection)."""

    def run(self, cmd: str, input: bytes | None = None, check: bool = True) -> Any: ...


@dataclass(frozen=True)
class OSInfo:
    id: str
    version_id: str
    pretty_name: str


@dataclass(frozen=True)
class DockerInstall:
    installed: bool
    version: str | None
    dockerd_path: str | None


@dataclass(frozen=True)
class SwarmState:
    running: bool  # the daemon answered on its unix socket
    local_state: str  # inactive, pending, active, error, locked; "unknown" when not running
    node_id: str
    control_available: bool
    error: str


@dataclass(frozen=True)
class DaemonConfig:
    raw: str | None  # None: no daemon.json
    data: dict[str, Any] | None
    error: str | None  # not JSON / not an object


@dataclass(frozen=True)
class KeyFile:
    mode: str
    owner: str
    public_key_sha256: str | None


@dataclass(frozen=True)
class DiskFree:
    mount: str
    total_kb: int
    avail_kb: int


FeatureStatus = Literal["yes", "loadable", "no", "unknown"]


@dataclass(frozen=True)
class Feature:
    status: FeatureStatus
    evidence: str

    @property
    def ok(self) -> bool:
        return self.status in ("yes", "loadable")


@dataclass(frozen=True)
class KernelFeatures:
    release: str
    ipvs: Feature
    esp: Feature


@dataclass(frozen=True)
class HostFacts:
    node: str
    os: OSInfo
    init: str
    hostname: str
    addresses: tuple[str, ...]
    docker: DockerInstall
    swarm: SwarmState
    daemon_config: DaemonConfig
    dropin: str | None
    ca_pem: str | None
    server_cert_pem: str | None
    server_key: KeyFile | None
    disk: DiskFree | None
    kernel: KernelFeatures
    clock_offset: float | None = None
    warnings: tuple[str, ...] = field(default=())
    # Files dockerd reads at start that changed after the running dockerd started: a run cut
    # off between writing them and the restart leaves a daemon that serves the old settings.
    changed_since_start: tuple[str, ...] = field(default=())


# --- section splitting -----------------------------------------------------------------------

def split_sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


# --- pure parsers ----------------------------------------------------------------------------

def parse_os_release(text: str) -> OSInfo:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw.strip("\"'")]
        values[key.strip()] = parts[0] if parts else ""
    return OSInfo(
        id=values.get("ID", "unknown"),
        version_id=values.get("VERSION_ID", ""),
        pretty_name=values.get("PRETTY_NAME", values.get("NAME", "unknown")),
    )


def parse_init(text: str) -> str:
    """systemd when PID 1 is systemd or /run/systemd/system exists (sd_booted, the test systemd
    itself uses); anything else (init, tini, busybox) starts dockerd from /etc/init.d."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "systemd-booted" in lines or (lines and lines[0] == "systemd"):
        return "systemd"
    return "sysvinit"


def parse_hostname(text: str) -> tuple[str, tuple[str, ...]]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    name = lines[0] if lines else ""
    addrs = tuple(lines[1].split()) if len(lines) > 1 else ()
    return name, addrs


def parse_dockerd(text: str) -> DockerInstall:
    """``command -v dockerd`` then ``dockerd --version``: 'Docker version 20.10.24+dfsg1, build x'."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    path = next((ln for ln in lines if ln.startswith("/")), None)
    version = None
    for ln in lines:
        if ln.startswith("Docker version "):
            version = ln[len("Docker version "):].split(",")[0].strip()
    return DockerInstall(installed=path is not None, version=version, dockerd_path=path)


def parse_swarm(text: str) -> SwarmState:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    rc_line = next((ln for ln in reversed(lines) if ln.startswith("rc=")), "rc=1")
    body = "\n".join(ln for ln in lines if not ln.startswith("rc="))
    if rc_line != "rc=0":
        # The docker CLI prints the template's zero value before its error: keep the error.
        errors = [ln.strip() for ln in lines if not ln.startswith(("rc=", "{"))]
        return SwarmState(False, "unknown", "", False, (errors[-1] if errors else body.strip())[:300])
    try:
        data = json.loads(body)
    except ValueError:
        return SwarmState(False, "unknown", "", False, f"unreadable docker info output: {body[:200]}")
    if not isinstance(data, dict):
        return SwarmState(True, "unknown", "", False, "docker info returned no swarm object")
    return SwarmState(
        running=True,
        local_state=str(data.get("LocalNodeState") or "inactive"),
        node_id=str(data.get("NodeID") or ""),
        control_available=bool(data.get("ControlAvailable")),
        error=str(data.get("Error") or ""),
    )


def parse_daemon_json(text: str | None) -> DaemonConfig:
    if text is None:
        return DaemonConfig(None, None, None)
    if not text.strip():
        return DaemonConfig(text, {}, None)  # dockerd accepts an empty file
    try:
        data = json.loads(text)
    except ValueError as exc:
        return DaemonConfig(text, None, f"{DAEMON_JSON} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return DaemonConfig(text, None, f"{DAEMON_JSON} is not a JSON object")
    return DaemonConfig(text, data, None)


def parse_key_file(text: str | None) -> KeyFile | None:
    if text is None:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    mode, owner = (lines[0].split() + ["", ""])[:2] if lines else ("", "")
    digest = lines[1] if len(lines) > 1 else None
    # sha256sum of empty input: openssl could not read the key (damaged or not a key).
    if digest == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855":
        digest = None
    return KeyFile(mode=mode, owner=owner, public_key_sha256=digest)


STALE_SLACK_SECONDS = 2  # whole-second clocks on both sides: a write and a restart in one second


def parse_dockerd_age(text: str) -> tuple[str, ...]:
    """Paths modified after the youngest running dockerd started (none when no dockerd runs or
    the section is missing or garbled: no fact, no restart)."""
    now = etimes = None
    mtimes: list[tuple[int, str]] = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        try:
            if parts[:1] == ["now"] and len(parts) == 2:
                now = int(parts[1])
            elif parts[:1] == ["etimes"] and len(parts) == 2:
                etimes = int(parts[1])
            elif parts[:1] == ["mtime"] and len(parts) == 3:
                mtimes.append((int(parts[1]), parts[2]))
        except ValueError:
            continue
    if now is None or etimes is None:
        return ()
    started = now - etimes
    return tuple(path for mtime, path in mtimes if mtime > started + STALE_SLACK_SECONDS)


def parse_df(text: str) -> DiskFree | None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    parts = lines[-1].split(None, 5)
    if len(parts) < 6:
        return None
    try:
        return DiskFree(mount=parts[5], total_kb=int(parts[1]), avail_kb=int(parts[3]))
    except ValueError:
        return None


def clock_offset(node_text: str, sent: float, received: float) -> float | None:
    """Node clock minus operator clock, taking the midpoint of the round trip as 'now'."""
    try:
        node_time = float(node_text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return node_time - (sent + received) / 2


def _module_names(text: str | None) -> set[str]:
    """Names from /proc/modules lines or .ko paths (modules.builtin / modules.dep)."""
    names: set[str] = set()
    for line in (text or "").splitlines():
        token = line.strip().split(" ")[0].rstrip(":")
        if not token:
            continue
        base = token.rsplit("/", 1)[-1]
        base = base.split(".ko")[0]
        names.add(base.replace("-", "_"))
    return names


def _crypto_names(text: str | None) -> set[str]:
    names = set()
    for line in (text or "").splitlines():
        if line.startswith("name"):
            names.add(line.split(":", 1)[-1].strip())
    return names


def _module_status(name: str, loaded: set[str], builtin: set[str], dep: set[str]) -> FeatureStatus | None:
    if name in loaded:
        return "yes"
    if name in builtin:
        return "yes"
    if name in dep:
        return "loadable"
    return None


def parse_kernel(sections: dict[str, str]) -> KernelFeatures:
    """IPVS and ESP support from loaded modules, built-ins, loadable modules, /proc/net/ip_vs,
    /proc/crypto and whether ``ip xfrm state`` works. A kernel without module support (no
    /proc/modules, no modules.builtin) is judged on what is visible in /proc."""
    has_module_info = any(k in sections for k in ("modules", "modules-builtin", "modules-dep"))
    loaded = _module_names(sections.get("modules"))
    builtin = _module_names(sections.get("modules-builtin"))
    dep = _module_names(sections.get("modules-dep"))
    crypto = _crypto_names(sections.get("crypto"))

    if "ip-vs" in sections:
        ipvs = Feature("yes", "/proc/net/ip_vs exists")
    else:
        st = _module_status("ip_vs", loaded, builtin, dep)
        if st is not None:
            ipvs = Feature(st, f"ip_vs module {'available' if st == 'loadable' else 'present'}")
        else:
            ipvs = Feature("no", "no /proc/net/ip_vs and no ip_vs module"
                           + ("" if has_module_info else " (kernel without module support)"))

    xfrm_ok = sections.get("xfrm", "").strip().endswith("rc=0")
    gcm_crypto = any(n in crypto for n in ("rfc4106(gcm(aes))", "gcm(aes)", "ghash"))
    gcm_mod = any(_module_status(n, loaded, builtin, dep) for n in ("gcm", "ghash_generic"))
    esp_st = _module_status("esp4", loaded, builtin, dep)
    if not xfrm_ok:
        esp = Feature("no", "ip xfrm state fails (no XFRM netlink support)")
    elif not (gcm_crypto or gcm_mod):
        esp = Feature("no", "no AES-GCM (gcm/ghash) in /proc/crypto or modules: "
                      "encrypted overlay networks need rfc4106(gcm(aes))")
    elif esp_st is not None:
        esp = Feature(esp_st, f"esp4 module {'available' if esp_st == 'loadable' else 'present'}, "
                      "AES-GCM available")
    elif has_module_info:
        esp = Feature("no", "no esp4 module loaded, built in or available")
    else:
        esp = Feature("unknown", "kernel without module support: esp4 cannot be seen from /proc")
    return KernelFeatures(release=sections.get("uname", "").strip(), ipvs=ipvs, esp=esp)


def parse_probe(node: str, output: str, offset: float | None = None) -> HostFacts:
    """All facts from one probe run; *offset* is the measured clock offset (seconds)."""
    s = split_sections(output)
    hostname, addrs = parse_hostname(s.get("hostname", ""))
    facts_warnings: list[str] = []
    if offset is not None and abs(offset) > CLOCK_WARN_SECONDS:
        facts_warnings.append(
            f"node {node}: clock is {offset:+.1f} s off the operator's; a large offset breaks TLS "
            "(certificates look not-yet-valid or expired) and swarm consensus: fix NTP"
        )
    return HostFacts(
        node=node,
        os=parse_os_release(s.get("os-release", "")),
        init=parse_init(s.get("init", "")),
        hostname=hostname,
        addresses=addrs,
        docker=parse_dockerd(s.get("dockerd", "")),
        swarm=parse_swarm(s.get("swarm", "")),
        daemon_config=parse_daemon_json(s.get("daemon-json")),
        dropin=s.get("dropin"),
        ca_pem=s.get("ca-cert"),
        server_cert_pem=s.get("server-cert"),
        server_key=parse_key_file(s.get("server-key")),
        disk=parse_df(s.get("df", "")),
        kernel=parse_kernel(s),
        clock_offset=offset,
        warnings=tuple(facts_warnings),
        changed_since_start=parse_dockerd_age(s.get("dockerd-age", "")),
    )


def gather(node: str, conn: Runner, clock: Callable[[], float] = time.time) -> HostFacts:
    """Run the probe on *conn* (one round trip) and parse it (the only impure function here).

    The node's clock is read first thing in the probe; comparing it with the midpoint of the
    round trip errs by at most half the probe's duration (well under a second), far below the
    warning threshold."""
    return gather_with(node, conn, clock=clock)[0]


def gather_with(node: str, conn: Runner, before: str = "", after: str = "",
                clock: Callable[[], float] = time.time) -> tuple[HostFacts, Any]:
    """``gather`` with shell text run around the probe in the SAME round trip (the swarm
    pre-flight starts its port probes in the background *before* and waits for them *after*;
    they report on stderr so the sections on stdout stay intact). Returns the facts and the raw
    result. Every SSH command costs a session and a login shell on the node, so one command per
    node instead of two matters when several nodes share a host's CPUs."""
    sent = clock()
    result = conn.run(before + PROBE + after, check=False)
    received = clock()
    log.debug("probe of %s: %d bytes, rc=%s", node, len(result.stdout), result.code)
    stamp = split_sections(result.stdout).get("clock", "")
    return parse_probe(node, result.stdout, clock_offset(stamp, sent, received) if stamp else None), result
