"""Tensor parallelism (Megatron-LM): column/row splits found from the graph's data flow.

A *projection* is a matmul with a 2-D weight parameter. Walking the IR in program order:

- a projection whose activation input is whole is a **column** candidate: its weight is split
  along its output features, so its output is split along its last dim;
- the split is carried through every op that can run on a slice (views, pointwise ops,
  attention split by heads, softmax and reductions over other dims: ``passes.parallel.dims``);
- a projection that contracts over a split dim is the **row** of the pair: its weight is split
  along its input features and its output is a partial sum, all-reduced (reduce-scattered
  under sequence parallelism);
- a split value that reaches a graph output is gathered (a vocab-parallel ``lm_head``
  returning whole logits); a KV-cache output stays split by heads.

A candidate whose split meets an op that needs the whole dim (a norm or residual add over it)
is not split: the walk is repeated with it replicated until no conflict is left. The word
embedding (the table with as many rows as the LM head has outputs, else the largest) is
vocab-parallel: each rank looks up its rows, and the partial sums are all-reduced.
Every size a split divides is recorded: the degree must divide them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irtools.ir import IRGraph
from irtools.ir.kinds import op_packet
from passes.fusion import is_kernel_node
from passes.parallel.dims import Conflict, Propagator, stateful_values

VIEWS_OF_WEIGHT = {"t": True, "transpose": True, "permute": True, "view": False, "_unsafe_view": False,
                   "reshape": False, "detach": False, "alias": False, "_to_copy": False, "to": False}
PROJECTION_OPS = {"aten.linear", "aten.addmm", "aten.mm", "aten.matmul", "Gemm", "MatMul"}


@dataclass(frozen=True)
class Projection:
    """A matmul with a 2-D weight parameter: which input is which, and the weight's dims."""

    node: str
    act_pos: int
    weight: str  # the parameter's value id
    in_dim: int  # the parameter's dim contracted with the activation
    out_dim: int
    bias: str | None = None


@dataclass
class TPPlan:
    """Where tensor parallelism splits a graph (degree-free: shapes are divided later)."""

    projections: dict[str, Projection]
    columns: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    vocab_embedding: str | None = None
    splits: dict[str, int] = field(default_factory=dict)  # value id -> split dim (activations, params, cache)
    node_inputs: dict[str, dict[int, int]] = field(default_factory=dict)  # node -> input pos -> dim read as a slice
    partial: dict[str, str] = field(default_factory=dict)  # partial-sum value -> the node making it (row / embedding)
    gathers: list[str] = field(default_factory=list)  # split values the graph returns: gathered
    region: set[str] = field(default_factory=set)  # nodes that run on a slice
    entries: dict[str, list[str]] = field(default_factory=dict)  # whole value a column reads -> the columns
    failed: dict[str, str] = field(default_factory=dict)  # projection left whole -> why
    divides: set = field(default_factory=set)  # sizes the degree must divide
    factors: dict = field(default_factory=dict)  # split value -> size of its split factor (dims.Propagator)

    def replicated(self, ir: IRGraph) -> list[str]:
        """Nodes doing work that every rank repeats whole (norms, residual adds, ...)."""
        split = set(self.region) | set(self.columns) | set(self.rows)
        if self.vocab_embedding:
            split.add(self.vocab_embedding)
        return [n for n, a in ir.nodes() if n not in split and is_kernel_node(a) and not a.input_setup
                and a.kind != "collective"]


def _weight_source(ir: IRGraph, value: str | None) -> tuple[str, bool] | None:
    """The 2-D weight parameter a value views (through transposes and casts): (id, transposed)."""
    flipped = False
    for _ in range(4):
        if value is None or value not in ir.values:
            return None
        v = ir.values[value]
        if v.producer is None:
            spec = v.spec
            ok = spec is not None and spec.role == "weight" and len(spec.shape) == 2
            return (value, flipped) if ok else None
        prod = ir.node(v.producer)
        name = op_packet(prod.op).rsplit(".", 1)[-1]
        if name not in VIEWS_OF_WEIGHT:
            return None
        flipped ^= VIEWS_OF_WEIGHT[name]
        value = next((x for x in prod.input_values if x is not None), None)
    return None


def projections(ir: IRGraph) -> dict[str, Projection]:
    """Every matmul with a 2-D weight parameter and an activation input of rank >= 2."""
    out: dict[str, Projection] = {}
    for n, a in ir.nodes():
        if a.kind != "matmul" or op_packet(a.op) not in PROJECTION_OPS:
            continue
        found = [(pos, _weight_source(ir, v)) for pos, v in enumerate(a.input_values)]
        weights = [(pos, w) for pos, w in found if w is not None]
        acts = [pos for pos, w in found if w is None and a.inputs[pos] is not None and len(a.inputs[pos].shape) >= 2]
        if len(weights) != 1 or len(acts) != 1:
            continue
        wpos, (wid, flipped) = weights[0]
        linear = op_packet(a.op) == "aten.linear" or (a.op == "Gemm" and a.args.get("transB"))
        in_dim = 1 if linear else 0  # as the matmul sees it: linear (out, in), others (in, out)
        in_dim = 1 - in_dim if flipped else in_dim
        bias = next((v for pos, v in enumerate(a.input_values) if pos not in (wpos, acts[0]) and v is not None
                     and a.inputs[pos] is not None and len(a.inputs[pos].shape) == 1), None)
        out[n] = Projection(n, acts[0], wid, in_dim, 1 - in_dim, bias)
    return out


