"""SSH to the nodes (paramiko) with host keys pinned in the site's ``ssh.known_hosts``.

Host keys are looked up by node address (``[addr]:port`` when the port is not 22, as OpenSSH
does). An unknown host is refused unless ``trust_new_hosts`` is set, which reports its
fingerprint (``SHA256:...`` like ``ssh-keygen -l``) and records it (after ``on_new_host_key``,
which ``tvdeploy.execute.ssh_pool`` makes an audit record); a changed key is always refused,
naming the node and both fingerprints. Authentication by ``ssh.key`` or an agent.
A non-root ``ssh.user`` runs commands through ``sudo -n``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import posixpath
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tvdeploy import state
from tvdeploy.errors import ConnectionFailed, InputFileError, SecretError, TvdeployError, VerificationError

if TYPE_CHECKING:
    import paramiko

    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 300.0
StreamFn = Callable[[str, str], None]  # (node name, line)
# (node name, address, key type, SHA256 fingerprint): called before a new host key is recorded;
# it may refuse (raise), e.g. when the trust decision cannot be written to the audit log.
NewHostKeyFn = Callable[[str, str, str, str], None]


MAX_BATCH_BYTES = 64 * 1024  # put_files: well under the kernel's 128 KiB limit for one argument


@dataclass(frozen=True)
class FileSpec:
    path: str
    data: bytes
    mode: int = 0o644
    owner: str = "root:root"


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    code: int


def files_script(files: list[FileSpec], then: str = "") -> str:
    """A shell script writing each file atomically (temp file, owner, mode, rename), then *then*.
    Contents travel base64-encoded inside the script, so the total is bounded."""
    q = shlex.quote
    parts = ["set -e", "umask 077"]
    total = 0
    for f in files:
        total += len(f.data)
        d = posixpath.dirname(f.path) or "/"
        b64 = base64.b64encode(f.data).decode()
        parts.append(
            f"mkdir -p {q(d)}; tmp=$(mktemp {q(f.path)}.tvdeploy.XXXXXX); "
            f"printf '%s' {q(b64)} | base64 -d > \"$tmp\"; chown {q(f.owner)} \"$tmp\"; "
            f"chmod {f.mode:o} \"$tmp\"; mv -f \"$tmp\" {q(f.path)}"
        )
    if total > MAX_BATCH_BYTES:
        raise ValueError(f"put_files: {total} bytes is too much for one command; use put_file")
    if then:
        parts.append(then)
    return "; ".join(parts)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint: base64 of the SHA-256 of the key blob, no padding."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def hostkey_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class KnownHosts:
    """The site's known_hosts file, shared by all connections of one command (thread-safe)."""

    def __init__(self, path: Path) -> None:
        import paramiko

        self.path = path
        self._lock = threading.Lock()
        self._keys = paramiko.HostKeys()
        if path.exists():
            try:
                self._keys.load(str(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise InputFileError(f"{path}: cannot read ssh.known_hosts: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - paramiko raises several types for bad lines
                raise InputFileError(f"{path}: ssh.known_hosts is malformed: {exc}") from None

    def lookup(self, name: str) -> dict[str, paramiko.PKey]:
        with self._lock:
            found = self._keys.lookup(name)
            return dict(found) if found else {}

    def record(self, name: str, key: paramiko.PKey) -> None:
        """Append one line (written atomically, so a crash never truncates the file)."""
        with self._lock:
            self._keys.add(name, key.get_name(), key)
            old = self.path.read_bytes() if self.path.exists() else b""
            if old and not old.endswith(b"\n"):
                old += b"\n"
            line = f"{name} {key.get_name()} {key.get_base64()}\n".encode()
            try:
                state.write_atomic(self.path, old + line, mode=0o644)
            except OSError as exc:
                raise InputFileError(f"{self.path}: cannot record the host key of {name} in "
                                     f"ssh.known_hosts: {exc.strerror}") from None


class _PinnedPolicy:
    """paramiko's MissingHostKeyPolicy for a host with no key in known_hosts: refuse, or with
    trust_new_hosts record and report the fingerprint. (Changed keys never reach this: paramiko
    raises BadHostKeyException for them.)"""

    def __init__(self, node: str, known: KnownHosts, trust_new: bool, reporter: Reporter | None,
                 on_new_host_key: NewHostKeyFn | None = None) -> None:
        self.node, self.known, self.trust_new, self.reporter = node, known, trust_new, reporter
        self.on_new_host_key = on_new_host_key

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        fp = fingerprint(key)
        if not self.trust_new:
            raise VerificationError(
                f"node {self.node} ({hostname}): host key {key.get_name()} {fp} is not in "
                f"{self.known.path}; compare it out of band, then rerun with --trust-new-hosts"
            )
        if self.on_new_host_key is not None:
            self.on_new_host_key(self.node, hostname, key.get_name(), fp)
        self.known.record(hostname, key)
        if self.reporter is not None:
            self.reporter.warn(f"node {self.node} ({hostname}): recorded new host key "
                               f"{key.get_name()} {fp} in {self.known.path}")
            self.reporter.event("ssh.host_key_recorded", node=self.node, host=hostname,
                                key_type=key.get_name(), fingerprint=fp)


@dataclass(frozen=True)
class Target:
    node: str
    address: str
    port: int
    user: str


def _parse_jump(spec: str, default_user: str) -> Target:
    user, _, hostport = spec.rpartition("@")
    host, _, port = hostport.partition(":")
    return Target(node=f"jump host {host}", address=host, port=int(port or 22), user=user or default_user)


def _client_error(target: Target, exc: BaseException, key_path: Path | None) -> Exception:
    """Turn paramiko/socket failures into one line naming the node."""
    import paramiko

    where = f"node {target.node} ({target.address}:{target.port})"
    if isinstance(exc, paramiko.BadHostKeyException):
        return VerificationError(
            f"{where}: HOST KEY CHANGED: known_hosts has {fingerprint(exc.expected_key)}, the node "
            f"presented {exc.key.get_name()} {fingerprint(exc.key)}; refusing to connect (a rebuilt "
            "node or a man in the middle: verify out of band, then replace its line in ssh.known_hosts)"
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return SecretError(f"ssh.key: {key_path} is encrypted; load it into an ssh-agent instead")
    if isinstance(exc, paramiko.AuthenticationException):
        how = f"key {key_path}" if key_path else "the ssh-agent's keys"
        return ConnectionFailed(f"{where}: SSH authentication failed for user {target.user} with {how}")
    if isinstance(exc, socket.timeout | TimeoutError):
        return ConnectionFailed(f"{where}: SSH connection timed out")
    if isinstance(exc, paramiko.SSHException):
        return ConnectionFailed(f"{where}: SSH failed: {exc}")
    if isinstance(exc, OSError):
        return ConnectionFailed(f"{where}: cannot connect: {exc.strerror or exc}")
    return ConnectionFailed(f"{where}: SSH failed: {type(exc).__name__}: {exc}")


class SSHConnection:
    """One node. ``run``/``put_file``/``get_file``; reconnects once when the link dropped."""

    def __init__(self, target: Target, known: KnownHosts, key_path: Path | None, trust_new: bool,
                 reporter: Reporter | None = None, stream: StreamFn | None = None,
                 sock_factory: Callable[[Target], Any] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT, command_timeout: float = COMMAND_TIMEOUT,
                 on_new_host_key: NewHostKeyFn | None = None) -> None:
        self.target = target
        self.on_new_host_key = on_new_host_key
        self.node = target.node
        self.known = known
        self.key_path = key_path
        self.trust_new = trust_new
        self.reporter = reporter
        self.stream = stream
        self.sock_factory = sock_factory
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._client: paramiko.SSHClient | None = None

    # --- connection ---------------------------------------------------------------------------
    def connect(self) -> SSHConnection:
        import paramiko

        if self.key_path is not None and not self.key_path.exists():
            raise InputFileError(f"{self.key_path}: ssh.key not found")
        t = self.target
        last: BaseException | None = None
        for attempt in (1, 2):  # one retry for a connection dropped during the handshake
            client = paramiko.SSHClient()
            name = hostkey_name(t.address, t.port)
            for ktype, key in self.known.lookup(name).items():
                client.get_host_keys().add(name, ktype, key)
            policy = _PinnedPolicy(t.node, self.known, self.trust_new, self.reporter, self.on_new_host_key)
            client.set_missing_host_key_policy(cast("paramiko.MissingHostKeyPolicy", policy))
            try:
                sock = self.sock_factory(t) if self.sock_factory is not None else None
                client.connect(
                    t.address, port=t.port, username=t.user,
                    key_filename=str(self.key_path) if self.key_path else None,
                    allow_agent=self.key_path is None, look_for_keys=False, sock=sock,
                    timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout, channel_timeout=self.connect_timeout,
                )
            except TvdeployError:  # a refused host key, or a trust decision that could not be audited
                client.close()
                raise
            except (paramiko.BadHostKeyException, paramiko.AuthenticationException) as exc:
                client.close()
                raise _client_error(t, exc, self.key_path) from None
            except (paramiko.SSHException, EOFError, ConnectionResetError) as exc:
                client.close()
                last = exc
                log.debug("ssh to %s failed (attempt %d): %s", t.node, attempt, exc)
                continue
            except OSError as exc:
                client.close()
                raise _client_error(t, exc, self.key_path) from None
            self._client = client
            return self
        assert last is not None
        raise _client_error(t, last, self.key_path) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def transport(self) -> paramiko.Transport:
        if self._client is None or not self._alive():
            self.close()
            self.connect()
        assert self._client is not None
        tr = self._client.get_transport()
        assert tr is not None
        return tr

    def _alive(self) -> bool:
        tr = self._client.get_transport() if self._client is not None else None
        return tr is not None and tr.is_active()

    def _open_session(self) -> paramiko.Channel:
        import paramiko

        try:
            return self.transport().open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.debug("session on %s failed (%s); reconnecting once", self.node, exc)
            self.close()
            return self.transport().open_session(timeout=self.connect_timeout)

    # --- commands -----------------------------------------------------------------------------
    def wrap(self, cmd: str) -> str:
        """Root runs the command as is; any other user through sudo (non-interactive)."""
        if self.target.user == "root":
            return cmd
        return f"sudo -n -- sh -c {shlex.quote(cmd)}"

    def exec_raw(self, cmd: str, input: bytes | None = None,
                 timeout: float | None = None) -> tuple[bytes, bytes, int]:
        chan = self._open_session()
        limit = timeout or self.command_timeout
        deadline = time.monotonic() + limit
        out, err = bytearray(), bytearray()
        pending = {"out": b"", "err": b""}
        try:
            chan.exec_command(self.wrap(cmd))
            if input:
                chan.sendall(input)
            chan.shutdown_write()
            while True:
                got = False
                while chan.recv_ready():
                    data = chan.recv(65536)
                    out += data
                    self._stream(pending, "out", data)
                    got = True
                while chan.recv_stderr_ready():
                    data = chan.recv_stderr(65536)
                    err += data
                    self._stream(pending, "err", data)
                    got = True
                # sshd may send the exit status before the last of a long output (still held back
                # by the window): done only once EOF (or close) came too, and nothing is left.
                if chan.exit_status_ready() and (chan.eof_received or chan.closed) \
                        and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise ConnectionFailed(
                        f"node {self.node}: command timed out after {limit:.0f} s: {cmd.strip().splitlines()[0][:80]}"
                    )
                if got:
                    continue
                if chan.eof_received:
                    # No more data can come, only the exit status: wait for that event. (The
                    # channel's pipe stays set after EOF, so select would return at once and
                    # this loop would spin, taking the CPU from the other nodes' threads.)
                    chan.status_event.wait(0.2)
                else:
                    select.select([chan], [], [], 0.2)  # woken by data or EOF
            code = chan.recv_exit_status()
        except (EOFError, OSError) as exc:
            raise ConnectionFailed(f"node {self.node}: SSH connection dropped during a command: {exc}") from None
        finally:
            chan.close()
        self._stream(pending, "out", b"", flush=True)
        self._stream(pending, "err", b"", flush=True)
        return bytes(out), bytes(err), code

    def _stream(self, pending: dict[str, bytes], which: str, data: bytes, flush: bool = False) -> None:
        if self.stream is None:
            return
        buf = pending[which] + data
        *lines, rest = buf.split(b"\n")
        if flush and rest:
            lines.append(rest)
            rest = b""
        pending[which] = rest
        for line in lines:
            self.stream(self.node, line.decode("utf-8", "replace"))

    def run(self, cmd: str, input: bytes | None = None, check: bool = True,
            timeout: float | None = None) -> Result:
        out, err, code = self.exec_raw(cmd, input=input, timeout=timeout)
        result = Result(out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), code)
        if check and code != 0:
            first = cmd.strip().splitlines()[0][:80] if cmd.strip() else cmd
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise ConnectionFailed(
                f"node {self.node}: command failed (exit {code}): {first}"
                + (f": {detail[-1][:200]}" if detail else "")
            )
        return result

    def put_file(self, path: str, data: bytes, mode: int = 0o644, owner: str = "root:root") -> None:
        """Write *data* atomically (temp file in the same folder, then rename), with mode and
        owner set before the rename so the file is never visible with looser permissions."""
        d = posixpath.dirname(path) or "/"
        q = shlex.quote
        script = (
            f"set -e; umask 077; mkdir -p {q(d)}; tmp=$(mktemp {q(path)}.tvdeploy.XXXXXX); "
            f'cat > "$tmp"; chown {q(owner)} "$tmp"; chmod {mode:o} "$tmp"; mv -f "$tmp" {q(path)}'
        )
        self.run(script, input=data)

    def put_files(self, files: list[FileSpec], then: str = "", timeout: float | None = None) -> Result:
        """Write several small files atomically in ONE round trip (each as in ``put_file``), then
        run *then* (e.g. a restart) in the same command."""
        return self.run(files_script(files, then), timeout=timeout)

    def put_stream(self, path: str, chunks: Iterable[bytes], mode: int = 0o600) -> int:
        """Write a large file over SFTP, pipelined (a command's stdin is an order of magnitude
        slower: 13 s against 0.3 s for 34 MiB on the lab): to ``PATH.tvdeploy-partial`` in the
        same folder (writable by the login user), renamed into place once complete. Returns
        the bytes written; an exception of *chunks* (e.g. a digest mismatch) propagates."""
        import paramiko

        tmp = f"{path}.tvdeploy-partial"
        total = 0
        try:
            sftp = paramiko.SFTPClient.from_transport(self.transport())
            if sftp is None:
                raise paramiko.SSHException("no SFTP channel")
            try:
                with sftp.open(tmp, "wb") as fh:
                    fh.set_pipelined(True)
                    for chunk in chunks:
                        fh.write(chunk)
                        total += len(chunk)
                sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, path)
            finally:
                sftp.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectionFailed(f"node {self.node}: cannot write {path} over SFTP: {exc}") from None
        return total

    def get_file(self, path: str) -> bytes:
        out, err, code = self.exec_raw(f"cat -- {shlex.quote(path)}")
        if code != 0:
            raise ConnectionFailed(f"node {self.node}: cannot read {path}: "
                                   f"{err.decode('utf-8', 'replace').strip()[:200]}")
        return out


class SSHPool:
    """Connections to a site's nodes for one command, opened lazily, closed together."""

    def __init__(self, site: Site, trust_new_hosts: bool = False, reporter: Reporter | None = None,
                 stream: StreamFn | None = None, connect_timeout: float = CONNECT_TIMEOUT,
                 command_timeout: float = COMMAND_TIMEOUT, on_new_host_key: NewHostKeyFn | None = None) -> None:
        self.site = site
        self.on_new_host_key = on_new_host_key
        self.known = KnownHosts(site.ssh.known_hosts)
        self.trust_new = trust_new_hosts
        self.reporter = reporter
        self.stream = stream
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._lock = threading.Lock()
        self._conns: dict[str, SSHConnection] = {}
        self._jump: SSHConnection | None = None

    def _jump_sock(self, target: Target) -> Any:
        """A direct-tcpip channel through ssh.jump_host (OpenSSH's ProxyJump)."""
        with self._lock:
            if self._jump is None:
                assert self.site.ssh.jump_host is not None
                jt = _parse_jump(self.site.ssh.jump_host, self.site.ssh.user)
                self._jump = self._make(jt, None).connect()
            jump = self._jump
        try:
            return jump.transport().open_channel(
                "direct-tcpip", (target.address, target.port), ("127.0.0.1", 0),
                timeout=self.connect_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - paramiko raises ChannelException/SSHException
            raise ConnectionFailed(f"node {target.node} ({target.address}:{target.port}): jump host "
                                   f"{jump.target.address} cannot reach it: {exc}") from None

    def _make(self, target: Target, sock_factory: Callable[[Target], Any] | None) -> SSHConnection:
        return SSHConnection(target, self.known, self.site.ssh.key, self.trust_new, self.reporter,
                             self.stream, sock_factory, self.connect_timeout, self.command_timeout,
                             on_new_host_key=self.on_new_host_key)

    def get(self, node_name: str) -> SSHConnection:
        with self._lock:
            conn = self._conns.get(node_name)
        if conn is not None:
            return conn
        node = self.site.node(node_name)
        target = Target(node.name, str(node.address), self.site.ssh.port, self.site.ssh.user)
        factory = self._jump_sock if self.site.ssh.jump_host else None
        conn = self._make(target, factory).connect()
        with self._lock:
            self._conns[node_name] = conn
        return conn

    def close(self) -> None:
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
            jump, self._jump = self._jump, None
        for c in conns:
            c.close()
        if jump is not None:
            jump.close()

    def __enter__(self) -> SSHPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
