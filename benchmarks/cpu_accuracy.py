"""Predicted eager kernel times vs measured op times (torch.profiler), per op and end to end.

Runs the seed's GPT2Attention and a GPT-2 block (LN → attention → residual → LN → MLP →
residual, built from models/ pieces) eagerly at prefill and decode shapes, small and large.
Each model is captured once per scenario with symbolic dims; its eager kernels are timed on
a target at each shape's bindings. By default (``--target auto``) this CPU is calibrated
first, at the same thread count as the runs (``--threads``, default 1), into a temporary
``cpu-local`` file. Measured: the inclusive time of every top-level ATen op in the profiler
(CPU time on the CPU, device time on CUDA), matched in order to the predicted eager kernels
by op name; end to end is the wall time of a forward (CUDA-synchronized on a GPU). Both
take the fastest repetition, which is robust to other processes sharing the cores. Nothing
is fitted to the measurements reported: every figure of the target (peak, bandwidth curve,
GEMM efficiency by smallest dimension, dispatch overhead) comes from calibrate's own
micro-benchmarks, run before the models. On CUDA the forward is timed with CUDA events and
``--target auto`` calibrates the GPU instead. Usage:
``python benchmarks/cpu_accuracy.py [--target auto|NAME|FILE] [--threads N] [--device cpu|cuda] [--markdown FILE] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from irtools.capture.torch.export import capture_module
from irtools.hardware import load_target
from models.gpt2_attention import Conv1D, GPT2Attention, GPT2Config
from passes.annotate_costs import annotate_costs
from passes.fusion import build_kernels
from passes.roofline import estimate

BIG_OP_S = 1e-3


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = Conv1D(4 * config.n_embd, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, 4 * config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(nn.functional.gelu(self.c_fc(x), approximate="tanh")))


class GPT2Block(nn.Module):
    """GPT-2's transformer block (pre-LN), transformers 4.x semantics."""

    def __init__(self, config: GPT2Config | None = None):
        super().__init__()
        config = config or GPT2Config()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5)
        self.attn = GPT2Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5)
        self.mlp = GPT2MLP(config)

    def forward(self, hidden_states, layer_past=None):
        attn_output, present = self.attn(self.ln_1(hidden_states), layer_past=layer_past)
        hidden_states = attn_output + hidden_states
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, present


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    seq: int
    cache: int = 0

    @property
    def scenario(self) -> str:
        return "decode" if self.cache else "prefill"


SHAPES = (
    Shape("prefill-small", 1, 64),
    Shape("prefill-mid", 2, 256),
    Shape("prefill-large", 4, 768),
    Shape("decode-small", 1, 1, 128),
    Shape("decode-mid", 4, 1, 1024),
    Shape("decode-large", 16, 1, 2048),
)


def capture(module: nn.Module, scenario: str):
    x = torch.randn(3, 5, 768)
    dims = {"hidden_states": {0: "batch_size", 1: "seq_len"}}
    kwargs = {}
    if scenario == "decode":
        pk = torch.randn(3, 12, 7, 64)
        kwargs["layer_past"] = (pk, pk.clone())
        dims.update({f"layer_past.{i}": {0: "batch_size", 2: "cache_len"} for i in (0, 1)})
    return annotate_costs(capture_module(module, (x,), kwargs, dims=dims))


def inputs(shape: Shape, device: str):
    x = torch.randn(shape.batch, shape.seq, 768, device=device)
    if not shape.cache:
        return (x,), {}
    pk = torch.randn(shape.batch, 12, shape.cache, 64, device=device)
    return (x,), {"layer_past": (pk, pk.clone())}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def wall_time(module, args, kwargs, device: str, budget_s: float = 0.5) -> float:
    """Fastest seconds per forward (after warm-up); CUDA events around each forward on a GPU."""
    for _ in range(2):
        module(*args, **kwargs)
    sync(device)
    samples, start = [], time.perf_counter()
    while len(samples) < 5 or (time.perf_counter() - start < budget_s and len(samples) < 200):
        if device == "cuda":
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            module(*args, **kwargs)
            t1.record()
            t1.synchronize()
            samples.append(t0.elapsed_time(t1) * 1e-3)
        else:
            t0 = time.perf_counter()
            module(*args, **kwargs)
            samples.append(time.perf_counter() - t0)
    return min(samples)


def profile_ops(module, args, kwargs, device: str, reps: int) -> list[list[tuple[str, float]]]:
    """Per repetition: the top-level ATen ops (name, seconds) in call order."""
    from torch.profiler import ProfilerActivity, profile, record_function

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=acts) as prof:
        for i in range(reps):
            with record_function(f"irtools_rep_{i}"):
                module(*args, **kwargs)
            sync(device)
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]
    per_rep: dict[str, list] = {}
    for e in events:
        parent = e.cpu_parent
        if parent is not None and parent.name.startswith("irtools_rep_"):
            t = (e.device_time_total if device == "cuda" else e.cpu_time_total) * 1e-6
            per_rep.setdefault(parent.name, []).append((e.time_range.start, e.name, t))
    return [[(name, t) for _, name, t in sorted(ops)] for _, ops in sorted(per_rep.items())]


