"""The package's import graph runs one way: the CLI and the stages on top, the library below, no circles.

Top layer: `star_repro.cli`, the warm starter (`warm`, `warm_client`), the stage registry (`registry`) and
`star_repro.stages.*` (the entry points). Everything else is the library, which never imports the top layer.
Every `import` counts, at module level or inside a function (a deferred import is still a dependency). A plain
AST scan, so a violation is reported with its file and line.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
TOP = ("star_repro.cli", "star_repro.warm", "star_repro.warm_client", "star_repro.registry", "star_repro.stages")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted((SRC / "star_repro").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _is_top(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in TOP)


def _edges(mods: dict[str, Path]) -> dict[str, list[tuple[str, int]]]:
    """module -> [(imported star_repro module, line)], resolving `from pkg import sub` to the submodule."""
    edges: dict[str, list[tuple[str, int]]] = {}
    for name, path in mods.items():
        found = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("star_repro"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.append((sub if sub in mods else node.module, node.lineno))
            elif isinstance(node, ast.Import):
                found += [(a.name, node.lineno) for a in node.names if a.name.startswith("star_repro")]
        edges[name] = [(m, line) for m, line in found if m in mods and m != name]
    return edges


def test_the_library_never_imports_the_cli_the_registry_or_the_stages():
    mods = _modules()
    bad = [f"{mods[name].relative_to(SRC.parent)}:{line}: {name} imports {target}"
           for name, targets in _edges(mods).items() if not _is_top(name)
           for target, line in targets if _is_top(target)]
    assert not bad, "library modules importing the top layer:\n" + "\n".join(bad)


def test_no_import_cycles():
    mods = _modules()
    graph = {name: sorted({t for t, _ in targets}) for name, targets in _edges(mods).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_scan_sees_a_violation(tmp_path, monkeypatch):
    """The checks are not vacuous: a library module that imports the registry is reported with its line."""
    pkg = tmp_path / "star_repro"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "registry.py").write_text("from star_repro.data import leaf\n")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "leaf.py").write_text("def f():\n    from star_repro.registry import x\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    mods = _modules()
    edges = _edges(mods)
    assert ("star_repro.registry", 2) in edges["star_repro.data.leaf"]
    with pytest.raises(AssertionError, match="star_repro/data/leaf.py:2: star_repro.data.leaf imports "
                                             "star_repro.registry"):
        test_the_library_never_imports_the_cli_the_registry_or_the_stages()
    with pytest.raises(AssertionError, match="star_repro.data.leaf <-> star_repro.registry"):
        test_no_import_cycles()
