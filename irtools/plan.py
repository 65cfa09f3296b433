"""``irtools plan``: how to spread a model over N devices (docs/parallel.md).

Captures the model once (a collapsed layer stack where the blocks repeat; for training the
forward with logits at every position, the backward costed by convention), builds its
per-device model (``passes.parallel.device``), searches the layouts (``passes.parallel.plan``)
and turns the result into a report dict (``irtools.plan/1``): the top layouts, why the others
fell out, the best layout's per-device report for each role with its formulas, a timeline of
one step on one device and, for decode, the serving curves (throughput by batch, TTFT, TPOT).
Renderers: :func:`render_table` here, ``irtools.export.parallel_html`` for HTML.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import sympy

from irtools.ir.errors import UsageError
from irtools.ir.symbols import pretty

SCHEMA = "irtools.plan/1"
DEFAULTS = {"train": {"batch": 512, "seq_len": 2048}, "prefill": {"batch": 1, "seq_len": 2048},
            "decode": {"batch": 1, "seq_len": 1, "context": 2048}}
ASSUMPTIONS = (
    "precision: bf16 weights and activations (a_bytes = w_bytes = 2); training keeps fp32 master weights and "
    "AdamW moments (2 + 2 + 12 bytes per parameter, ZeRO paper)",
    "training: backward = 2 x forward compute per kernel; the forward is the captured graph with logits at every "
    "position; Megatron's vocab-parallel cross entropy (3 all-reduces of one fp32 value per token)",
    "1F1B pipeline schedule, stages balanced on per-layer time; bubble (pp-1)/(m+pp-1)",
    "overlap: data-parallel and ZeRO traffic hides behind backward (forward) compute, only its excess counts; "
    "tensor-, pipeline- and expert-parallel traffic is on the critical path (--no-overlap: everything adds)",
    "collectives: NCCL ring / tree, hierarchical across nodes, one NIC per device; ranks ordered tp, dp, pp",
    "decode: pp micro-batches of the layout's batch in flight; KV cache of every in-flight sequence held",
)


@dataclass
class PlanOptions:
    """What ``irtools plan`` was asked."""

    model: str | None
    target: str
    devices: int
    scenario: str = "train"
    objective: str = "throughput"
    batch: int | None = None  # train: global batch in sequences; prefill/decode: sequences per micro-batch
    seq_len: int | None = None  # train / prefill: tokens per sequence
    context: int | None = None  # decode: tokens already in the KV cache
    dims: dict = field(default_factory=dict)
    mode: str = "flash"
    overlap: bool = True
    top: int = 10
    reserve: float = 0.10
    flavor: str = "megatron"
    joint: bool = True  # train: memory from the sharded joint graph (passes.parallel.joint_memory)


def _capture(options: PlanOptions, scenario: str, seq_len: int | None, context: int | None):
    from irtools import pipeline

    dims = dict(options.dims)
    if scenario == "decode":
        dims.setdefault("cache_len", context)
        dims.setdefault("seq_len", 1)
    else:
        dims.setdefault("seq_len", seq_len)
    opts = pipeline.Options(model=options.model, scenario="decode" if scenario == "decode" else "prefill",
                            all_logits=scenario == "train", kv_cache="static" if scenario == "decode" else None)
    result = pipeline.run(opts)
    bindings = {**(result.ir.meta.config_symbols or {}), **{k: v for k, v in dims.items() if k != "batch_size"}}
    return result.ir, result.totals["flops"], bindings


def device_model_for(options: PlanOptions, scenario: str | None = None, seq_len=None, context=None):
    """Capture the model and build its per-device model for ``scenario``."""
    from passes.parallel.device import device_model

    scenario = scenario or options.scenario
    d = DEFAULTS[scenario]
    ir, flops, bindings = _capture(options, scenario, seq_len or options.seq_len or d["seq_len"],
                                   context or options.context or d.get("context"))
    joint = full = None
    if scenario == "train" and options.joint:
        joint = _capture_joint(options, bindings)
        full = _capture_joint(options, bindings, "full") if joint is not None else None
    return device_model(ir, scenario, options.target, full_flops=flops, bindings=bindings, mode=options.mode,
                        flavor=options.flavor, overlap=options.overlap, joint=joint, joint_full=full)


def _capture_joint(options: PlanOptions, bindings: dict, recompute: str = "none"):
    """The joint forward+backward+optimizer graph (``--scenario train``'s capture, with
    ``recompute``), whose sharded copy gives the per-device training memory; None when the model
    has no such capture (the forward's saved-tensor estimate is used then)."""
    from irtools import pipeline
    from irtools.ir.errors import IrtoolsError

    fixed = {k: v for k, v in bindings.items() if k in ("seq_len", "w_bytes", "a_bytes", "kv_bytes")}
    fixed.setdefault("w_bytes", 2)
    fixed.setdefault("a_bytes", 2)
    try:
        return pipeline.run(pipeline.Options(model=options.model, scenario="train", bindings=fixed,
                                             recompute=recompute)).ir
    except (IrtoolsError, NotImplementedError, RuntimeError):
        return None


def run_plan(options: PlanOptions) -> dict:
    """Capture, search, report: the ``irtools.plan/1`` dict."""
    from passes.parallel.plan import search

    if options.scenario not in DEFAULTS:
        raise UsageError(f"unknown scenario {options.scenario!r} (train, prefill or decode)")
    for name, value in (("--devices", options.devices), ("--batch", options.batch), ("--seq-len", options.seq_len),
                        ("--context", options.context), ("--top", options.top)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value}")
    start = time.perf_counter()
    model = device_model_for(options)
    captured = time.perf_counter()
    batch = options.batch or DEFAULTS[options.scenario]["batch"]
    fixed = options.scenario == "prefill" or (options.scenario == "decode" and options.batch)
    choices = {"micro_batches": [batch]} if fixed else {}
    result = search(model, options.devices, options.objective, batch=batch, reserve=options.reserve, **choices)
    searched = time.perf_counter()
    report = _report(result, options, batch)
    if options.scenario == "decode" and result.ranked:
        report["serving"] = serving(result, options)
    report["wall_s"] = {"capture": captured - start, "search": searched - captured,
                        "total": time.perf_counter() - start}
    return report


def _row(ev, i: int, scenario: str) -> dict:
    lay = ev.layouts[i]
    v = ev[i]
    row = {"layout": lay.label(), "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep, "micro_batch": lay.micro_batch,
           "micro_batches": lay.micro_batches, "sp": lay.sp, "zero": lay.zero, "recompute": lay.recompute,
           "tokens_per_s": v["step"]["tokens_per_s"], "step_s": v["step"]["time"], "mfu": v["step"]["mfu"],
           "tflops_per_device": v["step"]["tflops_per_device"], "memory_bytes": v["step"]["memory"],
           "bubble_fraction": v["step"]["bubble_fraction"]}
    if scenario != "train":
        row["latency_s"] = v["step"]["latency"]
    return row


def _report(result, options: PlanOptions, batch: int) -> dict:
    ev, model = result.evaluation, result.model
    top = [_row(ev, i, model.scenario) for i in result.ranked[: options.top]]
    memory = [reason for i, reason in result.dropped.items() if reason.startswith("needs")]
    report = {
        "schema": SCHEMA, "model": options.model or _default_model(), "target": model.target.name, "devices": options.devices,
        "scenario": model.scenario, "objective": options.objective, "batch": batch,
        "bindings": dict(model.bindings), "budget_bytes": result.budget, "overlap": options.overlap,
        "evaluated": len(ev), "fit": len(result.ranked), "top": top,
        "dropped": {"memory": len(memory), "ranked_lower": len(result.ranked) - min(len(result.ranked), 1),
                    "shapes": dict(result.skipped)},
        "dropped_examples": _examples(result), "assumptions": list(ASSUMPTIONS) + _memory_source(model),
        "tensor_parallel": {"columns": len(model.tp.columns), "rows": len(model.tp.rows),
                            "vocab_embedding": model.tp.vocab_embedding, "left_whole": dict(model.tp.failed),
                            "replicated": sorted(Counter(model.ir.node(n).module or "" for n in model.tp.replicated(model.ir)))[:40]},
    }
    if result.ranked:
        best = ev.layouts[result.ranked[0]]
        report["best"] = device_report(model, best, ev[result.ranked[0]])
    return report


def _memory_source(model) -> list[str]:
    if model.scenario != "train":
        return []
    if model.joint is not None:
        return ["training memory: one rank's copy of the joint forward + backward + AdamW graph (tensor-parallel "
                "splits carried into backward and optimizer), captured without and with full recompute, its peak from "
                "tensor lifetimes; exact at pp = 1 (none or full recompute), activations scaled by the forward's "
                "saved-tensor estimate for pp > 1 and selective recompute"]
    return ["training memory: estimated from the forward graph (saved tensors per op); the joint graph could not be "
            "captured"]


def _default_model() -> str:
    from irtools.recipes.presets import DEFAULT_PRESET

    return DEFAULT_PRESET


def _examples(result, limit: int = 8) -> list[dict]:
    ev = result.evaluation
    out = []
    for i, reason in list(result.dropped.items()):
        if reason.startswith("needs"):
            out.append({"layout": ev.layouts[i].label(), "why": reason})
        if len(out) >= limit:
            break
    return out


def device_report(model, layout, values: dict) -> dict:
    """Per-role figures of one layout, its formulas, and the timeline of one step on the first stage."""
    formulas = model.formulas(layout)
    roles = {}
    for role in ("first", "middle", "last"):
        if role == "middle" and layout.pp < 3:
            continue
        if role == "last" and layout.pp == 1:
            continue
        v = values[role]
        roles[role] = {"layers": float(values["stages"][role]), "flops": v["flops"], "bytes": v["bytes"],
                       "memory": v["memory"], "compute_s": v["compute"], "tp_comm_s": v["tp_comm"],
                       "pp_comm_s": v["pp_comm"], "dp_comm_s": v["dp_comm"], "ep_comm_s": v["ep_comm"],
                       "per_micro_batch_s": v["per_micro_batch"]}
    shown = {"bubble_fraction": pretty(formulas["step"]["bubble_fraction"])}
    shown["memory_first"] = {k: _short(formulas["first"]["memory"][k]) for k in formulas["first"]["memory"]}
    shown["compute_first_s"] = _short(formulas["first"]["compute"])
    shown["tp_comm_first_s"] = _short(formulas["first"]["tp_comm"])
    return {"layout": {**layout.__dict__, "label": layout.label(), "devices": layout.devices}, "step": values["step"],
            "roles": roles, "formulas": shown, "timeline": timeline(model, layout, values)}


def _short(expr, limit: int = 400) -> str:
    expr = sympy.sympify(expr)
    # a maximum over peak candidates is shown as built: expanding it re-runs sympy's Max simplification
    text = str(expr) if expr.has(sympy.Max, sympy.Min, sympy.Piecewise) else pretty(expr, factor=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def timeline(model, layout, values: dict) -> list[dict]:
    """Segments of one step on the first stage's device: compute, communication, bubble.

    Training follows 1F1B: warm-up forwards, alternating forward/backward, cool-down backwards;
    the idle time (the bubble) sits where the stage waits for the pipeline; then data-parallel
    traffic (the exposed part) and the optimizer. Durations are the model's; inference shows
    one micro-batch and the wait for the slowest stage."""
    first, step = values["first"], values["step"]
    segs: list[dict] = []
    t = 0.0

    def add(label, kind, dur):
        nonlocal t
        if dur > 0:
            segs.append({"label": label, "kind": kind, "start": t, "duration": dur})
            t += dur

    if model.scenario != "train":
        add("compute", "compute", first["compute"])
        add("tensor/expert parallel", "communication", first["tp_comm"] + first["ep_comm"])
        add("pipeline send", "communication", first["pp_comm"])
        add("waiting for the slowest stage", "bubble", step["slowest_micro_batch"] - first["per_micro_batch"])
        return segs
    m, p = layout.micro_batches, layout.pp
    comm = first["tp_comm"] + first["ep_comm"]
    fwd, bwd = first["forward"], first["backward"]
    warm = min(p - 1, m)
    for _ in range(warm):
        add("forward", "compute", fwd)
        add("collectives", "communication", comm / 2 + first["pp_comm"] / 2)
    if warm:
        add("pipeline bubble", "bubble", step["bubble"] / 2)
    for _ in range(m - warm):
        add("forward", "compute", fwd)
        add("collectives", "communication", comm / 2 + first["pp_comm"] / 2)
        add("backward", "compute", bwd)
        add("collectives", "communication", comm / 2 + first["pp_comm"] / 2)
    if warm:
        add("pipeline bubble", "bubble", step["bubble"] / 2)
    for _ in range(warm):
        add("backward", "compute", bwd)
        add("collectives", "communication", comm / 2 + first["pp_comm"] / 2)
    add("data parallel (exposed)", "communication", first["dp_exposed"])
    add("optimizer", "compute", first["optimizer"])
    return segs


def serving(result, options: PlanOptions) -> dict:
    """Decode at every batch of the best (tp, pp, dp) up to the memory limit, and TTFT/TPOT at its batch."""
    from passes.parallel.plan import evaluate_layouts

    model, ev = result.model, result.evaluation
    best = ev.layouts[result.ranked[0]]
    batches = [2 ** k for k in range(0, 16)]
    lays = [replace(best, micro_batch=b) for b in batches]
    out = evaluate_layouts(model, lays)
    mem = np.array([max(out[i]["first"]["memory"]["total"], out[i]["last"]["memory"]["total"]) for i in range(len(lays))])
    fits = mem <= result.budget
    keep = [i for i in range(len(lays)) if fits[i] or (i > 0 and fits[i - 1])]
    curve = {"batch": [batches[i] * best.pp for i in keep], "micro_batch": [batches[i] for i in keep],
             "tokens_per_s": [out[i]["step"]["tokens_per_s"] for i in keep],
             "tpot_s": [out[i]["step"]["latency"] for i in keep], "memory_bytes": [float(mem[i]) for i in keep],
             "fits": [bool(fits[i]) for i in keep], "layout": best.label()}
    prefill = device_model_for(options, "prefill", seq_len=options.context or DEFAULTS["decode"]["context"])
    one, full = evaluate_layouts(prefill, [replace(best, sp=False, micro_batch=1, micro_batches=1),
                                           replace(best, sp=False, micro_batches=1)])
    curve["ttft_s"] = one["step"]["latency"]  # one prompt arriving alone
    curve["ttft_at_batch_s"] = full["step"]["latency"]  # a whole micro-batch of prompts prefilled together
    curve["chosen_micro_batch"] = best.micro_batch
    curve["tpot_at_best_s"] = ev[result.ranked[0]]["step"]["latency"]
    curve["prompt_tokens"] = options.context or DEFAULTS["decode"]["context"]
    return curve


def render_table(report: dict) -> str:
    """The plan as text: the top layouts, why the others fell out, the best layout's roles."""
    gb = 1e9
    lines = [f"plan {report['model']} on {report['devices']} x {report['target']} ({report['scenario']}, "
             f"objective {report['objective']}, batch {report['batch']}): {report['evaluated']} layouts evaluated, "
             f"{report['fit']} fit in {report['budget_bytes'] / gb:.1f} GB, {report['wall_s']['search']:.2f} s search",
             "", f"{'rank':>4}  {'layout':42s} {'tokens/s':>12} {'step s':>10} {'MFU':>6} {'GB/dev':>8} {'bubble':>7}"]
    for k, row in enumerate(report["top"], start=1):
        step = row.get("latency_s", row["step_s"])
        lines.append(f"{k:4d}  {row['layout']:42s} {row['tokens_per_s']:12.4g} {step:10.4g} {row['mfu']:6.1%} "
                     f"{row['memory_bytes'] / gb:8.2f} {row['bubble_fraction']:7.1%}")
    d = report["dropped"]
    lines += ["", f"fell out: {d['memory']} do not fit in memory, {d['ranked_lower']} fit but rank lower"]
    for k, why in d["shapes"].items():
        lines.append(f"  {k}: {why}")
    for ex in report["dropped_examples"][:5]:
        lines.append(f"  {ex['layout']}: {ex['why']}")
    best = report.get("best")
    if best:
        lines += ["", f"best: {best['layout']['label']} ({best['layout']['devices']} devices)"]
        for role, r in best["roles"].items():
            m = r["memory"]
            lines.append(f"  {role:6s} {r['layers']:5.0f} layers  {r['flops'] / 1e12:10.3f} TFLOP  memory "
                         f"{m['total'] / gb:7.2f} GB (weights {m['weights'] / gb:.2f}, grads {m['gradients'] / gb:.2f}, "
                         f"optimizer {m['optimizer'] / gb:.2f}, activations {m['activations'] / gb:.2f}, "
                         f"KV {m['kv_cache'] / gb:.2f})  compute {r['compute_s'] * 1e3:.2f} ms  TP {r['tp_comm_s'] * 1e3:.2f} ms"
                         f"  PP {r['pp_comm_s'] * 1e3:.2f} ms  DP {r['dp_comm_s'] * 1e3:.2f} ms")
        lines.append(f"  bubble fraction = {best['formulas']['bubble_fraction']}")
    s = report.get("serving")
    if s:
        lines += ["", f"serving ({s['layout']}): TTFT {s['ttft_s'] * 1e3:.1f} ms for one prompt of {s['prompt_tokens']} "
                      f"tokens ({s['ttft_at_batch_s'] * 1e3:.1f} ms for {s['chosen_micro_batch']} prompts at once), "
                      f"TPOT {s['tpot_at_best_s'] * 1e3:.2f} ms at micro-batch {s['chosen_micro_batch']}"]
        for b, tps, tpot, ok in zip(s["batch"], s["tokens_per_s"], s["tpot_s"], s["fits"]):
            lines.append(f"  batch {b:6d}: {tps:12.1f} tokens/s  TPOT {tpot * 1e3:8.2f} ms" + ("" if ok else "  (does not fit)"))
    lines += ["", "assumptions:"] + [f"  - {a}" for a in report["assumptions"]]
    return "\n".join(lines) + "\n"


__all__ = ["PlanOptions", "device_model_for", "device_report", "render_table", "run_plan", "serving", "timeline"]
