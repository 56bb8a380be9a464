"""The layers hold: the library < tinyuki/tasks/ (the stages) < the doit glue < dodo.py, bench/.

The library is tinyuki/ without its stages and glue; the glue is tinyuki/cli/ with tinyuki/dodo.py (what a
project's dodo.py imports) and tinyuki/main.py (the `tinyuki` command).

- tinyuki/ and tasks/ load without doit, each module on its own, in a fresh interpreter;
- the project's imports (module-level and inside functions) form no cycle;
- tinyuki/ and tasks/ import nothing inside functions that dodges a cycle
  (a project module, doit), and tinyuki/ imports nothing inside functions at all
  outside `if TYPE_CHECKING:`;
- no layer imports one above it.

The modules are found by walking the packages, so a new one is checked too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("tinyuki", "bench", "dodo", "tests")  # top-level names that are the project's own
# the doit glue inside the package: the `cli` layer
GLUE = ("tinyuki.cli", "tinyuki.dodo", "tinyuki.main")
# what each layer must never import (production code never imports the tests either)
FORBIDDEN = {
    "tinyuki": ("tasks", "cli", "bench", "dodo", "tests"),
    "tasks": ("cli", "bench", "dodo", "tests"),
    "cli": ("bench", "dodo", "tests"),
}


# ---------------------------------------------------------------- the modules

def layer_of(name: str) -> str:
    """The layer of a dotted module name: tinyuki (the library), tasks, cli, or the top-level name."""
    if name == "tinyuki.tasks" or name.startswith("tinyuki.tasks."):
        return "tasks"
    if any(name == glue or name.startswith(glue + ".") for glue in GLUE):
        return "cli"
    return name.split(".")[0]


def modules(package: str) -> dict[str, Path]:
    """Every module of a package, by walking its directories: dotted name -> file."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def parsed() -> dict[str, Path]:
    """The modules whose imports are checked: the tinyuki package (every layer of it) and dodo.py."""
    found = dict(modules("tinyuki"))
    found["dodo"] = ROOT / "dodo.py"
    return found


def layer_modules(*layers: str) -> list[str]:
    """The parsed modules of these layers, in the order of their files."""
    return [name for name in parsed() if layer_of(name) in layers]


def is_module(name: str) -> bool:
    """Whether a dotted name is a module or package of the project (a file, not a name inside one)."""
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


# ---------------------------------------------------------------- the imports

@dataclass(frozen=True)
class Import:
    module: str  # the module that imports
    path: Path
    line: int
    target: str  # the module imported: `from pkg import mod` is pkg.mod when mod is a module
    statement: str
    function: str | None  # the enclosing function, None at module level (class bodies count as module level)
    type_checking: bool  # under `if TYPE_CHECKING:`

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    @property
    def layer(self) -> str:
        return layer_of(self.module)

    @property
    def target_layer(self) -> str:
        return layer_of(self.target)

    def __str__(self) -> str:
        where = f" in {self.function}()" if self.function else ""
        return f"{self.path.relative_to(ROOT)}:{self.line}: `{self.statement}`{where}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, source: str) -> None:
        self.module, self.path, self.source = module, path, source
        self.package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.scopes: list[tuple[str, bool]] = []  # (name, is a function)
        self.type_checking = 0
        self.found: list[Import] = []

    def _scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, function: bool) -> None:
        self.scopes.append((node.name, function))
        self.generic_visit(node)
        self.scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scope(node, True)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scope(node, True)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope(node, False)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.type_checking += 1
        for child in node.body:
            self.visit(child)
        self.type_checking -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.package.split(".")
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([node.module] if node.module else [])])
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(node, sub if alias.name != "*" and is_module(sub) else base)

    def _add(self, node: ast.Import | ast.ImportFrom, target: str) -> None:
        function = ".".join(name for name, _ in self.scopes) if any(f for _, f in self.scopes) else None
        statement = " ".join((ast.get_source_segment(self.source, node) or "").split())
        self.found.append(Import(self.module, self.path, node.lineno, target, statement, function,
                                 self.type_checking > 0))


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    path = parsed()[module]
    source = path.read_text()
    collector = _Collector(module, path, source)
    collector.visit(ast.parse(source, str(path)))
    return tuple(collector.found)


def imports(*layers: str) -> list[Import]:
    """Every import statement's targets in the parsed modules of these layers (all of them without any)."""
    return [imp for module in parsed() if not layers or layer_of(module) in layers
            for imp in imports_of(module)]


def listing(problems: Iterable[object]) -> str:
    return "\n".join(f"  {p}" for p in problems)


# ---------------------------------------------------------------- no doit below cli/

# Imports each module named on the command line, in order, and prints JSON: for
# the modules after which doit is loaded for the first time, the project's
# frames that were importing when doit was asked for; for a module that fails
# to import, the error.
IMPORT_SCRIPT = r"""
import importlib, json, sys, traceback

root = sys.argv[1]

class Spy:
    chain = None

    def find_spec(self, name, path=None, target=None):
        if Spy.chain is None and name.split(".")[0] == "doit":
            Spy.chain = [f"{f.filename[len(root) + 1:]}:{f.lineno}" for f in traceback.extract_stack()
                         if f.filename.startswith(root + "/")]
        return None

sys.meta_path.insert(0, Spy())
report = {"doit": {}, "errors": {}}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except BaseException as err:
        report["errors"][name] = f"{type(err).__name__}: {err}"
    if "doit" in sys.modules and Spy.chain is not None:
        report["doit"][name] = Spy.chain
        Spy.chain = []
print(json.dumps(report))
"""


