"""The package's layering, read from the source with `ast` (no module is imported).

Every import counts: module-level and inside functions, `import tmics_cli.x` and `from ..x import y`.
Each module belongs to a *layer*: its subpackage (`model`, `data`, `training`, `video`) or, for a top-level
module, its own name (`cli`, `outputs`, `streaks`, ...; the package's `__init__` is `tmics_cli`).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = "tmics_cli"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Top-level modules that import nothing of tmics_cli, so any layer may use them without pulling in more.
LEAF_MODULES = {"outputs", "streaks", "version"}
OTHER_TOP_LEVEL = "<any top-level module but LEAF_MODULES>"
ANY = "<any layer>"
EVERYTHING = "<anything of tmics_cli>"

# layer        -> the layers it must not import
FORBIDDEN: dict[str, set[str]] = {
    "model": {"data", "training", "video", "cli", OTHER_TOP_LEVEL},
    "video": {"model", "data", "training", "cli"},
    "data": {"training", "cli"},
    **{leaf: {EVERYTHING} for leaf in LEAF_MODULES},
    ANY: {"cli"},
}
# modules exempt from FORBIDDEN[ANY]: the entry point of `python -m tmics_cli` runs the CLI
ENTRY_POINTS = {f"{PACKAGE}.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported_modules(name: str, source: str, known: set[str], is_package: bool = False) -> set[str]:
    """The tmics_cli modules that module `name` (a package's `__init__` if `is_package`) imports anywhere in
    `source`; `known`: every module's name."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub where there is one, else names from pkg
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import tmics_cli.model.gars.x` -> the deepest module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@cache
def import_graph() -> dict[str, frozenset[str]]:
    known = set(modules())
    graph = {}
    for name, path in modules().items():
        source = path.read_text(encoding="utf-8")
        graph[name] = frozenset(imported_modules(name, source, known, is_package=path.stem == "__init__"))
    return graph


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def is_top_level(name: str) -> bool:
    return name.count(".") == 1 and not (ROOT / layer(name) / "__init__.py").exists()


def violates(importer: str, imported: str) -> str | None:
    """Why `importer` must not import `imported`, or None."""
    src, dst = layer(importer), layer(imported)
    if src == dst:
        return None
    for rule in (src, ANY):
        if rule == ANY and importer in ENTRY_POINTS:
            continue
        banned = FORBIDDEN.get(rule, set())
        if EVERYTHING in banned:
            return f"{src} is a leaf module: it imports nothing of {PACKAGE}"
        if dst in banned:
            return f"no module may import {dst}" if rule == ANY else f"{src} must not import {dst}"
        if OTHER_TOP_LEVEL in banned and (is_top_level(imported) or imported == PACKAGE):
            if dst not in LEAF_MODULES:
                return f"{src} may import only these top-level modules: {sorted(LEAF_MODULES)}"
    return None


def layer_violations(graph: dict[str, frozenset[str]]) -> list[str]:
    return [
        f"{a} imports {b}: {why}"
        for a in sorted(graph)
        for b in sorted(graph[a])
        if (why := violates(a, b)) is not None
    ]


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """One cycle (a -> ... -> a) per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    found = []
    for component in components:  # the shortest way from the component's first module back to itself
        start = min(component)
        came_from: dict[str, str] = {}
        queue, end = [start], None
        while end is None:
            v = queue.pop(0)
            for w in sorted(graph[v] & component):
                if w == start:
                    end = v
                    break
                if w not in came_from:
                    came_from[w] = v
                    queue.append(w)
        path = [start]
        while end != start:
            path.insert(1, end)
            end = came_from[end]
        found.append([*path, start])
    return found


def test_layers_import_only_what_they_may() -> None:
    assert not (bad := layer_violations(import_graph())), "layering broken:\n" + "\n".join(bad)


def test_import_graph_has_no_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_graph_sees_every_kind_of_import() -> None:
    """The checks above pass for the right reason: the parser finds relative, absolute and lazy imports."""
    graph = import_graph()
    assert f"{PACKAGE}.data.rain" in graph[f"{PACKAGE}.data.datasets"]  # from .rain import ...
    assert f"{PACKAGE}.streaks" in graph[f"{PACKAGE}.model.gars"]  # from ..streaks import ...
    assert f"{PACKAGE}.data.datasets" in graph[f"{PACKAGE}.guards"]  # inside a function
    assert f"{PACKAGE}.cli" in graph[f"{PACKAGE}.__main__"]
    assert {f"{PACKAGE}.{m}" for m in LEAF_MODULES} <= set(graph), "a leaf module of the table is missing"
    known = set(modules())
    lazy = """
import numpy
from .. import genotypes as g


def f():
    import tmics_cli.data.rain
    from ...data import datasets
    from ... import outputs, __version__
"""
    assert imported_modules(f"{PACKAGE}.model.sub.x", lazy, known) == {
        f"{PACKAGE}.model.genotypes",
        f"{PACKAGE}.data.rain",
        f"{PACKAGE}.data.datasets",
        f"{PACKAGE}.outputs",
        PACKAGE,
    }


def test_rules_catch_a_model_importing_data_and_a_cycle() -> None:
    """What the rules exist for: GARS taking its kernels from the rain renderer again, and the rain preview
    (which needs datasets.py, itself importing rain.py) moving back into rain.py."""
    graph, before = dict(import_graph()), set(layer_violations(import_graph()))
    known = set(modules())
    gars, rain, datasets = (f"{PACKAGE}.{m}" for m in ("model.gars", "data.rain", "data.datasets"))
    source = ROOT.joinpath("model", "gars.py").read_text(encoding="utf-8")
    graph[gars] = frozenset(imported_modules(gars, source + "\nfrom ..data.rain import add_rain\n", known))
    assert set(layer_violations(graph)) - before == {f"{gars} imports {rain}: model must not import data"}
    graph = dict(import_graph())
    graph[rain] = graph[rain] | {datasets}
    assert [datasets, rain, datasets] in cycles(graph)
    assert violates(f"{PACKAGE}.video.reader", f"{PACKAGE}.cli") == "video must not import cli"
    assert violates(f"{PACKAGE}.benchmark", f"{PACKAGE}.cli") == "no module may import cli"
    assert violates(f"{PACKAGE}.model.io", f"{PACKAGE}.weights") is not None
    assert violates(f"{PACKAGE}.model.io", f"{PACKAGE}.outputs") is None
    assert violates(f"{PACKAGE}.streaks", f"{PACKAGE}.outputs") is not None
