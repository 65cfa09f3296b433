"""The HTML report's memory section: peak, breakdown, largest tensors, and an SVG chart of
live bytes over program order (stacked by category, the peak marked, hovering a step names
its node). Drawn here from the report's ``memory`` keys at the report's bindings."""

from __future__ import annotations

from irtools.export.escape import html_text as escape  # control characters shown, not emitted
from irtools.export.text import human

COLORS = {
    "weights": "#4c72b0", "buffers": "#8172b3", "kv_cache": "#dd8452", "inputs": "#937860",
    "outputs": "#da8bc3", "activations": "#55a868", "temporaries": "#c44e52",
}
MAX_POINTS = 1500  # longer programs are shown by the largest step of each bucket


def _buckets(steps: list[dict], limit: int = MAX_POINTS) -> list[dict]:
    if len(steps) <= limit:
        return steps
    size = -(-len(steps) // limit)
    return [max(steps[i:i + size], key=lambda s: sum(s["bytes"])) for i in range(0, len(steps), size)]


def memory_chart_svg(memory: dict, width: int = 760, height: int = 300) -> str:
    """Stacked live bytes per step; one hover target per step; the peak marked."""
    timeline = memory.get("timeline")
    if not timeline or not timeline["steps"]:
        return "<p>No memory timeline: bind every dimension to draw it.</p>"
    cats, steps = timeline["categories"], _buckets(timeline["steps"])
    left, right, top, bottom = 70, 130, 16, 34
    w, h = width - left - right, height - top - bottom
    ymax = max(sum(s["bytes"]) for s in steps) or 1.0
    n = len(steps)

    def x(i: float) -> float:
        return left + (i + 0.5) * w / n

    def y(v: float) -> float:
        return top + h - v / ymax * h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="memchart">',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>']
    base = [0.0] * n
    for k, cat in enumerate(cats):
        upper = [base[i] + steps[i]["bytes"][k] for i in range(n)]
        if any(steps[i]["bytes"][k] for i in range(n)):
            pts = [f"{x(i):.1f},{y(upper[i]):.1f}" for i in range(n)] + \
                  [f"{x(i):.1f},{y(base[i]):.1f}" for i in reversed(range(n))]
            parts.append(f'<polygon points="{" ".join(pts)}" fill="{COLORS.get(cat, "#999")}" fill-opacity="0.85">'
                         f'<title>{escape(cat)}</title></polygon>')
            ly = top + 14 * k + 10
            parts.append(f'<rect x="{left + w + 10}" y="{ly - 9}" width="10" height="10" fill="{COLORS.get(cat, "#999")}"/>'
                         f'<text x="{left + w + 24}" y="{ly}" font-size="11">{escape(cat)}</text>')
        base = upper
    peak = max(range(n), key=lambda i: (base[i], -i))
    px = x(peak)
    parts.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + h}" stroke="#000" stroke-dasharray="4,3"/>')
    parts.append(f'<text x="{min(px + 4, left + w - 120):.1f}" y="{top + 12}" font-size="11">peak {escape(human(base[peak], "B"))}'
                 f' at {escape(steps[peak]["node"])}</text>')
    for i, s in enumerate(steps):  # hover targets
        detail = "; ".join(f"{c} {human(v, 'B')}" for c, v in zip(cats, s["bytes"]) if v)
        tip = f"{s['id']} — {s['node']} {s['op']} ({s['module'] or 'root'}, line {s['line']}): {human(sum(s['bytes']), 'B')}\n{detail}"
        parts.append(f'<rect x="{left + i * w / n:.1f}" y="{top}" width="{max(w / n, 0.5):.2f}" height="{h}" '
                     f'fill="transparent" data-step="{i}"><title>{escape(tip)}</title></rect>')
    for frac in (0, 0.5, 1):
        parts.append(f'<text x="{left - 6}" y="{y(ymax * frac) + 4:.1f}" font-size="10" text-anchor="end">'
                     f'{escape(human(ymax * frac, "B"))}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
                 f'program order ({len(timeline["steps"])} steps, {escape(memory.get("mode", ""))})</text>')
    parts.append("</svg>")
    return "".join(parts)


def memory_section(report: dict) -> str:
    """The HTML of the memory section (empty note when the report has none)."""
    m = report.get("memory")
    if not m:
        return "<p>No memory analysis in this report.</p>"
    rows = [f'<tr><th>peak</th><td class="num">{escape(human(m["peak"]["value"], "B"))}</td>'
            f'<td><code>{escape(m["peak"]["expr"])}</code></td></tr>']
    at = m.get("at_peak")
    if at:
        src = at.get("source") or {}
        rows.append(f'<tr><th>at</th><td colspan="2">{escape(at["node"])} <code>{escape(at["op"])}</code> in '
                    f'{escape(at["module"] or "(root)")}, line {escape(str(src.get("line", "?")))}: '
                    f'<code>{escape(src.get("code", ""))}</code></td></tr>')
        for c, v in at["breakdown"].items():
            if v["value"]:
                rows.append(f'<tr><td>&nbsp;&nbsp;{escape(c)}</td><td class="num">{escape(human(v["value"], "B"))}</td>'
                            f'<td><code>{escape(v["expr"])}</code></td></tr>')
    fit = m.get("fit")
    if fit and fit.get("fits") is not None:
        rows.append(f'<tr><th>{"fits" if fit["fits"] else "does not fit"}</th><td class="num">'
                    f'{escape(human(fit["headroom"], "B"))}</td><td>headroom on {escape(fit["target"])} '
                    f'({escape(human(fit["capacity"], "B"))}, {fit["reserve"]:.0%} reserved)</td></tr>')
    largest = "".join(
        f'<tr><td>{escape(t["value"])}</td><td>{escape(t["category"])}</td><td class="num">{escape(human(t["bytes"], "B"))}</td>'
        f'<td>{escape(" × ".join(t["shape"]))} {escape(t["dtype"])}</td>'
        f'<td>{escape(str((t.get("source") or {}).get("line", "")))} <code>{escape((t.get("source") or {}).get("code", ""))}</code></td></tr>'
        for t in m.get("largest", []))
    note = (f'<p class="note">{escape(m["mode"])} mode, {escape(m["lifetimes"])} lifetimes, KV cache '
            f'{escape(m["kv_cache"])}; values at the report\'s bindings.</p>')
    head = "<tr><th>tensor</th><th>category</th><th>bytes</th><th>shape</th><th>made at</th></tr>"
    return (f'{note}<table class="grid">{"".join(rows)}</table><div class="scroll">{memory_chart_svg(m)}</div>'
            f'<h3>Largest tensors at the peak</h3><table class="grid">{head}{largest}</table>')
