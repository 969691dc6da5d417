"""The architecture of docs/ARCHITECTURE.md, checked on the source with ``ast``.

Four packages, one direction of imports: ``airlock`` imports nothing of ours,
``keys`` only ``airlock``, ``bundler`` and ``agent`` stand on both and never
on each other (imports inside functions count: a device must run the agent
without the bundler installed). No import circle among the product modules,
every module says what it is for in a docstring, and no ``utils.py``.

And the prose keeps up with the tree: every repository path that README.md,
docs/ and the code's docstrings and comments name must exist.

The tests import the code under test and their helpers one way (pytest's
``pythonpath``, the repository root): never from a conftest.py, never by
editing ``sys.path``.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("airlock", "keys", "bundler", "agent")
OURS = frozenset({*PACKAGES, "tests", "scripts"})  # top-level names that are this repository's

# What each package may import of ours (docs/ARCHITECTURE.md, the arrows).
MAY_IMPORT = {
    "airlock": {"airlock"},
    "keys": {"airlock", "keys"},
    "bundler": {"airlock", "keys", "bundler"},
    "agent": {"airlock", "keys", "agent"},
}


@dataclass(frozen=True)
class Import:
    importer: str  # module doing the import, e.g. "agent.install"
    path: Path
    line: int
    target: str  # the module imported, resolved, e.g. "keys.trust"
    at_import_time: bool  # module level (not in a function, not under TYPE_CHECKING)
    type_only: bool  # under TYPE_CHECKING: never runs

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _python_files(*tops: str) -> Iterator[Path]:
    for top in tops:
        for path in sorted((REPO / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    """Every product module by dotted name (a package by its own name)."""
    return {_module_name(p): p for p in _python_files(*PACKAGES)}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path) -> None:
        self.module, self.path = module, path
        self.package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.depth = 0  # inside how many functions
        self.type_checking = 0
        self.found: list[Import] = []

    def _add(self, node: ast.stmt | ast.expr, target: str) -> None:
        self.found.append(Import(self.module, self.path, node.lineno, target,
                                 self.depth == 0 and self.type_checking == 0,
                                 self.type_checking > 0))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.type_checking += 1
        for stmt in node.body:
            self.visit(stmt)
        self.type_checking -= 1
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            # `from agent import sinks` imports the module agent.sinks; `from keys.trust
            # import TrustRoot` imports keys.trust.
            self._add(node, sub if sub in _modules() else module)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("bundler.build.spec") and __import__("bundler") count too.
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if (name in ("import_module", "__import__") and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            self._add(node, node.args[0].value)
        self.generic_visit(node)


def _imports_of(path: Path, module: str) -> list[Import]:
    collector = _Collector(module, path)
    collector.visit(ast.parse(path.read_text(), filename=str(path)))
    return collector.found


@cache
def _product_imports() -> list[Import]:
    return [i for name, path in _modules().items() for i in _imports_of(path, name)]


def _report(bad: list[Import]) -> str:
    return "\n".join(f"{i.where}: {i.importer} imports {i.target}" for i in bad)


def _against_the_arrows(package: str) -> list[Import]:
    return [
        i
        for i in _product_imports()
        if i.importer.split(".")[0] == package
        and i.target.split(".")[0] in OURS
        and i.target.split(".")[0] not in MAY_IMPORT[package]
    ]


def test_airlock_imports_nothing_of_ours_outside_airlock() -> None:
    bad = _against_the_arrows("airlock")
    assert not bad, "airlock/ is the shared ground; it must not import:\n" + _report(bad)


def test_keys_imports_only_airlock_and_keys() -> None:
    bad = _against_the_arrows("keys")
    assert not bad, "keys/ may import only airlock and keys:\n" + _report(bad)


def test_bundler_and_agent_never_import_each_other() -> None:
    bad = _against_the_arrows("bundler") + _against_the_arrows("agent")
    assert not bad, (
        "bundler/ and agent/ never import each other (nor tests or scripts), "
        "not even inside a function:\n" + _report(bad)
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path) through each circle of the graph, found by depth-first search."""
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    cycles.append(cycle)
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_cycle_finder_reports_the_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"a"}}) == [["a", "a"]]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycles_among_product_modules() -> None:
    # Imports inside functions count: one that closes a circle only defers it, and the
    # two modules are still one design. Only TYPE_CHECKING imports, which never run, do not.
    graph: dict[str, set[str]] = {name: set() for name in _modules()}
    for i in _product_imports():
        if not i.type_only and i.target in graph and i.target != i.importer:
            graph[i.importer].add(i.target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_product_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(REPO))
        for path in _modules().values()
        if not ast.get_docstring(ast.parse(path.read_text(), filename=str(path)))
    ]
    assert not missing, "say what the module is for in a docstring: " + ", ".join(missing)


def _package_dirs() -> list[Path]:
    """Every folder of the product packages that holds Python modules."""
    return sorted({p.parent for p in _python_files(*PACKAGES)})


