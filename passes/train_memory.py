"""Training memory over the joint graph, from the memory pass's tensor lifetimes (passes.memory).

The memory pass gives every storage its size and the steps it is live (graph lifetimes: freed
after the last use, as autograd frees a saved tensor once its backward has run). This pass
sorts the storages of a training step into

- ``parameters``, ``buffers``, ``inputs`` (the batch): held for the whole step;
- ``gradients``: the parameters' gradients, from the backward op that makes each to the end
  (with micro-batches > 1, accumulated from the previous micro-batch: held throughout);
- ``master_weights`` and ``optimizer_states`` (passes.optimizer): held throughout;
- ``saved_activations``: forward tensors the backward reads (freed by the backward);
- ``activations``: every other tensor (forward temporaries, activation gradients, recomputed
  tensors), live from its producer to its last reader;
- ``optimizer_workspace``: what torch.optim's step allocates beside its states (foreach: one
  state-sized temporary for every parameter at once, ``_foreach_sqrt``; single-tensor: the
  largest parameter's; fused: none), during the optimizer's steps;

sums them per step and takes the symbolic peak. A collapsed model (three traced blocks for
``num_layers``) counts what the middle block holds across blocks (its parameters, states,
gradients and saved activations) ``num_layers - 3`` more times over the same steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sympy

from irtools.ir import IRGraph
from passes.fusion import is_alias
from passes.memory import add_to, dominates, memory, poly, to_expr

CATEGORIES = ("parameters", "buffers", "inputs", "gradients", "master_weights", "optimizer_states",
              "saved_activations", "activations", "optimizer_workspace", "outputs")
MIDDLE = 1  # the traced block standing for the untraced ones (passes/collapse.py)


@dataclass
class TrainingMemory:
    """Bytes per category at each step, the peak, and the per-module breakdown."""

    steps: list[str]  # anchor node of each step
    phases: list[str]  # phase of each step
    step_bytes: list[dict[str, dict]]  # per step: category -> polynomial (passes.memory)
    candidates: list[int]
    peak: sympy.Expr
    totals: dict[str, sympy.Expr]  # parameters, gradients, ... each category's full size
    modules: dict[str, dict[str, sympy.Expr]] = field(default_factory=dict)  # module -> category -> bytes

    def breakdown(self, step: int) -> dict[str, sympy.Expr]:
        return {c: to_expr(self.step_bytes[step].get(c, {})) for c in CATEGORIES}


def _root(ir: IRGraph, value: str) -> str:
    """The value owning ``value``'s storage (through views and in-place ops)."""
    seen = set()
    while value not in seen:
        seen.add(value)
        v = ir.values.get(value)
        if v is None or v.producer is None or v.producer not in ir.graph:
            return value
        a = ir.node(v.producer)
        op = a.op.rsplit(".", 2)[-2] if a.op.startswith("aten.") and a.op.count(".") >= 2 else a.op.rsplit(".", 1)[-1]
        ins = [i for i, s in zip(a.input_values, a.inputs) if i is not None and s is not None]
        if not ins or not (is_alias(a) or (op.endswith("_") and not op.endswith("__"))):
            return value
        value = ins[0]
    return value


def _block(module: str, stack: str) -> int | None:
    m = re.match(re.escape(stack) + r"\.(\d+)(?:\.|$)", module or "")
    return int(m.group(1)) if m else None


def training_memory(ir: IRGraph, kernels=None, optimizer=None, micro_batches: int = 1) -> TrainingMemory:
    """The training-step memory of ``ir`` (a joint graph with its optimizer nodes, costs annotated)."""
    info = ir.meta.training
    collapse, ir.meta.collapse = ir.meta.collapse, None  # block copies are made here, for training
    try:
        mem = memory(ir, kernels, python_refs=False)
    finally:
        ir.meta.collapse = collapse
    steps = mem.steps
    phase_of = [ir.node(s.anchor).phase or "forward" for s in steps]
    grads = {_root(ir, g) for g in info.gradients.values()}
    master, states = set(), set()
    for _n, a in ir.nodes():
        if a.phase == "optimizer":
            for v in a.input_values[2:]:
                (master if v.endswith(".master") else states).add(v)
    owner = {p: info.owner(p) for p in info.params}
    opt_steps = [i for i, p in enumerate(phase_of) if p == "optimizer"]
    held_until = _autograd_node_ends(ir, steps)
    entries = []  # (category, nbytes, start, end, module)
    for s in mem.storages:
        cat, module = _category(ir, s, grads, master, states, phase_of), ""
        if s.id in owner:
            module = owner[s.id]
        elif s.id in master or s.id in states:
            module = owner.get(s.id.split(".")[0], "")
        elif s.producer is not None and s.producer in ir.graph:
            module = ir.node(s.producer).module or ""
        start, end = s.start, max(s.end, held_until.get(s.id, -1)) if s.end < len(steps) else s.end
        if cat == "gradients" and micro_batches > 1:
            start = -1
        entries.append((cat, s.nbytes, start, end, module))
    entries += _workspace(ir, optimizer, opt_steps)
    if collapse is not None and collapse.stack and collapse.num_layers > collapse.traced_layers:
        extra = collapse.num_layers - collapse.traced_layers
        persistent = ("parameters", "gradients", "master_weights", "optimizer_states", "saved_activations")
        entries += [(c, b * extra, s0, s1, m) for c, b, s0, s1, m in entries
                    if c in persistent and _block(m, collapse.stack) == MIDDLE]
    step_bytes = _sweep(entries, len(steps))
    cands = _candidates(step_bytes)
    totals_expr = [to_expr(_total(step_bytes[i])) for i in cands]
    peak = sympy.Max(*totals_expr, evaluate=False) if len(totals_expr) > 1 else (totals_expr[0] if totals_expr else sympy.Integer(0))
    totals: dict[str, sympy.Expr] = {}
    modules: dict[str, dict[str, sympy.Expr]] = {}
    for cat, nbytes, _s0, _s1, module in entries:
        if cat in ("activations", "optimizer_workspace", "outputs"):
            continue
        totals[cat] = totals.get(cat, sympy.Integer(0)) + nbytes
        parts = module.split(".") if module else []
        for path in [""] + [".".join(parts[:k]) for k in range(1, len(parts) + 1)]:
            row = modules.setdefault(path, {})
            row[cat] = row.get(cat, sympy.Integer(0)) + nbytes
    expand = {k: sympy.expand(v) for k, v in totals.items()}
    mods = {p: {k: sympy.expand(v) for k, v in row.items()} for p, row in modules.items()}
    return TrainingMemory([s.anchor for s in steps], phase_of, step_bytes, cands, peak, expand, mods)


