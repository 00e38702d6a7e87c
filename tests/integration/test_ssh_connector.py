"""The SSH connector against a real OpenSSH server on loopback (started per test module, with
its own host key and authorized key in a temp dir; needs root and /usr/sbin/sshd; marked ``server``)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tvdeploy.connectors import ssh as S
from tvdeploy.errors import ConnectionFailed, TvdeployError, VerificationError
from tvdeploy.parallel import for_each

pytestmark = [pytest.mark.server, pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists() or not shutil.which("ssh-keygen"),
    reason="needs root, /usr/sbin/sshd and ssh-keygen",
)]

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_ed25519
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
PidFile {d}/sshd.pid
"""


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else Path(f"{path}.pub").read_text().strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_ed25519")
    user_pub = _keygen(d / "id_ed25519")
    (d / "authorized_keys").write_text(user_pub + "\n")
    port = _free_port()
    (d / "sshd_config").write_text(SSHD_CONFIG.format(port=port, d=d))
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd insists on
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    fp = subprocess.run(["ssh-keygen", "-lf", str(d / "host_ed25519.pub")], capture_output=True,
                        text=True, check=True).stdout.split()[1]
    yield {"dir": d, "port": port, "key": d / "id_ed25519", "fingerprint": fp}
    proc.terminate()
    proc.wait(timeout=10)


def site_for(sshd, tmp_path: Path, **ssh):
    from tvdeploy.config.site import Site

    doc = {
        "version": 1, "site": {"name": "sshtest"},
        "network": {"subnet": "127.0.0.0/24"},
        "nodes": [{"name": "n1", "role": "manager", "address": "127.0.0.1", "zone": "z"}],
        "ssh": {"user": "root", "port": sshd["port"], "key": str(sshd["key"]),
                "known_hosts": str(tmp_path / "known_hosts"), **ssh},
        "state_dir": str(tmp_path / "state"),
    }
    return Site.model_validate(doc, context={"base_dir": tmp_path})


class Recorder:
    def __init__(self):
        self.warnings, self.events = [], []

    def warn(self, m):
        self.warnings.append(m)

    def event(self, kind, **f):
        self.events.append((kind, f))

    def info(self, m):
        pass


def test_unknown_host_is_refused_without_trust(sshd, tmp_path):
    site = site_for(sshd, tmp_path)
    with S.SSHPool(site) as pool, pytest.raises(VerificationError) as err:
        pool.get("n1")
    msg = err.value.message
    assert msg.startswith(f"node n1 ([127.0.0.1]:{sshd['port']}): host key ssh-ed25519 {sshd['fingerprint']}")
    assert "--trust-new-hosts" in msg
    assert not (tmp_path / "known_hosts").exists()


def test_trust_new_hosts_records_and_reports_openssh_fingerprint(sshd, tmp_path):
    site = site_for(sshd, tmp_path)
    rec = Recorder()
    with S.SSHPool(site, trust_new_hosts=True, reporter=rec) as pool:
        assert pool.get("n1").run("echo hi").stdout == "hi\n"
    line = (tmp_path / "known_hosts").read_text()
    assert line.startswith(f"[127.0.0.1]:{sshd['port']} ssh-ed25519 AAAA")
    assert sshd["fingerprint"] in rec.warnings[0]
    assert rec.events[0][1]["fingerprint"] == sshd["fingerprint"]
    # pinned now: a plain connection works without trust
    with S.SSHPool(site) as pool:
        assert pool.get("n1").run("true").code == 0


def test_a_new_host_key_is_announced_before_it_is_recorded(sshd, tmp_path):
    """on_new_host_key (the audit record, in tvdeploy.execute.ssh_pool) comes first; when it
    refuses, nothing is trusted."""
    site = site_for(sshd, tmp_path)
    seen = []

    def announce(node, address, key_type, fp):
        seen.append((node, address, key_type, fp, (tmp_path / "known_hosts").exists()))

    with S.SSHPool(site, trust_new_hosts=True, on_new_host_key=announce) as pool:
        assert pool.get("n1").run("true").code == 0
    assert seen == [("n1", f"[127.0.0.1]:{sshd['port']}", "ssh-ed25519", sshd["fingerprint"], False)]
    (tmp_path / "known_hosts").unlink()

    def refuse(*_args):
        raise TvdeployError("audit log: cannot write")

    with S.SSHPool(site, trust_new_hosts=True, on_new_host_key=refuse) as pool, \
            pytest.raises(TvdeployError, match="^audit log: cannot write$"):
        pool.get("n1")
    assert not (tmp_path / "known_hosts").exists()


