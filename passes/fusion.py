"""Fusion pass: group the op nodes of an IR into the kernels a compiler would launch.

Modes (docs/conventions.md, "Fusion modes and the roofline"):

- ``eager``: one kernel per op that is neither an alias (view, eval dropout, same-dtype
  ``to``) nor free (``sym_size``, assertions); its bytes are the node's own bytes.
- ``fused``: Inductor-like. Pointwise ops (elementwise, copies, factories, gathers) fuse
  into chains; a reduction (softmax, norm, sum ...) absorbs its pointwise prologue and
  epilogue (at most one reduction per kernel); a GEMM absorbs a pointwise epilogue of its
  own output size (bias, activation, residual add, layout copy) when ``gemm_epilogue``;
  views are free. Nothing fuses into a GEMM's inputs.
- ``flash``: ``fused`` plus every attention pattern, QKᵀ → pointwise (scale, mask) →
  softmax → (dropout) → ·V or a single ``attention`` node, as one kernel with
  FlashAttention's memory traffic: Q, K, V and a real mask read, O written. A mask that is
  model state (GPT-2's causal ``bias`` buffer, an ONNX initializer) rather than an input
  is assumed generated from indices in the kernel, as FlashAttention's causal mode does.

Kernel bytes are the tensors crossing the kernel boundary: what the member nodes read
from outside (each distinct tensor once, so a weight read by two members counts once) and
the outputs consumed outside the kernel or returned by the graph. Works on any IRGraph
annotated by the cost pass (torch or ONNX frontend).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import networkx as nx
import sympy

from irtools.ir import IRGraph, Scope, SourceLoc, TensorSpec

MODES = ("eager", "fused", "flash")
GEMM_KINDS = {"matmul", "conv", "attention"}
POINTWISE_KINDS = {"elementwise", "copy", "factory", "dropout", "gather"}
REDUCTION_KINDS = {"softmax", "norm", "reduction"}
ZERO = sympy.Integer(0)


@dataclass
class Kernel:
    """One launched kernel: its member op nodes and boundary costs (sympy expressions)."""

    id: str
    nodes: tuple[str, ...]
    kinds: tuple[str, ...]
    flops: sympy.Expr
    bytes_read: sympy.Expr
    bytes_written: sympy.Expr
    dtype: str = "float32"
    matmul_flops: sympy.Expr = ZERO
    pattern: str = "op"  # op | pointwise | reduction | gemm | gemm+epilogue | flash_attention | opaque
    anchor: str = ""  # the member that names the kernel (GEMM, reduction, or last node)
    scope: tuple[Scope, ...] = ()
    source: SourceLoc | None = None
    repeat: int = 1  # launches per model run (layer collapse: a traced block stands for many)

    @property
    def bytes(self) -> sympy.Expr:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> sympy.Expr:
        """Arithmetic intensity, FLOPs per byte moved (a sympy ratio)."""
        return self.flops / self.bytes if self.bytes != 0 else sympy.oo

    @property
    def module(self) -> str:
        return self.scope[-1].path if self.scope else ""


@dataclass
class KernelGraph:
    """Kernels as nodes of their own DiGraph (attr ``kernel``), edges producer -> consumer."""

    mode: str
    ir: IRGraph
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    node_kernel: dict[str, str] = field(default_factory=dict)

    @property
    def kernels(self) -> list[Kernel]:
        return [self.graph.nodes[k]["kernel"] for k in self.graph.nodes]

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __iter__(self):
        return iter(self.kernels)

    def total(self, attr: str) -> sympy.Expr:
        """Sum of a kernel attribute (``flops``, ``bytes``, ``bytes_read`` ...) over every launch."""
        return sympy.expand(sympy.Add(*(k.repeat * getattr(k, attr) for k in self.kernels)))

    @property
    def launches(self) -> int:
        """Kernel launches per model run (each kernel counted ``repeat`` times)."""
        return sum(k.repeat for k in self.kernels)


# ---- tensor bookkeeping: who produces and who consumes each materialized tensor ----------


def is_alias(attrs: dict) -> bool:
    return bool(attrs.get("alias")) or attrs.get("kind") == "view"


def is_free(attrs: dict) -> bool:
    """No work on the device: free ops, ops without tensor outputs, ONNX shape arithmetic."""
    if attrs.get("kind") == "free" or (attrs.get("args") or {}).get("shape_computation"):
        return True
    return not any(o is not None for o in attrs.get("outputs", []))


def is_kernel_node(attrs: dict) -> bool:
    """A node that launches work in eager mode: not an alias, not free."""
    return not is_alias(attrs) and not is_free(attrs)


@dataclass(frozen=True)
class _Read:
    spec: TensorSpec
    origin: tuple  # (node id, output index) of the materializing producer, or ("ext", id)
    key: tuple  # identity of the exact tensor/view read (for de-duplication)


class _Tensors:
    """Resolve every input of every node to the materializing node whose memory it reads."""

    def __init__(self, ir: IRGraph):
        g = ir.graph
        self.ir = ir
        self.order = {n: i for i, n in enumerate(g.nodes)}
        self.origin: dict[tuple, tuple] = {}  # (node, out idx) -> origin
        self.reads: dict[str, list[_Read]] = {}
        self.uses: dict[tuple, set[str]] = {}  # origin -> materializing consumers
        for n, attrs in g.nodes(data=True):
            reads = self._match(n, attrs)
            if is_alias(attrs):
                src = reads[0].origin if reads else ("ext", n)
                for j, _ in enumerate(attrs["outputs"]):
                    self.origin[(n, j)] = src
                continue
            for j, _ in enumerate(attrs["outputs"]):
                self.origin[(n, j)] = (n, j)
            if is_free(attrs):
                continue
            self.reads[n] = reads
            for r in reads:
                self.uses.setdefault(r.origin, set()).add(n)
        self.outputs = self._graph_outputs()

    def _match(self, n: str, attrs: dict) -> list[_Read]:
        """Each tensor input's producer, from the value the IR says feeds it; graph inputs,
        parameters and initializers are external origins."""
        values = attrs["input_values"]
        out = []
        for i, spec in enumerate(attrs["inputs"]):
            if spec is None:
                continue
            value_id = values[i] if i < len(values) else None
            value = self.ir.values.get(value_id) if value_id is not None else None
            if value is None or value.producer is None or value.producer not in self.ir.graph:
                origin = ("ext", value_id or spec.alias_of or id(spec))
                out.append(_Read(spec, origin, (origin, value_id or id(spec))))
            else:
                found = (value.producer, value.index)
                origin = self.origin.get(found, found)
                out.append(_Read(spec, origin, (origin, found if spec.alias_of is None else id(spec))))
        return out

    def _graph_outputs(self) -> set[tuple]:
        """Origins of the graph's outputs (``ir.meta.output_values``), or of its sinks."""
        g = self.ir.graph
        found = set()
        if self.ir.meta.output_values is None:
            for n in g.nodes:
                if g.out_degree(n) == 0 and not is_free(g.nodes[n]):
                    for j, _ in enumerate(g.nodes[n]["outputs"]):
                        found.add(self.origin.get((n, j), (n, j)))
            return found
        for value_id in self.ir.meta.output_values:
            value = self.ir.values.get(value_id)
            if value is not None and value.producer is not None:
                key = (value.producer, value.index)
                found.add(self.origin.get(key, key))
        return found

    def escapes(self, origin: tuple, members: set[str]) -> bool:
        return origin in self.outputs or bool(self.uses.get(origin, set()) - members)

    def producers(self, n: str) -> set[str]:
        """Kernel nodes whose outputs ``n`` reads (free producers such as shape math excluded)."""
        return {r.origin[0] for r in self.reads.get(n, ()) if r.origin[0] in self.reads}

    def consumers(self, n: str) -> set[str]:
        attrs = self.ir.graph.nodes[n]
        return set().union(*(self.uses.get((n, j), set()) for j in range(len(attrs["outputs"]))))


