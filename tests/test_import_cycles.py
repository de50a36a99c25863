"""The package has no import cycle: every ``import`` of one vpstudy module by another, at module
level or inside a function, points down a layered graph.

Read with `ast`, nothing imported: relative imports are resolved, ``from vpstudy import runs``
counts as an import of the submodule ``vpstudy.runs``, and a package's ``__init__`` is a node
of its own (``vpstudy.models``). ``importlib.import_module("vpstudy...")`` with a literal name
counts too, so a cycle cannot hide behind it.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = "vpstudy"


def package_modules(package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of ``package`` (packages included)."""
    root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module an import of ``name`` runs last: ``name`` itself, else its longest known prefix
    (``vpstudy.config.TrainConfig`` -> ``vpstudy.config``)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def imported_modules(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            names += [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            names.append(node.args[0].value)
    found = {_known(n, modules) for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}
    return found - {None, module}


def import_graph(package: str = PACKAGE) -> dict[str, set[str]]:
    modules = package_modules(package)
    return {m: imported_modules(m, p, modules) for m, p in modules.items()}


def cyclic_components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module: each module of one imports,
    directly or not, every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(v: str) -> None:                # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def shortest_cycle(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle ``[a, b, ..., a]`` through the component's first module (breadth-first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")   # unreachable for a component


def test_the_checker_reads_relative_and_submodule_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cyclic_components(graph) == [{"a", "b", "c"}]
    assert shortest_cycle({"a", "b", "c"}, graph) == ["a", "b", "c", "a"]
    assert cyclic_components({"a": {"b"}, "b": set()}) == []
    modules = {"vpstudy": Path(), "vpstudy.models": Path(), "vpstudy.models.layers": Path(),
               "vpstudy.config": Path(), "vpstudy.runs": Path()}
    src = tmp_path / "__init__.py"
    src.write_text("from .layers import X\nfrom vpstudy import runs\n"
                   "def f():\n    from ..config import Y\n    import importlib\n"
                   "    importlib.import_module('vpstudy.config')\n")
    assert imported_modules("vpstudy.models", src, modules) == {"vpstudy.models.layers", "vpstudy.runs",
                                                                "vpstudy.config"}


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "vpstudy.config" in graph and "vpstudy.models" in graph
    components = cyclic_components(graph)
    assert not components, "import cycles in vpstudy:\n" + "\n".join(
        f"{' -> '.join(shortest_cycle(c, graph))}  (modules in the cycle: {', '.join(sorted(c))})"
        for c in components)
