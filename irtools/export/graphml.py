"""GraphML via networkx: one node per op, attributes as strings and numbers (Gephi, yEd)."""

from __future__ import annotations

import io
from pathlib import Path

import networkx as nx

from irtools.export import as_report, write_atomic
from irtools.export.dot import shape_text
from irtools.export.escape import printable
from irtools.ir.kinds import COSTS


def to_networkx(report) -> nx.DiGraph:
    """A DiGraph whose attributes GraphML can hold (no None, no nested values)."""
    g = nx.DiGraph()
    for key in ("schema", "model", "frontend", "scenario", "mode"):
        if report.get(key) is not None:
            g.graph[key] = str(report[key])
    for name, v in report.get("bindings", {}).items():
        g.graph[f"binding_{name}"] = float(v)
    for name, c in report["totals"].items():
        g.graph[f"total_{name}_expr"] = c["expr"]
        if c.get("value") is not None:
            g.graph[f"total_{name}"] = float(c["value"])
    kernel_of = {n: k for k in report.get("kernels") or [] for n in k["nodes"]}
    for n in report["nodes"]:
        src = n.get("source") or {}
        attrs = {
            "op": n["op"], "kind": n["kind"], "module": n.get("module", ""), "module_class": n.get("module_class", ""),
            "file": src.get("file") or "", "line": int(src.get("line") or 0), "code": src.get("code") or "",
            "shape": shape_text(n), "unsupported": bool(n.get("unsupported")),
        }
        for c in COSTS:
            attrs[f"{c}_expr"] = n[c]["expr"]
            if n[c].get("value") is not None:
                attrs[c] = float(n[c]["value"])
        k = kernel_of.get(n["id"])
        if k:
            attrs["kernel"] = k["id"]
            attrs["bound"] = k.get("bound") or ""
            if k["time_s"].get("value") is not None:
                attrs["kernel_time_s"] = float(k["time_s"]["value"])
        g.add_node(n["id"], **attrs)
    for u, v in report.get("edges") or []:
        if u in g and v in g:
            g.add_edge(u, v)
    return g


def xml_safe(g: nx.DiGraph) -> nx.DiGraph:
    """The graph with every string (ids, attribute values) free of characters XML 1.0 cannot
    hold (NUL, other controls): shown as ``\\xNN`` escapes (export/escape.py)."""
    def clean(v):
        return printable(v, keep_newlines=True) if isinstance(v, str) else v

    out = nx.DiGraph()
    out.graph.update({k: clean(v) for k, v in g.graph.items()})
    for n, attrs in g.nodes(data=True):
        out.add_node(clean(n), **{k: clean(v) for k, v in attrs.items()})
    out.add_edges_from((clean(u), clean(v)) for u, v in g.edges())
    return out


def write_graphml(obj, path, *, force: bool = False, **opts) -> list[Path]:
    """Write the GraphML file for a result or report."""
    buf = io.BytesIO()
    nx.write_graphml(xml_safe(to_networkx(as_report(obj))), buf)
    return [write_atomic(path, buf.getvalue(), force=force)]