def test_changed_host_key_is_refused_naming_both_fingerprints(sshd, tmp_path):
    other = tmp_path / "other"
    other_pub = _keygen(other).split()
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{sshd['port']} {other_pub[0]} {other_pub[1]}\n")
    other_fp = subprocess.run(["ssh-keygen", "-lf", f"{other}.pub"], capture_output=True, text=True,
                              check=True).stdout.split()[1]
    site = site_for(sshd, tmp_path)
    for trust in (False, True):  # --trust-new-hosts never overrides a changed key
        with S.SSHPool(site, trust_new_hosts=trust) as pool, pytest.raises(VerificationError) as err:
            pool.get("n1")
        msg = err.value.message
        assert "node n1" in msg and "HOST KEY CHANGED" in msg
        assert other_fp in msg and sshd["fingerprint"] in msg
    assert (tmp_path / "known_hosts").read_text().count("\n") == 1


@pytest.fixture
def conn(sshd, tmp_path):
    site = site_for(sshd, tmp_path)
    lines = []
    pool = S.SSHPool(site, trust_new_hosts=True, stream=lambda n, line: lines.append((n, line)))
    c = pool.get("n1")
    c.streamed = lines
    yield c
    pool.close()


def test_run_returns_output_code_and_streams_lines(conn):
    r = conn.run("echo out; echo err >&2; exit 3", check=False)
    assert (r.stdout, r.stderr, r.code) == ("out\n", "err\n", 3)
    assert ("n1", "out") in conn.streamed and ("n1", "err") in conn.streamed


def test_failed_command_is_one_line_naming_the_node(conn):
    with pytest.raises(ConnectionFailed) as err:
        conn.run("echo boom >&2; exit 2")
    assert err.value.message == "node n1: command failed (exit 2): echo boom >&2; exit 2: boom"


def test_input_is_sent_on_stdin(conn):
    assert conn.run("wc -c", input=b"x" * 100000).stdout.strip() == "100000"


def test_command_timeout(conn):
    start = time.monotonic()
    with pytest.raises(ConnectionFailed, match="timed out after 1 s"):
        conn.run("sleep 20", timeout=1)
    assert time.monotonic() - start < 5


def test_waiting_for_the_exit_status_after_eof_does_not_spin(conn, monkeypatch):
    """The command closes its output (EOF reaches us) long before it exits: the loop must wait
    for the exit status, not spin on a channel that select reports ready forever (that burned
    the CPU that the other nodes' threads and the lab's nodes need)."""
    import select as select_mod

    calls = []
    real = select_mod.select
    monkeypatch.setattr(S.select, "select", lambda *a: calls.append(1) or real(*a))
    start = time.monotonic()
    r = conn.run("echo early; exec >&- 2>&-; sleep 0.6; exit 3", check=False)
    assert (r.stdout, r.code) == ("early\n", 3)
    assert time.monotonic() - start >= 0.5
    assert len(calls) < 20


def test_put_and_get_file_atomic_with_mode_and_owner(conn, tmp_path):
    target = tmp_path / "sub dir" / "f.bin"
    data = bytes(range(256)) * 10
    conn.put_file(str(target), data, mode=0o400, owner="root:root")
    assert target.read_bytes() == data
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o400 and st.st_uid == 0
    assert conn.get_file(str(target)) == data
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]  # no temp file left
    with pytest.raises(ConnectionFailed, match="node n1: cannot read"):
        conn.get_file(str(tmp_path / "missing"))


def test_one_reconnect_after_a_dropped_connection(conn):
    conn.transport().close()  # the link drops between commands
    assert conn.run("echo again").stdout == "again\n"


