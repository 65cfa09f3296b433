"""Text and Markdown pieces of a training report (``report["training"]``, irtools/training_report.py):
the step's phases, FLOPs, memory, time and MFU, and the phase split of each line and module.
Numbers are formatted by the ``human`` function the caller passes (``irtools.export.text.human``)."""

from __future__ import annotations

PHASES = ("forward", "backward", "recompute", "optimizer")
SHORT = {"forward": "fwd", "backward": "bwd", "recompute": "recomp", "optimizer": "optim"}


def shown_phases(report) -> list[str]:
    """The phases with any FLOPs in a training report (forward and backward always)."""
    t = report.get("training")
    if not t:
        return []
    return [p for p in PHASES if p in ("forward", "backward") or (t["phases"][p]["flops"]["value"] or 0) != 0]


def line_phase_cells(report, key: str, _human) -> list[str]:
    """FLOPs per shown phase of a line (``key``: the line number, sub-lines ``parent/line``)."""
    t = report.get("training")
    if not t:
        return []
    split = t["lines"].get(key, {})
    return [_human(split.get(p)) if split.get(p) is not None else "0" for p in shown_phases(report)]


def module_phase_cells(report, path: str, _human) -> list[str]:
    t = report.get("training")
    if not t:
        return []
    split = t["modules"].get(path, {})
    return [_human(split.get(p)) if split.get(p) is not None else "0" for p in shown_phases(report)]


def phase_headers(report) -> list[str]:
    return [f"{SHORT[p]} FLOPs" for p in shown_phases(report)]


def training_lines(report, _human) -> list[str]:
    """Header lines: loss, optimizer, recompute, per-phase FLOPs, memory, time and MFU."""
    t = report.get("training")
    if not t:
        return []
    f = t["flops"]
    out = [
        f"training:      loss: {t['loss'] or 'the module output'}; {t['optimizer']['description']}",
        f"  recompute:   {t['recompute']['note']}; micro-batches {t['micro_batches']}",
        "  FLOPs:       " + " · ".join(f"{p} {_human(t['phases'][p]['flops']['value'])}" for p in shown_phases(report))
        + f" · step {_human(f['step']['value'], 'FLOP')} (model {_human(f['model']['value'], 'FLOP')}, "
        f"{_human(t['tokens']['value'])} tokens)",
    ]
    mem = t.get("memory")
    if mem:
        at = mem.get("at_peak") or {}
        parts = " · ".join(f"{c.replace('_', ' ')} {_human(v, 'B')}" for c, v in (at.get("breakdown") or {}).items() if v)
        where = f" at {at['node']} ({at['phase']})" if at else ""
        out.append(f"  memory:      peak {_human(mem['peak']['value'], 'B')}{where}: {parts}")
    time = t.get("time")
    if time:
        phases = " · ".join(f"{p} {_human(time[p]['value'], 's')}" for p in (*PHASES, "accumulation")
                            if p in time and (time[p]["value"] or 0) != 0)
        mfu = time["mfu"]["value"]
        out.append(f"  time:        step {_human(time['step']['value'], 's')} ({phases}); "
                   f"{_human(time['tokens_per_s']['value'])} tokens/s; MFU {'-' if mfu is None else f'{mfu:.1%}'}")
    fit = t.get("fit")
    if fit and fit.get("fits") is not None:
        verdict = "fits" if fit["fits"] else "does NOT fit"
        out.append(f"  {verdict} {fit['target']} ({_human(fit['capacity'], 'B')}, {fit['reserve']:.0%} reserved): "
                   f"headroom {_human(fit['headroom'], 'B')}")
    return out


def training_markdown(report, _human) -> list[str]:
    """A Markdown section: phases, memory categories, time."""
    t = report.get("training")
    if not t:
        return []
    out = ["", "## Training step", "", "| phase | FLOPs | matmul FLOPs | bytes read | bytes written | time |",
           "|---|---|---|---|---|---|"]
    time = t.get("time") or {}
    for p in PHASES:
        c = t["phases"][p]
        tv = time.get(p, {}).get("value") if time else None
        out.append(f"| {p} | {_human(c['flops']['value'])} | {_human(c['matmul_flops']['value'])} | "
                   f"{_human(c['bytes_read']['value'], 'B')} | {_human(c['bytes_written']['value'], 'B')} | {_human(tv, 's')} |")
    mem = t.get("memory")
    if mem:
        out += ["", "| memory | total | at the peak |", "|---|---|---|"]
        at = (mem.get("at_peak") or {}).get("breakdown") or {}
        for c, v in mem["totals"].items():
            out.append(f"| {c.replace('_', ' ')} | {_human(v['value'], 'B')} | {_human(at.get(c), 'B')} |")
        out.append(f"| peak | | {_human(mem['peak']['value'], 'B')} |")
    return out


def line_keys(report) -> dict[int, str]:
    """id(line entry) -> its key in ``report["training"]["lines"]`` (sub-lines ``parent/line``)."""
    out: dict[int, str] = {}

    def walk(entries, prefix):
        for e in entries:
            out[id(e)] = f"{prefix}{e['line']}"
            walk(e["sub_entries"], f"{prefix}{e['line']}/")

    walk(report["lines"]["kernels"], "")
    return out


def csv_rows(report) -> list[list]:
    """Rows of table ``phase``: FLOPs of each module and line per phase (same columns as the others)."""
    t = report.get("training")
    if not t:
        return []
    rows = []
    for kind, table in (("module", t["modules"]), ("line", t["lines"])):
        for key, split in table.items():
            for phase, value in split.items():
                rows.append(["phase", f"{kind}:{key}", phase, "", key if kind == "module" else "",
                             key if kind == "line" else "", "", "", "", value, "", "", ""])
    return rows
