"""The shape of the package, read from its imports (ast; nothing is imported to check it).

- no cycle among ``toolchain`` modules: a module-level or in-function import is an edge, an import
  under ``TYPE_CHECKING`` is not (it never runs); importing ``a.b.c`` runs ``a`` and ``a.b`` too;
- the leaf layer ``toolchain.core`` imports nothing of the toolchain but itself, ``errors`` and
  ``log``; the report registry (``toolchain.records``) imports no stage;
- a stage never imports another stage's private names (``_name``) or its command line (``cli``);
- an import of a toolchain module inside a function is the exception: at most
  :data:`MAX_DEFERRED`, each with its reason in a comment on the line or the line above.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toolchain"
STAGES = ("source", "builder", "verify", "models", "convert", "coverage", "oracle", "dryrun", "doctor")
CORE_MAY_IMPORT = ("toolchain.core", "toolchain.errors", "toolchain.log")
MAX_DEFERRED = 15


@dataclass(frozen=True)
class Import:
    importer: str
    line: int
    target: str  # a toolchain module
    names: tuple[str, ...]  # the names taken from it (empty for `import x` / a submodule)
    deferred: bool  # inside a function
    reason: bool  # a comment on the line or the line above


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports() -> list[Import]:
    out: list[Import] = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            deferred = type_checking = False
            up: ast.AST = node
            while up in parents:
                up = parents[up]
                deferred |= isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef)
                type_checking |= isinstance(up, ast.If) and "TYPE_CHECKING" in ast.unparse(up.test)
            if type_checking:
                continue
            span = lines[node.lineno - 2 : node.end_lineno or node.lineno]
            reason = any("#" in line for line in span)
            for target, names in _targets(name, path, node):
                out.append(Import(name, node.lineno, target, names, deferred, reason))
    return out


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[tuple[str, tuple[str, ...]]]:
    if isinstance(node, ast.Import):
        return [(a.name, ()) for a in node.names if a.name in MODULES]
    if node.level:
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    if module not in MODULES:
        return []
    submodules = [(f"{module}.{a.name}", ()) for a in node.names if f"{module}.{a.name}" in MODULES]
    names = tuple(a.name for a in node.names if f"{module}.{a.name}" not in MODULES)
    return [*submodules, *([(module, names)] if names else [])]


IMPORTS = _imports()


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        parts = imp.target.split(".")
        for i in range(2, len(parts) + 1):  # importing a.b.c runs a.b (and a) first
            ancestor = ".".join(parts[:i])
            own_package = imp.importer == ancestor or imp.importer.startswith(ancestor + ".")
            if ancestor in MODULES and (ancestor == imp.target or not own_package):
                edges[imp.importer].add(ancestor)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
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
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_the_graph_reader_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_toolchain_modules() -> None:
    assert len(MODULES) > 100 and len(IMPORTS) > 300  # the reader found the package
    assert _cycles(_edges()) == []


def test_core_imports_no_stage() -> None:
    offenders = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if imp.importer.startswith("toolchain.core")
        and not any(imp.target == ok or imp.target.startswith(ok + ".") for ok in CORE_MAY_IMPORT)
    ]
    assert offenders == []


def test_the_report_registry_imports_no_stage() -> None:
    offenders = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if imp.importer == "toolchain.records" and _stage(imp.target)
    ]
    assert offenders == []


def test_no_stage_imports_another_stages_private_names_or_its_command_line() -> None:
    offenders = []
    for imp in IMPORTS:
        mine, theirs = _stage(imp.importer), _stage(imp.target)
        if theirs is None or mine == theirs:
            continue
        private = [n for n in imp.names if n.startswith("_")]
        if private or imp.target.endswith(".cli"):
            offenders.append(f"{imp.importer}:{imp.line} imports {imp.target} {private or ''}")
    assert offenders == []


def test_imports_inside_functions_are_few_and_say_why() -> None:
    deferred = {(imp.importer, imp.line): imp for imp in IMPORTS if imp.deferred}
    unexplained = [f"{m}:{line}" for (m, line), imp in deferred.items() if not imp.reason]
    assert unexplained == [], "an import inside a function says why it is not at the top"
    assert len(deferred) <= MAX_DEFERRED, sorted(f"{m}:{line}" for m, line in deferred)
