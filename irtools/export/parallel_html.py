"""HTML of an ``irtools plan`` report (``irtools.plan/1``): the ranked layouts, the best layout's
per-device roles, a timeline of one step on one device (compute, communication, bubble) and,
for decode, the serving curves (throughput and time per output token by batch). It draws what
the report holds and computes nothing."""

from __future__ import annotations

from irtools.export.escape import html_text as escape

KIND_COLORS = {"compute": "#4c72b0", "communication": "#dd8452", "bubble": "#c8c8c8"}
GB = 1e9


def timeline_svg(segments: list[dict], width: int = 900, height: int = 90) -> str:
    """One bar per segment along time; hovering names it."""
    if not segments:
        return "<p>No timeline.</p>"
    end = max(s["start"] + s["duration"] for s in segments) or 1.0
    left, right, top, bar = 10, 10, 10, 36
    w = width - left - right
    parts = [f'<svg class="timeline" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for s in segments:
        x = left + s["start"] / end * w
        dx = max(s["duration"] / end * w, 0.5)
        color = KIND_COLORS.get(s["kind"], "#999")
        tip = f"{s['label']}: {s['duration'] * 1e3:.3f} ms at {s['start'] * 1e3:.3f} ms"
        parts.append(f'<rect x="{x:.2f}" y="{top}" width="{dx:.2f}" height="{bar}" fill="{color}">'
                     f'<title>{escape(tip)}</title></rect>')
    parts.append(f'<text x="{left}" y="{top + bar + 18}" font-size="11">0</text>')
    parts.append(f'<text x="{width - right}" y="{top + bar + 18}" font-size="11" text-anchor="end">'
                 f'{end * 1e3:.2f} ms</text>')
    x = left + 40
    for kind, color in KIND_COLORS.items():
        parts.append(f'<rect x="{x}" y="{top + bar + 8}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{x + 14}" y="{top + bar + 17}" font-size="11">{kind}</text>')
        x += 110
    parts.append("</svg>")
    return "".join(parts)


def curve_svg(xs: list[float], series: dict[str, list[float]], fits: list[bool], xlabel: str, width: int = 440,
              height: int = 260) -> str:
    """A log2-x line chart of one series per key (one y axis each, scaled to its own max); points that
    do not fit in memory hollow."""
    import math

    if not xs:
        return ""
    left, right, top, bottom = 60, 20, 16, 40
    w, h = width - left - right, height - top - bottom
    lx = [math.log2(x) for x in xs]
    x0, x1 = min(lx), max(lx) if max(lx) > min(lx) else min(lx) + 1
    colors = ["#4c72b0", "#c44e52"]
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for k, (name, ys) in enumerate(series.items()):
        ymax = max(ys) or 1.0
        pts = [(left + (a - x0) / (x1 - x0) * w, top + h - y / ymax * h) for a, y in zip(lx, ys)]
        parts.append(f'<polyline fill="none" stroke="{colors[k % 2]}" stroke-width="2" '
                     f'points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in pts)}"/>')
        for (px, py), y, ok, xv in zip(pts, ys, fits, xs):
            fill = colors[k % 2] if ok else "white"
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{fill}" stroke="{colors[k % 2]}">'
                         f'<title>{escape(f"{xlabel} {xv:g}: {name} {y:.4g}" + ("" if ok else " (does not fit)"))}</title></circle>')
        parts.append(f'<text x="{left + 4 + 150 * k}" y="{top + 10}" font-size="11" fill="{colors[k % 2]}">'
                     f'{escape(name)} (max {ymax:.4g})</text>')
    parts.append(f'<text x="{left + w / 2}" y="{height - 8}" font-size="11" text-anchor="middle">{escape(xlabel)} (log scale)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[dict], scenario: str) -> str:
    head = "<tr><th>rank</th><th>layout</th><th>tokens/s</th><th>step (s)</th><th>MFU</th><th>GB/device</th><th>bubble</th></tr>"
    body = []
    for k, r in enumerate(rows, start=1):
        step = r.get("latency_s", r["step_s"])
        body.append(f"<tr><td>{k}</td><td>{escape(r['layout'])}</td><td>{r['tokens_per_s']:.4g}</td><td>{step:.4g}</td>"
                    f"<td>{r['mfu']:.1%}</td><td>{r['memory_bytes'] / GB:.2f}</td><td>{r['bubble_fraction']:.1%}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _roles(best: dict) -> str:
    rows = []
    for role, r in best["roles"].items():
        m = r["memory"]
        rows.append(f"<tr><td>{escape(role)}</td><td>{r['layers']:.0f}</td><td>{r['flops'] / 1e12:.3f}</td>"
                    f"<td>{r['bytes'] / GB:.2f}</td><td>{m['weights'] / GB:.2f}</td><td>{m['gradients'] / GB:.2f}</td>"
                    f"<td>{m['optimizer'] / GB:.2f}</td><td>{m['activations'] / GB:.2f}</td><td>{m['kv_cache'] / GB:.2f}</td>"
                    f"<td>{m['total'] / GB:.2f}</td><td>{r['compute_s'] * 1e3:.2f}</td><td>{r['tp_comm_s'] * 1e3:.2f}</td>"
                    f"<td>{r['pp_comm_s'] * 1e3:.2f}</td><td>{r['dp_comm_s'] * 1e3:.2f}</td><td>{r['ep_comm_s'] * 1e3:.2f}</td></tr>")
    head = ("<tr><th>role</th><th>layers</th><th>TFLOP</th><th>GB moved</th><th>weights GB</th><th>grads GB</th>"
            "<th>optimizer GB</th><th>activations GB</th><th>KV GB</th><th>total GB</th><th>compute ms</th>"
            "<th>TP ms</th><th>PP ms</th><th>DP ms</th><th>EP ms</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def parallel_section(report: dict) -> str:
    """The plan's body: ranked layouts, best layout's roles and timeline, serving curves."""
    out = [f"<p>{report['evaluated']} layouts evaluated, {report['fit']} fit in {report['budget_bytes'] / GB:.1f} GB per "
           f"device; {report['dropped']['memory']} do not fit, {report['dropped']['ranked_lower']} rank lower.</p>",
           _table(report["top"], report["scenario"])]
    best = report.get("best")
    if best:
        step = best["step"]
        out += [f"<h2>Best layout: {escape(best['layout']['label'])}</h2>",
                f"<p>step {step['time']:.4g} s, {step['tokens_per_s']:.4g} tokens/s, MFU {step['mfu']:.1%}, "
                f"bubble {step['bubble_fraction']:.1%} = {escape(best['formulas']['bubble_fraction'])}</p>",
                _roles(best), "<h3>One step on the first stage's device</h3>", timeline_svg(best["timeline"])]
    s = report.get("serving")
    if s:
        out += [f"<h2>Serving ({escape(s['layout'])})</h2>",
                f"<p>time to first token {s['ttft_s'] * 1e3:.1f} ms ({s['prompt_tokens']} prompt tokens), time per output "
                f"token {s['tpot_at_best_s'] * 1e3:.2f} ms at the chosen batch</p>",
                curve_svg(s["batch"], {"tokens/s": s["tokens_per_s"], "TPOT s": s["tpot_s"]}, s["fits"], "batch")]
    out.append("<h3>Assumptions</h3><ul>" + "".join(f"<li>{escape(a)}</li>" for a in report["assumptions"]) + "</ul>")
    return "".join(out)


def render_plan_html(report: dict) -> str:
    title = f"irtools plan: {report['model']} on {report['devices']} x {report['target']} ({report['scenario']})"
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(2){text-align:left}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{style}</style>"
            f"</head><body><h1>{escape(title)}</h1>{parallel_section(report)}</body></html>\n")


__all__ = ["curve_svg", "parallel_section", "render_plan_html", "timeline_svg"]