def _input_reads(attrs: dict, reads: list[_Read]) -> list[sympy.Expr]:
    """Bytes the node's rule charged for each input (exact for read-all rules)."""
    amounts = [r.spec.nbytes for r in reads]
    total = attrs.get("bytes_read", ZERO)
    if reads and sympy.expand(total - sympy.Add(*amounts)) != 0:  # e.g. a gather reads rows only
        amounts[0] = total - sympy.Add(*amounts[1:])
    return amounts


def _is_buffer_mask(read: _Read, attrs: dict, kernel_nodes) -> bool:
    """A mask that is model state (a buffer, initializer or Constant node; not computed by a
    kernel, not an input), read by a pointwise op."""
    spec = read.spec
    return (read.origin[0] not in kernel_nodes and spec.role in ("constant", "weight") and len(spec.shape) >= 2
            and attrs.get("kind") not in GEMM_KINDS)


def _output_writes(attrs: dict) -> list[sympy.Expr]:
    outs = attrs["outputs"]
    amounts = [o.nbytes if o is not None else ZERO for o in outs]
    total = attrs.get("bytes_written", ZERO)
    if sympy.expand(total - sympy.Add(*amounts)) != 0:  # the rule writes only the first output
        amounts = [total] + [ZERO] * (len(outs) - 1)
    return amounts


