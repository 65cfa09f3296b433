"""Graphviz DOT: op nodes clustered by module hierarchy, labelled with op, shape and costs.

Node ids in the DOT text are synthetic (``n0``, ``n1`` ...); every model-provided string
(names, ops, code, shapes) only appears inside quoted, escaped attribute values.
"""

from __future__ import annotations

from pathlib import Path

from irtools.export import as_report, write_atomic
from irtools.export.escape import printable
from irtools.export.text import human

BOUND_COLORS = {"memory": "#9ecae1", "compute": "#fdae6b", None: "#eeeeee"}


def dot_escape(text) -> str:
    """A string safe inside a DOT double-quoted value (entities for < > &, escaped quotes,
    control characters such as NUL shown as ``\\xNN``)."""
    text = printable(text, keep_newlines=True).replace("\t", " ").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def q(text) -> str:
    return f'"{dot_escape(text)}"'


def cost_text(cost: dict, unit: str = "") -> str:
    """A value when bound (``1.2 GFLOP``), else the formula."""
    return human(cost["value"], unit) if cost.get("value") is not None else cost.get("expr", "?")


def bytes_text(node: dict) -> str:
    r, w = node["bytes_read"], node["bytes_written"]
    if r.get("value") is not None and w.get("value") is not None:
        return human(r["value"] + w["value"], "B")
    return f"R {r['expr']} / W {w['expr']}"


def shape_text(node: dict) -> str:
    outs = node.get("outputs") or []
    return ", ".join("[" + ", ".join(o["shape"]) + "]" for o in outs) or "-"


def module_parents(report) -> dict[str, str | None]:
    """Module path -> parent path, from the report's module tree."""
    parents: dict[str, str | None] = {}

    def walk(m, parent):
        parents[m["path"]] = parent
        for c in m.get("children", []):
            walk(c, m["path"])

    for root in report.get("modules", []):
        walk(root, None)
    return parents


def module_chain(path: str, parents: dict[str, str | None]) -> list[str]:
    """Ancestors of a module from the root down to it (the root path is usually '')."""
    chain = []
    p: str | None = path if path in parents else None
    while p is not None:
        chain.append(p)
        p = parents.get(p)
    return chain[::-1]


def node_bounds(report) -> dict[str, str | None]:
    """Node id -> ``memory``/``compute`` of the kernel holding it (empty without kernels)."""
    return {n: k.get("bound") for k in report.get("kernels") or [] for n in k["nodes"]}


def render_dot(report, depth: int = 2) -> str:
    """DOT text; clusters nest down to ``depth`` module levels below the root."""
    parents = module_parents(report)
    classes = {}
    for root in report.get("modules", []):
        stack = [root]
        while stack:
            m = stack.pop()
            classes[m["path"]] = m["class"]
            stack.extend(m.get("children", []))
    bounds = node_bounds(report)
    ids = {n["id"]: f"n{i}" for i, n in enumerate(report["nodes"])}
    tree: dict = {"nodes": [], "children": {}}
    for n in report["nodes"]:
        chain = module_chain(n.get("module", ""), parents)[1 : depth + 1]
        at = tree
        for p in chain:
            at = at["children"].setdefault(p, {"nodes": [], "children": {}})
        at["nodes"].append(n)
    lines = [
        f"digraph {q(report.get('model', 'model'))} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        f"  label={q(_title(report))};",
    ]
    counter = iter(range(1 << 30))

    def emit(sub, indent):
        pad = "  " * indent
        for n in sub["nodes"]:
            src = n.get("source") or {}
            label = "\n".join([
                f"{n['op']}  ({n['id']})",
                shape_text(n),
                f"FLOPs: {cost_text(n['flops'])}",
                f"bytes: {bytes_text(n)}",
            ])
            tip = f"{n.get('module') or '(root)'}  line {src.get('line', '?')}: {src.get('code', '')}"
            color = BOUND_COLORS.get(bounds.get(n["id"]), "#ffffff") if bounds else "#ffffff"
            lines.append(f"{pad}{ids[n['id']]} [label={q(label)}, tooltip={q(tip)}, fillcolor={q(color)}];")
        for path, child in sub["children"].items():
            lines.append(f"{pad}subgraph cluster_{next(counter)} {{")
            lines.append(f"{pad}  label={q(path + ' : ' + classes.get(path, ''))};")
            lines.append(f'{pad}  style="rounded"; color="#888888";')
            emit(child, indent + 1)
            lines.append(f"{pad}}}")

    emit(tree, 1)
    for u, v in report.get("edges") or []:
        if u in ids and v in ids:
            lines.append(f"  {ids[u]} -> {ids[v]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _title(report) -> str:
    t = report["totals"]["flops"]
    extra = f", {report['mode']} on {report['target'].get('name', '?')}" if report.get("kernels") else ""
    return f"{report.get('model', '')} ({report.get('scenario') or 'graph'}{extra}): {cost_text(t, 'FLOP')}"


def write_dot(obj, path, *, force: bool = False, depth: int = 2, **opts) -> list[Path]:
    """Write the DOT file for a result or report."""
    return [write_atomic(path, render_dot(as_report(obj), depth), force=force)]
