"""The JSON report (schema ``irtools.report/1``, ../shared/DESIGN.md): data, no rendering."""

from __future__ import annotations

import functools
from typing import Any

from irtools.symbols import pretty

SCHEMA = "irtools.report/1"


@functools.lru_cache(maxsize=65536)
def text(expr) -> str:
    """``str(expr)``, memoized: a report prints the same few expressions thousands of times."""
    return str(expr)


def cost(result, expr) -> dict[str, Any]:
    """``{"expr": sympy string, "value": number or None}``."""
    return {"expr": text(expr), "value": result.value(expr)}


def _node(result, node_id: str, a: dict) -> dict[str, Any]:
    src = a["source"]
    scope = a["scope"][-1] if a["scope"] else None
    return {
        "id": node_id,
        "op": a["op"],
        "kind": a["kind"],
        "module": a.get("module", ""),
        "module_class": scope.cls if scope else "",
        "source": {"file": src.file, "line": src.line, "code": src.code} if src else None,
        "outputs": [
            {"shape": [text(d) for d in t.shape], "dtype": t.dtype, "role": t.role} for t in a["outputs"] if t is not None
        ],
        "flops": cost(result, a["flops"]),
        "bytes_read": cost(result, a["bytes_read"]),
        "bytes_written": cost(result, a["bytes_written"]),
        "unsupported": a["unsupported"],
    }


def _module(result, m) -> dict[str, Any]:
    """A module and its children; identical siblings (h.0 … h.11) collapse into one entry
    with ``repeat`` (and ``repeat_symbol`` num_layers when that is the config's count)."""
    groups: list[list] = []
    for child in m.children:
        last = groups[-1][0] if groups else None
        if last is not None and last.cls == child.cls and all(
            getattr(last, c) == getattr(child, c) for c in ("flops", "bytes_read", "bytes_written")
        ):
            groups[-1].append(child)
        else:
            groups.append([child])
    from passes.hierarchy import is_layer_stack

    layers = result.ir.meta.get("config_symbols", {}).get("num_layers")
    children = []
    for group in groups:
        entry = _module(result, group[0])
        if len(group) > 1:
            entry["repeat"] = len(group)
            entry["paths"] = [g.path for g in group]
            if (result.ir.meta.get("collapsed_layers") or layers) == len(group) and is_layer_stack(entry["paths"]):
                entry["repeat"], entry["repeat_symbol"] = layers, "num_layers"
        children.append(entry)
    return {
        "path": m.path,
        "class": m.cls,
        "flops": cost(result, m.flops),
        "bytes_read": cost(result, m.bytes_read),
        "bytes_written": cost(result, m.bytes_written),
        "children": children,
    }


def line_entry(result, e) -> dict[str, Any]:
    """One line in the seed's module-analysis format, plus line, code, values and sub-lines."""
    return {
        "line": e.line,
        "code": e.code,
        "function": e.function,
        "kernel_type": e.kernel_type,
        "repeat": _repeat(e),
        "operation": e.operation or "view / no-op",
        "analysis": _analysis_text(e),
        "flops": e.flops_formula,
        "memory_access": {"read": e.read_formula, "write": e.write_formula},
        "flops_expanded": pretty(e.flops),
        "memory_access_expanded": {"read": pretty(e.bytes_read), "write": pretty(e.bytes_written)},
        "values": {
            "flops": result.value(e.flops),
            "bytes_read": result.value(e.bytes_read),
            "bytes_written": result.value(e.bytes_written),
        },
        "nodes": e.nodes,
        "sub_entries": [line_entry(result, s) for s in e.sub_entries],
    }


def _repeat(e):
    """The seed's optional ``repeat``: how often the line's one module call runs (``num_layers``)."""
    if len(e.calls) != 1:
        return 1
    call = e.calls[0]
    return str(call.repeat_symbol) if call.repeat_symbol is not None else call.repeat


def _analysis_text(e) -> str:
    parts = []
    if e.references:
        parts.append("calls " + ", ".join(e.references))
    if e.sub_entries:
        parts.append(f"helper {e.sub_entries[0].function}() broken down in sub_entries")
    parts.append(f"{len(e.nodes)} graph node(s): {e.operation or 'views only (no data movement)'}")
    return "; ".join(parts)


def _config_symbolic(ir) -> dict[str, Any] | None:
    gen = ir.meta.get("generalized")
    if gen is None:
        return None
    return {
        "symbols": gen.symbols,
        "verified_nodes": len(gen.verified),
        "numeric_nodes": gen.numeric,
        "method": "probe traces at prime configs; formulas verified at two other probes and the real config",
    }


def _composed(result) -> dict[str, Any] | None:
    """Totals composed hierarchically with ``num_layers`` symbolic (config-symbolic runs)."""
    if result.ir.meta.get("generalized") is None and not result.ir.meta.get("collapsed_layers"):
        return None
    from passes.compose import composed_costs

    return {k: cost(result, v) for k, v in composed_costs(result.ir).items()}


def _coverage(ir) -> dict[str, Any]:
    from passes.annotate_costs import coverage

    cov = coverage(ir)
    return {
        "ops_seen": sorted(cov["seen"]),
        "ops_supported": cov["supported"],
        "ops_unsupported": [u["op"] for u in cov["unsupported"]],
        "unsupported_nodes": {u["op"]: u["nodes"] for u in cov["unsupported"]},
    }


def build_report(result) -> dict[str, Any]:
    ir = result.ir
    return {
        "schema": SCHEMA,
        "model": ir.name,
        "frontend": ir.frontend,
        "scenario": result.scenario,
        "bindings": result.bindings,
        "totals": {k: cost(result, v) for k, v in result.totals.items()},
        "nodes": [_node(result, n, a) for n, a in result.nodes],
        "modules": [_module(result, result.modules)],
        "lines": {
            "class_name": result.lines.class_name,
            "module_path": result.lines.module_path,
            "file": result.lines.file,
            "kernels": [line_entry(result, e) for e in result.lines.entries],
        },
        "config_symbolic": _config_symbolic(ir),
        "composed": _composed(result),
        "collapsed": result.ir.meta.get("collapse_info"),
        "unsupported": [{"op": op, "count": n} for op, n in result.unsupported],
        "coverage": _coverage(ir),
    }
