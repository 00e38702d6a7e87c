"""Field types shared by the site-file and release models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

_HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SECRET_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$")
_FINGERPRINT = re.compile(r"^([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}$|^[0-9a-fA-F]{64}$")


class StrictModel(BaseModel):
    """Unknown keys are refused (a typo must not pass) and models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _hostname_label(value: str) -> str:
    if not _HOSTNAME_LABEL.match(value):
        raise ValueError(
            "not a valid host name (RFC 1123 label: lowercase letters, digits and '-', "
            "1-63 characters, not starting or ending with '-')"
        )
    return value


def _secret_ref(value: str, info: ValidationInfo) -> str:
    # Never echo *value*: it may be the secret itself.
    if not _SECRET_REF.match(value):
        raise ValueError("inline secrets are refused; give a reference: env:VARIABLE or file:PATH")
    base = (info.context or {}).get("base_dir")
    if value.startswith("file:") and base is not None:
        path = Path(value[5:]).expanduser()
        if not path.is_absolute():
            path = Path(base) / path
        return "file:" + str(path.resolve())
    return value


def _fingerprint(value: str) -> str:
    if not _FINGERPRINT.match(value):
        raise ValueError("expected a SHA-256 fingerprint: 64 hex digits, with or without ':'")
    return value.replace(":", "").lower()


def _relative_to_site(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return Path(str(path.resolve()) if base is not None else str(path))


HostnameLabel = Annotated[str, AfterValidator(_hostname_label)]
SecretRef = Annotated[str, AfterValidator(_secret_ref)]
Fingerprint = Annotated[str, AfterValidator(_fingerprint)]
SitePath = Annotated[Path, AfterValidator(_relative_to_site)]


def format_fingerprint(hex_digest: str) -> str:
    """'ab12…' -> 'AB:12:…' (how vSphere and OpenSSL print certificate fingerprints)."""
    h = hex_digest.replace(":", "").upper()
    return ":".join(h[i : i + 2] for i in range(0, len(h), 2))
