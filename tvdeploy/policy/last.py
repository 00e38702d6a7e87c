"""The last ``policy check`` of a site, kept in the operator state (``<state>/policy/last.json``)
for the audit report: the ``policy check --json`` document (schema 1) plus when it ran."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tvdeploy import state
from tvdeploy.errors import InputFileError

MAX_SIZE = 64 * 1024 * 1024


def path_of(site: Any) -> Path:
    return state.site_dir(site.site.name, site.state_dir) / "policy" / "last.json"


def save(site: Any, result: dict[str, Any], checked_at: str, site_file: str) -> Path:
    """Write the result atomically (a crash never leaves half a file)."""
    path = path_of(site)
    doc = {**result, "checked_at": checked_at, "site_file": site_file}
    state.write_atomic(path, (json.dumps(doc, indent=1, default=str) + "\n").encode(), mode=0o600)
    return path


def load(site: Any) -> dict[str, Any] | None:
    """The last result, or None when no check ran yet; a damaged file raises naming it."""
    path = path_of(site)
    try:
        if path.stat().st_size > MAX_SIZE:
            raise InputFileError(f"{path}: larger than {MAX_SIZE} bytes")
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        raise InputFileError(f"{path}: damaged (not JSON); run tvdeploy policy check SITE again") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("findings"), list):
        raise InputFileError(f"{path}: not a policy check result; run tvdeploy policy check SITE again")
    return doc