# ---- building kernels ---------------------------------------------------------------------


def _common_scope(scopes: list[list[Scope]]) -> tuple[Scope, ...]:
    common: list[Scope] = []
    for level in zip(*scopes):
        if any(s != level[0] for s in level):
            break
        common.append(level[0])
    return tuple(common)


def _anchor(ir: IRGraph, members: list[str]) -> str:
    for kinds in (GEMM_KINDS, REDUCTION_KINDS):
        for n in members:
            if ir.graph.nodes[n].get("kind") in kinds:
                return n
    return members[-1]


def make_kernel(tensors: _Tensors, kid: str, members: list[str], pattern: str) -> Kernel:
    """A kernel over ``members`` with boundary bytes (node bytes as-is for single eager ops)."""
    g = tensors.ir.graph
    members = sorted(members, key=tensors.order.__getitem__)
    mset = set(members)
    flops = sympy.Add(*(g.nodes[n].get("flops", ZERO) for n in members))
    mm = sympy.Add(*(g.nodes[n].get("matmul_flops", ZERO) for n in members))
    if pattern == "op":
        attrs = g.nodes[members[0]]
        read, written = attrs.get("bytes_read", ZERO), attrs.get("bytes_written", ZERO)
    else:
        read_terms, seen = [], set()
        for n in members:
            attrs = g.nodes[n]
            reads = tensors.reads.get(n, [])
            for r, amount in zip(reads, _input_reads(attrs, reads)):
                if r.origin[0] in mset or r.key in seen:
                    continue
                seen.add(r.key)
                if pattern == "flash_attention" and _is_buffer_mask(r, attrs, tensors.reads):
                    continue  # causal mask sliced from a buffer: generated from indices in the kernel
                read_terms.append(amount)
        write_terms = [amount for n in members for j, amount in enumerate(_output_writes(g.nodes[n]))
                       if tensors.escapes((n, j), mset)]
        read, written = sympy.Add(*read_terms), sympy.Add(*write_terms)
    anchor = _anchor(tensors.ir, members)
    out = next((o for o in g.nodes[anchor]["outputs"] if o is not None), None)
    return Kernel(
        id=kid,
        nodes=tuple(members),
        kinds=tuple(g.nodes[n].get("kind", "unknown") for n in members),
        flops=sympy.expand(flops),
        bytes_read=sympy.expand(read),
        bytes_written=sympy.expand(written),
        dtype=out.dtype if out is not None else "float32",
        matmul_flops=sympy.expand(mm),
        pattern=pattern,
        anchor=anchor,
        scope=_common_scope([list(g.nodes[n].get("scope") or []) for n in members]),
        source=g.nodes[anchor].get("source"),
    )


def _numel(attrs: dict, which: str = "outputs") -> sympy.Expr:
    spec = next((s for s in attrs[which] if s is not None), None)
    return sympy.expand(spec.numel) if spec is not None else ZERO


