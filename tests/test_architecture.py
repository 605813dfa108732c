"""The house rules of docs/architecture.md, read from the source: which part may import which, and
no import cycles. Every import counts, at module level or inside a function (a function-level
import only hides a cycle until that function runs); imports under ``if TYPE_CHECKING:`` do not,
as they never run. The registry's check modules (imported by name) count as its imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Which parts of dsaudit each part may import (itself always). A part is a module or a package;
# the longest matching name applies. Third-party imports are not restricted here.
ALLOWED: dict[str, set[str]] = {
    "dsaudit.findings": set(),
    "dsaudit.stats": set(),
    "dsaudit.threads": set(),
    "dsaudit.analysis": set(),
    # the scheduler address is checked when the configuration loads, without importing Dask, and
    # --split names are read as the layout reads split folder names
    "dsaudit.config": {"dsaudit.findings", "dsaudit.index.dask_engine", "dsaudit.index.splits"},
    # content.properties: the per-image content properties measured in the worker's one decode
    "dsaudit.index": {"dsaudit.findings", "dsaudit.config", "dsaudit.threads", "dsaudit.safe_write",
                      "dsaudit.content.properties"},
    "dsaudit.safe_write": {"dsaudit.index"},          # reports and the cache refuse the same targets
    "dsaudit.signals": set(),
    "dsaudit.loaders": {"dsaudit.findings", "dsaudit.config", "dsaudit.index"},
    "dsaudit.similarity": {"dsaudit.findings", "dsaudit.config", "dsaudit.analysis", "dsaudit.index",
                           "dsaudit.threads"},
    "dsaudit.probe": {"dsaudit.findings", "dsaudit.config", "dsaudit.analysis", "dsaudit.index",
                      "dsaudit.similarity", "dsaudit.threads"},
    # the Keras tail split of a pool (--validation-split), simulated as the batch checks simulate it
    "dsaudit.probe.analysis": {"dsaudit.findings", "dsaudit.config", "dsaudit.analysis", "dsaudit.index",
                               "dsaudit.similarity", "dsaudit.threads", "dsaudit.probe", "dsaudit.checks.balance"},
    "dsaudit.content": {"dsaudit.findings", "dsaudit.config", "dsaudit.analysis", "dsaudit.index",
                        "dsaudit.similarity", "dsaudit.probe", "dsaudit.stats", "dsaudit.threads"},
    "dsaudit.checks": {"dsaudit.findings", "dsaudit.config", "dsaudit.analysis", "dsaudit.index",
                       "dsaudit.similarity", "dsaudit.probe", "dsaudit.content", "dsaudit.stats"},
    "dsaudit.policy": {"dsaudit.findings"},
    "dsaudit.render": {"dsaudit.findings"},
    "dsaudit.demo": set(),
    # the report formats and their writer, for the CLI and the API (renderers imported by name)
    "dsaudit.reports": {"dsaudit.findings", "dsaudit.safe_write", "dsaudit.render"},
    "dsaudit.option_notes": {"dsaudit.findings", "dsaudit.config", "dsaudit.index", "dsaudit.checks"},
    # render.gallery: the renderer's choice of the images it shows, for which the scan makes thumbnails
    "dsaudit.pipeline": {"dsaudit", "dsaudit.findings", "dsaudit.config", "dsaudit.analysis", "dsaudit.index",
                         "dsaudit.checks", "dsaudit.policy", "dsaudit.option_notes", "dsaudit.loaders",
                         "dsaudit.render.gallery"},
}
# the top: may import anything of dsaudit (cli.py is the only typer user)
TOP = ("dsaudit", "dsaudit.cli", "dsaudit.api", "dsaudit.__main__")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "dsaudit").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str) -> set[str]:
    """The dsaudit modules that module `name` imports, anywhere in it."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)

        def visit_Assign(self, node: ast.Assign) -> None:  # the registry's CHECK_MODULES tuple
            if name == "dsaudit.checks.registry" and any(getattr(t, "id", "") == "CHECK_MODULES"
                                                         for t in node.targets):
                found.update(c.value for c in ast.walk(node.value)
                             if isinstance(c, ast.Constant) and isinstance(c.value, str))
            self.generic_visit(node)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def _part(name: str) -> str | None:
    best = None
    for part in ALLOWED:
        if (name == part or name.startswith(part + ".")) and (best is None or len(part) > len(best)):
            best = part
    return best