def aten_name(op: str) -> str:
    """``aten.addmm.default`` -> ``aten::addmm``."""
    parts = op.split(".")
    return f"{parts[0]}::{parts[1]}" if len(parts) >= 2 else op


def match(kernel_ops: list[str], reps: list[list[tuple[str, float]]]) -> list[float | None]:
    """Fastest measured seconds of each predicted kernel (matched by op name, in order)."""
    times: list[list[float]] = [[] for _ in kernel_ops]
    for ops in reps:
        pos = 0
        for i, op in enumerate(kernel_ops):
            want = aten_name(op)
            j = next((j for j in range(pos, len(ops)) if ops[j][0] == want), None)
            if j is not None:
                times[i].append(ops[j][1])
                pos = j + 1
    return [min(t) if t else None for t in times]


def pct(pred: float, meas: float) -> float:
    return 100.0 * (pred - meas) / meas


def run(args) -> int:
    device = args.device
    torch.set_num_threads(args.threads)
    if args.target == "auto":
        import tempfile

        from irtools.hardware.calibrate import calibrate

        print(f"calibrating this {'GPU' if device == 'cuda' else f'machine at {args.threads} thread(s)'} first", file=sys.stderr)
        target = calibrate(progress=True, path=Path(args.save_target or Path(tempfile.mkdtemp()) / "cpu-local.toml"), device=device,
                           curve=args.bandwidth_curve)
    else:
        target = load_target(args.target)
    # the same target without its optional tables: the plain roofline, for comparison
    baseline = dataclasses.replace(target, gemm_efficiency=None, bandwidth_curve=None)
    torch.manual_seed(0)
    config = GPT2Config(n_positions=4096)  # room for the decode caches below
    models = {"GPT2Attention": GPT2Attention(config).eval(), "GPT2Block": GPT2Block(config).eval()}
    rows, e2e, rows_plain, e2e_plain = [], [], [], []
    for model_name, module in models.items():
        irs = {sc: capture(module, sc) for sc in ("prefill", "decode")}
        kgs = {sc: build_kernels(ir, "eager") for sc, ir in irs.items()}
        module.to(device)
        for shape in SHAPES:
            kg = kgs[shape.scenario]
            bindings = {"batch_size": shape.batch, "seq_len": shape.seq, "a_bytes": 4, "w_bytes": 4, "kv_bytes": 4}
            if shape.cache:
                bindings["cache_len"] = shape.cache
            result = estimate(kg, target, bindings)
            plain = estimate(kg, baseline, bindings)
            kernel_ops = [kg.ir.graph.nodes[kt.kernel.nodes[0]]["op"] for kt in result.kernels]
            a, kw = inputs(shape, device)
            with torch.no_grad():
                measured_e2e = wall_time(module, a, kw, device)
                reps = max(3, min(20, int(0.3 / max(measured_e2e, 1e-6))))
                measured = match(kernel_ops, profile_ops(module, a, kw, device, reps))
            e2e.append((model_name, shape, result.value, measured_e2e))
            e2e_plain.append((model_name, shape, plain.value, measured_e2e))
            for kt, kp, op, m in zip(result.kernels, plain.kernels, kernel_ops, measured):
                rows.append((model_name, shape, kt, op, m))
                rows_plain.append((model_name, shape, kp, op, m))
    lines = report(rows, e2e, target, device)
    if target.gemm_efficiency or target.bandwidth_curve:
        s = summary(rows_plain, e2e_plain)
        lines += ["", "Same measurements against the plain roofline (the target without gemm_efficiency / bandwidth_curve):",
                  f"per-op MAPE, ops >= 1 ms: {s['per_op_mape_big']:.1f}%; ops < 1 ms: {s['per_op_mape_small']:.1f}%; "
                  f"end-to-end MAPE: {s['e2e_mape']:.1f}% (max {s['e2e_max']:.1f}%); end-to-end errors: "
                  + ", ".join(f"{mn} {sh.name} {pct(p, m):+.1f}%" for mn, sh, p, m in e2e_plain)]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text + "\n")
    if args.json:
        with open(args.json, "w") as fh:
            out = raw(rows, e2e, target, device)
            out["plain_roofline"] = {"summary": summary(rows_plain, e2e_plain),
                                     "predicted_s": [kt.values["time"] for *_, kt, _, _ in rows_plain],
                                     "end_to_end_predicted_s": [p for *_, p, _ in e2e_plain]}
            json.dump(out, fh, indent=1)
            fh.write("\n")
    return 0


