"""Import cycles inside the geosam package: ``python -m geosam._devtools.imports`` (exit 1 on a cycle).

Every ``import`` and ``from ... import`` of a ``geosam`` module is read from the source (``ast``; nothing
is imported), at module level and inside functions alike: an import hidden in a function is still a
dependency, it only runs later. Imports under ``if TYPE_CHECKING:`` are left out (they never run).
``from geosam.io import cog`` counts as an import of ``geosam.io.cog`` when that is a module.
A cycle is a strongly connected component of the module graph with more than one module (Tarjan's
algorithm), printed with one chain of imports that closes it.

Options: ``--graph`` prints every module's geosam imports instead.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["find_cycles", "import_graph", "main"]

_ROOT = Path(__file__).resolve().parents[1]


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file under the package folder ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, list[str]]]:
    """``(base module, imported names)`` of every import that runs (``if TYPE_CHECKING:`` skipped)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base_parts = module.split(".") if is_package else module.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            yield base, [a.name for a in node.names]
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root: Path = _ROOT, package: str = "geosam") -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module docstring)."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        deps: set[str] = set()
        for base, names in _imports(tree, name, path.name == "__init__.py"):
            if base != package and not base.startswith(package + "."):
                continue
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            deps.update(subs)
            if len(subs) < len(names) or not names:  # names taken from the module itself
                mod = base
                while mod and mod not in modules:
                    mod = mod.rpartition(".")[0]
                if mod:
                    deps.add(mod)
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted; sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _chain(graph: dict[str, set[str]], cycle: Sequence[str]) -> list[str]:
    """One closed chain of imports through the cycle's first module (breadth-first in the component)."""
    members, start = set(cycle), cycle[0]
    prev: dict[str, str] = {}
    seen, frontier = {start}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in seen:
                    seen.add(w)
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [*cycle, cycle[0]]


def main(argv: Sequence[str] | None = None) -> int:
    """Print import cycles (or the graph); exit status 1 when there is a cycle."""
    parser = argparse.ArgumentParser(prog="python -m geosam._devtools.imports", description=__doc__)
    parser.add_argument("--graph", action="store_true", help="print every module's geosam imports")
    args = parser.parse_args(argv)
    graph = import_graph()
    if args.graph:
        for name in sorted(graph):
            print(f"{name}: {', '.join(sorted(graph[name])) or '-'}")
        return 0
    cycles = find_cycles(graph)
    for cycle in cycles:
        print(f"import cycle ({len(cycle)} modules): {' -> '.join(_chain(graph, cycle))}")
    if not cycles:
        print(f"no import cycles among {len(graph)} geosam modules")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