def _within(target: str, parts: set[str]) -> bool:
    """`target` is one of `parts`, inside one (the root package `dsaudit` only as itself), or the
    package holding one (importing a module runs its package's __init__ first)."""
    return any(target == p or (p != "dsaudit" and target.startswith(p + ".")) or
               (target != "dsaudit" and p.startswith(target + ".")) for p in parts)


def test_every_module_has_a_place_in_the_rules():
    homeless = [m for m in MODULES if m not in TOP and _part(m) is None]
    assert not homeless, f"add these to ALLOWED here and to docs/architecture.md: {homeless}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m not in TOP))
def test_imports_follow_the_rules(name):
    part = _part(name)
    allowed = ALLOWED.get(part, set()) | {part}
    wrong = sorted(t for t in GRAPH[name] if not _within(t, allowed))
    assert not wrong, f"{name} ({part}) imports {wrong}; see docs/architecture.md"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(GRAPH) == [], "an import cycle; see docs/architecture.md for how the last ones were taken apart"


def test_the_cycle_finder_finds_a_hidden_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert "dsaudit.checks.duplicates" in GRAPH["dsaudit.checks.registry"]   # imported by name


CHECK_ID = re.compile(r"^DSA\d")


def _id_tests(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, literal) of every comparison or startswith/endswith against a check-ID literal."""
    found = []
    for node in ast.walk(tree):
        literals: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            literals = [node.left, *node.comparators]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith")):
            literals = list(node.args)
        for lit in literals:
            for c in ast.walk(lit):
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and CHECK_ID.match(c.value):
                    found.append((node.lineno, c.value))
    return found


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("dsaudit.render")))
def test_renderers_never_test_check_ids(name):
    """A renderer shows what checks declared (Check.display in the evidence, Check.family in
    meta["checks"]); a renderer that tests an ID breaks when a check is added or renumbered."""
    found = _id_tests(ast.parse(MODULES[name].read_text(encoding="utf-8")))
    assert not found, f"{name} tests check IDs at {found}; declare it on the check instead"


def test_the_id_test_finder_finds_one():
    assert _id_tests(ast.parse('x = f.check_id == "DSA203" or f.check_id.startswith("DSA4")')) == [
        (1, "DSA203"), (1, "DSA4")]


def _artifact_reads(tree: ast.AST) -> list[int]:
    """Lines that read ``<something>.artifacts`` (a subscript load, .get, or `in` test)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            target = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            target = node.func.value
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            target = node.comparators[0]
        else:
            continue
        if isinstance(target, ast.Attribute) and target.attr == "artifacts":
            found.append(node.lineno)
    return found


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith(("dsaudit.checks", "dsaudit.content",
                                                                          "dsaudit.similarity", "dsaudit.probe"))))
def test_checks_share_results_through_analyses_not_artifacts(name):
    """What one check measures for another is an Analysis (declared, computed once, timed); a check
    that reads ctx.artifacts depends on another check having run first, which --select breaks."""
    found = _artifact_reads(ast.parse(MODULES[name].read_text(encoding="utf-8")))
    assert not found, f"{name} reads ctx.artifacts at lines {found}; make it an Analysis"


def test_the_artifact_read_finder_finds_them():
    tree = ast.parse('a = ctx.artifacts["k"]\nb = ctx.artifacts.get("k")\nc = "k" in ctx.artifacts\n'
                     'ctx.artifacts["k"] = 1')
    assert _artifact_reads(tree) == [1, 2, 3]
