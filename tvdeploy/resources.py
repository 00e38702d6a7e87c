"""Find the shipped data folders (templates/, policies/) in a wheel install or a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder *name* ("templates" or "policies").

    A wheel carries them as ``tvdeploy/_data/<name>``; a checkout (or editable install) has them
    at the repository root, beside the package.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tvdeploy installation is missing its {name}/ folder")


def templates_dir() -> Path:
    return data_dir("templates")


def policies_dir() -> Path:
    return data_dir("policies")
