"""Terminal-friendly renderings of an analysis: a per-line table, Markdown and CSV."""

from __future__ import annotations

import csv
import io

import sympy

from irtools.export.escape import csv_cell, md_code, md_text, printable
from irtools.export.training_text import (
    csv_rows,
    line_keys,
    line_phase_cells,
    module_phase_cells,
    phase_headers,
    training_lines,
    training_markdown,
)
from irtools.ir.symbols import parse, pretty


def human(value, unit: str = "") -> str:
    """1.23e9 -> '1.23 G' (with unit); None -> '-'."""
    if value is None:
        return "-"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    if unit == "s" and 0 < abs(value) < 1:
        for factor, prefix in ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
            if abs(value) >= factor:
                return f"{value / factor:.3g} {prefix}s"
    return f"{value:.4g} {unit}".rstrip()


def _rows(report, depth: int = 1):
    def walk(entries, level):
        for k in entries:
            yield level, k
            if level < depth:
                yield from walk(k["sub_entries"], level + 1)

    yield from walk(report["lines"]["kernels"], 0)


def _short(expr: str) -> str:
    """The compact (factored, kv_len) form of a report formula."""
    return pretty(_parse_report(expr), factor=False)


def _parse_report(text: str):
    """``parse(text)``; a top-level ``Max``/``Min`` of a report (peak memory) is already reduced,
    so its arguments are parsed one by one and not compared pairwise again (sympy's comparison
    of many polynomial arguments takes seconds; the printed result is the same)."""
    for name, fn in (("Max", sympy.Max), ("Min", sympy.Min)):
        if text.startswith(name + "(") and text.endswith(")"):
            parts = _top_level_args(text[len(name) + 1:-1])
            if parts and len(parts) > 1:
                args = [parse(p) for p in parts]
                if not any(a.is_Number or a.has(sympy.Max, sympy.Min) for a in args):  # else not a reduced one
                    return fn(*args, evaluate=False)
                return fn(*args)
    return parse(text)


