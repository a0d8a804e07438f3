"""The floor plan (docs/layout.md), checked over the import graph of ``src/gr2``: every ``import`` and
``from … import`` of a gr2 module, at module level or inside a function, plus the stage functions
the pipeline names as strings (:data:`gr2.stages.STAGES`).

* no import cycle between modules;
* a pipeline stage imports no other stage (the stages are peers that share the libraries below);
* the libraries and the dataset layer import no stage and nothing above them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from gr2.stages import RATING, SLATE_STAGES, STAGES

SRC = Path(__file__).resolve().parents[2] / "src"

#: The pipeline's stages: peers that never import one another.
STAGE_PACKAGES = {"sid", "candidates", "midtrain", "traces", "sft", "rl", "eval", "slates", "rating"}
#: The run's dataset (the first stage; every stage reads its split), above the libraries.
FOUNDATION = {"data"}
#: What the stages are built from; they import no stage and nothing above them.
LIBRARIES = {"checks", "fingerprints", "runs", "reuse", "_lazy", "lists", "training", "metrics", "llm", "prompts", "rerank",
             "prerank"}
#: What composes the stages: configuration, the pipeline, report, serving, command line.
TOP = {"gr2", "config", "stages", "pipeline", "report", "variants", "serve", "cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def gr2_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (SRC / "gr2").rglob("*.py")}


def imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import node brings in (``from a import b`` gives ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    return [target, *(f"{target}.{a.name}" for a in node.names)]


def import_graph() -> dict[str, set[str]]:
    """``{module: gr2 modules it imports}``, each import resolved to the deepest module it names."""
    modules = gr2_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in imported(node, module, path.name == "__init__.py"):
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    for stage in (*STAGES, *SLATE_STAGES.values(), RATING):
        graph["gr2.pipeline"].add(stage.function.partition(":")[0])
    return graph


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gr2"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_package_has_a_place_in_the_plan():
    packages = {package(m) for m in gr2_modules()}
    assert packages == STAGE_PACKAGES | FOUNDATION | LIBRARIES | TOP, "add the new package to a layer"


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_a_stage_imports_no_other_stage(graph):
    wrong = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                   if package(a) in STAGE_PACKAGES and package(b) in STAGE_PACKAGES and package(a) != package(b))
    assert wrong == []


def test_libraries_and_data_import_no_stage_and_nothing_above(graph):
    above = {"libraries": STAGE_PACKAGES | FOUNDATION | TOP, "data": STAGE_PACKAGES | TOP}
    wrong = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                   if (package(a) in LIBRARIES and package(b) in above["libraries"])
                   or (package(a) in FOUNDATION and package(b) in above["data"]))
    assert wrong == []


def test_the_graph_sees_function_level_imports_and_stage_names():
    """The checks above would pass vacuously on a graph that missed imports inside functions."""
    g = import_graph()
    assert "gr2.data.stage" in g["gr2.pipeline"], "the stage table's strings are edges"
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "gr2.training.dapo" in g["gr2.rl.stage"], "imports inside train_rl are seen"