def _vocab_embedding(ir: IRGraph, projs: dict[str, Projection]) -> str | None:
    outputs = set(ir.meta.output_values or [])
    heads = {ir.values[p.weight].spec.shape[p.out_dim] for n, p in projs.items()
             if any(v in outputs or _feeds_output(ir, v, outputs) for v in ir.node(n).output_values if v)}
    tables = []
    for n, a in ir.nodes():
        if op_packet(a.op) not in ("aten.embedding", "Gather") or not a.input_values:
            continue
        w = a.input_values[0]
        spec = ir.values[w].spec if w in ir.values else None
        if spec is not None and spec.role == "weight" and len(spec.shape) == 2 and ir.values[w].producer is None:
            tables.append((n, spec.shape[0]))
    if not tables:
        return None
    for n, rows in tables:
        if rows in heads:
            return n
    numeric = [(n, r) for n, r in tables if getattr(r, "is_number", False)]
    return max(numeric, key=lambda t: int(t[1]))[0] if numeric and not heads else None


def _feeds_output(ir: IRGraph, value: str, outputs: set[str], depth: int = 6) -> bool:
    """A value that reaches a graph output through a few views / casts (logits)."""
    frontier = {value}
    uses = None
    for _ in range(depth):
        if frontier & outputs:
            return True
        if uses is None:
            uses = ir.uses()
        nxt = set()
        for v in frontier:
            for consumer, _pos in uses.get(v, ()):
                a = ir.node(consumer)
                if a.kind in ("view", "copy", "elementwise"):
                    nxt.update(x for x in a.output_values if x)
        frontier = nxt
    return bool(frontier & outputs)


class _Regions:
    """Union-find over column candidates: the candidates whose splits meet share a fate."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, xs) -> str | None:
        roots = [self.find(x) for x in xs]
        if not roots:
            return None
        for r in roots[1:]:
            self.parent[r] = roots[0]
        return roots[0]


def _walk(ir: IRGraph, projs: dict[str, Projection], blocked: set[str], vocab: str | None, prop: Propagator,
          only: set[str] | None = None):
    plan = TPPlan(projs, vocab_embedding=vocab)
    regions = _Regions()
    owner: dict[str, str] = {}  # split value -> a column candidate of its region
    conflicts: dict[str, str] = {}  # region root -> reason
    prop.factors = {}
    for n, a in ir.nodes():
        if only is not None and n not in only:
            continue
        split = {pos: plan.splits[v] for pos, v in enumerate(a.input_values) if v in plan.splits and v in owner}
        p = projs.get(n)
        if n == vocab:
            plan.splits[a.input_values[0]] = 0
            plan.divides.add(ir.values[a.input_values[0]].spec.shape[0])
            plan.partial[a.output_values[0]] = n
            continue
        if p is not None and not split and n not in blocked:
            out = a.outputs[0]
            plan.columns.append(n)
            plan.splits[p.weight] = p.out_dim
            plan.divides.add(ir.values[p.weight].spec.shape[p.out_dim])
            if p.bias:
                plan.splits[p.bias] = 0
            plan.splits[a.output_values[0]] = len(out.shape) - 1
            owner[a.output_values[0]] = n
            regions.find(n)
            plan.entries.setdefault(a.input_values[p.act_pos], []).append(n)
            continue
        if p is not None and set(split) == {p.act_pos} and split[p.act_pos] == len(a.inputs[p.act_pos].shape) - 1:
            plan.rows.append(n)
            plan.splits[p.weight] = p.in_dim
            plan.partial[a.output_values[0]] = n
            regions.union([owner[a.input_values[p.act_pos]]])
            continue
        if not split:
            continue
        roots = {owner[a.input_values[pos]] for pos in split}
        root = regions.union(roots)
        try:
            if p is not None:
                raise Conflict("a projection reads a split tensor along a dim it does not contract")
            step = prop.propagate(a, split)
        except Conflict as exc:
            conflicts.setdefault(root, f"{n}: {exc}")
            continue
        plan.region.add(n)
        for i, v, d in step.split_outputs(a):
            plan.splits[v] = d
            owner[v] = root
            spec = a.outputs[i]
            if spec is not None and d < len(spec.shape):
                plan.divides.add(spec.shape[d])
        for pos, d in step.adopted.items():
            plan.node_inputs.setdefault(n, {})[pos] = d
            v = a.input_values[pos]
            if v is not None and ir.values[v].producer is None:  # model state stored as a slice (KV cache, table)
                plan.splits[v] = d
    plan.factors = dict(prop.factors)
    failed = {}
    for cand in plan.columns:
        root = regions.find(cand)
        if root in conflicts:
            failed[cand] = conflicts[root]
    outputs = ir.meta.output_values or []
    plan.gathers = [v for v in outputs if v in owner and ir.values[v].spec is not None
                    and ir.values[v].spec.role != "kv_cache"]
    return plan, failed


def tensor_parallel(ir: IRGraph, only: set[str] | None = None) -> TPPlan:
    """Find the Megatron splits of an annotated IR (costs and kinds set); ``only``: walk these
    nodes alone (the forward of a joint training graph, ``passes.parallel.joint_shard``)."""
    projs = projections(ir)
    if only is not None:
        projs = {n: p for n, p in projs.items() if n in only}
    vocab = _vocab_embedding(ir, projs)
    prop = Propagator(ir, stateful_values(ir))
    blocked: set[str] = set()
    reasons: dict[str, str] = {}
    for _ in range(len(projs) + 1):
        plan, failed = _walk(ir, projs, blocked, vocab, prop, only)
        if not failed:
            break
        reasons.update(failed)
        blocked |= set(failed)
    plan.failed = {k: v for k, v in reasons.items() if k not in plan.columns}
    return plan


__all__ = ["Projection", "TPPlan", "projections", "tensor_parallel"]
