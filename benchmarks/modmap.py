"""Module map of the package: lines per module, its longest function, the modules it imports,
and (with ``--layout``) the arrows that cross folders.  ``python benchmarks/modmap.py`` prints a
table; ``--folders`` groups by the package's sub-folders, ``--layout FILE.json`` maps module names
to hypothetical folders (``{"profile": "measure", ...}``) to count the arrows a layout would have."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_imports import PACKAGE, import_graph, module_name


def _function_sizes(tree: ast.AST) -> list[tuple[str, int]]:
    """(name, lines) of every ``def`` in a module, nested ones included, in walk order."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def folder_of(module: str, layout: dict[str, str] | None) -> str:
    short = module.removeprefix("onnxprune").lstrip(".") or "__init__"
    if layout is not None:
        top = short.split(".")[0]
        return layout.get(short, layout.get(top, "."))
    return short.rpartition(".")[0] or "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layout", help="JSON {module: folder} of a hypothetical layout")
    ap.add_argument("--over", type=int, default=40, help="list functions longer than this")
    args = ap.parse_args()
    layout = json.loads(Path(args.layout).read_text()) if args.layout else None
    graph = import_graph()
    rows, long_fns = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        name, text = module_name(path).removeprefix("onnxprune."), path.read_text()
        sizes = _function_sizes(ast.parse(text))
        fn, n = max(sizes, key=lambda s: s[1], default=("-", 0))
        rows.append((name, len(text.splitlines()), f"{fn} ({n})"))
        long_fns += [(k, f"{name}.{f}") for f, k in sizes if k > args.over]
    print(f"{'module':32s} {'lines':>6s}  longest function")
    for name, lines, fn in rows:
        print(f"{name:32s} {lines:6d}  {fn}")
    print(f"{'total':32s} {sum(r[1] for r in rows):6d}  ({len(rows)} modules)")
    print(f"\nfunctions over {args.over} lines: {len(long_fns)}")
    for k, fn in sorted(long_fns, reverse=True):
        print(f"  {k:4d}  {fn}")
    cross = Counter()
    for a, b in graph.edges:
        fa, fb = folder_of(a, layout), folder_of(b, layout)
        if fa != fb:
            cross[(fa, fb)] += 1
    print(f"\nimport arrows: {graph.number_of_edges()}, across folders: {sum(cross.values())}")
    for (fa, fb), k in sorted(cross.items()):
        print(f"  {fa:>12s} -> {fb:<12s} {k}")


if __name__ == "__main__":
    main()
