"""The per-device graph: a copy of the IR in one rank's shapes, with collective nodes.

Every value a plan splits gets its split dim divided by the degree (a sympy symbol such as
``tp``, or a number); nodes that read an unsplit tensor as a slice see the slice. Collectives
are inserted as IR nodes of kind ``collective`` (op ``collective.<kind>``, ``args``: ``group``,
``size``, ``dim``, ``phase``, ``why``):

- after each partial sum (a row projection, the vocab-parallel embedding): an all-reduce, or a
  reduce-scatter along the sequence under sequence parallelism;
- after each split value that something needs whole (a graph output, a column projection's
  input under sequence parallelism): an all-gather, read by those consumers only.

The cost pass then annotates the copy with the ordinary rules, so per-device FLOPs, bytes,
kernels, roofline time and memory come from the same passes as the whole model's, as
formulas in the degree. Backward collectives are not nodes of a forward graph: see
:func:`backward_collectives`.
"""

from __future__ import annotations

import copy
import dataclasses

import sympy

from irtools.ir import IRGraph, TensorSpec
from irtools.ir.symbols import sym
from passes.annotate_costs import annotate_costs
from passes.collectives import Collective
from passes.parallel.parts import find_stack
from passes.parallel.sp import SPPlan
from passes.parallel.tp import TPPlan

TP = sym("tp")
CAPTURE_FIELDS = ("op", "inputs", "outputs", "input_values", "output_values", "args", "scope", "source", "input_setup",
                  "onnx_name", "tensor_names", "flags", "phase", "grad_of", "missing_shape", "not_aten", "module")


def divide(spec: TensorSpec | None, dim: int | None, degree) -> TensorSpec | None:
    """``spec`` with ``dim`` divided by ``degree`` (unchanged when ``dim`` is None)."""
    if spec is None or dim is None or dim >= len(spec.shape):
        return spec
    shape = tuple(s / degree if i == dim else s for i, s in enumerate(spec.shape))
    return dataclasses.replace(spec, shape=shape)


def shard(ir: IRGraph, tp: TPPlan, sp: SPPlan | None = None, degree=TP, group: str = "tp") -> IRGraph:
    """One rank's copy of ``ir`` under ``tp`` (and ``sp``), annotated by the cost pass."""
    sp = sp or SPPlan()
    splits = {**tp.splits, **sp.splits}
    partial = set(tp.partial)
    gathers: dict[str, set[str] | None] = {v: set(c) for v, c in sp.gathers.items()}
    for v in list(tp.gathers) + list(sp.gather_outputs):
        gathers.setdefault(v, set())
    outputs = set(ir.meta.output_values or [])
    new = IRGraph(ir.name, ir.frontend, dims=dict(ir.dims), default_bindings=dict(ir.default_bindings),
                  meta=copy.copy(ir.meta))
    new.meta.exported_program = None
    by_path = {}
    for key, spec in ir.inputs.items():
        cand = "p_" + key.replace(".", "_")
        vid = cand if cand in splits else ("b_" + key.replace(".", "_") if "b_" + key.replace(".", "_") in splits else key)
        by_path[key] = divide(spec, splits.get(vid), degree)
    new.inputs = by_path
    for v, val in ir.values.items():
        if val.producer is None:
            new.add_value(v, divide(val.spec, splits.get(v), degree))
    renamed: dict[str, str] = {}  # partial value -> its reduced value
    gathered: dict[str, str] = {}  # split value -> its gathered value
    for n, a in ir.nodes():
        attrs = {f: copy.copy(getattr(a, f)) for f in CAPTURE_FIELDS}
        ins, ivals = [], []
        for pos, (v, spec) in enumerate(zip(a.input_values, a.inputs)):
            if v in renamed:
                v2, spec2 = renamed[v], new.values[renamed[v]].spec
            elif v in gathered and n in (gathers.get(v) or ()):
                v2, spec2 = gathered[v], spec
            else:
                d = tp.node_inputs.get(n, {}).get(pos, sp.node_inputs.get(n, {}).get(pos, splits.get(v)))
                v2, spec2 = v, divide(spec, d, degree)
            ins.append(spec2)
            ivals.append(v2)
        attrs["inputs"], attrs["input_values"] = ins, ivals
        attrs["outputs"] = [divide(o, splits.get(v) if v not in partial else None, degree)
                            for o, v in zip(a.outputs, a.output_values + [None] * (len(a.outputs) - len(a.output_values)))]
        new.add_op(n, **attrs)
        for v in a.output_values:
            if v in partial:
                scatter = v in sp.scattered
                kind = "reduce_scatter" if scatter else "all_reduce"
                spec = new.values[v].spec
                out = divide(spec, sp.scattered.get(v), degree)
                renamed[v] = _collective(new, n, v, kind, spec, out, degree, group, sp.scattered.get(v),
                                         "vocab-parallel embedding" if tp.partial[v] == tp.vocab_embedding else "row projection")
            if v in gathers:
                spec = new.values[v].spec
                full = ir.values[v].spec
                why = "graph output" if v in outputs else "whole input of " + ", ".join(sorted(gathers[v]))[:80]
                gathered[v] = _collective(new, n, v, "all_gather", spec, full, degree, group, splits.get(v), why)
    new.meta.output_values = [gathered.get(v, renamed.get(v, v)) for v in ir.meta.output_values or []]
    annotate_costs(new)
    return new