def import_in_fresh_interpreter(names: list[str]) -> dict[str, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, str(ROOT), *names], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_library_and_stages_load_without_doit() -> None:
    names = layer_modules("tinyuki", "tasks")
    assert "tinyuki.stage" in names and "tinyuki.tasks.kernel" in names
    report = import_in_fresh_interpreter(names)
    if not report["doit"] and not report["errors"]:
        return
    # doit loaded once hides whoever loads it later: from the first offender on, each module alone
    first = min(names.index(n) for n in [*report["doit"], *report["errors"]])
    doit: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for name in names[first:]:
        alone = import_in_fresh_interpreter([name])
        doit.update(alone["doit"])
        errors.update(alone["errors"])
    # grouped by the import statement that loads doit, with the shortest way there
    ways: dict[str, list[tuple[str, list[str]]]] = {}
    for name, chain in doit.items():
        ways.setdefault(chain[-1] if chain else "?", []).append((name, chain))
    problems = [f"doit is imported at {where}, which {len(found)} module(s) load: "
                f"{', '.join(name for name, _ in found)}; the shortest way: "
                f"{' -> '.join(min((chain for _, chain in found), key=len))}" for where, found in ways.items()]
    problems += [f"{name} cannot be imported on its own: {err}" for name, err in errors.items()]
    assert not problems, "the library and the stages must load without doit (its glue is tinyuki/cli/):\n" \
        + listing(problems)


# ---------------------------------------------------------------- no cycles

def graph() -> dict[str, dict[str, Import]]:
    """module -> {module it imports: the first statement that does}, over the parsed modules."""
    edges: dict[str, dict[str, Import]] = {name: {} for name in parsed()}
    for imp in imports():
        target = imp.target
        while target and target not in parsed():  # `import pkg.mod.name` style: the nearest module parsed
            target = target.rpartition(".")[0]
        if target:
            edges[imp.module].setdefault(target, imp)
    return edges


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One cycle (as a closed path) through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges[v]:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_closed_path(group, edges) for group in groups]


def _closed_path(group: list[str], edges: dict[str, dict[str, Import]]) -> list[str]:
    """The shortest path from the group's first module back to itself, inside the group."""
    start = group[0]
    paths = {w: [start, w] for w in edges[start] if w in group}
    todo = list(paths)
    while start not in paths:
        v = todo.pop(0)
        for w in edges[v]:
            if w in group and w not in paths:
                paths[w] = [*paths[v], w]
                todo.append(w)
    return paths[start]


def test_no_import_cycles() -> None:
    edges = graph()
    assert "tinyuki.dodo" in edges["dodo"] and "tinyuki.stage" in edges["tinyuki.tasks.kernel"], \
        "the import graph looks empty"
    found = cycles(edges)
    report = [" -> ".join(path) + "\n" + "\n".join(f"    {edges[a][b]}" for a, b in pairwise(path))
              for path in found]
    assert not found, "import cycles (each import on the way shown below it):\n" + listing(report)


# ---------------------------------------------------------------- no imports inside functions

def test_no_function_level_imports_of_the_project_or_doit_in_library_and_stages() -> None:
    """Importing a project module (or doit) inside a function is how a cycle or a layer breach hides."""
    problems = [f"{imp} imports {'doit' if imp.top == 'doit' else 'a project module'} inside a function"
                for imp in imports("tinyuki", "tasks")
                if imp.function is not None and imp.top in (*PROJECT, "doit")]
    assert not problems, "move these imports to the top of the module:\n" + listing(problems)


def test_no_function_level_imports_in_the_library() -> None:
    """tinyuki/ imports the standard library and third-party packages at the top too (TYPE_CHECKING aside)."""
    problems = [f"{imp} imports {imp.top} inside a function" for imp in imports("tinyuki")
                if imp.function is not None and imp.top not in (*PROJECT, "doit") and not imp.type_checking]
    assert not problems, "move these imports to the top of the module:\n" + listing(problems)


# ---------------------------------------------------------------- layer order

def test_no_layer_imports_one_above_it() -> None:
    problems = [f"{imp}: the {imp.layer} layer must not import {imp.target_layer}" for imp in imports(*FORBIDDEN)
                if imp.target_layer in FORBIDDEN[imp.layer]]
    assert not problems, ("library < tasks < cli (tinyuki/cli, tinyuki/dodo.py, tinyuki/main.py) < dodo.py, bench/:"
                          " a layer imports only those below it:\n" + listing(problems))


def test_the_import_parser_sees_every_kind_of_import() -> None:
    """Relative, submodule, function-level and TYPE_CHECKING imports are all resolved as Python would."""
    found = {(i.target, i.function, i.type_checking) for i in imports("tasks", "cli", "tinyuki")}
    assert ("tinyuki.tasks.configure", None, False) in found  # `from tinyuki.tasks import configure`: the module
    assert ("tinyuki.tasks", None, False) in found  # `from tinyuki.tasks import PIPELINE` names the package
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from . import fs\n"
        "from ..cache import keys as k\n"
        "from ..stage import Stage\n"
        "import tinyuki.formats.cpio\n"
        "if TYPE_CHECKING:\n"
        "    from tasks import PIPELINE\n"
        "else:\n"
        "    import json\n"
        "class C:\n"
        "    import os\n"
        "    def m(self):\n"
        "        import doit.tools\n"
    )
    collector = _Collector("tinyuki.util.fake", ROOT / "tinyuki" / "util" / "fake.py", source)
    collector.visit(ast.parse(source))
    got = [(i.target, i.function, i.type_checking) for i in collector.found]
    assert got == [("__future__", None, False), ("typing", None, False), ("tinyuki.util.fs", None, False),
                   ("tinyuki.cache.keys", None, False), ("tinyuki.stage", None, False),
                   ("tinyuki.formats.cpio", None, False), ("tasks", None, True), ("json", None, False),
                   ("os", None, False), ("doit.tools", "C.m", False)], got
