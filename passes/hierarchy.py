"""Hierarchy pass: a networkx tree of module scopes, each holding its subtree's cost sums.

Reads node ``scope``, ``flops``, ``bytes_read``, ``bytes_written``; writes node attr
``module`` (innermost path) and ``ir.meta.modules``: a DiGraph rooted at path ``""`` whose
nodes carry ``cls``, ``flops``, ``bytes_read``, ``bytes_written`` and ``nodes`` (op ids).
"""

from __future__ import annotations

import re

import networkx as nx

from irtools.ir import IRGraph, is_layer_stack, numeric
from irtools.ir.kinds import ALL_COSTS


def layer_stacks(tree) -> list[list[str]]:
    """Every ModuleList of blocks in the module tree: [[h.0, h.1, ...], ...]."""
    stacks: dict[str, list[str]] = {}
    for path in tree:
        m = re.fullmatch(r"(.*)\.(\d+)", path)
        if m:
            stacks.setdefault(m.group(1), []).append(path)
    return [sorted(v, key=lambda p: int(p.rsplit(".", 1)[1])) for v in stacks.values() if is_layer_stack(sorted(v, key=lambda p: int(p.rsplit(".", 1)[1])))]


def layer_factor(ir: IRGraph, paths: list[str]):
    """``num_layers`` for a stack of as many blocks as the config's layers (or as were
    traced, when blocks are collapsed), else the count."""
    import sympy

    layers = (ir.meta.collapse.traced_layers if ir.meta.collapse else None) or (ir.meta.config_symbols or {}).get("num_layers")
    if layers and len(paths) == layers and is_layer_stack(paths):
        return sympy.Symbol("num_layers", positive=True, integer=True)
    return len(paths)


def build_hierarchy(ir: IRGraph) -> IRGraph:
    tree = nx.DiGraph()
    root_cls = ir.meta.root_class or ""
    tree.add_node("", cls=root_cls, nodes=[], own=[])
    for node_id, attrs in ir.nodes():
        scopes = attrs["scope"] or []
        parent = ""
        for scope in scopes:
            if scope.path == "":
                continue
            if scope.path not in tree:
                tree.add_node(scope.path, cls=scope.cls, nodes=[], own=[])
                tree.add_edge(parent, scope.path)
            parent = scope.path
        attrs["module"] = parent
        tree.nodes[parent]["own"].append(attrs)
        for path in [""] + [s.path for s in scopes if s.path]:
            tree.nodes[path]["nodes"].append(node_id)
    for path in reversed(list(nx.topological_sort(tree))):  # children before parents
        data = tree.nodes[path]
        for c in ALL_COSTS:
            parts = [a[c] for a in data["own"] if a[c] != 0]
            parts += [tree.nodes[child][c] for child in tree.successors(path)]
            data[c] = numeric.expand(numeric.total(parts))  # ints summed as ints
        del data["own"]
    ir.meta.modules = tree
    return ir