def _collective(new: IRGraph, after: str, value: str, kind: str, spec, out, degree, group: str, dim, why: str) -> str:
    node_id = f"{kind}__{value}"
    out_id = f"{value}__{kind}"
    a = new.node(after)
    new.add_op(node_id, op=f"collective.{kind}", inputs=[spec], outputs=[out], input_values=[value],
               output_values=[out_id], args={"group": group, "size": degree, "dim": dim, "phase": "forward", "why": why},
               scope=list(a.scope), source=a.source, module=a.module, phase=a.phase)
    return out_id


def forward_collectives(sharded: IRGraph) -> list[Collective]:
    """The collective nodes of a per-device graph, as typed records (bytes of the whole tensor,
    NCCL's size convention: the gathered output, the reduced input)."""
    out = []
    for n, a in sharded.nodes():
        if a.kind != "collective":
            continue
        kind = a.op.split(".", 1)[1]
        spec = a.outputs[0] if kind == "all_gather" else a.inputs[0]
        out.append(Collective(kind, a.args.get("group", "tp"), spec.nbytes, "forward", n, a.module or "",
                              a.args.get("why", "")))
    return out


def backward_collectives(ir: IRGraph, tp: TPPlan, sp: SPPlan | None = None, flavor: str = "megatron") -> list[Collective]:
    """The collectives the backward pass of a TP (+SP) forward issues, by Megatron's conjugate
    rule: an all-reduce in forward is free in backward and vice versa; an all-gather becomes a
    reduce-scatter and vice versa.

    ``flavor="megatron"``: one gradient all-reduce (reduce-scatter with SP) per whole tensor
    the column projections read. ``flavor="dtensor"``: what ``torch.distributed.tensor.parallel``
    issues with the usual plan (torchtitan's): ColwiseParallel / RowwiseParallel in each block,
    whose sequence-split input a PrepareModuleInput gathers, gives one gradient all-reduce per
    column layer; a column layer outside the blocks that gathers its own sequence-split input
    (``lm_head``: ``ColwiseParallel(input_layouts=Shard(1))``) reduce-scatters its gradient."""
    if flavor not in ("megatron", "dtensor"):
        raise ValueError(f"unknown flavor {flavor!r} (megatron or dtensor)")
    sp = sp or SPPlan()
    stack = find_stack(ir).stack
    out = []

    def add(kind, v, why, where=""):
        out.append(Collective(kind, "tp", ir.values[v].spec.nbytes, "backward", f"{kind}__{v}__bw", where, why))

    for v, cols in tp.entries.items():
        gathered = v in sp.gathers
        module = ir.node(cols[0]).module or ""
        if flavor == "megatron":
            add("reduce_scatter" if gathered else "all_reduce", v, "gradient of column input " + ", ".join(cols), module)
        elif gathered and len(cols) == 1 and not (stack and module.startswith(stack + ".")):
            add("reduce_scatter", v, f"gradient of column input {cols[0]}", module)
        else:
            for c in cols:
                add("all_reduce", v, f"gradient of column input {c}", ir.node(c).module or "")
    for v in tp.partial:
        if v in sp.scattered:
            add("all_gather", v, "gradient of reduce-scattered output", ir.node(tp.partial[v]).module or "")
    if flavor == "dtensor":  # a replicated activation read as a sequence slice: its gradient is gathered
        for n, adopted in sp.node_inputs.items():
            for pos in adopted:
                v = ir.node(n).input_values[pos]
                if v is not None and ir.values[v].producer is not None:
                    add("all_gather", v, f"gradient of the sequence slice {n} reads", ir.node(n).module or "")
    return out


def sequence_parallel_params(ir: IRGraph, sp: SPPlan) -> sympy.Expr:
    """Bytes of the parameters used on sequence slices (norm weights): their gradients are
    partial over the tensor-parallel group and all-reduced once per step (Megatron-LM)."""
    params = {v for n in sp.region for v in ir.node(n).input_values
              if v is not None and ir.values[v].producer is None and ir.values[v].spec is not None
              and ir.values[v].spec.role == "weight"}
    return sympy.Add(*(ir.values[v].spec.nbytes for v in params))


__all__ = ["TP", "backward_collectives", "divide", "forward_collectives", "sequence_parallel_params", "shard"]
