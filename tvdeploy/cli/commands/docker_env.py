"""tvdeploy docker-env SITE NODE: environment for the plain docker CLI, with the operator's
client certificate, against one node's API over mutual TLS."""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.common import SITE_ARG_HELP


def docker_env(
    site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False),
    node: str = typer.Argument(..., help="The node's name in the site file.", show_default=False),
) -> None:
    """Print DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH for NODE:
    eval "$(tvdeploy docker-env site.yaml tv-mgr-1)"."""
    import shlex

    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, warn
    from tvdeploy.connectors.docker_api import API_PORT, ClientCert
    from tvdeploy.errors import ConfigError
    from tvdeploy.pki.ca import pki_paths
    from tvdeploy.pki.certinfo import cert_info, load_cert_pem, utcnow

    model = load_site(site)
    try:
        entry = model.node(node)
    except KeyError:
        names = ", ".join(n.name for n in model.nodes)
        raise ConfigError(f"{site}: nodes: no node named {node!r} (nodes: {names})") from None
    cert_dir = pki_paths(model).client_dir
    ClientCert.in_dir(cert_dir).check()
    info = cert_info(load_cert_pem((cert_dir / "cert.pem").read_bytes(), str(cert_dir / "cert.pem")))
    days = info.days_left(utcnow())
    if days <= 0:
        warn(f"{cert_dir / 'cert.pem'}: the operator certificate has expired; run tvdeploy tls apply")
    env = {
        "DOCKER_HOST": f"tcp://{entry.address}:{API_PORT}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(cert_dir),
    }
    if OPTIONS.json:
        emit_json(env)
        return
    for key, value in env.items():
        out(f"export {key}={shlex.quote(value)}")


def register(app: typer.Typer) -> None:
    app.command("docker-env")(docker_env)
