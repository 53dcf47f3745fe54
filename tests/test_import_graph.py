"""The shape of the code base: no module imports another that imports it back (directly or in a
ring, counting imports inside functions too), and plugins use only the core's public modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the core modules a plugin may import from (each lists its public names in __all__)
PUBLIC_CORE = ("rewardkit", "rewardkit.trl", "rewardkit.prm", "rewardkit.data", "rewardkit.testing",
               "rewardkit.vision")


def packages() -> dict[str, Path]:
    roots = {"rewardkit": ROOT / "rewardkit", "rewardkit_example": ROOT / "examples/plugin-template/rewardkit_example"}
    roots.update({p.name: p for p in (ROOT / "plugins").glob("*/rewardkit_*") if p.is_dir()})
    return roots


def modules() -> dict[str, Path]:
    out = {}
    for pkg, root in packages().items():
        for f in root.rglob("*.py"):
            parts = [pkg, *f.relative_to(root).with_suffix("").parts]
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[tuple[str, str | None]]:
    """(module, name) pairs ``module`` imports from the tree, at any depth except TYPE_CHECKING blocks."""
    path = MODULES[module]
    found: set[tuple[str, str | None]] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update((a.name, None) for a in node.names if _resolve(a.name))

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            if _resolve(base):
                found.update((base, a.name) for a in node.names)

    Visitor().visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for m in MODULES:
        targets = set()
        for base, name in imports_of(m):
            target = _resolve(f"{base}.{name}") if name else _resolve(base)
            if target is not None and target != m and not m.startswith(target + "."):
                targets.add(target)  # a submodule reading its own package's __init__ is no ring
        edges[m] = targets
    return edges


def rings(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            ring = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                ring.append(w)
                if w == v:
                    break
            if len(ring) > 1:
                out.append(sorted(ring))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_one_that_imports_it_back():
    assert len(MODULES) > 100  # the whole tree was read
    assert rings(graph()) == []


def test_the_ring_finder_finds_a_ring():
    assert rings({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("pkg", sorted(set(packages()) - {"rewardkit"}))
def test_plugins_use_only_public_core_modules_and_names(pkg):
    import importlib

    bad = []
    for m in (m for m in MODULES if m == pkg or m.startswith(pkg + ".")):
        for base, name in imports_of(m):
            if not base.startswith("rewardkit") or base.startswith("rewardkit_"):
                continue
            if base not in PUBLIC_CORE:
                bad.append(f"{m}: from {base} import {name}")
            elif name is not None and name not in importlib.import_module(base).__all__:
                bad.append(f"{m}: {base}.{name} is not in {base}.__all__")
    assert bad == []
