"""The layers of ARCHITECTURE.md hold: a module imports only from its own layer or below, and no
imports form a loop. Every import counts, also one inside a function (a lazy import is still a
dependency) and one under ``if TYPE_CHECKING:`` for the direction (a type from a higher layer is
a dependency on it); loops are counted without the TYPE_CHECKING ones (they never run).

    cli -> lab -> execute -> domain -> connectors -> config -> base

- domain: bundle, release, plan, facts, pki, policy, audit, keys (one layer: they may import each
  other, but never in a loop);
- base: the top-level modules (errors, reporting, state, inputs, resources, parallel, ...);
- lab: a tool of its own (it builds a site on one machine for tests and rehearsal). It may import
  anything below the CLI, and nothing but the CLI imports it: the product never depends on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tvdeploy"

LAYERS = {
    "cli": 6, "__main__": 6,
    "lab": 5,
    "execute": 4,
    "bundle": 3, "release": 3, "plan": 3, "facts": 3, "pki": 3, "policy": 3, "audit": 3, "keys": 3,
    "connectors": 2,
    "config": 1,
}
BASE = 0  # any other top-level module: errors, reporting, state, inputs, resources, parallel, ...


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return BASE
    return LAYERS.get(parts[1], BASE)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported tvdeploy module, line, only for type checking) for every import in *path*."""
    found: list[tuple[str, int, bool]] = []

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tvdeploy" and (target := resolve(alias.name)):
                    found.append((target, node.lineno, typing_only))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "tvdeploy":
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                target = target if target in known else resolve(node.module)
                if target:
                    found.append((target, node.lineno, typing_only))
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int, bool]]]]:
    known = modules()
    return known, {name: imports(path, known) for name, path in known.items()}


def test_no_import_from_a_higher_layer() -> None:
    known, edges = graph()
    bad = []
    for source, targets in edges.items():
        for target, line, _typing in targets:
            if layer(target) > layer(source):
                bad.append(f"{known[source].relative_to(PACKAGE.parent)}:{line}: {source} imports {target}")
            elif target.split(".")[:2] == ["tvdeploy", "lab"] and source.split(".")[:2] not in (
                    ["tvdeploy", "lab"], ["tvdeploy", "cli"]):
                bad.append(f"{known[source].relative_to(PACKAGE.parent)}:{line}: {source} imports the lab")
    assert not bad, "imports against the layers (ARCHITECTURE.md):\n" + "\n".join(bad)


def find_loop(edges: dict[str, set[str]]) -> list[str] | None:
    """One import loop, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (loop := visit(nxt)):
                return loop
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (loop := visit(start)):
            return loop
    return None


def test_no_import_loop() -> None:
    _known, edges = graph()
    runtime = {src: {t for t, _line, typing in targets if not typing and t != src} for src, targets in edges.items()}
    loop = find_loop(runtime)
    assert loop is None, "import loop: " + " -> ".join(loop or [])


def test_the_checker_sees_lazy_and_typing_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from tvdeploy.cli.app import run\n"
                      "def f():\n    from tvdeploy.errors import TvdeployError\n"
                      "    import tvdeploy.state\n")
    known = {"tvdeploy.cli.app": Path(), "tvdeploy.errors": Path(), "tvdeploy.state": Path()}
    assert imports(source, known) == [("tvdeploy.cli.app", 3, True), ("tvdeploy.errors", 5, False),
                                      ("tvdeploy.state", 6, False)]
    assert find_loop({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_loop({"a": {"b"}, "b": {"c"}}) is None