def _autograd_node_ends(ir: IRGraph, steps) -> dict[str, int]:
    """Storage -> the last step of the autograd node that reads it. The ops one autograd node
    runs in the backward (same ``grad_of``) hold their inputs, the node's saved tensors and its
    incoming gradient, until the node is done, as the autograd engine does."""
    step_of = {n: s.index for s in steps for n in s.nodes}
    last: dict[str, int] = {}
    for n, a in ir.nodes():
        if a.phase == "backward" and a.grad_of and n in step_of:
            last[a.grad_of] = max(last.get(a.grad_of, -1), step_of[n])
    out: dict[str, int] = {}
    for _n, a in ir.nodes():
        if a.phase != "backward" or not a.grad_of or a.grad_of not in last:
            continue
        for v, spec in zip(a.input_values, a.inputs):
            if v is not None and spec is not None:
                r = _root(ir, v)
                out[r] = max(out.get(r, -1), last[a.grad_of])
    return out


def _category(ir, s, grads, master, states, phase_of) -> str:
    if s.id in grads:
        return "gradients"
    if s.id in master:
        return "master_weights"
    if s.id in states:
        return "optimizer_states"
    if s.category == "weights":
        return "parameters"
    if s.category in ("buffers", "inputs", "outputs"):
        return s.category
    if s.category != "transient" or s.producer is None or s.producer not in ir.graph:
        return "activations"
    made = ir.node(s.producer).phase
    last = phase_of[s.end] if 0 <= s.end < len(phase_of) else None
    return "saved_activations" if made == "forward" and last in ("backward", "recompute") else "activations"


def _workspace(ir, optimizer, opt_steps) -> list[tuple]:
    """torch.optim's own temporaries during the step (see the module docstring)."""
    if optimizer is None or not opt_steps or optimizer.variant == "fused":
        return []
    sizes = [a.inputs[0].numel * optimizer.state_bytes for _, a in ir.nodes() if a.phase == "optimizer"]
    if not sizes:
        return []
    nbytes = sympy.Add(*sizes) if optimizer.variant == "foreach" else sympy.Max(*sizes)
    return [("optimizer_workspace", nbytes, opt_steps[0], opt_steps[-1], "")]


def _sweep(entries, n_steps: int) -> list[dict[str, dict]]:
    starts: dict[int, list] = {}
    ends: dict[int, list] = {}
    live: dict[str, dict] = {c: {} for c in CATEGORIES}
    for e in entries:
        if e[2] < 0:
            add_to(live[e[0]], poly(e[1]))
        else:
            starts.setdefault(e[2], []).append(e)
        ends.setdefault(e[3], []).append(e)
    out = []
    for i in range(n_steps):
        for e in starts.get(i, ()):
            add_to(live[e[0]], poly(e[1]))
        out.append({c: dict(p) for c, p in live.items()})
        for e in ends.get(i, ()):
            add_to(live[e[0]], poly(e[1]), -1)
    return out


def _total(p: dict[str, dict]) -> dict:
    acc: dict = {}
    for c in p.values():
        add_to(acc, c)
    return acc


def _candidates(step_bytes) -> list[int]:
    """Steps whose total no other step's dominates for every positive value of the dims."""
    totals = [_total(p) for p in step_bytes]
    distinct: dict[frozenset, int] = {}
    for i, t in enumerate(totals):
        distinct.setdefault(frozenset(t.items()), i)
    kept: list[int] = []
    for i in distinct.values():
        if any(dominates(totals[k], totals[i]) for k in kept):
            continue
        kept = [k for k in kept if not dominates(totals[i], totals[k])] + [i]
    return sorted(kept)