class _Groups:
    """Union of op nodes into kernels, with a group-level DAG to keep fusion acyclic."""

    def __init__(self, tensors: _Tensors):
        self.t = tensors
        self.of: dict[str, int] = {}
        self.members: dict[int, list[str]] = {}
        self.pattern: dict[int, str] = {}
        self.dag = nx.DiGraph()
        self._next = 0

    def new(self, nodes: list[str], pattern: str) -> int:
        gid, self._next = self._next, self._next + 1
        self.members[gid], self.pattern[gid] = list(nodes), pattern
        self.dag.add_node(gid)
        for n in nodes:
            self.of[n] = gid
        return gid

    def kinds(self, gid: int) -> set[str]:
        return {self.t.ir.graph.nodes[n]["kind"] for n in self.members[gid]}

    def link(self, gid: int, nodes: list[str]) -> None:
        """Add the DAG edges of a new group to the groups that already exist (both ways)."""
        for n in nodes:
            for p in self.t.producers(n):
                if p in self.of and self.of[p] != gid:
                    self.dag.add_edge(self.of[p], gid)
            for c in self.t.consumers(n):
                if c in self.of and self.of[c] != gid:
                    self.dag.add_edge(gid, self.of[c])

    def acyclic_union(self, groups: list[int]) -> bool:
        """True when merging ``groups`` leaves the DAG acyclic (no path leaves and re-enters)."""
        gs = set(groups)
        down = set().union(*(nx.descendants(self.dag, g) for g in gs)) - gs
        if not down:
            return True
        up = set().union(*(nx.ancestors(self.dag, g) for g in gs)) - gs
        return not (down & up)

    def merge(self, groups: list[int], pattern: str) -> int:
        keep = groups[0]
        for other in groups[1:]:
            for n in self.members.pop(other):
                self.of[n] = keep
                self.members[keep].append(n)
            self.pattern.pop(other)
            for p in self.dag.predecessors(other):
                if p != keep:
                    self.dag.add_edge(p, keep)
            for s in self.dag.successors(other):
                if s != keep:
                    self.dag.add_edge(keep, s)
            self.dag.remove_node(other)
        self.pattern[keep] = pattern
        return keep


def _category(kind: str) -> str:
    if kind in GEMM_KINDS:
        return "gemm"
    if kind in POINTWISE_KINDS:
        return "pointwise"
    if kind in REDUCTION_KINDS:
        return "reduction"
    return "opaque"


def _attention_patterns(t: _Tensors) -> list[list[str]]:
    """Node sets of QKᵀ → pointwise → softmax → (pointwise) → ·V patterns and attention nodes."""
    g = t.ir.graph
    found, taken = [], set()
    for sm, attrs in g.nodes(data=True):
        kind = attrs.get("kind")
        if kind == "attention" and sm in t.reads:
            members = {sm} | _layout_copies(t, {sm}, taken)
            taken |= members
            found.append(sorted(members, key=t.order.__getitem__))
            continue
        if kind != "softmax" or sm not in t.reads:
            continue
        members, cur, m2 = {sm}, sm, None
        while m2 is None:  # forward: a single chain of same-size pointwise ops into ·V
            uses = t.uses.get((cur, 0), set())
            if len(uses) != 1 or (cur, 0) in t.outputs:
                break
            (c,) = uses
            ckind = g.nodes[c].get("kind")
            if ckind == "matmul" and t.reads[c] and t.reads[c][0].origin == (cur, 0):
                m2 = c
            elif ckind in POINTWISE_KINDS and _numel(g.nodes[c]) == _numel(attrs):
                members.add(c)
                cur = c
            else:
                break
        if m2 is None:
            continue
        m1, heap = None, [(-t.order[p], p) for p in t.producers(sm)]
        heapq.heapify(heap)
        while heap:  # backward, latest first, so every consumer is judged before its producer
            _, p = heapq.heappop(heap)
            if p in members or p == m1:
                continue
            pattrs = g.nodes[p]
            if t.consumers(p) - members or any((p, j) in t.outputs for j in range(len(pattrs["outputs"]))):
                continue  # used outside the pattern: read as an input (e.g. a shared mask)
            pkind = pattrs.get("kind")
            if pkind == "matmul" and m1 is None and _numel(pattrs) == _numel(attrs, "inputs"):
                m1 = p
                members.add(p)
            elif pkind in POINTWISE_KINDS:
                members.add(p)
                for q in t.producers(p):
                    heapq.heappush(heap, (-t.order[q], q))
        members.add(m2)
        if m1 is not None and not members & taken:
            members |= _layout_copies(t, {m1, m2}, taken | members)
            taken |= members
            found.append(sorted(members, key=t.order.__getitem__))
    return found


def _layout_copies(t: _Tensors, gemms: set[str], taken: set[str]) -> set[str]:
    """Single-input copies feeding the attention's matmuls and used nowhere else — GQA's
    ``repeat_kv`` (expand + reshape), a ``contiguous`` of transposed K or V: the attention
    kernel reads their source through strides, so they become part of it."""
    g, out = t.ir.graph, set()
    for m in gemms:
        for p in t.producers(m):
            pattrs = g.nodes[p]
            inputs = [s for s in pattrs["inputs"] if s is not None]
            if (pattrs.get("kind") == "copy" and len(inputs) == 1 and p not in taken
                    and not t.consumers(p) - gemms - out
                    and not any((p, j) in t.outputs for j in range(len(pattrs["outputs"])))):
                out.add(p)
    return out