def environment(device: str) -> dict:
    dev = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    return {"device": device, "device_name": dev, "host": platform.node(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version()}


def summary(rows, e2e) -> dict:
    big = [abs(pct(kt.values["time"], m)) for *_, kt, _, m in rows if m is not None and m >= BIG_OP_S]
    small = [abs(pct(kt.values["time"], m)) for *_, kt, _, m in rows if m is not None and m < BIG_OP_S]
    errs = [abs(pct(p, m)) for *_, p, m in e2e]
    return {"per_op_mape_big": statistics.mean(big) if big else None, "n_big": len(big),
            "per_op_mape_small": statistics.mean(small) if small else None, "n_small": len(small),
            "e2e_mape": statistics.mean(errs), "e2e_max": max(errs), "n_e2e": len(errs), "big_op_s": BIG_OP_S}


def raw(rows, e2e, target, device: str) -> dict:
    """Everything behind the tables, for docs/validation (JSON)."""
    return {
        "environment": environment(device),
        "target": target.to_dict(),
        "shapes": [{"name": s.name, "scenario": s.scenario, "batch": s.batch, "seq": s.seq, "cache": s.cache} for s in SHAPES],
        "ops": [{"model": mn, "shape": sh.name, "kernel": kt.kernel.id, "op": aten_name(op), "bound": kt.bound,
                 "flops": kt.values.get("flops"), "bytes": kt.values.get("bytes"),
                 "predicted_s": kt.values["time"], "measured_s": m} for mn, sh, kt, op, m in rows],
        "end_to_end": [{"model": mn, "shape": sh.name, "predicted_s": p, "measured_s": m} for mn, sh, p, m in e2e],
        "summary": summary(rows, e2e),
    }


def report(rows, e2e, target, device: str = "cpu") -> list[str]:
    env = environment(device)
    out = [f"# Predicted (eager kernels on `{target.name}`) vs measured (torch.profiler), fp32, {torch.get_num_threads()} thread(s)", ""]
    out.append(f"device: {env['device']} ({env['device_name']}, host {env['host']}), torch {env['torch']}, "
               f"{env['threads']} thread(s), python {env['python']}")
    out.append("")
    out.append("shapes: " + ", ".join(f"{s.name} (b={s.batch}, s={s.seq}, cache={s.cache})" for s in SHAPES))
    out.append("")
    out.append(f"target: peak fp32 {target.peak('fp32') / 1e9:.1f} GFLOP/s, copy bandwidth {target.memory_bandwidth / 1e9:.1f} GB/s, "
               f"launch overhead {target.launch_overhead * 1e6:.2f} us, eta_c {target.eta_c}, eta_m {target.eta_m}")
    if target.gemm_efficiency:
        out.append("")
        out.append("gemm_efficiency (smallest dim: fraction of peak): "
                   + ", ".join(f"{m:g}: {e:.2f}" for m, e in target.gemm_efficiency))
    if target.bandwidth_curve:
        out.append("")
        out.append("bandwidth_curve (bytes moved: GB/s): "
                   + ", ".join(f"{b / 2**20:g} MiB: {v / 1e9:.1f}" for b, v in target.bandwidth_curve))
    out += ["", "## Per op", "", "| model | shape | kernel | op | bound | predicted us | measured us | error % |", "|---|---|---|---|---|---|---|---|"]
    big, small = [], []
    for model_name, shape, kt, op, m in rows:
        p = kt.values["time"]
        err = "" if m is None else f"{pct(p, m):+.1f}"
        out.append(f"| {model_name} | {shape.name} | {kt.kernel.id} | {aten_name(op)} | {kt.bound} | "
                   f"{p * 1e6:.1f} | {'' if m is None else f'{m * 1e6:.1f}'} | {err} |")
        if m is not None:
            (big if m >= BIG_OP_S else small).append(abs(pct(p, m)))
    out += ["", "## End to end", "", "| model | shape | kernels predicted us | measured us | error % |", "|---|---|---|---|---|"]
    errs = []
    for model_name, shape, p, m in e2e:
        errs.append(abs(pct(p, m)))
        out.append(f"| {model_name} | {shape.name} (b={shape.batch}, s={shape.seq}, cache={shape.cache}) | {p * 1e6:.1f} | {m * 1e6:.1f} | {pct(p, m):+.1f} |")
    out += ["", "## Summary", ""]
    if big:
        out.append(f"per-op MAPE, ops >= 1 ms: {statistics.mean(big):.1f}% over {len(big)} ops")
    if small:
        out.append(f"per-op MAPE, ops < 1 ms: {statistics.mean(small):.1f}% over {len(small)} ops")
    out.append(f"end-to-end MAPE: {statistics.mean(errs):.1f}% over {len(errs)} runs (max {max(errs):.1f}%)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="auto", help="auto: calibrate now; or a target name / TOML path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (calibration and runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--markdown", default=None, help="also write the tables to this file")
    parser.add_argument("--json", default=None, help="also write the raw figures (JSON) to this file")
    parser.add_argument("--bandwidth-curve", action="store_true", help="with --target auto: also calibrate a bandwidth curve")
    parser.add_argument("--save-target", default=None, help="with --target auto: keep the calibrated target file here")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
