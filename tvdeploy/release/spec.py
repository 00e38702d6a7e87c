"""The release spec: the person-written input of ``bundle build``.

    release: "2026.11-1"
    sequence: 7
    images:
      cloud: trueverit/cloud:1.0      # repository:tag in the build engine
    engine_packages: debian-12        # optional: also carry Docker Engine's packages (issue 19)

Errors name file:line: key path, like the site file's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

SERVICE = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# repository[:tag], optionally with a registry host:port; no digests (the build computes them).
REFERENCE = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?"  # first component, or a registry host[:port]
    r"(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*"  # path components
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"  # tag
)

Reference = Annotated[str, StringConstraints(pattern=REFERENCE, max_length=255)]
ReleaseId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")]


class ReleaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    release: ReleaseId
    sequence: int = Field(ge=1)
    images: dict[Annotated[str, StringConstraints(pattern=SERVICE)], Reference] = Field(min_length=1)
    # Docker Engine's packages for this platform go into the bundle too (= --engine-packages).
    engine_packages: Literal["debian-12"] | None = None


def normalize_reference(ref: str) -> str:
    """Docker's reading of a reference without a tag: ``:latest``."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


def _message(err: dict[str, object]) -> str:
    kind = err.get("type")
    if kind == "string_pattern_mismatch":
        loc = err.get("loc", ())
        if isinstance(loc, tuple) and len(loc) >= 2 and loc[0] == "images" and str(loc[-1]) == "[key]":
            return "not a valid service name (lowercase letters, digits, '-', '_')"
        if isinstance(loc, tuple) and loc and loc[0] == "images":
            return "not an image reference 'repository:tag' (no digests, lowercase repository)"
        return "not a valid release id (letters, digits, '.', '_', '+', '-')"
    from tvdeploy.config.load import _pydantic_message

    return _pydantic_message(dict(err), ReleaseSpec)


def load_release_spec(path: Path | str) -> ReleaseSpec:
    from tvdeploy.config.load import load_yaml_mapping, raise_problems

    file = Path(path)
    doc = load_yaml_mapping(file, "with release, sequence, images")
    try:
        return ReleaseSpec.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = tuple(p for p in err.get("loc", ()) if p != "[key]")
            problems.append((loc, _message(dict(err))))
        raise_problems(file, doc, problems)
        raise  # unreachable
