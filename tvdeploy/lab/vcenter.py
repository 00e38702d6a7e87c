"""The lab's vCenter: govmomi's simulator (tvdeploy/lab/vcsim/main.go) on loopback over TLS.

Everything lives under ``LAB_DIR/vcenter/``: the certificate and key the lab makes, the one
accepted password (0600), the datastore directory, the built binary (keyed by the hash of the Go
source, so reruns do not rebuild), the recorded pid, port and latency, and the log. The simulator
keeps its inventory in memory: a restart (e.g. to change the latency) starts from an empty site
folder again. It serves one request at a time (govmomi 0.24's clone shares device objects between
a template and its clones, so concurrent requests race); ``latency_ms`` is added per request
outside that lock, so concurrent clients overlap their waits as against a real vCenter.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tvdeploy import state
from tvdeploy.errors import ConnectionFailed, TvdeployError

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("vcsim") / "main.go"
GOPATH = "/usr/share/gocode"
USER = "tvdeploy@vsphere.local"
# The inventory the Go main builds; the lab site file names these.
DATACENTER = "tv-dc"
CLUSTER = "tv-cluster"
DATASTORE = "tv-ds"
FOLDER = "trueverit"
TEMPLATE = "trueverit-debian12"
NETWORK = "VM Network"  # the simulator's default network (networks cannot be renamed in 0.24)
START_TIMEOUT_S = 30.0
BUILD_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class VcenterInfo:
    url: str
    host: str
    port: int
    fingerprint: str  # lowercase hex SHA-256 of the DER certificate
    user: str
    password_file: Path
    datacenter: str
    cluster: str
    datastore: str
    folder: str
    template: str
    network: str
    pid: int


# Files -------------------------------------------------------------------------------------
def _dir(lab_dir: Path) -> Path:
    return Path(lab_dir).resolve() / "vcenter"


def _state_file(lab_dir: Path) -> Path:
    return _dir(lab_dir) / "state.json"


def _read_state(lab_dir: Path) -> dict[str, object]:
    try:
        data = json.loads(_state_file(lab_dir).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(lab_dir: Path, data: dict[str, object]) -> None:
    state.write_atomic(_state_file(lab_dir), json.dumps(data, indent=2).encode(), mode=0o644)


@contextmanager
def _locked(lab_dir: Path) -> Iterator[None]:
    """One start/stop at a time per lab dir (lab up and a test fixture may race)."""
    d = state.ensure_dir(_dir(lab_dir))
    with open(d / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# Certificate and password --------------------------------------------------------------------
def _ensure_certificate(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    # EC P-256: accepted at OpenSSL's default security level (the simulator's built-in one is not).
    priv = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tvdeploy lab vcenter")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(priv.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(priv, hashes.SHA256())
    )
    key_pem = priv.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    state.write_atomic(key, key_pem, mode=0o600)
    state.write_atomic(cert, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert, key


def _fingerprint(cert: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.read_text(encoding="ascii"))
    return hashlib.sha256(der).hexdigest()


def _ensure_password(d: Path) -> Path:
    path = d / "password"
    if not path.exists():
        state.write_atomic(path, secrets.token_urlsafe(24).encode(), mode=0o600)
    return path


# Build -------------------------------------------------------------------------------------
def source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]


def _machine_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tvdeploy" / "vcsim"


def ensure_binary(lab_dir: Path) -> Path:
    """The simulator binary for the current source, built once (~15-25 s) and then reused: from
    the lab dir, else from a per-machine cache (so several lab dirs build once)."""
    name = f"vcsim-{source_hash()}"
    target = _dir(lab_dir) / "bin" / name
    if target.exists():
        return target
    cached = _machine_cache() / name
    if not cached.exists():
        _build(cached)
    state.ensure_dir(target.parent, 0o755)
    tmp = target.with_suffix(".tmp")
    shutil.copy2(cached, tmp)
    os.replace(tmp, target)
    return target


def _build(out: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise TvdeployError("go not found: apt-get install golang-go golang-github-vmware-govmomi-dev")
    if not (Path(GOPATH) / "src/github.com/vmware/govmomi/simulator").is_dir():
        raise TvdeployError(
            f"{GOPATH}: govmomi source not found: apt-get install golang-github-vmware-govmomi-dev"
        )
    state.ensure_dir(out.parent, 0o755)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    env = dict(os.environ, GOPATH=GOPATH, GO111MODULE="off", GOPROXY="off", GOFLAGS="", CGO_ENABLED="0")
    env.setdefault("GOCACHE", str(out.parent / "gocache"))
    log.info("building the vCenter simulator from %s", SOURCE)
    proc = subprocess.run(
        [go, "build", "-o", str(tmp), str(SOURCE)],
        cwd=SOURCE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise TvdeployError(f"{SOURCE}: go build failed: {last}")
    os.replace(tmp, out)


# Processes ---------------------------------------------------------------------------------
def _alive(pid: int, binary: str | None) -> bool:
    """True when *pid* runs and is our simulator (a recycled pid must not be signalled)."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False  # exited, not yet reaped
    except (OSError, IndexError):
        return False
    return bool(cmdline) and binary is not None and cmdline[0].decode(errors="replace") == binary


def _free_port(preferred: int | None) -> int:
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise ConnectionFailed("no free loopback port for the vCenter simulator")


