"""Cost pass: give every op node its ``kind`` and symbolic ``flops``/``bytes_*`` by rule.

Reads ``op``, ``inputs``, ``outputs``, ``args``; writes ``kind``, ``flops``,
``bytes_read``, ``bytes_written``, ``matmul_flops``, ``alias``, ``unsupported``.
Unknown ops never raise: zero cost, ``unsupported=True``, counted in the report.
Rules are cached per (op, shapes, args) since stacked layers repeat the same calls.
"""

from __future__ import annotations

from collections import Counter

import sympy

from irtools.ir import IRGraph
from irtools.ir.numeric import expand
from passes.costs import Cost, OpCall, lookup
from passes.kv_cache import cache_update_cost

_ZERO = sympy.Integer(0)


def _expand(expr) -> sympy.Expr:
    return expand(expr)  # skips sympy where nothing would change (irtools.ir.numeric)


def _key(call: OpCall):
    try:
        return (call.op, call.inputs, call.outputs, tuple(sorted((k, repr(v)) for k, v in call.args.items())))
    except TypeError:
        return None


def annotate_costs(ir: IRGraph) -> IRGraph:
    """Annotate every node of ``ir`` in place (and return it)."""
    cache: dict = {}
    kv_model = ir.meta.kv_cache or "copy"
    for _node_id, attrs in ir.nodes():
        call = OpCall(attrs["op"], tuple(attrs["inputs"]), tuple(attrs["outputs"]), dict(attrs["args"]))
        for sub_ir in (attrs["args"].get("subgraphs") or {}).values():  # bodies first (If, Loop, Scan)
            annotate_costs(sub_ir)
        entry = lookup(call.op)
        cost, kind, unsupported = Cost(), "unknown", entry is None
        if attrs.get("input_setup"):  # rebuilding a structured input (see capture): free
            entry, kind, unsupported, cost = None, "free", False, Cost(alias=True)
        if entry is not None:
            kind = entry.kind
            key = _key(call)
            if key is not None and key in cache:
                cost = cache[key]
            else:
                try:
                    cost = entry.fn(call)
                except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
                    cost, unsupported = Cost(), True
                    attrs["cost_error"] = f"{type(exc).__name__}: {exc}"
                cost = Cost(*(_expand(e) for e in (cost.flops, cost.bytes_read, cost.bytes_written, cost.matmul_flops)), cost.alias)
                if key is not None:
                    cache[key] = cost
        update = cache_update_cost(attrs, kv_model) if entry is not None else None
        if update is not None:  # a KV-cache write under the static cache model
            cost = Cost(cost.flops, *(_expand(e) for e in update), cost.matmul_flops, cost.alias)
        attrs.update(
            kind=kind,
            flops=cost.flops,
            bytes_read=cost.bytes_read,
            bytes_written=cost.bytes_written,
            matmul_flops=cost.matmul_flops,
            alias=cost.alias,
            unsupported=unsupported,
        )
    return ir


def coverage(ir: IRGraph) -> dict:
    """Ops seen, ops with a cost rule, and the unsupported ones with their node ids (after
    ``annotate_costs``: those nodes carry zero cost)."""
    seen = Counter(a["op"] for _, a in ir.nodes())
    bad: dict[str, list[str]] = {}
    for node_id, a in ir.nodes():
        if a.get("unsupported", lookup(a["op"]) is None):
            bad.setdefault(a["op"], []).append(node_id)
    return {
        "seen": dict(seen),
        "supported": sorted(op for op in seen if op not in bad),
        "unsupported": [{"op": op, "count": len(ids), "nodes": ids} for op, ids in sorted(bad.items())],
    }
