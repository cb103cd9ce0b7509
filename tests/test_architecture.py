"""The import graph of the project's packages: no module cycles, counting the imports made inside functions.

A local import (`def f(): from x import y`) hides a cycle from the interpreter
at start-up, not from the design: the two modules still need each other.
This test reads every module with `ast` (nothing is imported), draws an edge
for every `import` anywhere in it except under `if TYPE_CHECKING:` (those run
only in the type checker), and asserts that the graph has no cycle.

`python -m tests.test_architecture` prints the cycles (strongly connected
components) and the edges inside them.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "adapters", "agents", "broker", "metropole", "compliance", "web", "indicators", "dashboard",
            "demo", "storage")
"""The packages pyproject.toml installs."""


def modules(root: Path = PROJECT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of the tree, at any depth, except those under `if TYPE_CHECKING:`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def graph(found: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a `from package import name` names the submodule when it is one)."""
    found = modules() if found is None else found
    edges: dict[str, set[str]] = {m: set() for m in found}
    for module, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base(module, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in found else base for a in node.names]
            for target in targets:
                while target and target not in found:  # `import a.b.c` of a name inside a module: that module
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges[module].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def packages(edges: dict[str, set[str]], depth: int = 2) -> dict[str, set[str]]:
    """The graph between packages (`broker.service`, `broker.temporal`: the first `depth` parts of a module name)."""
    out: dict[str, set[str]] = {}
    for module, targets in edges.items():
        source = ".".join(module.split(".")[:depth])
        out.setdefault(source, set())
        for target in targets:
            package = ".".join(target.split(".")[:depth])
            out.setdefault(package, set())
            if package != source:
                out[source].add(package)
    return out


def test_the_cycle_finder_sees_a_cycle_through_a_local_import(tmp_path: Path) -> None:
    """The finder itself: a cycle closed by an import inside a function is found; TYPE_CHECKING ones are not."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import g\n\ndef f():\n    from . import c\n    return c\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n"
                              "def g():\n    return 1\n")
    (pkg / "c.py").write_text("def h():\n    import pkg.a\n    return pkg.a\n")
    (pkg / "d.py").write_text("if False:\n    pass\nfrom pkg import b\n")
    found = modules(tmp_path, ("pkg",))
    edges = graph(found)
    assert edges["pkg.a"] == {"pkg.b", "pkg.c"} and edges["pkg.b"] == set() and edges["pkg.d"] == {"pkg.b"}
    assert cycles(edges) == [["pkg.a", "pkg.c"]]
    layered = {"a.x.m": {"a.y.n"}, "a.y.n": set(), "a.y.o": {"a.x.p"}, "a.x.p": set()}  # no module cycle
    assert cycles(layered) == [] and cycles(packages(layered)) == [["a.x", "a.y"]]


def test_no_module_cycles() -> None:
    edges = graph()
    assert len(edges) > 100, "the project's modules were not found"
    found = cycles(edges)
    detail = "\n".join(
        " <-> ".join(c) + ": " + ", ".join(f"{m} -> {t}" for m in c for t in sorted(edges[m] & set(c)))
        for c in found)
    assert not found, f"{len(found)} import cycles (local imports included):\n{detail}"


def test_no_cycles_between_subpackages() -> None:
    """One layer over another: `broker.service` over `broker.temporal`, never both ways (nor through a third)."""
    edges = graph()
    found = cycles(packages(edges))
    detail = "\n".join(
        " <-> ".join(c) + ": " + ", ".join(f"{m} -> {t}" for m in sorted(edges) for t in sorted(edges[m])
                                         if ".".join(m.split(".")[:2]) in c and ".".join(t.split(".")[:2]) in c
                                         and m.split(".")[:2] != t.split(".")[:2])
        for c in found)
    assert not found, f"{len(found)} cycles between subpackages:\n{detail}"


if __name__ == "__main__":
    edges = graph()
    for component in cycles(edges):
        print(" <-> ".join(component))
        for m in component:
            for t in sorted(edges[m] & set(component)):
                print(f"    {m} -> {t}")
    print(f"{len(cycles(edges))} cycles over {len(edges)} modules", file=sys.stderr)
    for component in cycles(packages(edges)):
        print(" <-> ".join(component))
    print(f"{len(cycles(packages(edges)))} cycles between subpackages", file=sys.stderr)
