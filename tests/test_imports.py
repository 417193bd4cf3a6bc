"""The package's import graph (every ``import`` in onnxprune/**/*.py, wherever it appears,
type-only ones included) has no cycle, and ``ops/`` imports nothing else from onnxprune."""

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "onnxprune"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """Edges module -> module it imports, for modules of the package."""
    graph = nx.DiGraph()
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph.add_node(name)
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                mod = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
                # ``from M import x`` imports submodule M.x when it is one, else M itself
                subs = [f"{mod}.{a.name}" for a in node.names]
                targets = [s if s in modules else mod for s in subs]
            for target in targets:
                if target in modules and target != name:
                    graph.add_edge(name, target)
    return graph


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 20
    cycles = list(nx.simple_cycles(graph))
    assert cycles == [], f"import cycles: {cycles}"


def test_ops_is_a_leaf():
    graph = import_graph()
    for module in graph:
        if module.startswith("onnxprune.ops"):
            outside = [t for t in graph.successors(module) if not t.startswith("onnxprune.ops")]
            assert outside == [], f"{module} imports {outside}"


def test_detects_a_cycle(tmp_path, monkeypatch):
    """The checker itself: a package whose two modules import each other is caught."""
    pkg = tmp_path / "onnxprune"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import f\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert list(nx.simple_cycles(import_graph())) != []


def test_every_subpackage_is_packaged():
    """A non-editable install carries every folder of the package (torchexec/ was left out of
    the wheel once): pyproject's package discovery finds each one."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from setuptools import find_packages

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    found = set(find_packages(str(PACKAGE.parent), include=include))
    folders = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert folders == found, f"not packaged: {sorted(folders - found)}"
