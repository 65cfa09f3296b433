"""The HTML page's training section: the phase split of FLOPs, time and memory as stacked bars,
and per-module and per-line phase tables (values at the report's bindings)."""

from __future__ import annotations

from html import escape

from irtools.export.text import human
from irtools.export.training_text import PHASES, line_keys, shown_phases, training_lines

COLORS = {"forward": "#4e79a7", "backward": "#f28e2b", "recompute": "#e15759", "optimizer": "#76b7b2",
          "accumulation": "#59a14f", "parameters": "#4e79a7", "gradients": "#f28e2b", "master_weights": "#9c755f",
          "optimizer_states": "#76b7b2", "saved_activations": "#e15759", "activations": "#edc948",
          "optimizer_workspace": "#b07aa1", "inputs": "#bab0ac", "buffers": "#ff9da7", "outputs": "#79706e"}


def _human(value, unit=""):
    return human(value, unit)


def stacked_bar(title: str, parts: list[tuple[str, float]], unit: str, width: int = 640) -> str:
    """One horizontal stacked bar (SVG) with a legend; hovering a segment names it."""
    parts = [(k, v) for k, v in parts if v]
    total = sum(v for _, v in parts)
    if not total:
        return ""
    x, rects, legend = 0.0, [], []
    for k, v in parts:
        w = width * v / total
        color = COLORS.get(k, "#999")
        rects.append(f'<rect x="{x:.1f}" y="18" width="{w:.1f}" height="22" fill="{color}">'
                     f'<title>{escape(k)}: {escape(_human(v, unit))} ({v / total:.1%})</title></rect>')
        legend.append(f'<span class="key" style="border-left:10px solid {color};padding-left:4px;margin-right:10px">'
                      f'{escape(k.replace("_", " "))} {escape(_human(v, unit))}</span>')
        x += w
    return (f'<div class="phase-bar"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="44">'
            f'<text x="0" y="12" font-size="12">{escape(title)}: {escape(_human(total, unit))}</text>{"".join(rects)}</svg>'
            f'<div>{"".join(legend)}</div></div>')


def _split_table(rows: list[tuple[str, str, dict]], phases: list[str]) -> str:
    head = "<tr><th>" + "</th><th>".join(["", "", *(f"{p} FLOPs" for p in phases), "split"]) + "</th></tr>"
    body = []
    for key, label, split in rows:
        vals = [split.get(p) or 0 for p in phases]
        total = sum(vals)
        bar = "".join(f'<span style="display:inline-block;height:10px;width:{120 * v / total:.1f}px;background:'
                      f'{COLORS[p]}" title="{p}"></span>' for p, v in zip(phases, vals) if total and v)
        body.append(f"<tr><td>{escape(key)}</td><td><code>{escape(label)}</code></td>"
                    + "".join(f'<td class="num">{escape(_human(v))}</td>' for v in vals) + f"<td>{bar}</td></tr>")
    return f'<table class="grid">{head}{"".join(body)}</table>'


def training_html(report) -> str:
    """The section's body, or an empty string for an inference report."""
    t = report.get("training")
    if not t:
        return ""
    phases = shown_phases(report)
    out = ["<ul>" + "".join(f"<li>{escape(line.strip())}</li>" for line in training_lines(report, human)) + "</ul>"]
    out.append(stacked_bar("FLOPs per phase", [(p, t["phases"][p]["flops"]["value"] or 0) for p in PHASES], "FLOP"))
    if t.get("time"):
        out.append(stacked_bar("time per step", [(p, t["time"][p]["value"] or 0)
                                                 for p in (*PHASES, "accumulation") if p in t["time"]], "s"))
    mem = t.get("memory") or {}
    at = (mem.get("at_peak") or {}).get("breakdown") or {}
    if at:
        out.append(stacked_bar(f"memory at the peak ({mem['at_peak']['node']}, {mem['at_peak']['phase']})",
                               list(at.items()), "B"))
    modules = [(path or "(model)", "", split) for path, split in t["modules"].items() if path.count(".") <= 2]
    out.append("<h3>Modules by phase</h3>" + _split_table(modules, phases))
    keys = line_keys(report)
    lines = []

    def walk(entries, level):
        for e in entries:
            lines.append(("↳ " * level + str(e["line"]), e["code"][:60], t["lines"].get(keys[id(e)], {})))
            walk(e["sub_entries"], level + 1)

    walk(report["lines"]["kernels"], 0)
    out.append("<h3>Lines by phase</h3><p class=\"note\">The backward of each forward line is charged to that line.</p>"
               + _split_table(lines, phases))
    return "".join(out)
