"""Training-step passes over a joint forward+backward graph (``GraphMeta.training`` set).

:func:`prepare_training` runs before the costs: the recompute policy (passes.recompute), then one
optimizer update node per parameter (passes.optimizer). :func:`summarize_training` runs after the
kernels and roofline: FLOPs, bytes and time per phase (forward, backward, recompute, optimizer),
per module and per source line; the step's memory (passes.train_memory); tokens per second and
MFU on a target.

A step is ``micro_batches`` forward+backward passes whose gradients accumulate (one add per
parameter element for every micro-batch after the first), then one optimizer step.
MFU = model FLOPs / (step time × peak), where model FLOPs are the forward and backward of every
micro-batch (recomputation and the optimizer excluded; with them: HFU), and the peak is the
target's dense matrix peak at the activation precision (``a_bytes``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sympy

from irtools.ir import IRGraph
from irtools.ir.errors import UsageError
from irtools.ir.kinds import ALL_COSTS
from irtools.ir.symbols import sym
from irtools.ir.training import PHASES
from passes.optimizer import OptimizerSpec, add_optimizer_step
from passes.recompute import RecomputePlan, apply_recompute

ZERO = sympy.Integer(0)


@dataclass(frozen=True)
class TrainingOptions:
    """What a training step is made of."""

    optimizer: str = "adamw"  # sgd | adam | adamw, optionally :single | :foreach | :fused
    recompute: str = "none"  # none | selective | full
    micro_batches: int = 1
    mixed: bool | None = None  # fp32 master weights; None: when the weights are 16-bit (w_bytes < 4)

    def spec(self, w_bytes: float) -> OptimizerSpec:
        name, _, variant = self.optimizer.partition(":")
        if not isinstance(self.micro_batches, int) or self.micro_batches < 1:
            raise UsageError(f"micro_batches must be a positive integer, got {self.micro_batches!r}")
        mixed = self.mixed if self.mixed is not None else float(w_bytes) < 4
        return OptimizerSpec(name or "adamw", variant or "foreach", mixed)


@dataclass
class TrainingSetup:
    optimizer: OptimizerSpec
    recompute: RecomputePlan
    optimizer_nodes: list[str]


@dataclass
class TrainingResult:
    """Everything the training section of the report shows."""

    optimizer: OptimizerSpec
    recompute: RecomputePlan
    micro_batches: int
    loss: str | None  # what the loss is (the recipe's description)
    phases: dict[str, dict[str, sympy.Expr]]  # phase -> cost -> expression (per micro-batch; optimizer per step)
    model_flops: sympy.Expr  # forward + backward of every micro-batch
    hardware_flops: sympy.Expr  # model FLOPs + recomputation
    step_flops: sympy.Expr  # hardware FLOPs + gradient accumulation + optimizer
    tokens: sympy.Expr  # tokens per step
    params: sympy.Expr  # trainable parameter elements
    modules: dict[str, dict[str, sympy.Expr]] = field(default_factory=dict)  # module -> phase -> FLOPs
    lines: dict[str, dict[str, sympy.Expr]] = field(default_factory=dict)  # "line" -> phase -> FLOPs
    memory: Any = None  # passes.train_memory.TrainingMemory
    time: dict[str, sympy.Expr] | None = None  # phase -> seconds per step; "step"
    peak_flops: sympy.Expr | None = None  # the target's peak the MFU is taken against
    checkpointed: list[str] = field(default_factory=list)
    fit: Any = None  # passes.fit.FitCheck of the peak, with a target

    @property
    def tokens_per_s(self) -> sympy.Expr | None:
        return None if self.time is None else self.tokens / self.time["step"]

    @property
    def mfu(self) -> sympy.Expr | None:
        return None if self.time is None else self.model_flops / (self.time["step"] * self.peak_flops)

    @property
    def hfu(self) -> sympy.Expr | None:
        return None if self.time is None else self.hardware_flops / (self.time["step"] * self.peak_flops)


def prepare_training(ir: IRGraph, options: TrainingOptions, w_bytes: float) -> TrainingSetup:
    """Recompute regions, then the optimizer nodes (before the cost pass)."""
    spec = options.spec(w_bytes)
    plan = apply_recompute(ir, options.recompute)
    nodes = add_optimizer_step(ir, spec)
    return TrainingSetup(spec, plan, nodes)


def node_weights(ir: IRGraph) -> dict[str, sympy.Expr]:
    """How many times each node runs per micro-batch: a collapsed model's middle block stands for
    ``num_layers - traced_layers + 1`` blocks (passes/collapse.py)."""
    c = ir.meta.collapse
    if c is None or not c.stack or c.num_layers <= c.traced_layers:
        return {}
    factor = sym("num_layers") - (c.traced_layers - 1)
    pattern = re.compile(re.escape(c.stack) + r"\.1(?:\.|$)")
    return {n: factor for n, a in ir.nodes() if pattern.match(a.module or "")}


def phase_costs(ir: IRGraph, weights: dict[str, sympy.Expr]) -> dict[str, dict[str, sympy.Expr]]:
    acc = {p: {c: [] for c in ALL_COSTS} for p in PHASES}
    for n, a in ir.nodes():
        w = weights.get(n, 1)
        for c in ALL_COSTS:
            value = a.get(c, ZERO)
            if value != 0:
                acc[a.phase or "forward"][c].append(w * value)
    return {p: {c: sympy.expand(sympy.Add(*v)) for c, v in costs.items()} for p, costs in acc.items()}


def _split(ir: IRGraph, ids, weights) -> dict[str, sympy.Expr]:
    acc: dict[str, list] = {}
    for n in ids:
        a = ir.node(n)
        if a.flops:
            acc.setdefault(a.phase or "forward", []).append(weights.get(n, 1) * a.flops)
    return {p: sympy.expand(sympy.Add(*v)) for p, v in acc.items()}


def _line_splits(ir: IRGraph, weights) -> dict[str, dict[str, sympy.Expr]]:
    out: dict[str, dict[str, sympy.Expr]] = {}

    optimizer = [(n, a.module or "") for n, a in ir.nodes() if a.phase == "optimizer"]

    def walk(entries, prefix=""):
        for e in entries:
            paths = [p for call in e.calls for p in call.paths]  # a module call: its parameters' updates too
            extra = [n for n, m in optimizer if any(m == p or m.startswith(p + ".") for p in paths)]
            out[f"{prefix}{e.line}"] = _split(ir, [*e.nodes, *extra], weights)
            walk(e.sub_entries, f"{prefix}{e.line}/")

    if ir.meta.lines is not None:
        walk(ir.meta.lines.entries)
    return out


def _module_splits(ir: IRGraph, weights) -> dict[str, dict[str, sympy.Expr]]:
    tree = ir.meta.modules
    if tree is None:
        return {}
    return {path: _split(ir, tree.nodes[path]["nodes"], weights) for path in tree.nodes}


def _tokens(ir: IRGraph) -> sympy.Expr:
    names = {s.name for spec in ir.inputs.values() for d in spec.shape for s in getattr(d, "free_symbols", ())}
    tokens = sympy.Integer(1)
    for name in ("batch_size", "seq_len"):
        if name in names:
            tokens *= sym(name)
    return tokens


def phase_times(roofline, ir: IRGraph) -> dict[str, sympy.Expr]:
    """Seconds per phase: the kernels' times, each kernel in the phase of its anchor node."""
    acc: dict[str, list] = {p: [] for p in PHASES}
    for kt in roofline.kernels:
        phase = ir.node(kt.kernel.anchor).phase or "forward"
        acc[phase].append(kt.kernel.repeat * kt.time)
    return {p: sympy.Add(*v) for p, v in acc.items()}


