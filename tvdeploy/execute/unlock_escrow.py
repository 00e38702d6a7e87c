"""Where the swarm unlock key lives: sealed to the operator and the site's escrow recipients.

The key is never printed unless asked (`swarm unlock-key --show`) and never logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvdeploy import state
from tvdeploy.config.secrets import Secret
from tvdeploy.errors import TvdeployError


def escrow_path(site: Any) -> Path:
    return state.site_dir(site.site.name, site.state_dir) / "swarm" / "unlock-key.escrow"


def recipients(site: Any) -> list[Any]:
    from tvdeploy.keys.store import load_public_key, operator_key_name, read_public_key_file

    keys = [load_public_key(operator_key_name())]
    keys += [read_public_key_file(Path(p)) for p in site.swarm.escrow_recipients]
    return keys


def store_unlock_key(site: Any, key: Secret) -> list[str]:
    """Seal *key* to every recipient; returns their key ids."""
    from tvdeploy.keys.escrow import recipients_of, seal

    sealed = seal(key.reveal().encode(), recipients(site), label=f"swarm-unlock-key site={site.site.name}")
    state.write_atomic(escrow_path(site), sealed, mode=0o600)
    return recipients_of(sealed)


def _read_escrow(site: Any) -> tuple[Path, bytes]:
    path = escrow_path(site)
    if not path.exists():
        raise TvdeployError(
            f"{path}: no escrowed unlock key for site {site.site.name} (swarm bootstrap stores it when autolock is on)"
        )
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise TvdeployError(f"{path}: cannot read the escrowed unlock key: {exc.strerror or exc}") from None


def describe_escrow(site: Any) -> dict[str, Any]:
    """Where the key is and the key ids it is sealed to (no secret)."""
    from tvdeploy.keys.escrow import recipients_of

    path, data = _read_escrow(site)
    try:
        ids = recipients_of(data)
    except TvdeployError as exc:
        raise type(exc)(f"{path}: {exc.message}") from None
    return {"site": site.site.name, "path": str(path), "recipients": ids}


def load_unlock_key(site: Any) -> Secret:
    from tvdeploy.keys.escrow import open_sealed
    from tvdeploy.keys.store import load_private_key, operator_key_name

    path, data = _read_escrow(site)
    try:
        key = open_sealed(data, load_private_key(operator_key_name()))
    except TvdeployError as exc:
        raise type(exc)(f"{path}: {exc.message}") from None
    try:
        return Secret(key.decode("ascii"))
    except UnicodeDecodeError:
        raise TvdeployError(f"{path}: the escrowed unlock key is not text") from None
