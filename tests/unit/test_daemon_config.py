"""Rendering daemon.json and the systemd drop-in from templates/ (moby#25471)."""

from __future__ import annotations

import json

from tvdeploy.plan.daemon_config import (
    MANAGED_KEYS,
    render_daemon_json,
    render_systemd_dropin,
    same_config,
)


def test_daemon_json_binds_the_node_address_with_mutual_tls():
    doc = json.loads(render_daemon_json("10.20.0.11"))
    assert doc["hosts"] == ["unix:///var/run/docker.sock", "tcp://10.20.0.11:2376"]
    assert not any("0.0.0.0" in h for h in doc["hosts"])
    assert doc["tls"] is True and doc["tlsverify"] is True
    assert doc["tlscacert"] == "/etc/docker/tls/ca.pem"
    assert doc["tlscert"] == "/etc/docker/tls/server-cert.pem"
    assert doc["tlskey"] == "/etc/docker/tls/server-key.pem"
    assert doc["icc"] is False
    assert doc["no-new-privileges"] is True
    assert doc["userland-proxy"] is False
    assert doc["live-restore"] is False
    assert doc["log-driver"] == "json-file"
    assert doc["log-opts"] == {"max-size": "50m", "max-file": "5"}
    assert set(doc) == MANAGED_KEYS


def test_unmanaged_keys_survive_and_managed_ones_are_replaced():
    existing = {"data-root": "/srv/docker", "bridge": "br-x", "hosts": ["tcp://0.0.0.0:2375"],
                "tlsverify": False, "weird\"key": "<&>"}
    doc = json.loads(render_daemon_json("10.0.0.5", existing))
    assert doc["data-root"] == "/srv/docker" and doc["bridge"] == "br-x"
    assert doc["weird\"key"] == "<&>"
    assert doc["hosts"][1] == "tcp://10.0.0.5:2376" and doc["tlsverify"] is True


def test_rendering_is_stable_and_compared_as_data():
    text = render_daemon_json("10.0.0.5", {"data-root": "/x"})
    assert render_daemon_json("10.0.0.5", json.loads(text)) == text
    reordered = dict(reversed(list(json.loads(text).items())))
    assert same_config(reordered, text)
    assert not same_config(None, text)
    assert not same_config({**reordered, "icc": True}, text)


def test_systemd_dropin_clears_exec_start_without_dash_h():
    dropin = render_systemd_dropin("/usr/bin/dockerd")
    lines = [ln for ln in dropin.splitlines() if ln and not ln.startswith("#")]
    assert lines == [
        "[Service]",
        "ExecStart=",
        "ExecStart=/usr/bin/dockerd --containerd=/run/containerd/containerd.sock",
    ]
    # daemon.json sets "hosts": the command line must not also carry -H (moby#25471).
    exec_line = lines[-1].split()
    assert "-H" not in exec_line and not any(a.startswith(("-H", "--host")) for a in exec_line)
    assert "hosts" in json.loads(render_daemon_json("10.0.0.5"))


def test_dropin_uses_the_node_dockerd_path():
    assert "ExecStart=/usr/sbin/dockerd " in render_systemd_dropin("/usr/sbin/dockerd")
