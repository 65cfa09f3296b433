"""The ``training`` section of the JSON report (docs/report.md), from ``AnalysisResult.training``
(passes/training.py): per-phase costs, the step's FLOPs, memory, time and MFU, and the phase
split of every module and source line. It serializes; it computes nothing but values."""

from __future__ import annotations

from typing import Any

import sympy

PHASES = ("forward", "backward", "recompute", "optimizer")


def _cost(result, expr) -> dict[str, Any]:
    expr = sympy.sympify(expr)
    return {"expr": str(expr), "value": result.value(expr)}


def _value(result, expr) -> float | None:
    return None if expr is None else result.value(sympy.sympify(expr))


def _memory(result, mem) -> dict[str, Any]:
    values = [(i, _value(result, sympy.Add(*mem.breakdown(i).values()))) for i in mem.candidates]
    known = [(i, v) for i, v in values if v is not None]
    out: dict[str, Any] = {
        "peak": _cost(result, mem.peak),
        "totals": {c: _cost(result, e) for c, e in mem.totals.items()},
        "modules": [{"path": p, **{c: _value(result, e) for c, e in row.items()}} for p, row in mem.modules.items()],
        "at_peak": None,
    }
    if known:
        step, total = max(known, key=lambda iv: iv[1])
        out["at_peak"] = {
            "step": step, "node": mem.steps[step], "phase": mem.phases[step], "bytes": total,
            "breakdown": {c: _value(result, e) for c, e in mem.breakdown(step).items() if e != 0},
        }
    return out


def _time(result, tr) -> dict[str, Any] | None:
    if tr.time is None:
        return None
    out = {p: _cost(result, t) for p, t in tr.time.items()}
    out["tokens_per_s"] = _cost(result, tr.tokens_per_s)
    out["mfu"] = _cost(result, tr.mfu)
    out["hfu"] = _cost(result, tr.hfu)
    out["peak_flops"] = _value(result, tr.peak_flops)
    return out


def _fit(fit) -> dict[str, Any] | None:
    if fit is None:
        return None
    return {"target": fit.target, "capacity": fit.capacity, "reserve": fit.reserve, "budget": fit.usable,
            "peak": fit.peak, "fits": fit.fits, "headroom": fit.headroom}


def training_section(result) -> dict[str, Any] | None:
    """The report's ``training`` dict, or None for an inference analysis."""
    tr = getattr(result, "training", None)
    if tr is None:
        return None
    opt, plan = tr.optimizer, tr.recompute
    return {
        "loss": tr.loss,
        "optimizer": {
            "name": opt.name, "variant": opt.variant, "mixed_precision": opt.mixed, "description": opt.describe(),
            "flops_per_param": opt.flops_per_param(),
            "bytes_per_param": {k: _cost(result, v) for k, v in opt.bytes_per_param().items()},
        },
        "recompute": {"policy": plan.policy, "note": plan.note, "regions": list(plan.regions), "detected": plan.detected,
                      "nodes": len(plan.nodes)},
        "micro_batches": tr.micro_batches,
        "phases": {p: {c: _cost(result, e) for c, e in costs.items()} for p, costs in tr.phases.items()},
        "flops": {"model": _cost(result, tr.model_flops), "hardware": _cost(result, tr.hardware_flops),
                  "step": _cost(result, tr.step_flops)},
        "tokens": _cost(result, tr.tokens),
        "params": _cost(result, tr.params),
        "memory": _memory(result, tr.memory) if tr.memory is not None else None,
        "time": _time(result, tr),
        "fit": _fit(getattr(tr, "fit", None)),
        "modules": {path: {p: _value(result, e) for p, e in split.items()} for path, split in tr.modules.items()},
        "lines": {key: {p: _value(result, e) for p, e in split.items()} for key, split in tr.lines.items()},
    }
