"""Safe YAML loading that keeps line numbers and refuses hostile documents.

PyYAML's safe loader already refuses arbitrary objects; on top of that we refuse:
documents over a size bound, alias expansion past a small bound ("billion laughs"),
recursive aliases and duplicate keys (a silently overwritten key is a typo that passes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 20_000

KeyPath = tuple[str | int, ...]


@dataclass
class YamlDocument:
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """Line (1-based) of *path*, or of its closest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


class YamlError(Exception):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def load_yaml_text(text: str) -> YamlDocument:
    import yaml

    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise YamlError(f"file is larger than {MAX_BYTES} bytes")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(data=None)
        _check_expansion(node)
        lines: dict[KeyPath, int] = {}
        _record_lines(node, (), lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlError(f"not valid YAML: {exc.problem or exc.context}", line) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return YamlDocument(data=data, lines=lines)


def load_yaml_file(path: Path) -> YamlDocument:
    from tvdeploy.errors import InputFileError
    from tvdeploy.inputs import read_input

    data = read_input(path, "file", MAX_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not UTF-8 text") from None
    return load_yaml_text(text)


def _check_expansion(root: Any) -> None:
    """Count the nodes the document expands to, following aliases, without constructing it."""
    import yaml

    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            raise YamlError("recursive alias", node.start_mark.line + 1)
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_EXPANDED_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > MAX_EXPANDED_NODES:
                    break
        visiting.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise YamlError(
                f"document expands to more than {MAX_EXPANDED_NODES} nodes (alias bomb?)",
                node.start_mark.line + 1,
            )
        sizes[key] = total
        return total

    size(root)


def _record_lines(node: Any, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in seen:
                raise YamlError(
                    f"{format_path(path + (key,))}: duplicate key", key_node.start_mark.line + 1
                )
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _record_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _record_lines(child, path + (index,), lines)