def _unlisted(package: Path) -> list[str]:
    """The modules and subpackages of ``package`` its ``__init__`` docstring does not name.

    A module is named by its stem as a whole word (``verify``, ``verify.py``, or a
    list item ``- verify: ...``), a subpackage by its name (``sinks/``); ``__main__``
    needs no entry.
    """
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    children = [p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")]
    children += [d.name for d in package.iterdir()
                 if d.is_dir() and any(d.glob("*.py")) and d.name != "__pycache__"]
    return sorted(c for c in children if not re.search(rf"(?<![\w.]){re.escape(c)}(?!\w)", doc))


def test_every_package_index_names_each_of_its_modules(tmp_path: Path) -> None:
    # The check itself: a missing entry is found, a listed one is not, a word inside
    # another word is no entry.
    (tmp_path / "__init__.py").write_text(
        '"""Index.\n\n* ``listed``  here\n- listed_too: another entry\n* ``sub/``"""\n')
    for name in ("listed.py", "listed_too.py", "list.py", "forgotten.py", "__main__.py",
                 "sub/__init__.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text('"""x"""\n')
    assert _unlisted(tmp_path) == ["forgotten", "list"]

    # A newcomer opens a package's __init__.py to find its way: the index must be whole.
    # (bundler/commands and agent/commands are checked like the rest once they exist.)
    bad = []
    for package in _package_dirs():
        where = package.relative_to(REPO)
        if not (package / "__init__.py").exists():
            bad.append(f"{where}: no __init__.py with an index of its modules")
            continue
        missing = _unlisted(package)
        if missing:
            bad.append(f"{where}/__init__.py does not name: {', '.join(missing)}")
    assert not bad, "keep each package index current:\n" + "\n".join(bad)


def test_no_utils_module() -> None:
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        # Not .git, .venv, caches: only what the repository holds.
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"
                       and not (Path(dirpath, d) / "pyvenv.cfg").exists()]
        found += [str(Path(dirpath, f).relative_to(REPO)) for f in filenames if f == "utils.py"]
    assert not found, f"name a module for what it does, not utils: {found}"


# -- prose that names files -----------------------------------------------------------

# A repository-relative path with a known top directory, e.g. docs/AGENT.md or
# agent/install.py; not part of a longer path, an absolute path or a URL.
PATH = re.compile(
    r"(?<![\w./-])((?:airlock|keys|bundler|agent|scripts|docs|tests|packaging|\.ci)"
    r"/[\w./-]*?\.(?:py|md|sh|toml))(?![\w/-])"
)
# Paths inside a bundle or on a device that the prose may name though no such
# repository file exists. (airlock/release.json and airlock/root.json end in
# .json, so the pattern never sees them.)
NOT_REPOSITORY_FILES: frozenset[str] = frozenset()


def _prose_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for top in (*PACKAGES, "scripts", "tests"):
        files += [p for p in sorted((REPO / top).rglob("*"))
                  if p.suffix in (".py", ".sh") and "__pycache__" not in p.parts]
    return files


def test_the_path_pattern_finds_repository_paths() -> None:
    line = ("see docs/AGENT.md, `agent/install.py:12`, tests/hostile/test_corpus.py::test_x[ID] "
            "and scripts/test.sh; not /work/docs/x.md, https://h/docs/y.md or airlock/release.json")
    assert PATH.findall(line) == ["docs/AGENT.md", "agent/install.py",
                                   "tests/hostile/test_corpus.py", "scripts/test.sh"]


def test_docs_and_comments_name_only_files_that_exist() -> None:
    stale = []
    for path in _prose_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in PATH.findall(line):
                if name not in NOT_REPOSITORY_FILES and not (REPO / name).exists():
                    stale.append(f"{path.relative_to(REPO)}:{number}: {name}")
    assert not stale, "these name files that do not exist:\n" + "\n".join(stale)


# -- how the tests import -------------------------------------------------------------


def test_tests_import_one_way() -> None:
    bad = []
    for path in _python_files("tests"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                names = []
            bad += [f"{where}: imports {n} (helpers live in tests/support)"
                    for n in names if n.split(".")[-1] == "conftest"]
            if (isinstance(node, ast.Attribute) and node.attr == "path"
                    and isinstance(node.value, ast.Name) and node.value.id == "sys"):
                bad.append(f"{where}: touches sys.path (pyproject's pythonpath is the one root)")
    assert not bad, "\n".join(bad)


def test_in_process_code_is_this_checkout() -> None:
    """Plain `pytest` must test this checkout even when another copy is installed (editable)."""
    for name in PACKAGES:
        module = importlib.import_module(name)
        assert Path(module.__file__ or "").resolve().is_relative_to(REPO), (name, module.__file__)


def test_the_import_collector_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "fake.py"
    source.write_text(
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sinks\n"
        "from .sinks import make_sink\n"
        "if TYPE_CHECKING:\n"
        "    from bundler.build.spec import Spec\n"
        "def later():\n"
        "    from bundler.build.assemble import build_bundle\n"
        "    importlib.import_module('bundler.cli')\n"
    )
    found = [(i.target, i.at_import_time) for i in _imports_of(source, "agent.fake")]
    assert found == [
        ("importlib", True),
        ("typing", True),
        ("agent.sinks", True),
        ("agent.sinks", True),
        ("bundler.build.spec", False),
        ("bundler.build.assemble", False),
        ("bundler.cli", False),
    ]
