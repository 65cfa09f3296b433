"""The memory chart as PNG and SVG (matplotlib, imported on first use): live bytes at each
step of the program, stacked by category, the peak marked with its node. ``out.png`` ->
``out.png`` + ``out.svg`` (as irtools.export.plots writes its figures)."""

from __future__ import annotations

from pathlib import Path

from irtools.export import ExportError, as_report
from irtools.export.memory_svg import COLORS
from irtools.export.text import human


def plot_memory(report):
    """The figure of ``report["memory"]["timeline"]``."""
    from irtools.export.plots import _pyplot

    m = report.get("memory") or {}
    timeline = m.get("timeline")
    if not timeline or not timeline["steps"]:
        raise ExportError("no memory timeline at these bindings: bind every dimension (--dim)")
    plt = _pyplot()
    cats, steps = timeline["categories"], timeline["steps"]
    xs = list(range(len(steps)))
    series = [[s["bytes"][k] for s in steps] for k in range(len(cats))]
    keep = [k for k in range(len(cats)) if any(series[k])]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.stackplot(xs, *(series[k] for k in keep), labels=[cats[k] for k in keep],
                 colors=[COLORS.get(cats[k], "#999") for k in keep], alpha=0.85, step="mid")
    totals = [sum(s["bytes"]) for s in steps]
    peak = max(xs, key=lambda i: (totals[i], -i))
    ax.axvline(peak, color="black", ls="--", lw=1)
    ax.annotate(f"peak {human(totals[peak], 'B')}\n{steps[peak]['node']} (line {steps[peak]['line']})",
                xy=(peak, totals[peak]), xytext=(8, -28), textcoords="offset points", fontsize=9)
    ax.set_xlabel(f"program order ({len(steps)} steps, {m.get('mode')} mode, {m.get('lifetimes')} lifetimes)")
    ax.set_ylabel("live bytes")
    ax.set_xlim(0, max(len(steps) - 1, 1))
    ax.set_ylim(0, max(totals) * 1.12 or 1)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: human(v, "B")))
    ax.set_title(f"{report.get('model', '')}: memory over program order")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def write_memory_chart(obj, path, *, force: bool = False, **opts) -> list[Path]:
    """Write the memory chart of a result or report as PNG and SVG."""
    from irtools.export.plots import _save

    return _save(plot_memory(as_report(obj)), path, force)