def _fuse(t: _Tensors, groups: _Groups, gemm_epilogue: bool) -> None:
    g = t.ir.graph
    sealed = set(groups.pattern)
    for n, attrs in g.nodes(data=True):  # phase 1: pointwise chains, reductions with pro/epilogue
        if n not in t.reads or n in groups.of:
            continue
        cat = _category(attrs["kind"])
        if cat in ("gemm", "opaque"):
            groups.link(groups.new([n], "gemm" if cat == "gemm" else "opaque"), [n])
            continue
        phase = attrs.get("phase")  # a training step's phases are compiled apart (no fusion across)
        prods = sorted({groups.of[p] for p in t.producers(n) if p in groups.of and g.nodes[p].get("phase") == phase},
                       key=lambda x: -x)
        own = groups.new([n], cat)
        groups.link(own, [n])
        chosen = [own]
        for gid in prods:
            pat = groups.pattern[gid]
            if gid in sealed or pat in ("gemm", "opaque"):
                continue
            has_red = any(groups.pattern[c] == "reduction" for c in chosen)
            if pat == "reduction" and (has_red or cat == "reduction"):
                continue
            if pat == "reduction":
                red = next(m for m in groups.members[gid] if g.nodes[m]["kind"] in REDUCTION_KINDS)
                if _numel(attrs) not in (_numel(g.nodes[red], "inputs"), _numel(g.nodes[red])):
                    continue
            if groups.acyclic_union(chosen + [gid]):
                chosen.append(gid)
        if len(chosen) > 1:
            pattern = "reduction" if any(groups.pattern[c] == "reduction" for c in chosen) else "pointwise"
            groups.merge(chosen, pattern)
    if not gemm_epilogue:
        return
    for n in list(g.nodes):  # phase 2: a GEMM absorbs one same-size pointwise epilogue group
        if n not in groups.of or groups.pattern[groups.of[n]] != "gemm" or groups.of[n] in sealed:
            continue
        size = _numel(g.nodes[n])
        for c in sorted(t.consumers(n), key=t.order.__getitem__):
            gid = groups.of.get(c)
            if gid is None or groups.pattern.get(gid) != "pointwise" or gid in sealed:
                continue
            if _numel(g.nodes[c]) != size or g.nodes[c].get("phase") != g.nodes[n].get("phase"):
                continue
            if groups.acyclic_union([groups.of[n], gid]):
                groups.merge([groups.of[n], gid], "gemm+epilogue")
                break


def build_kernels(ir: IRGraph, mode: str = "fused", *, gemm_epilogue: bool | None = None, target=None) -> KernelGraph:
    """Group the annotated ``ir`` into kernels for ``mode`` (eager | fused | flash).

    ``gemm_epilogue`` (default: the target's ``gemm_epilogue_fusion``, else True) lets a GEMM
    absorb its pointwise epilogue in fused/flash modes."""
    if mode not in MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; choose one of {', '.join(MODES)}")
    if gemm_epilogue is None:
        gemm_epilogue = getattr(target, "gemm_epilogue_fusion", True)
    t = _Tensors(ir)
    kg = KernelGraph(mode=mode, ir=ir)
    groups = _Groups(t)
    if mode == "eager":
        for n in t.reads:
            groups.new([n], "op")
    else:
        if mode == "flash":
            for members in _attention_patterns(t):
                groups.link(groups.new(members, "flash_attention"), members)
        _fuse(t, groups, gemm_epilogue)
    order = t.order
    gids = sorted(groups.members, key=lambda gid: min(order[n] for n in groups.members[gid]))
    for i, gid in enumerate(gids):
        members = groups.members[gid]
        pattern = groups.pattern[gid]
        if len(members) == 1 and pattern in ("pointwise", "reduction", "gemm", "opaque"):
            pattern = "op" if mode == "eager" else pattern
        kernel = make_kernel(t, f"k{i}", members, pattern)
        kg.graph.add_node(kernel.id, kernel=kernel)
        for n in kernel.nodes:
            kg.node_kernel[n] = kernel.id
    for n, reads in t.reads.items():
        for r in reads:
            src = r.origin[0]
            if src in kg.node_kernel and kg.node_kernel[src] != kg.node_kernel[n]:
                kg.graph.add_edge(kg.node_kernel[src], kg.node_kernel[n])
    return kg


__all__ = ["MODES", "Kernel", "KernelGraph", "build_kernels", "is_kernel_node", "make_kernel"]
