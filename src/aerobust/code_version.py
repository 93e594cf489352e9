"""The version of the code behind a number: a digest of exactly the modules it runs.

A result's cache key must change when code that computes it changes, and only then: a
new model file or a moved helper must not recompute hours of unrelated cells. So a
version is the digest of the *import closure* of a few entry modules (the attack's
class, the architecture's class, the trainer), computed statically from the sources:

- ``from pkg import name`` is followed to the module that defines ``name`` (through
  re-exports in package ``__init__`` files), not to the whole package; ``import pkg``
  followed by ``pkg.name`` uses is resolved the same way, name by name.
- Imports inside functions count (they run when the code runs); imports under
  ``if TYPE_CHECKING:`` do not (they never run).
- *Table* modules (``TABLES``: name -> implementation maps such as the model registry)
  are neither hashed nor followed. A cell reaches the implementation it uses through
  the name it holds (its architecture, its attack), so adding an entry to a table
  recomputes nothing.
- *Output* modules (``OUTPUTS``: code that writes a finished result's files, such as an
  audit's report) are neither hashed nor followed either: they compute no number, and a
  change in how a report reads must not recompute the audits it reports.
- Each module is hashed as its syntax tree without docstrings: comments, docstrings and
  formatting do not change a number, so they do not change a key.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "aerobust"
ROOT = Path(__file__).resolve().parent
# The package's top (its version enters every key on its own) and the name -> class maps.
TABLES = frozenset({"aerobust", "aerobust.models.registry", "aerobust.attacks"})
# Writers of a finished result's files (``Audit.save``).
OUTPUTS = frozenset({"aerobust.audit.save"})
SKIPPED = TABLES | OUTPUTS


def module_path(module: str, root: Path = ROOT) -> Path | None:
    """The source file of ``module`` under ``root`` (the package folder), or None when it
    is not a module of the package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _parse(path: Path) -> ast.Module:
    """The module's syntax tree, parsed once per distinct source text (read only)."""
    return _parse_text(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1024)
def _parse_text(text: str) -> ast.Module:
    return ast.parse(text)


@functools.lru_cache(maxsize=1024)
def _code_dump(text: str) -> str:
    """The code of a source text: its syntax tree without docstrings, as text."""
    return ast.dump(_strip_docstrings(ast.parse(text)))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import that can run: module level and inside functions, not type-only."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            stack.append(child)


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """``from .x import y`` inside ``module`` as an absolute module name."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _attribute_uses(tree: ast.AST, alias: str) -> set[str]:
    """The names used as ``alias.name`` in ``tree``."""
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == alias}


class _Closure:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.trees: dict[str, ast.Module] = {}

    def tree(self, module: str) -> ast.Module:
        if module not in self.trees:
            path = module_path(module, self.root)
            assert path is not None, module
            self.trees[module] = _parse(path)
        return self.trees[module]

    def is_package(self, module: str) -> bool:
        path = module_path(module, self.root)
        return path is not None and path.name == "__init__.py"

    def defining(self, module: str, name: str, seen: frozenset[str] = frozenset()) -> str:
        """The module that defines ``name`` as imported from ``module``: a submodule of
        that name, else the module a package re-exports it from, else ``module``."""
        sub = f"{module}.{name}"
        if module_path(sub, self.root) is not None:
            return sub
        if not self.is_package(module) or module in seen:
            return module
        for node in self.tree(module).body:
            if isinstance(node, ast.ImportFrom):
                source = _absolute(module, node, self.is_package(module))
                for alias in node.names:
                    if (alias.asname or alias.name) == name and source.startswith(PACKAGE):
                        return self.defining(source, alias.name, seen | {module})
        return module

    def edges(self, module: str) -> set[str]:
        tree = self.tree(module)
        found: set[str] = set()
        for node in _imports(tree):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(module, node, self.is_package(module))
                if source.split(".")[0] == PACKAGE:
                    found.update(self.defining(source, a.name) for a in node.names)
                continue
            for alias in node.names:
                if alias.name.split(".")[0] != PACKAGE:
                    continue
                if alias.asname is None and "." in alias.name:
                    found.add(alias.name)  # ``import a.b.c``: used as a.b.c.name
                    continue
                target = alias.name
                uses = _attribute_uses(tree, alias.asname or alias.name)
                found.update(self.defining(target, u) for u in uses)
        return {m for m in found if module_path(m, self.root) is not None}

    def closure(self, entries: Iterable[str]) -> list[str]:
        todo = [m for m in entries if m not in SKIPPED]
        done: set[str] = set()
        while todo:
            module = todo.pop()
            if module in done:
                continue
            done.add(module)
            todo.extend(m for m in self.edges(module) if m not in SKIPPED and m not in done)
        return sorted(done)


def closure(entries: Iterable[str], root: Path = ROOT) -> list[str]:
    """The modules of the package that ``entries`` import, directly or not, themselves
    included (tables and outputs excluded), sorted."""
    return _Closure(root).closure(entries)


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_digest(modules: Iterable[str], root: Path = ROOT) -> str:
    """Digest of the modules' code: their syntax trees without docstrings, by name."""
    digest = hashlib.sha256()
    for module in sorted(modules):
        path = module_path(module, root)
        assert path is not None, module
        code = _code_dump(path.read_text(encoding="utf-8"))
        digest.update(module.encode() + b"\0" + code.encode() + b"\0")
    return digest.hexdigest()[:12]
