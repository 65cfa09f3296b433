"""The JSON report (schema ``irtools.report/1``, docs/report.md), built once from an
``AnalysisResult``: it serializes what the pipeline computed and computes nothing itself."""

from __future__ import annotations

import functools
from typing import Any

from irtools.ir import is_layer_stack
from irtools.ir.gcpause import gc_paused
from irtools.ir.numeric import term_text
from irtools.ir.symbols import pretty

SCHEMA = "irtools.report/1"
KV_CACHE_TEXT = {
    "copy": {"model": "copy", "description": "the cache is concatenated each step (transformers DynamicCache): "
             "the whole cache is read and rewritten, then read by attention"},
    "static": {"model": "static", "description": "a preallocated (static or paged) cache written in place: only "
               "the new tokens are written; attention reads the whole cache once"},
}


@functools.lru_cache(maxsize=65536)
def text(expr) -> str:
    """``str(expr)``, memoized: a report prints the same few expressions thousands of times
    (numbers and ``k*symbol`` terms written without sympy's printer, to the same text)."""
    fast = term_text(expr)
    return fast if fast is not None else str(expr)


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
        "matmul_flops": cost(result, a["matmul_flops"]),
        "unsupported": a["unsupported"],
        **({"phase": a["phase"], "grad_of": a["grad_of"]} if a["phase"] else {}),  # train (irtools/training_report.py)
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
    meta = result.ir.meta
    layers = (meta.config_symbols or {}).get("num_layers")
    traced = meta.collapse.traced_layers if meta.collapse else layers
    children = []
    for group in groups:
        entry = _module(result, group[0])
        if len(group) > 1:
            entry["repeat"] = len(group)
            entry["paths"] = [g.path for g in group]
            if traced == len(group) and is_layer_stack(entry["paths"]):
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
    gen = ir.meta.generalized
    if gen is None:
        return None
    return {
        "symbols": gen.symbols,
        "verified_nodes": len(gen.verified),
        "numeric_nodes": gen.numeric,
        "method": "probe traces at prime configs; formulas verified at two other probes and the real config",
    }


def _coverage(result) -> dict[str, Any]:
    cov = result.coverage
    return {
        "ops_seen": sorted(cov["seen"]),
        "ops_supported": cov["supported"],
        "ops_unsupported": [u["op"] for u in cov["unsupported"]],
        "unsupported_nodes": {u["op"]: u["nodes"] for u in cov["unsupported"]},
    }


def _collapse(ir) -> dict[str, Any] | None:
    c = ir.meta.collapse
    return None if c is None else {"traced_layers": c.traced_layers, "num_layers": c.num_layers, "stack": c.stack}


def _plain(expr, value) -> dict:
    return {"expr": text(expr), "value": value}


def _sum(values) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else float(sum(values))


def _times(kernel_time, key: str) -> float | None:
    value = kernel_time.values.get(key)
    return None if value is None else kernel_time.kernel.repeat * value


def kernels_report(roofline) -> dict[str, Any]:
    """The kernel keys (docs/report.md) of a :class:`passes.roofline.RooflineResult`."""
    kernels = []
    for kt in roofline.kernels:
        k = kt.kernel
        kernels.append({
            "id": k.id,
            "nodes": list(k.nodes),
            "kinds": list(k.kinds),
            "pattern": k.pattern,
            "module": k.module,
            "flops": _plain(k.flops, kt.values.get("flops")),
            "bytes": _plain(k.bytes, kt.values.get("bytes")),
            "bytes_read": _plain(k.bytes_read, None),
            "bytes_written": _plain(k.bytes_written, None),
            "time_s": _plain(kt.time, kt.values.get("time")),
            "bound": kt.bound,
            "dtype": kt.dtype,
            "attainable_flops": kt.attainable_flops,
        })
        if k.repeat != 1:
            kernels[-1]["repeat"] = k.repeat
    kg = roofline.kernel_graph
    return {
        "mode": roofline.mode,
        "target": roofline.target.to_dict(),
        "time_s": _plain(roofline.time, roofline.value),
        "kernel_totals": {
            "count": kg.launches,
            "flops": _plain(kg.total("flops"), _sum(_times(kt, "flops") for kt in roofline.kernels)),
            "bytes": _plain(kg.total("bytes"), _sum(_times(kt, "bytes") for kt in roofline.kernels)),
        },
        "kernels": kernels,
        "time_by_module": [{"path": r.key, "class": r.label, "time_s": _plain(r.time, r.value), "kernels": r.kernels}
                           for r in roofline.modules],
        "time_by_line": [{"line": r.key, "code": r.label, "time_s": _plain(r.time, r.value), "kernels": r.kernels}
                         for r in roofline.lines],
    }


