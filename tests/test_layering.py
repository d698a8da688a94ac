"""The layer order of ``llmrec``, enforced: lower layers never import higher ones, no import cycles.

Every module under ``llmrec/`` is parsed with :mod:`ast`; every import counts, including those
inside functions and ``if TYPE_CHECKING:`` blocks, relative imports and
``importlib.import_module("llmrec....")`` with a literal name. (Modules named only as data, such
as the module strings of the view registries, are plugin look-ups and are not counted.)

Layers, lowest first (a module may import its own layer and lower ones)::

    0  llmrec.io, llmrec.fetch, llmrec.sparse, llmrec.validation,  root utilities
       llmrec.overrides, llmrec.shipped
    1  llmrec.data
    2  llmrec.recommender                                           the Recommender interface
    3  llmrec.evaluation, llmrec.baselines
    4  llmrec.prompts, llmrec.retrieval                             never each other
    5  llmrec.models
    6  llmrec.ranking
    7  llmrec.finetune
    8  llmrec.serving
    9  llmrec.cli

The package root ``llmrec/__init__.py`` may import anything (and anything may import it). A cycle
is a strongly connected component of more than one module in the graph of imports, leaving out
the edges from a package ``__init__`` to its own submodules.

Run: ``python -m pytest -q tests/test_layering.py``
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT_MODULE = "llmrec"

#: The layer of each part of the package (a module belongs to the longest matching prefix).
LAYERS: dict[str, int] = {
    "llmrec.io": 0,
    "llmrec.fetch": 0,
    "llmrec.sparse": 0,
    "llmrec.validation": 0,
    "llmrec.overrides": 0,
    "llmrec.shipped": 0,
    "llmrec.data": 1,
    "llmrec.recommender": 2,
    "llmrec.evaluation": 3,
    "llmrec.baselines": 3,
    "llmrec.prompts": 4,
    "llmrec.retrieval": 4,
    "llmrec.models": 5,
    "llmrec.nextitem": 6,
    "llmrec.ranking": 7,
    "llmrec.finetune": 8,
    "llmrec.serving": 9,
    "llmrec.cli": 10,
}
#: Parts of one layer that must not import each other, in either direction.
APART: tuple[frozenset[str], ...] = (frozenset({"llmrec.prompts", "llmrec.retrieval"}),)

#: Layer violations still in the code, as (importing module, imported module). None is left.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()

#: Import cycles tolerated for now. None is left; an entry must still occur
#: (test_allowances_are_still_needed fails otherwise).
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


# --------------------------------------------------------------------------- the graph
def module_name(path: Path, repo: Path = REPO) -> str:
    """``llmrec/data/records.py`` -> ``llmrec.data.records``; a package ``__init__`` -> its name."""
    parts = list(path.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(
    source: str, module: str, *, is_package: bool = False, known: Iterable[str] = ()
) -> set[str]:
    """The modules that ``source`` (the text of ``module``) imports, anywhere in it.

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a ``known`` module,
    otherwise of ``pkg``. Relative imports are resolved against ``module``.
    """
    known = set(known)
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        elif (
            isinstance(node, ast.Call)
            and _call_name(node.func) in ("importlib.import_module", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def import_graph(package_dir: Path, prefix: str) -> dict[str, set[str]]:
    """Module -> the modules under ``prefix`` it imports, for every module in ``package_dir``."""
    files = {module_name(p, package_dir.parent): p for p in sorted(package_dir.rglob("*.py"))}
    known = set(files)
    # folders without an __init__ (namespace packages) are importable names too
    known |= {module_name(d / "__init__.py", package_dir.parent) for d in package_dir.rglob("*/")}
    graph = {}
    for module, path in files.items():
        targets = imports_of(
            path.read_text(encoding="utf-8"),
            module,
            is_package=path.name == "__init__.py",
            known=known,
        )
        graph[module] = {t for t in targets if t == prefix or t.startswith(prefix + ".")}
    return graph


# --------------------------------------------------------------------------- the checks
def part_of(module: str, layers: Mapping[str, int] = LAYERS) -> str | None:
    """The entry of ``layers`` that ``module`` belongs to (longest prefix), or ``None``."""
    matches = [p for p in layers if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def layer_violations(
    graph: Mapping[str, Iterable[str]],
    layers: Mapping[str, int] = LAYERS,
    apart: Iterable[frozenset[str]] = APART,
    root: str = ROOT_MODULE,
) -> tuple[set[tuple[str, str]], set[str]]:
    """(edges that break the order, modules that belong to no layer)."""
    apart = list(apart)
    bad: set[tuple[str, str]] = set()
    unplaced: set[str] = set()
    for src, targets in graph.items():
        if src == root:
            continue
        src_part = part_of(src, layers)
        if src_part is None:
            unplaced.add(src)
            continue
        for dst in targets:
            if dst == root:
                continue
            dst_part = part_of(dst, layers)
            if dst_part is None:
                unplaced.add(dst)
            elif layers[src_part] < layers[dst_part] or (
                src_part != dst_part and frozenset({src_part, dst_part}) in apart
            ):
                bad.add((src, dst))
    return bad, unplaced


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan), leaving out the edges
    from a package ``__init__`` to its own submodules."""
    edges = {
        src: sorted(dst for dst in targets if not dst.startswith(src + "."))
        for src, targets in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def cycle_path(component: frozenset[str], graph: Mapping[str, Iterable[str]]) -> str:
    """One shortest cycle through the component's first module: ``a -> b -> a``."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return " -> ".join([start, *reversed(path[:-1]), start])
            if nxt in component and nxt not in came_from and not nxt.startswith(node + "."):
                came_from[nxt] = node
                queue.append(nxt)
    return " <-> ".join(sorted(component))


def _llmrec_graph() -> dict[str, set[str]]:
    return import_graph(REPO / "llmrec", ROOT_MODULE)


# --------------------------------------------------------------------------- the package
def test_every_module_belongs_to_a_layer_and_imports_only_downwards() -> None:
    bad, unplaced = layer_violations(_llmrec_graph())
    assert not unplaced, (
        f"modules in no layer: {sorted(unplaced)}; add their part to LAYERS in {__file__}"
    )
    new = sorted(bad - KNOWN_VIOLATIONS)
    lines = [
        f"  {src} (layer {LAYERS[part_of(src)]}) -> {dst} (layer {LAYERS[part_of(dst)]})"
        for src, dst in new
    ]
    assert not new, (
        "imports that break the layer order (a module imports only its own layer and lower "
        "ones; prompts and retrieval never each other):\n"
        + "\n".join(lines)
        + "\nmove the shared code down a layer (records and rendering live in llmrec.data)"
    )


def test_no_import_cycles() -> None:
    graph = _llmrec_graph()
    new = [c for c in import_cycles(graph) if c not in KNOWN_CYCLES]
    assert not new, "import cycles between modules:\n" + "\n".join(
        f"  {cycle_path(c, graph)}" for c in sorted(new, key=sorted)
    )


def test_allowances_are_still_needed() -> None:
    graph = _llmrec_graph()
    bad, _ = layer_violations(graph)
    cycles = set(import_cycles(graph))
    stale = [f"KNOWN_VIOLATIONS {src} -> {dst}" for src, dst in sorted(KNOWN_VIOLATIONS - bad)]
    stale += [f"KNOWN_CYCLES {sorted(c)}" for c in sorted(KNOWN_CYCLES - cycles, key=sorted)]
    assert not stale, "fixed, so delete these allowances in test_layering.py:\n" + (
        "\n".join(f"  {s}" for s in stale)
    )


def test_no_test_module_imports_another() -> None:
    """Tests share helpers through ``tests/fakes.py`` and conftest fixtures, never by importing
    a ``test_*`` module or a ``conftest``."""
    graph = import_graph(REPO / "tests", "tests")
    bad = sorted(
        f"  {src} -> {dst}"
        for src, targets in graph.items()
        for dst in targets
        if dst.rpartition(".")[2].startswith("test_") or dst.rpartition(".")[2] == "conftest"
    )
    assert not bad, "test modules importing test modules (move the helper to tests/fakes.py):\n" + (
        "\n".join(bad)
    )


# --------------------------------------------------------------------------- the checker
def test_imports_of_sees_lazy_type_checking_relative_and_dynamic_imports() -> None:
    source = """
from typing import TYPE_CHECKING
import llmrec.io
from llmrec.data.records import Item
from . import sibling
from ..prompts import builder
if TYPE_CHECKING:
    from llmrec.models.loader import load_model

def later():
    import llmrec.ranking.scorer
    from llmrec.retrieval import registry
    importlib.import_module("llmrec.cli.main")
"""
    known = {"llmrec.retrieval.sibling", "llmrec.prompts.builder", "llmrec.retrieval.registry"}
    found = imports_of(source, "llmrec.retrieval.text", known=known)
    assert found == {
        "typing",
        "llmrec.io",
        "llmrec.data.records",
        "llmrec.retrieval.sibling",
        "llmrec.prompts.builder",
        "llmrec.models.loader",
        "llmrec.ranking.scorer",
        "llmrec.retrieval.registry",
        "llmrec.cli.main",
    }
    # in a package __init__, "." is the package itself
    assert imports_of("from .records import Item", "llmrec.data", is_package=True) == {
        "llmrec.data.records"
    }


def test_layer_violations_flag_upward_and_apart_imports_only() -> None:
    graph = {
        "llmrec.data.render": {"llmrec.io", "llmrec.data.records", "llmrec.retrieval.text"},
        "llmrec.prompts.builder": {"llmrec.retrieval.candidates", "llmrec.evaluation.metrics"},
        "llmrec.retrieval.text": {"llmrec.prompts.templates", "llmrec.retrieval.index"},
        "llmrec.ranking.scorer": {"llmrec.prompts", "llmrec.models.loader", "llmrec"},
        "llmrec.io": {"llmrec.fetch"},
        "llmrec": {"llmrec.cli.main"},  # the root may import anything
        "llmrec.plugins.extra": {"llmrec.io"},  # in no layer
        "llmrec.models.loader": {"llmrec.unknown"},
    }
    bad, unplaced = layer_violations(graph)
    assert bad == {
        ("llmrec.data.render", "llmrec.retrieval.text"),
        ("llmrec.prompts.builder", "llmrec.retrieval.candidates"),
        ("llmrec.retrieval.text", "llmrec.prompts.templates"),
    }
    assert unplaced == {"llmrec.plugins.extra", "llmrec.unknown"}


def test_import_cycles_are_found_and_package_inits_are_not_cycles() -> None:
    graph = {
        "llmrec.retrieval.fusion": {"llmrec.retrieval.registry"},
        "llmrec.retrieval.registry": {"llmrec.retrieval.fusion", "llmrec.baselines"},
        "llmrec.baselines": {"llmrec.baselines.sasrec"},  # __init__ -> own submodule: ignored
        "llmrec.baselines.sasrec": {"llmrec.baselines"},
        "llmrec.cli.a": {"llmrec.cli.b"},
        "llmrec.cli.b": {"llmrec.cli.c"},
        "llmrec.cli.c": {"llmrec.cli.a", "llmrec.io"},
        "llmrec.io": set(),
    }
    cycles = import_cycles(graph)
    assert sorted(cycles, key=sorted) == [
        frozenset({"llmrec.cli.a", "llmrec.cli.b", "llmrec.cli.c"}),
        frozenset({"llmrec.retrieval.fusion", "llmrec.retrieval.registry"}),
    ]
    three = frozenset({"llmrec.cli.a", "llmrec.cli.b", "llmrec.cli.c"})
    assert (
        cycle_path(three, graph) == "llmrec.cli.a -> llmrec.cli.b -> llmrec.cli.c -> llmrec.cli.a"
    )
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_reads_a_package_from_disk(tmp_path: Path) -> None:
    pkg = tmp_path / "llmrec"
    (pkg / "data").mkdir(parents=True)
    (pkg / "retrieval").mkdir()  # a namespace package, as llmrec.retrieval is
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from llmrec.data.records import Item\n")
    (pkg / "data" / "records.py").write_text("import numpy\nimport llmrec\n")
    (pkg / "retrieval" / "view.py").write_text(
        "def f():\n    from llmrec import data\n    from llmrec.retrieval import other\n"
    )
    (pkg / "retrieval" / "other.py").write_text("from .view import f\n")
    graph = import_graph(pkg, "llmrec")
    assert graph == {
        "llmrec": set(),
        "llmrec.data": {"llmrec.data.records"},
        "llmrec.data.records": {"llmrec"},
        "llmrec.retrieval.view": {"llmrec.data", "llmrec.retrieval.other"},
        "llmrec.retrieval.other": {"llmrec.retrieval.view"},
    }
    assert import_cycles(graph) == [frozenset({"llmrec.retrieval.other", "llmrec.retrieval.view"})]
