"""Render the node's Docker daemon configuration (and the systemd drop-in) from templates/.

Pure apart from reading the template files. Keys tvdeploy does not manage are carried over from
the node's existing daemon.json, so a site's own settings (data-root, bridge, ...) survive.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from tvdeploy.facts.host import CA_PATH, CERT_PATH, KEY_PATH

API_PORT = 2376
DAEMON_TEMPLATE = "daemon.json.j2"
DROPIN_TEMPLATE = "docker-systemd-override.conf.j2"
MANAGED_KEYS = frozenset({
    "hosts", "tls", "tlsverify", "tlscacert", "tlscert", "tlskey", "icc", "no-new-privileges",
    "log-driver", "log-opts", "userland-proxy", "live-restore",
})


@lru_cache(maxsize=4)
def _template(name: str) -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from tvdeploy.resources import templates_dir

    # Output is JSON / a unit file, not HTML: autoescape would corrupt it; values go through
    # |tojson where they land in JSON.
    env = Environment(  # noqa: S701
        loader=FileSystemLoader(str(templates_dir())), undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(name)


def render_daemon_json(address: str, existing: dict[str, Any] | None = None) -> str:
    extra = {k: v for k, v in (existing or {}).items() if k not in MANAGED_KEYS}
    text: str = _template(DAEMON_TEMPLATE).render(
        address=address, port=API_PORT, ca_path=CA_PATH, cert_path=CERT_PATH, key_path=KEY_PATH,
        log_max_size="50m", log_max_file="5", extra=extra,
    )
    json.loads(text)  # a template bug must fail here, not as a dockerd that will not start
    return text


def render_systemd_dropin(dockerd_path: str,
                          containerd_socket: str = "/run/containerd/containerd.sock") -> str:
    text: str = _template(DROPIN_TEMPLATE).render(
        dockerd_path=dockerd_path, containerd_socket=containerd_socket
    )
    return text


def same_config(current: dict[str, Any] | None, desired_text: str) -> bool:
    """Compare as data: key order and whitespace on the node must not cause a restart."""
    return current is not None and current == json.loads(desired_text)