def _answers(port: int) -> bool:
    """A TLS handshake on the port completes (the lab's own readiness probe, not a client:
    verification is off here because the lab only waits for its own process to listen)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # lab readiness probe only (tvdeploy/lab may relax TLS)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw:
            with ctx.wrap_socket(raw):
                return True
    except OSError:
        return False


def _info(lab_dir: Path, st: dict[str, object]) -> VcenterInfo:
    d = _dir(lab_dir)
    port = int(str(st["port"]))
    return VcenterInfo(
        url=f"https://127.0.0.1:{port}/sdk",
        host="127.0.0.1",
        port=port,
        fingerprint=str(st["fingerprint"]),
        user=USER,
        password_file=d / "password",
        datacenter=DATACENTER,
        cluster=CLUSTER,
        datastore=DATASTORE,
        folder=FOLDER,
        template=TEMPLATE,
        network=NETWORK,
        pid=int(str(st["pid"])),
    )


def _running(lab_dir: Path) -> dict[str, object] | None:
    st = _read_state(lab_dir)
    pid = int(str(st.get("pid", 0) or 0))
    if st and _alive(pid, str(st.get("binary"))):
        return st
    return None


# Public interface --------------------------------------------------------------------------
def start_vcenter(lab_dir: Path, latency_ms: int = 0) -> VcenterInfo:
    """Start the simulator for *lab_dir* (or return the running one). A different latency
    restarts it (with an empty site folder: the simulator keeps no state)."""
    if latency_ms < 0:
        raise ValueError("latency_ms must be >= 0")
    with _locked(lab_dir):
        st = _running(lab_dir)
        binary = ensure_binary(lab_dir)
        if st is not None and st.get("latency_ms") == latency_ms and st.get("binary") == str(binary):
            return _info(lab_dir, st)
        if st is not None:
            _stop(lab_dir)
        return _start(lab_dir, binary, latency_ms)


def _start(lab_dir: Path, binary: Path, latency_ms: int) -> VcenterInfo:
    d = _dir(lab_dir)
    cert, key = _ensure_certificate(d)
    password = _ensure_password(d)
    # The simulator's inventory is in memory: files of a previous run would only collide.
    shutil.rmtree(d / "datastore", ignore_errors=True)
    ds_dir = state.ensure_dir(d / "datastore", 0o755)
    old = _read_state(lab_dir)
    port = _free_port(int(str(old.get("port", 0) or 0)) or None)
    url_file = d / "url"
    url_file.unlink(missing_ok=True)
    argv = [
        str(binary),
        f"-listen=127.0.0.1:{port}",
        f"-cert={cert}",
        f"-key={key}",
        f"-user={USER}",
        f"-password-file={password}",
        f"-url-file={url_file}",
        f"-datastore-dir={ds_dir}",
        f"-datacenter={DATACENTER}",
        f"-cluster={CLUSTER}",
        f"-datastore={DATASTORE}",
        f"-folder={FOLDER}",
        f"-template={TEMPLATE}",
        f"-network={NETWORK}",
        f"-latency-ms={latency_ms}",
    ]
    with open(d / "vcsim.log", "ab") as logf:
        # Its own session: the simulator outlives `lab up` and ignores the caller's Ctrl-C.
        proc = subprocess.Popen(  # noqa: S603 - argv built here from our own paths
            argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, cwd=d
        )
    st: dict[str, object] = {
        "pid": proc.pid,
        "port": port,
        "latency_ms": latency_ms,
        "binary": str(binary),
        "fingerprint": _fingerprint(cert),
    }
    _write_state(lab_dir, st)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConnectionFailed(
                f"{d / 'vcsim.log'}: vCenter simulator exited with {proc.returncode}: {_log_tail(d)}"
            )
        if url_file.exists() and _answers(port):
            return _info(lab_dir, st)
        time.sleep(0.1)
    _stop(lab_dir)
    raise ConnectionFailed(f"vCenter simulator did not answer on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s")


def _log_tail(d: Path) -> str:
    try:
        lines = (d / "vcsim.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def stop_vcenter(lab_dir: Path) -> None:
    """Stop the simulator of *lab_dir* by its recorded pid; safe when it is not running."""
    if not _dir(lab_dir).exists():
        return
    with _locked(lab_dir):
        _stop(lab_dir)


def _stop(lab_dir: Path) -> None:
    st = _read_state(lab_dir)
    pid = int(str(st.get("pid", 0) or 0))
    binary = str(st.get("binary"))
    if _alive(pid, binary):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid, binary):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while not _gone(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    if st:
        st["pid"] = 0
        _write_state(lab_dir, st)
    (_dir(lab_dir) / "url").unlink(missing_ok=True)


def _gone(pid: int) -> bool:
    """The process has exited and, if it is our child, is reaped (no zombie left behind).
    A simulator started by another command (lab up) is reaped by init."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return True
    return bool(fields) and fields[0] in ("Z", "X") and not _is_child(pid)


def _is_child(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return len(fields) > 1 and fields[1] == str(os.getpid())


def vcenter_status(lab_dir: Path) -> VcenterInfo | None:
    """The running simulator of *lab_dir*, or None."""
    st = _running(lab_dir)
    return _info(lab_dir, st) if st is not None else None
