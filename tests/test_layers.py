"""The layering in ``docs/layers.md`` is the real one: no module imports from a layer
above its own, every module has a layer, and no imports form a circle (counting those
inside functions and for type checking: a circle deferred is still a circle)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "aerobust"
ITEM = re.compile(r"^\d+\. \*\*(?P<name>[\w-]+)\*\* \((?P<modules>[^)]*)\)")


def layers() -> list[tuple[str, list[str]]]:
    """The numbered list of ``docs/layers.md``, bottom first: (layer, module prefixes)."""
    found = []
    for line in (ROOT / "docs" / "layers.md").read_text().splitlines():
        match = ITEM.match(line)
        if match:
            found.append((match["name"], re.findall(r"`([\w.]+)`", match["modules"])))
    return found


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[int, str, bool]]:
    """``(line, imported module, at module level at run time)`` for every import of the
    package's own modules in ``path``, relative ones resolved; ``from aerobust import X``
    names the module ``aerobust.X`` when there is one, else the package itself."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def runtime_top_level(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return False
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                return False
        return True

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                yield node.lineno, target, runtime_top_level(node)


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    """The index of the layer whose longest listed prefix covers ``module``."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(table):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                    best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def test_the_layers_are_listed() -> None:
    table = layers()
    assert len(table) >= 5, "docs/layers.md lost its numbered list of layers"
    listed = [p for _, prefixes in table for p in prefixes]
    assert len(listed) == len(set(listed)), "a module is listed in two layers"
    known = set(modules())
    assert not [p for p in listed if p not in known], "docs/layers.md names a missing module"


def test_every_module_has_a_layer() -> None:
    table = layers()
    orphans = [m for m in modules() if m != PACKAGE and layer_of(m, table) is None]
    assert not orphans, f"put these in a layer of docs/layers.md: {orphans}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    table = layers()
    mods = modules()
    known = set(mods)
    upward = []
    for name, path in mods.items():
        if name == PACKAGE:
            continue  # the package's API facade, outside the layers
        own = layer_of(name, table)
        for line, target, _ in imports(name, path, known):
            if target == PACKAGE:
                continue  # the package itself: __version__
            theirs = layer_of(target, table)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {name} ({table[own][0]}) "
                              f"imports {target} ({table[theirs][0]})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_imports_form_no_circle() -> None:
    mods = modules()
    known = set(mods)
    graph = {name: {t for _, t, _ in imports(name, path, known) if t in known
                    and t != name and t != PACKAGE}
             for name, path in mods.items() if name != PACKAGE}
    # a package's __init__ re-exports its modules: importing a module runs its
    # package first, so only edges between modules count, not to their own package
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend([*stack[stack.index(nxt):], nxt])
                return True
            if nxt not in state and visit(nxt, [*stack, nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if start not in state and visit(start, [start]):
            break
    assert not cycle, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("source, expected", [
    ("from aerobust.training import fit\n", "aerobust.training"),
    ("def f():\n    from aerobust.experiments import spec\n", "aerobust.experiments.spec"),
    ("from ..training import fit\n", "aerobust.training"),
])
def test_the_check_sees_every_kind_of_import(tmp_path: Path, source: str,
                                            expected: str) -> None:
    """A module-level, a function-level and a relative import are all found: the check
    above cannot pass by missing them."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    found = [t for _, t, _ in imports("aerobust.attacks.probe", path, set(modules()))]
    assert found == [expected]
    assert layer_of(found[0], layers()) > layer_of("aerobust.attacks.probe", layers())