def _accumulation_time(ir: IRGraph, roofline, weights) -> sympy.Expr:
    """One gradient add (read two, write one) per parameter, as kernels on the target."""
    from passes.fusion import Kernel
    from passes.roofline import kernel_time

    info = ir.meta.training
    total = []
    for param, grad in info.gradients.items():
        spec = ir.values[grad].spec
        k = Kernel(f"accumulate:{param}", (), ("elementwise",), spec.numel, 2 * spec.nbytes, spec.nbytes)
        total.append(_param_weight(ir, param, weights) * kernel_time(k, roofline.target, roofline.bindings)[2])
    return sympy.Add(*total)


def _param_weight(ir: IRGraph, param: str, weights) -> sympy.Expr:
    node = f"optimizer_{param}"
    return weights.get(node, 1)


def step_time(result, target, bindings) -> tuple[sympy.Expr, sympy.Expr]:
    """(step time, peak FLOP/s) of ``result``'s training step on ``target``, symbolic in the
    dims ``bindings`` leaves free: its kernels re-timed on that target."""
    from irtools.hardware import load_target
    from passes.roofline import estimate, peak_expr

    target = load_target(target)
    roofline = estimate(result.kernels, target, bindings)
    times = phase_times(roofline, result.ir)
    m = result.training.micro_batches
    weights = node_weights(result.ir)
    acc = _accumulation_time(result.ir, roofline, weights) * (m - 1) if m > 1 else ZERO
    total = m * (times["forward"] + times["backward"] + times["recompute"]) + acc + times["optimizer"]
    return total, peak_expr(target, bindings, True)


