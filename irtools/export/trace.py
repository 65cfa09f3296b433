"""Chrome / Perfetto trace of the estimated kernel timeline (needs kernel times).

Kernels run back to back on their stream (``kernel["stream"]``, default 0), one track per
stream; each event's args carry the module path, source line and costs.
"""

from __future__ import annotations

from pathlib import Path

from irtools.export import ExportError, as_report, write_atomic
from irtools.export.escape import json_text


def trace_events(report) -> dict:
    """``{"traceEvents": [...]}`` with one complete ("X") event per kernel (µs)."""
    kernels = report.get("kernels")
    if not kernels:
        raise ExportError("a trace needs kernel times: give a target (--target) and a fusion mode")
    nodes = {n["id"]: n for n in report["nodes"]}
    pid = 1
    model = report.get("model", "model")
    events = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"{model} (estimated)"}}]
    clock: dict[int, float] = {}
    for k in kernels:
        t = k["time_s"].get("value")
        if t is None:
            raise ExportError(f"kernel {k['id']} has no time at these bindings: bind every dimension (--dim)")
        tid = int(k.get("stream", 0))
        if tid not in clock:
            clock[tid] = 0.0
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": f"stream {tid}"}})
        members = [nodes[n] for n in k["nodes"] if n in nodes]
        src = next((m["source"] for m in members if m.get("source")), None) or {}
        module = k.get("module", members[0].get("module", "") if members else "")
        events.append({
            "name": f"{k['id']} {k.get('pattern') or '+'.join(k['kinds'])}",
            "cat": k.get("bound") or "kernel",
            "ph": "X", "ts": clock[tid] * 1e6, "dur": t * 1e6, "pid": pid, "tid": tid,
            "args": {
                "module": module, "file": src.get("file"), "line": src.get("line"), "code": src.get("code"),
                "nodes": k["nodes"], "kinds": k["kinds"], "bound": k.get("bound"),
                "flops": k["flops"].get("value"), "bytes": k["bytes"].get("value"), "time_s": t,
            },
        })
        clock[tid] += t
    target = report.get("target") or {}
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "metadata": {"model": model, "mode": report.get("mode"), "target": target.get("name"), "bindings": report.get("bindings")}}


def write_trace(obj, path, *, force: bool = False, **opts) -> list[Path]:
    """Write the trace JSON (open in ui.perfetto.dev or chrome://tracing)."""
    return [write_atomic(path, json_text(trace_events(as_report(obj))) + "\n", force=force)]
