"""Load and validate a site file; every error names file, line and key path."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from tvdeploy.config.yamlsafe import KeyPath, YamlDocument, YamlError, format_path, load_yaml_file
from tvdeploy.errors import ConfigError


def _error_line(file: Path, doc: YamlDocument | None, path: KeyPath, message: str) -> str:
    line = doc.line_of(path) if doc is not None else None
    where = f"{file}:{line}" if line else str(file)
    return f"{where}: {format_path(path)}: {message}"


def _pydantic_message(err: dict[str, Any], model: type | None) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        key = str(err["loc"][-1]) if err.get("loc") else ""
        hint = _suggest(key, err.get("loc", ())[:-1], model)
        return "unknown key" + (f" (did you mean {hint!r}?)" if hint else "")
    if kind == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid value"))
    # pydantic prefixes errors raised in our validators with "Value error, ".
    return msg.removeprefix("Value error, ")


def _suggest(key: str, parent: tuple[Any, ...], model: type | None) -> str | None:
    """Closest valid key name at the same place, to turn a typo into a one-glance fix."""
    from pydantic import BaseModel

    current: Any = model
    for part in parent:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        current = _model_in(ann)
    if current is None or not (isinstance(current, type) and issubclass(current, BaseModel)):
        return None
    match = difflib.get_close_matches(key, list(current.model_fields), n=1, cutoff=0.6)
    return match[0] if match else None


def _model_in(annotation: Any) -> Any:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _clean_loc(loc: tuple[Any, ...]) -> KeyPath:
    # pydantic adds union-member tags and validator names to locations; keep real keys only.
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            out.append(part)
        elif isinstance(part, str) and not part.startswith(("function-", "lax-", "strict-")) and part not in (
            "VCenter",
            "IPv4Address",
            "IPv4Network",
            "Path",
        ):
            out.append(part)
    return tuple(out)


def raise_problems(file: Path, doc: YamlDocument | None, problems: list[tuple[KeyPath, str]]) -> None:
    if not problems:
        return
    lines = [_error_line(file, doc, path, msg) for path, msg in problems]
    raise ConfigError(lines[0], details=lines[1:])


def load_yaml_mapping(file: Path, expected: str) -> YamlDocument:
    """Read *file* as a YAML mapping; errors name file and line. *expected* says what the
    mapping should hold (for the top-level error)."""
    try:
        doc = load_yaml_file(file)
    except YamlError as exc:
        where = f"{file}:{exc.line}" if exc.line else str(file)
        raise ConfigError(f"{where}: {exc.message}") from None
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{file}:1: (top level): expected a mapping {expected}")
    return doc


def load_site(path: Path | str) -> Any:
    """Read, validate and return the site (tvdeploy.config.site.Site)."""
    from pydantic import ValidationError

    from tvdeploy.config.rules import check_site
    from tvdeploy.config.site import Site

    file = Path(path)
    doc = load_yaml_mapping(file, "of site-file keys")
    problems: list[tuple[KeyPath, str]] = []
    try:
        site = Site.model_validate(doc.data, context={"base_dir": file.resolve().parent})
    except ValidationError as exc:
        # Collected here, raised outside the handler: pydantic's own message holds the input
        # values (possibly an inline secret) and must not be chained into a -v traceback.
        problems = [
            (_clean_loc(tuple(err.get("loc", ()))), _pydantic_message(dict(err), Site))
            for err in exc.errors(include_input=False, include_url=False)
        ]
    if problems:
        raise_problems(file, doc, problems)
    raise_problems(file, doc, check_site(site))
    return site


def site_document(site: Any) -> dict[str, Any]:
    """The normalized model as plain JSON-able data, with the site file's own key names.
    Secret references are shown as references (never resolved); paths are absolute."""
    data: dict[str, Any] = site.model_dump(mode="json")
    return data