def sweep_step(result, target, fixed: dict[str, float], grid) -> dict[str, Any]:
    """Step time, tokens/s and MFU of a training result on ``target`` over a grid of bindings
    (``passes.roofline.sweep``); ``fixed`` binds the other symbols."""
    from passes.roofline import sweep

    tr = result.training
    subs = {sym(k): v for k, v in fixed.items()}
    time, peak = step_time(result, target, fixed)
    time = time.xreplace(subs)
    tokens = tr.tokens.xreplace(subs)
    mfu = tr.model_flops.xreplace(subs) / (time * peak)
    return {"time": sweep(time, grid)["value"], "tokens_per_s": sweep(tokens / time, grid)["value"],
            "mfu": sweep(mfu, grid)["value"]}


def summarize_training(result, setup: TrainingSetup, options: TrainingOptions) -> TrainingResult:
    """The training section of ``result`` (an AnalysisResult of a joint graph)."""
    from passes.roofline import peak_expr
    from passes.train_memory import training_memory

    ir = result.ir
    info = ir.meta.training
    m = options.micro_batches
    weights = node_weights(ir)
    phases = phase_costs(ir, weights)
    fb = phases["forward"]["flops"] + phases["backward"]["flops"]
    params = sympy.Add(*(_param_weight(ir, p, weights) * ir.values[g].spec.numel for p, g in info.gradients.items()))
    accumulate = (m - 1) * params
    out = TrainingResult(
        setup.optimizer, setup.recompute, m, info.description or None, phases,
        model_flops=sympy.expand(m * fb), hardware_flops=sympy.expand(m * (fb + phases["recompute"]["flops"])),
        step_flops=sympy.expand(m * (fb + phases["recompute"]["flops"]) + accumulate + phases["optimizer"]["flops"]),
        tokens=m * _tokens(ir), params=sympy.expand(params),
        modules=_module_splits(ir, weights), lines=_line_splits(ir, weights),
        checkpointed=list(info.checkpointed),
    )
    out.memory = training_memory(ir, result.kernels, setup.optimizer, m)
    if result.roofline is not None:
        times = phase_times(result.roofline, ir)
        per_batch = times["forward"] + times["backward"] + times["recompute"]
        acc = _accumulation_time(ir, result.roofline, weights) * (m - 1) if m > 1 else ZERO
        times["accumulation"] = acc
        times["step"] = m * per_batch + acc + times["optimizer"]
        out.time = times
        out.peak_flops = peak_expr(result.roofline.target, result.bindings, True)
    return out
