"""Import directions (docs/architecture.md): every import of the project, function-local ones
included, read from the AST.

- ``irtools.ir`` and ``irtools.capture`` import nothing from ``passes``;
- ``irtools.export`` imports nothing from ``passes``;
- ``passes`` outside ``passes.compiler`` imports nothing from ``irtools.capture``,
  ``irtools.export``, ``irtools.cli``, ``irtools.pipeline`` or ``irtools.analysis``;
- no two project modules import each other, directly or through a cycle;
- the ONNX frontend never imports torch.
"""

from __future__ import annotations

import ast
import pathlib

import networkx as nx
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("irtools", "passes", "models")


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


MODULES = _modules()


def _imported_names(mod: str) -> set[str]:
    """Every dotted name an import statement of ``mod`` refers to (relative imports resolved)."""
    path = MODULES[mod]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names |= {prefix} | {f"{prefix}.{a.name}" for a in node.names}
    return names


def _project_target(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for mod in MODULES:
        g.add_node(mod)
        for name in _imported_names(mod):
            target = _project_target(name)
            if target and target != mod:
                g.add_edge(mod, target)
    return g


GRAPH = _graph()


def under(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def _violations(src_prefixes, banned, exempt=()) -> list[str]:
    return [
        f"{a} -> {b}"
        for a, b in GRAPH.edges
        if any(under(a, p) for p in src_prefixes) and not any(under(a, e) for e in exempt)
        and any(under(b, p) for p in banned)
    ]


def test_ir_and_capture_import_no_passes():
    assert _violations(("irtools.ir", "irtools.capture"), ("passes",)) == []


def test_exports_import_no_passes():
    assert _violations(("irtools.export",), ("passes",)) == []


def test_passes_import_only_ir_and_hardware():
    banned = ("irtools.capture", "irtools.export", "irtools.cli", "irtools.pipeline", "irtools.analysis")
    assert _violations(("passes",), banned, exempt=("passes.compiler",)) == []


def test_no_import_cycles():
    g = GRAPH.copy()
    for a, b in list(g.edges):  # a package's __init__ re-exporting its own submodule is not a cycle
        if MODULES[a].name == "__init__.py" and under(b, a):
            g.remove_edge(a, b)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert cycles == []


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if under(m, "irtools.capture.onnx")))
def test_onnx_frontend_imports_no_torch(mod):
    assert not any(under(n, "torch") for n in _imported_names(mod))


def test_the_checker_sees_violations():
    """The rules above are live: a known-good edge exists and a synthetic bad one is caught."""
    assert GRAPH.has_edge("irtools.pipeline", "passes.annotate_costs")
    GRAPH.add_edge("irtools.ir.graph", "passes.fusion")
    try:
        assert _violations(("irtools.ir",), ("passes",)) == ["irtools.ir.graph -> passes.fusion"]
    finally:
        GRAPH.remove_edge("irtools.ir.graph", "passes.fusion")