def _source(src) -> dict[str, Any] | None:
    return {"file": src.file, "line": src.line, "code": src.code} if src is not None else None


def memory_report(result) -> dict[str, Any] | None:
    """The ``memory`` keys (docs/report.md) of ``result.memory`` (a passes.memory.MemoryResult)."""
    m = result.memory
    if m is None:
        return None
    out: dict[str, Any] = {
        "mode": m.mode,
        "lifetimes": m.lifetimes,
        "kv_cache": m.kv_cache,
        "peak": cost(result, m.peak),
        "held": {c: cost(result, e) for c, e in m.held.items()},
        "steps": len(m.steps),
    }
    s = m.summary
    if s is not None:
        node = result.ir.node(s.node)
        out["at_peak"] = {
            "step": s.step, "kernel": s.kernel, "node": s.node, "op": node.op, "module": node.module or "",
            "source": _source(node.source), "bytes": s.bytes,
            "breakdown": {c: {"expr": text(s.breakdown_expr[c]), "value": v} for c, v in s.breakdown.items()},
        }
        out["largest"] = [{
            "value": t.value, "node": t.node, "category": t.category, "bytes": t.bytes, "expr": text(t.nbytes),
            "shape": [text(d) for d in t.shape], "dtype": t.dtype, "source": _source(t.source), "note": t.note,
        } for t in s.largest]
        anchors = [result.ir.node(st.anchor) for st in m.steps]
        out["timeline"] = {
            "categories": list(s.breakdown),
            "steps": [{"id": st.id, "node": st.anchor, "op": a.op, "module": a.module or "",
                       "line": a.source.line if a.source is not None else None,
                       "bytes": [v[c] for c in s.breakdown]} for st, a, v in zip(m.steps, anchors, s.timeline)],
        }
    if m.fit is not None:
        f = m.fit
        out["fit"] = {"target": f.target, "capacity": f.capacity, "capacity_source": f.source, "reserve": f.reserve,
                      "usable": f.usable, "peak": f.peak, "fits": f.fits, "headroom": f.headroom}
    return out


@gc_paused()
def build_report(result, edges: bool = False) -> dict[str, Any]:
    """The report dict of ``result``; ``edges`` adds ``[[producer, consumer], ...]``."""
    ir = result.ir
    report = {
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
        "composed": None if result.composed is None else {k: cost(result, v) for k, v in result.composed.items()},
        "collapsed": _collapse(ir),
        "unsupported": [{"op": op, "count": n} for op, n in result.unsupported],
        "complete": result.complete,
        "coverage": _coverage(result),
        "memory": memory_report(result),
    }
    if any(spec.role == "kv_cache" for spec in ir.inputs.values()):
        report["kv_cache"] = KV_CACHE_TEXT[ir.meta.kv_cache or "copy"]
    if ir.meta.logits:
        report["logits"] = ir.meta.logits
    if ir.meta.sliding_windows:
        report["sliding_windows"] = dict(ir.meta.sliding_windows)
    if ir.meta.notes:
        report["notes"] = list(ir.meta.notes)
    if edges:
        ids = {n["id"] for n in report["nodes"]}
        report["edges"] = [[u, v] for u, v in ir.graph.edges() if u in ids and v in ids]
    if result.roofline is not None:
        report.update(kernels_report(result.roofline))
    if getattr(result, "training", None) is not None:
        from irtools.training_report import training_section

        report["training"] = training_section(result)
    return report