def test_wrong_key_is_an_authentication_error(sshd, tmp_path):
    _keygen(tmp_path / "wrong")
    site = site_for(sshd, tmp_path, key=str(tmp_path / "wrong"))
    with S.SSHPool(site, trust_new_hosts=True) as pool, pytest.raises(ConnectionFailed) as err:
        pool.get("n1")
    assert "SSH authentication failed for user root" in err.value.message


def test_nothing_listening_is_one_line(sshd, tmp_path):
    site = site_for(sshd, tmp_path, port=_free_port())
    with S.SSHPool(site) as pool, pytest.raises(ConnectionFailed, match=r"^node n1 \(127\.0\.0\.1:\d+\): cannot"):
        pool.get("n1")


def test_jump_host_reaches_the_node_through_direct_tcpip(sshd, tmp_path):
    site = site_for(sshd, tmp_path, jump_host=f"root@127.0.0.1:{sshd['port']}")
    with S.SSHPool(site, trust_new_hosts=True) as pool:
        c = pool.get("n1")
        assert c.run("echo via-jump").stdout == "via-jump\n"
        assert pool._jump is not None and pool._jump.node == "jump host 127.0.0.1"


def test_non_root_user_goes_through_sudo():
    c = S.SSHConnection(S.Target("n", "10.0.0.1", 22, "ops"), known=None, key_path=None, trust_new=False)
    assert c.wrap("cat /etc/docker/daemon.json") == "sudo -n -- sh -c 'cat /etc/docker/daemon.json'"
    root = S.SSHConnection(S.Target("n", "10.0.0.1", 22, "root"), known=None, key_path=None, trust_new=False)
    assert root.wrap("id") == "id"


def test_hostkey_name_follows_openssh():
    assert S.hostkey_name("10.0.0.1", 22) == "10.0.0.1"
    assert S.hostkey_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_parallel_is_bounded_and_reports_every_failure():
    import threading

    active, peak, lock = [0], [0], threading.Lock()

    def work(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        if i in (3, 7):
            raise ConnectionFailed(f"node n{i}: down")
        return i * 2

    assert for_each(list(range(20)), lambda i: i * 2 if i not in (3, 7) else i * 2, limit=4) == [
        i * 2 for i in range(20)]
    with pytest.raises(ConnectionFailed) as err:
        for_each(list(range(20)), work, limit=4)
    assert peak[0] <= 4
    assert err.value.message == "node n3: down" and err.value.details == ["node n7: down"]


def test_sudo_wrapped_put_files_script_survives_quoting(tmp_path):
    """What a non-root user sends (`sudo -n -- sh -c '<script>'`) runs as written: a stand-in
    `sudo` (the lab has no sudo user, LAB.md) that drops its options and runs the command."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sudo").write_text('#!/bin/sh\nshift; shift\nexec "$@"\n')
    (bindir / "sudo").chmod(0o755)
    target = tmp_path / "it's here" / "daemon.json"
    data = b'{"key": "it\'s $HOME `x` \\\\ \\"q\\""}\n'
    owner = f"{os.getuid()}:{os.getgid()}"
    script = S.files_script([S.FileSpec(str(target), data, 0o640, owner)], then="echo done")
    c = S.SSHConnection(S.Target("n", "10.0.0.1", 22, "ops"), known=None, key_path=None, trust_new=False)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", "-c", c.wrap(script)], env=env, capture_output=True, check=True)
    assert out.stdout == b"done\n"
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_files_script_refuses_oversized_batches():
    with pytest.raises(ValueError, match="too much for one command"):
        S.files_script([S.FileSpec("/x", b"a" * (S.MAX_BATCH_BYTES + 1))])


def test_unwritable_known_hosts_is_one_line(sshd, tmp_path):
    from tvdeploy.errors import InputFileError

    (tmp_path / "afile").write_text("")  # known_hosts below a regular file cannot be written
    site = site_for(sshd, tmp_path, known_hosts=str(tmp_path / "afile" / "known_hosts"))
    with S.SSHPool(site, trust_new_hosts=True) as pool, pytest.raises(InputFileError) as err:
        pool.get("n1")
    assert err.value.message.startswith(f"{tmp_path}/afile/known_hosts: cannot record the host key of ")
