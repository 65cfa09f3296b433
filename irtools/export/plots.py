"""matplotlib plots (Agg): the roofline of the kernels, and costs by module.

Both writers save PNG and SVG: ``out.png`` -> ``out.png`` + ``out.svg`` (any other suffix,
or none, gets both suffixes added).
"""

from __future__ import annotations

import io
from pathlib import Path

from irtools.export import ExportError, as_report, write_atomic
from irtools.export.escape import printable


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(text) -> str:
    """Model-provided text for a figure: control characters shown as escapes (SVG is XML), ``$``
    kept literal (no mathtext)."""
    return printable(text).replace("$", r"\$")


def figure_paths(path) -> list[Path]:
    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    return [base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")]


def _save(fig, path, force: bool) -> list[Path]:
    paths = figure_paths(path)
    if not force:
        for p in paths:
            if p.exists():
                raise ExportError(f"{p} exists (use --force to overwrite)")
    out = []
    for p in paths:
        buf = io.BytesIO()
        fig.savefig(buf, format=p.suffix[1:], dpi=120, bbox_inches="tight")
        out.append(write_atomic(p, buf.getvalue(), force=force))
    _pyplot().close(fig)
    return out


def roofline_points(report) -> list[dict]:
    """Per kernel: intensity (FLOP/B), attained FLOP/s (flops / time), module, bound."""
    points = []
    for k in report.get("kernels") or []:
        f, b, t = k["flops"].get("value"), k["bytes"].get("value"), k["time_s"].get("value")
        if not f or not b or not t:
            continue
        points.append({"id": k["id"], "intensity": f / b, "flops_s": f / t, "module": k.get("module") or "(root)", "bound": k.get("bound")})
    return points


def roofs(target: dict) -> tuple[dict[str, float], float]:
    """Compute roofs by dtype (η_c applied) and the memory slope (BW·η_m)."""
    peaks = {d: p * target.get("eta_c", 1.0) for d, p in (target.get("peak_flops") or {}).items()}
    return peaks, target.get("memory_bandwidth", 0.0) * target.get("eta_m", 1.0)


def plot_roofline(report):
    """The roofline figure: kernels as points against the target's roofs."""
    if not report.get("kernels"):
        raise ExportError("a roofline plot needs kernels: give a target (--target) and a fusion mode")
    plt = _pyplot()
    points = roofline_points(report)
    if not points:
        raise ExportError("no kernel has FLOPs, bytes and time at these bindings: bind every dimension (--dim)")
    peaks, bw = roofs(report.get("target") or {})
    used = {k.get("dtype") for k in report["kernels"]} | {"fp32"}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    lo = min(p["intensity"] for p in points) / 4
    hi = max(max(p["intensity"] for p in points) * 4, max(peaks.values(), default=1) / max(bw, 1) * 4)
    for dtype, peak in sorted(peaks.items(), key=lambda x: x[1]):
        if dtype not in used:
            continue
        knee = peak / bw if bw else lo
        ax.plot([lo, knee, hi], [lo * bw, peak, peak], lw=1.2, label=f"roof {dtype}: {peak / 1e12:.3g} TFLOP/s")
    colors = {"memory": "tab:blue", "compute": "tab:orange"}
    for p in points:
        ax.scatter(p["intensity"], p["flops_s"], color=colors.get(p["bound"], "gray"), zorder=3, s=28)
        ax.annotate(_label(f"{p['id']} {p['module']}"), (p["intensity"], p["flops_s"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attained FLOP/s")
    target = (report.get("target") or {}).get("name", "?")
    ax.set_title(_label(f"{report.get('model', '')} — {report.get('mode', '')} kernels on {target} (blue: memory-, orange: compute-bound)"), fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def module_rows(report, depth: int = 1) -> tuple[str, list[tuple[str, float]]]:
    """(metric, [(module label, value)]): kernel time by module when present, else FLOPs."""
    if report.get("time_by_module"):
        rows = [(r["path"] or "(root)", r["time_s"].get("value")) for r in report["time_by_module"] if r["path"]]
        if rows:
            return "time (s)", [(k, v or 0.0) for k, v in rows]
    rows = []

    def walk(m, level):
        if 0 < level <= depth and (level == depth or not m.get("children")):
            rows.append((m["path"], m["flops"].get("value") or 0.0))
        for c in m.get("children", []):
            walk(c, level + 1)

    for root in report.get("modules", []):
        walk(root, 0)
        if not rows:
            rows.append((root["path"] or "(root)", root["flops"].get("value") or 0.0))
    return "FLOPs", rows


def plot_modules(report, depth: int = 1):
    plt = _pyplot()
    metric, rows = module_rows(report, depth)
    rows.sort(key=lambda r: r[1])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    ax.barh([_label(r[0]) for r in rows], [r[1] for r in rows], color="tab:blue")
    ax.set_xlabel(metric)
    ax.set_title(_label(f"{report.get('model', '')}: {metric} by module"), fontsize=9)
    return fig


def write_roofline(obj, path, *, force: bool = False, **opts) -> list[Path]:
    """Write the roofline plot as PNG and SVG."""
    return _save(plot_roofline(as_report(obj)), path, force)


def write_module_chart(obj, path, *, force: bool = False, depth: int = 1, **opts) -> list[Path]:
    """Write the bar chart of time (or FLOPs) by module as PNG and SVG."""
    return _save(plot_modules(as_report(obj), depth), path, force)
