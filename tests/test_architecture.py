"""The import graph of preflight/ and runner/, computed from the source: the house's arrows.

- No cycles, counting imports inside functions too (an in-function import hides a cycle, it does
  not remove it). Imports under ``if TYPE_CHECKING:`` are for the type checker only and do not count.
- preflight never imports runner: the check path must work where torch and Ray are not installed,
  and the runner depends on preflight (the spec, the gate, the run directory's names), not back.
- An import of the project's own module inside a function is allowed only at a heavy boundary, where
  the imported module brings torch, Ray, Textual or transformers along (``preflight check`` must not
  pay for them), and it says why in a comment on its line or the line above.
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from preflight.rundir import EVENT_TYPES

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("preflight", "runner")
HEAVY = ("torch", "ray", "textual", "transformers", "accelerate")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (project module, or a third-party top-level name)
    line: int
    in_function: bool
    commented: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return hidden


def _function_nodes(tree: ast.Module) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return inside


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom,
             modules: dict[str, Path]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        full = ".".join(base + ([node.module] if node.module else []))
    else:
        full = node.module or ""
    for alias in node.names:
        candidate = f"{full}.{alias.name}"
        yield candidate if candidate in modules else full


def _project_module(name: str, modules: dict[str, Path]) -> str | None:
    if name.split(".")[0] not in PACKAGES:
        return None
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in modules else None


@functools.cache
def _imports() -> tuple[Import, ...]:
    """Parsed once for the whole module: every test reads the same graph."""
    return tuple(_parse_imports(_modules()))


def _parse_imports(modules: dict[str, Path]) -> list[Import]:
    found: list[Import] = []
    for module, path in modules.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        hidden, inside = _type_checking_nodes(tree), _function_nodes(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in hidden:
                continue
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            commented = "#" in here or above.startswith("#")
            for target in _targets(module, path.name == "__init__.py", node, modules):
                project = _project_module(target, modules)
                found.append(Import(module, project or target.split(".")[0], node.lineno,
                                    id(node) in inside, commented))
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _heavy_modules(imports: tuple[Import, ...]) -> set[str]:
    """Project modules whose module-level imports bring a heavy package along (transitively)."""
    top = [i for i in imports if not i.in_function]
    heavy = {i.source for i in top if i.target in HEAVY}
    while True:
        more = {i.source for i in top if i.target in heavy} - heavy
        if not more:
            return heavy
        heavy |= more


def _project_edges(modules: dict[str, Path], imports: tuple[Import, ...]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for i in imports:
        if i.target in modules and i.target != i.source:
            edges[i.source].add(i.target)
    return edges


def test_the_import_graph_has_no_cycles() -> None:
    modules = _modules()
    cycles = _cycles(_project_edges(modules, _imports()))
    assert cycles == [], "import cycles (in-function imports included): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_preflight_never_imports_runner() -> None:
    wrong = [f"{i.source}:{i.line} imports {i.target}" for i in _imports()
             if i.source.startswith("preflight") and i.target.split(".")[0] == "runner"]
    assert wrong == []


def test_in_function_project_imports_only_at_heavy_boundaries_with_a_reason() -> None:
    modules = _modules()
    imports = _imports()
    heavy = _heavy_modules(imports)
    lazy = [i for i in imports if i.in_function and i.target in modules]
    not_heavy = [f"{modules[i.source].relative_to(REPO)}:{i.line} imports {i.target}" for i in lazy
                 if i.target not in heavy]
    unexplained = [f"{modules[i.source].relative_to(REPO)}:{i.line} imports {i.target}" for i in lazy
                   if i.target in heavy and not i.commented]
    assert not_heavy == [], ("in-function imports of light project modules (import them at the top "
                             "of the module): " + ", ".join(not_heavy))
    assert unexplained == [], ("in-function imports without a one-line reason (a comment on the line "
                               "or above it): " + ", ".join(unexplained))


def test_the_graph_reader_sees_what_it_must() -> None:
    """The checks above cannot pass by reading nothing: the graph has the edges everyone knows of."""
    modules = _modules()
    edges = _project_edges(modules, _imports())
    assert len(modules) > 80
    assert "preflight.spec" in edges["runner.authorize"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "runner.train" in _heavy_modules(_imports())


def test_the_event_schema_lists_exactly_the_run_directorys_event_types() -> None:
    """The schema file cannot import EVENT_TYPES, so the two are held equal here."""
    schema = json.loads((REPO / "schemas" / "event.schema.json").read_text(encoding="utf-8"))
    assert schema["properties"]["type"]["enum"] == list(EVENT_TYPES)
