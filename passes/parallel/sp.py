"""Sequence parallelism (Korthikanti et al. 2022) on top of a tensor-parallel plan.

Outside the tensor-parallel regions every rank would repeat the same work on the whole
activation (norms, dropouts, residual adds). Sequence parallelism splits those along the
sequence instead: the partial sums of a row projection (and of the vocab-parallel embedding)
are **reduce-scattered** along the sequence rather than all-reduced, the split is carried
through every op that runs token by token (``passes.parallel.dims``), and the whole sequence
is **all-gathered** where it is needed again: the input of a column projection, a graph
output, or an op that mixes tokens. Each all-reduce becomes a reduce-scatter plus an
all-gather of the same total size, so the bytes on the wire do not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irtools.ir import IRGraph
from irtools.ir.symbols import sym
from passes.parallel.dims import Conflict, Propagator, stateful_values
from passes.parallel.tp import TPPlan

SEQ = sym("seq_len")


@dataclass
class SPPlan:
    """Values split along the sequence, and where the whole sequence is gathered back."""

    splits: dict[str, int] = field(default_factory=dict)  # value id -> split (sequence) dim
    scattered: dict[str, int] = field(default_factory=dict)  # partial-sum value -> dim it is reduce-scattered on
    node_inputs: dict[str, dict[int, int]] = field(default_factory=dict)
    gathers: dict[str, set[str]] = field(default_factory=dict)  # split value -> nodes that read it whole
    gather_outputs: list[str] = field(default_factory=list)  # split values the graph returns
    region: set[str] = field(default_factory=set)  # nodes that run on a slice of the sequence
    reasons: dict[str, str] = field(default_factory=dict)  # node that reads a gathered value -> why


def seq_dim(spec) -> int | None:
    """The dim holding the sequence (``seq_len`` among its factors), or None."""
    if spec is None:
        return None
    for i, s in enumerate(spec.shape):
        if SEQ in getattr(s, "free_symbols", ()):
            return i
    return None


def sequence_parallel(ir: IRGraph, tp: TPPlan) -> SPPlan:
    """Split the whole-activation work between the tensor-parallel regions along the sequence."""
    plan = SPPlan()
    prop = Propagator(ir, stateful_values(ir), unit=SEQ)
    inside = tp.region | set(tp.columns) | set(tp.rows)
    for n, a in ir.nodes():
        split = {pos: plan.splits[v] for pos, v in enumerate(a.input_values) if v in plan.splits}
        if n in tp.partial.values():
            v = a.output_values[0]
            d = seq_dim(a.outputs[0])
            if d is not None:
                plan.scattered[v] = d
                plan.splits[v] = d
            continue
        if not split:
            continue
        if n in inside:
            for pos in split:
                plan.gathers.setdefault(a.input_values[pos], set()).add(n)
                plan.reasons[n] = "tensor-parallel region"
            continue
        try:
            step = prop.propagate(a, split)
        except Conflict as exc:
            for pos in split:
                plan.gathers.setdefault(a.input_values[pos], set()).add(n)
            plan.reasons[n] = str(exc)
            continue
        plan.region.add(n)
        for _i, v, d in step.split_outputs(a):
            plan.splits[v] = d
        for pos, d in step.adopted.items():
            plan.node_inputs.setdefault(n, {})[pos] = d
    plan.gather_outputs = [v for v in ir.meta.output_values or [] if v in plan.splits]
    return plan


__all__ = ["SPPlan", "seq_dim", "sequence_parallel"]