def _top_level_args(text: str) -> list[str] | None:
    """``"a, Max(b, c), d"`` -> ``["a", "Max(b, c)", "d"]``; None where the brackets do not match."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts if depth == 0 else None


def _header(report) -> list[str]:
    b = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in report["bindings"].items())
    t = report["totals"]
    return [
        f"{report['model']} ({report['frontend']}, {report['scenario'] or 'graph'}) — {report['lines']['class_name']}",
        *_incomplete(report),
        f"bindings: {b}",
        f"total FLOPs:   {_short(t['flops']['expr'])}  = {human(t['flops']['value'], 'FLOP')}",
        f"bytes read:    {_short(t['bytes_read']['expr'])}  = {human(t['bytes_read']['value'], 'B')}",
        f"bytes written: {_short(t['bytes_written']['expr'])}  = {human(t['bytes_written']['value'], 'B')}",
        *_memory_lines(report),
        *training_lines(report, human),
        *_deployment(report),
    ]


def lower_bound_note(report) -> str:
    """One line saying the totals are lower bounds, naming the uncosted ops; empty when complete."""
    if not report.get("unsupported"):
        return ""
    ops = ", ".join(f"{u['op']}×{u['count']}" for u in report["unsupported"])
    return f"INCOMPLETE: totals are lower bounds — no cost rule for {ops}"


def _incomplete(report) -> list[str]:
    note = lower_bound_note(report)
    return [note] if note else []


def _deployment(report) -> list[str]:
    """The deployment assumptions a report was made under (KV cache, logits, collapse)."""
    out = []
    if report.get("kv_cache"):
        out.append(f"KV cache:      {report['kv_cache']['model']} ({report['kv_cache']['description']})")
    if report.get("logits"):
        out.append(f"logits:        {report['logits']} position(s) through the LM head")
    if report.get("sliding_windows"):
        windows = sorted(set(report["sliding_windows"].values()))
        out.append(f"sliding window: {', '.join(map(str, windows))} tokens (cache capped at window - 1)")
    for note in report.get("notes", []):
        out.append(f"note:          {note}")
    if report.get("collapsed"):
        c = report["collapsed"]
        out.append(f"collapsed:     {c['traced_layers']} of {c['num_layers']} blocks of {c['stack']} traced, "
                   "verified identical, repeated")
    return out


def _memory_lines(report) -> list[str]:
    """Peak memory, its breakdown at the peak, and the fit on the target (report["memory"])."""
    m = report.get("memory")
    if not m:
        return []
    out = [f"peak memory:   {_short(m['peak']['expr'])}  = {human(m['peak']['value'], 'B')}  "
           f"({m['mode']}, {m['lifetimes']} lifetimes)"]
    at = m.get("at_peak")
    if at:
        src = at.get("source") or {}
        parts = [f"{c} {human(v['value'], 'B')}" for c, v in at["breakdown"].items() if v["value"]]
        out.append(f"  at {at['node']} ({at['module'] or 'root'}, line {src.get('line', '?')}): " + " · ".join(parts))
    fit = m.get("fit")
    if fit and fit.get("fits") is not None:
        verdict = "fits" if fit["fits"] else "does NOT fit"
        out.append(f"  {verdict} {fit['target']} ({human(fit['capacity'], 'B')}, {fit['reserve']:.0%} reserved): "
                   f"headroom {human(fit['headroom'], 'B')}")
    return out


def render_table(report) -> str:
    """A plain-text per-line table with formulas and values."""
    lines = _header(report) + [""]
    cols = ("line", "type", "code", "FLOPs formula", "FLOPs", "read", "written", *phase_headers(report))
    rows = []
    keys = line_keys(report) if report.get("training") else {}
    for level, k in _rows(report):
        v = k["values"]
        rows.append((
            ("  " * level) + str(k["line"]),
            k["kernel_type"],
            k["code"][:48],
            k["flops"],
            human(v["flops"]),
            human(v["bytes_read"], "B"),
            human(v["bytes_written"], "B"),
            *line_phase_cells(report, keys.get(id(k), ""), human),
        ))
    widths = [min(72, max(len(c), *(len(r[i]) for r in rows))) for i, c in enumerate(cols)] if rows else [len(c) for c in cols]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    if rows:
        lines.append(fmt.format(*cols))
        lines.append(fmt.format(*("-" * w for w in widths)))
    for r in rows:
        lines.append(fmt.format(*(c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(r, widths))))
    lines += _kernel_lines(report) + _module_lines(report, rows)
    if report["unsupported"]:
        lines.append("")
        lines.append("unsupported ops (costed 0): " + ", ".join(f"{u['op']}×{u['count']}" for u in report["unsupported"]))
    return printable("\n".join(lines), keep_newlines=True) + "\n"  # no escape sequence reaches a terminal


def _kernel_lines(report) -> list[str]:
    """The kernel table, when a target and fusion mode were given."""
    if "kernels" not in report:
        return []
    t = report["time_s"]["value"]
    launches = report["kernel_totals"]["count"]
    out = ["", f"{report['mode']} kernels on {report['target']['name']}: {len(report['kernels'])} kernels, "
           f"{launches} launches, estimated time {human(t, 's')}",
           f"{'kernel':<28}{'kinds':<34}{'FLOPs':>10}{'bytes':>10}{'time':>11}{'×':>5}  bound"]
    for k in sorted(report["kernels"], key=lambda k: -(k["time_s"]["value"] or 0) * k.get("repeat", 1))[:25]:
        kinds = ",".join(dict.fromkeys(k["kinds"]))[:32]
        out.append(
            f"{k['id'][:27]:<28}{kinds:<34}{human(k['flops']['value']):>10}{human(k['bytes']['value'], 'B'):>10}"
            f"{human(k['time_s']['value'], 's'):>11}{'×' + str(k.get('repeat', 1)):>5}  {k['bound']}"
        )
    if len(report["kernels"]) > 25:
        out.append(f"... {len(report['kernels']) - 25} more (--format json for all)")
    return out


def _module_lines(report, line_rows) -> list[str]:
    """Modules by cost, for graphs without source lines (ONNX files without metadata)."""
    if line_rows:
        return []
    out = ["", f"{'module':<48}{'class':<28}{'FLOPs':>10}{'read':>10}{'written':>10}"]

    def walk(m, depth):
        if depth > 3:
            return
        out.append(
            f"{('  ' * depth + (m['path'] or '<model>'))[:47]:<48}{m['class'].rsplit('.', 1)[-1][:27]:<28}"
            f"{human(m['flops']['value']):>10}{human(m['bytes_read']['value'], 'B'):>10}{human(m['bytes_written']['value'], 'B'):>10}"
        )
        for c in m["children"]:
            walk(c, depth + 1)

    for m in report["modules"]:
        walk(m, 0)
    return out


def _md_cell(text) -> str:
    return md_text(text)  # HTML-escaped: a name holding <script> stays text (export/escape.py)


def _walk_modules(modules, depth=0):
    for m in modules:
        yield depth, m
        yield from _walk_modules(m["children"], depth + 1)


def render_markdown(report) -> str:
    """Lines, modules, kernels (when a target was given) and nodes, as Markdown tables."""
    out = ["# " + _md_cell(_header(report)[0]), "", *("- " + _md_cell(h) for h in _header(report)[1:]), ""]
    if report["lines"]["kernels"]:
        phases = phase_headers(report)
        keys = line_keys(report) if phases else {}
        out += ["## Lines", "", "| line | type | code | FLOPs | read | write | FLOPs value |" + "".join(f" {h} |" for h in phases),
                "|---|---|---|---|---|---|---|" + "---|" * len(phases)]
        for level, k in _rows(report):
            out.append(
                f"| {'↳ ' * level}{k['line']} | {k['kernel_type']} | {md_code(k['code'])} | {md_code(k['flops'])} | "
                f"{md_code(k['memory_access']['read'])} | {md_code(k['memory_access']['write'])} | {human(k['values']['flops'])} |"
                + "".join(f" {c} |" for c in line_phase_cells(report, keys.get(id(k), ""), human))
            )
        out.append("")
    phases = phase_headers(report)
    out += ["## Modules", "", "| module | class | repeat | FLOPs | read | written |" + "".join(f" {h} |" for h in phases),
            "|---|---|---|---|---|---|" + "---|" * len(phases)]
    for depth, m in _walk_modules(report["modules"]):
        out.append(
            f"| {'&nbsp;' * 2 * depth}{_md_cell(m['path'] or '(model)')} | {_md_cell(m['class'])} | {m.get('repeat', '')} | "
            f"{human(m['flops']['value'])} | {human(m['bytes_read']['value'], 'B')} | {human(m['bytes_written']['value'], 'B')} |"
            + "".join(f" {c} |" for c in module_phase_cells(report, m["path"], human))
        )
    out += training_markdown(report, human)
    if "kernels" in report:
        out += ["", f"## Kernels ({report['mode']} on {report['target']['name']})", "",
                "| kernel | kinds | FLOPs | bytes | time | × | bound |", "|---|---|---|---|---|---|---|"]
        for k in report["kernels"]:
            out.append(
                f"| {_md_cell(k['id'])} | {_md_cell(', '.join(dict.fromkeys(k['kinds'])))} | {human(k['flops']['value'])} | "
                f"{human(k['bytes']['value'], 'B')} | {human(k['time_s']['value'], 's')} | {k.get('repeat', 1)} | {k['bound']} |"
            )
    train = bool(report.get("training"))
    out += ["", "## Nodes", "", "| id | op | kind | module | FLOPs | read | written |" + (" phase |" if train else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if train else "")]
    for n in report["nodes"]:
        out.append(
            f"| {_md_cell(n['id'])} | {md_code(n['op'])} | {n['kind']} | {_md_cell(n['module'])} | {md_code(n['flops']['expr'])} | "
            f"{md_code(n['bytes_read']['expr'])} | {md_code(n['bytes_written']['expr'])} |" + (f" {n.get('phase', '')} |" if train else "")
        )
    return "\n".join(out) + "\n"


class _CleanWriter:
    """A csv writer whose text cells pass through :func:`csv_cell`."""

    def __init__(self, writer):
        self.writer = writer

    def writerow(self, cells) -> None:
        self.writer.writerow([csv_cell(c) for c in cells])


CSV_COLUMNS = ["table", "id", "op_or_class", "kind", "module", "line", "flops", "bytes_read", "bytes_written",
               "flops_value", "bytes_read_value", "bytes_written_value", "time_s_value"]


def render_csv(report) -> str:
    """One CSV with a ``table`` column: node, module, line and kernel rows."""
    buf = io.StringIO()
    w = _CleanWriter(csv.writer(buf))  # formula-looking cells neutralized (export/escape.py)
    w.writerow(CSV_COLUMNS)

    def costs(x, read="bytes_read", write="bytes_written"):
        return [x["flops"]["expr"], x[read]["expr"], x[write]["expr"] if write else "",
                x["flops"]["value"], x[read]["value"], x[write]["value"] if write else ""]

    for n in report["nodes"]:
        w.writerow(["node", n["id"], n["op"], n["kind"], n["module"], (n["source"] or {}).get("line", ""), *costs(n), ""])
    for _, m in _walk_modules(report["modules"]):
        w.writerow(["module", m["path"], m["class"], "", m["path"], "", *costs(m), ""])
    for _, k in _rows(report, depth=0):
        v = k["values"]
        w.writerow(["line", k["line"], k["code"], k["kernel_type"], report["lines"]["module_path"], k["line"],
                    k["flops"], k["memory_access"]["read"], k["memory_access"]["write"],
                    v["flops"], v["bytes_read"], v["bytes_written"], ""])
    for k in report.get("kernels", []):
        w.writerow(["kernel", k["id"], " ".join(k["nodes"]), ",".join(dict.fromkeys(k["kinds"])), k.get("module", ""), "",
                    k["flops"]["expr"], k["bytes"]["expr"], "", k["flops"]["value"], k["bytes"]["value"], "", k["time_s"]["value"]])
    for row in csv_rows(report):  # train: FLOPs of each module and line per phase
        w.writerow(row)
    return buf.getvalue()


RENDERERS = {"table": render_table, "md": render_markdown, "csv": render_csv}
