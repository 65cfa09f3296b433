"""Memory pass: peak memory from tensor lifetimes, symbolically (docs/conventions.md, "Memory").

The program is the IR's capture order, one step per launched kernel: every node that is
neither a view nor free in eager mode, the kernels of a KernelGraph (in dependency order) in
fused and flash modes. A storage is allocated at the step of its producer and freed after
the last step that reads it through any of its views; parameters, buffers, graph inputs (the
KV cache among them) and graph outputs are held to the end.

- Views and aliases (``OpNode.alias``, kind ``view``) share their base's storage; in-place
  ops (``add_``, ``copy_``, ``index_put_``) write into their first input's; ops that only
  rebuild a structured input during export (a ``DynamicCache`` filled by ``update()``) stand
  for that input.
- Fused and flash modes: a tensor produced and read only inside one kernel is never
  materialized (flash attention's S×S scores are never held; eager mode's are).
- ``ir.meta.kv_cache == "static"``: the cache update writes into the input cache, which is
  preallocated at its updated length (cache_len + seq_len); ``copy`` allocates a new cache.
- Collapsed models (``ir.meta.collapse``): the traced blocks stand for the first, the
  repeated middle and the last block; the middle block's persistent storages (weights, KV
  cache, cache it produces) get ``num_layers - traced_layers`` more copies, transient
  activations count once (blocks run one at a time).

At each step the live bytes split into weights, buffers, kv_cache, inputs, outputs,
activations (held across the step) and temporaries (the step's outputs and the inputs it
reads for the last time). Sizes are polynomials (monomial -> coefficient) so thousands of
steps add up fast; the peak is the ``Max`` of the steps no other step dominates for every
positive value of the dims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import sympy

from irtools.ir import CollapseInfo, IRGraph
from irtools.ir.kinds import op_packet
from irtools.ir.symbols import from_kv_len, sym
from passes.collapse import MIDDLE, block_of
from passes.fusion import is_alias, is_kernel_node
from passes.kv_cache import is_cache_update
from passes.python_refs import python_holds
from passes.sizes import Poly, add_to, dominates, monomial_values, poly, poly_value, to_expr

CATEGORIES = ("weights", "buffers", "kv_cache", "inputs", "outputs", "activations", "temporaries")
#: categories held by every step (allocated before the program or kept to its end)
HELD = ("weights", "buffers", "kv_cache", "inputs", "outputs")
_INPUT_CATEGORY = {"weight": "weights", "constant": "buffers", "kv_cache": "kv_cache"}


@dataclass
class Storage:
    """One allocation: the value that owns it, its size and when it is live."""

    id: str
    nbytes: sympy.Expr
    category: str  # a HELD category, or "transient" (activation or temporary by step)
    start: int  # first step it is live (-1: before the program)
    end: int  # last step it is live (len(steps): never freed)
    producer: str | None = None
    spec: Any = None  # irtools.ir.TensorSpec of the owning value
    note: str = ""


@dataclass
class MemoryStep:
    """One launched kernel (or op in eager mode) of the program."""

    index: int
    id: str
    nodes: tuple[str, ...]
    anchor: str  # the member that names the step
    pattern: str = "op"  # the kernel's pattern (flash_attention, gemm, ...)


@dataclass
class LiveTensor:
    """A storage live at the peak: who made it, where in the source, how large."""

    value: str
    node: str | None
    category: str
    nbytes: sympy.Expr
    bytes: float
    shape: tuple
    dtype: str
    source: Any = None  # irtools.ir.SourceLoc of the producing node
    note: str = ""


@dataclass
class PeakInfo:
    """The peak under concrete bindings: its step, breakdown, largest tensors, the whole timeline."""

    step: int
    kernel: str
    node: str
    bytes: float
    breakdown: dict[str, float]
    breakdown_expr: dict[str, sympy.Expr]
    largest: list[LiveTensor]
    timeline: list[dict[str, float]]  # per step, bytes per category


@dataclass
class MemoryResult:
    """Live bytes at every step, their peak, and what is held throughout."""

    mode: str
    kv_cache: str
    steps: list[MemoryStep]
    storages: list[Storage]
    step_bytes: list[dict[str, Poly]]  # per step: category -> polynomial
    candidates: list[int]  # steps whose totals make up ``peak``
    peak: sympy.Expr
    held: dict[str, sympy.Expr]  # the HELD categories after the last step
    lifetimes: str = "graph"  # graph: freed after the last use | python: eager PyTorch's references
    collapse: CollapseInfo | None = None
    summary: PeakInfo | None = None  # at the analysis's bindings (see :func:`summarize`)
    fit: Any = None  # passes.fit.FitCheck, with a target
    _monomials: list = field(default_factory=list, repr=False)

    def breakdown(self, step: int) -> dict[str, sympy.Expr]:
        """Bytes per category live at ``step``, as expressions."""
        return {c: to_expr(self.step_bytes[step].get(c, {})) for c in CATEGORIES}

    def step_total(self, step: int) -> sympy.Expr:
        return sympy.Add(*self.breakdown(step).values())

    def values(self, bindings: dict[str, float]) -> list[dict[str, float]] | None:
        """Bytes per category at every step under ``bindings``; None while a dim is unbound."""
        known = monomial_values(self._monomials, bindings)
        if known is None:
            return None
        if all(m == 1 for m in known):  # every size a number
            return [{c: float(p[c].get(1, 0)) if c in p else 0.0 for c in CATEGORIES} for p in self.step_bytes]
        return [{c: poly_value(p.get(c, {}), known) for c in CATEGORIES} for p in self.step_bytes]

    def peak_step(self, bindings: dict[str, float]) -> int | None:
        """The step where live bytes peak under ``bindings`` (the first, on ties)."""
        known = monomial_values(self._monomials, bindings)
        if known is None or not self.steps:
            return None
        totals = [sum(poly_value(p, known) for p in self.step_bytes[i].values()) for i in self.candidates]
        return self.candidates[max(range(len(totals)), key=lambda i: (totals[i], -self.candidates[i]))]

    def live_at(self, step: int) -> list[Storage]:
        return [s for s in self.storages if s.start <= step <= s.end]


# ---- storages -----------------------------------------------------------------------------


def _is_inplace(op: str) -> bool:
    name = op_packet(op).rsplit(".", 1)[-1]
    return name.endswith("_") and not name.endswith("__")


def _tensor_inputs(ir: IRGraph, attrs) -> list[str]:
    return [v for v, s in zip(attrs.input_values, attrs.inputs) if v is not None and s is not None and v in ir.values]


def _roots(ir: IRGraph, static_cache: bool) -> tuple[dict[str, str], dict[str, sympy.Expr]]:
    """Value id -> the value owning its storage; and storage sizes the static cache enlarges."""
    root = {v: v for v, value in ir.values.items() if value.producer is None}
    grown: dict[str, sympy.Expr] = {}
    for _n, a in ir.nodes():
        ins = _tensor_inputs(ir, a)
        src = None
        outs = [o for o in a.outputs if o is not None]
        if a.input_setup and ins:  # stands for the structured input: the one of the output's role
            role = outs[0].role if outs else None
            src = next((v for v in ins if ir.values[v].spec.role == role), ins[0])
        elif ins and (is_alias(a) or _is_inplace(a.op)):
            src = ins[0]
        elif static_cache and ins and is_cache_update(a):
            src = next(v for v, s in zip(a.input_values, a.inputs) if s is not None and s.role == "kv_cache")
            grown[root.get(src, src)] = outs[0].nbytes
        for v in a.output_values:
            if v is not None:
                root[v] = root.get(src, src) if src is not None else v
    return root, grown


def _steps(ir: IRGraph, kernels) -> list[MemoryStep]:
    if kernels is None or kernels.mode == "eager":
        ids = [n for n, a in ir.nodes() if is_kernel_node(a) and not a.input_setup]
        return [MemoryStep(i, n, (n,), n) for i, n in enumerate(ids)]
    order = {n: i for i, n in enumerate(ir.graph.nodes)}
    kg = kernels.graph
    first = {k: min(order[n] for n in kg.nodes[k]["kernel"].nodes) for k in kg.nodes}
    ids = list(nx.lexicographical_topological_sort(kg, key=first.__getitem__))
    kernel = {k: kg.nodes[k]["kernel"] for k in ids}
    return [MemoryStep(i, k, kernel[k].nodes, kernel[k].anchor, kernel[k].pattern) for i, k in enumerate(ids)]


def _storages(ir: IRGraph, steps: list[MemoryStep], fused: bool, python_refs: bool) -> tuple[list[Storage], dict]:
    static = (ir.meta.kv_cache or "copy") == "static"
    root, grown = _roots(ir, static)
    step_of = {n: s.index for s in steps for n in s.nodes}
    n_steps = len(steps)
    readers: dict[str, set[int]] = {}
    for n, a in ir.nodes():
        if n not in step_of:
            continue
        for v in _tensor_inputs(ir, a):
            readers.setdefault(root.get(v, v), set()).add(step_of[n])
    if python_refs:  # eager PyTorch: names and call arguments keep tensors past their last use
        at, k = [], -1
        for n in ir.graph.nodes:
            k = step_of.get(n, k)
            at.append(k)
        for v, pos in python_holds(ir).items():
            if at[pos] >= 0:
                readers.setdefault(root.get(v, v), set()).add(at[pos])
    outputs = {root.get(v, v) for v in ir.meta.output_values or [] if v in ir.values}
    tied = _tied_inputs(ir, readers)
    flash = {s.index for s in steps if s.pattern == "flash_attention"}
    storages = []
    for r in dict.fromkeys(root.values()):
        value = ir.values.get(r)
        spec = value.spec if value is not None else None
        if spec is None:
            continue
        nbytes = grown.get(r, spec.nbytes)
        uses = readers.get(r, set())
        if value.producer is None:  # parameters, buffers and inputs are held whether read or not
            if r in tied:
                continue
            storages.append(Storage(r, nbytes, _INPUT_CATEGORY.get(spec.role, "inputs"), -1, n_steps, None, spec))
            continue
        at = step_of.get(value.producer)
        if at is None:  # made by a free op: allocated at the first step that reads it
            if not uses and r not in outputs:
                continue
            at = min(uses) if uses else n_steps - 1
        if r in outputs:
            category = "kv_cache" if spec.role == "kv_cache" else "outputs"
            storages.append(Storage(r, nbytes, category, at, n_steps, value.producer, spec))
            continue
        if fused and uses <= {at}:
            continue  # produced and read inside one kernel: never materialized
        if uses and uses <= flash and _head_expansion(ir, value.producer):
            continue  # FlashAttention reads grouped K/V heads in place: repeat_kv's copy is not held
        storages.append(Storage(r, nbytes, "transient", at, max(uses | {at}), value.producer, spec))
    if not fused:
        storages += _operand_copies(ir, steps)
    return storages, root


def _head_expansion(ir: IRGraph, node_id: str) -> bool:
    """A copy of a broadcast view (``expand`` + ``reshape``: repeat_kv's K/V heads for GQA)."""
    a = ir.node(node_id)
    first = next((spec for spec in a.inputs if spec is not None), None)
    return a.kind == "copy" and first is not None and bool(first.broadcast_dims)


def _tied_inputs(ir: IRGraph, readers: dict) -> set[str]:
    """Inputs that are a second name of another input's tensor (tied weights: torch.export keeps
    a placeholder per name and reads one of them), from the exported program's state."""
    ep = ir.meta.exported_program
    sig, state = getattr(ep, "graph_signature", None), getattr(ep, "state_dict", None)
    if sig is None or state is None:
        return set()
    tensors = {**(getattr(ep, "constants", None) or {}), **state}
    names: dict[int, list[str]] = {}
    for spec in sig.input_specs:
        target = getattr(spec, "target", None)
        if target in tensors and spec.arg.name in ir.values:
            names.setdefault(id(tensors[target]), []).append(spec.arg.name)
    out = set()
    for group in names.values():
        keep = next((n for n in group if n in readers), group[0])
        out |= set(group) - {keep}
    return out


def _operand_copies(ir: IRGraph, steps: list[MemoryStep]) -> list[Storage]:
    """ATen's composite ``matmul`` views each batched operand as (batch, rows, cols) with
    ``expand(...).reshape(...)``, which copies when the batch dims cannot merge (a permuted or
    broadcast layout): a temporary of the operand's size at that step (eager mode). Strides
    come from the exported program; without them a non-contiguous operand counts as copied."""
    matmuls = [s for s in steps if op_packet(ir.node(s.anchor).op) == "aten.matmul"]
    layouts = _layouts(ir, {v for s in matmuls for v in ir.node(s.anchor).input_values if v is not None})
    out = []
    for s in matmuls:
        a = ir.node(s.anchor)
        for i, (v, spec) in enumerate(zip(a.input_values, a.inputs)):
            if spec is None or len(spec.shape) < 3:
                continue
            layout = layouts.get(v)
            if layout is None and spec.contiguous or layout is not None and _mergeable(*layout):
                continue
            out.append(Storage(f"{s.anchor}:operand{i}", spec.numel * spec.itemsize, "transient", s.index, s.index,
                               s.anchor, spec, note="contiguous copy made inside aten.matmul"))
    return out


def _layouts(ir: IRGraph, names: set[str]) -> dict[str, tuple[list, list]]:
    """FX node name -> (sizes, strides) as sympy expressions, from the exported program."""
    graph = getattr(ir.meta.exported_program, "graph", None)
    out = {}
    for node in getattr(graph, "nodes", ()):
        val = node.meta.get("val") if node.name in names else None
        if hasattr(val, "stride") and hasattr(val, "shape"):
            out[node.name] = ([_sym(d) for d in val.shape], [_sym(d) for d in val.stride()])
    return out


def _sym(size) -> sympy.Expr:
    """A size or stride (int or SymInt) as a sympy expression."""
    return sympy.sympify(getattr(getattr(size, "node", None), "expr", size))


def _mergeable(sizes: list, strides: list) -> bool:
    """Whether the dims before the last two can be viewed as one (no copy to reshape)."""
    dims = [(n, st) for n, st in zip(sizes[:-2], strides[:-2]) if n != 1]
    return all(sympy.expand(s0 - s1 * n1) == 0 for (_, s0), (n1, s1) in zip(dims, dims[1:]))


def _collapsed_copies(ir: IRGraph, storages: list[Storage], steps: list[MemoryStep], root) -> list[Storage]:
    """The persistent storages of the ``num_layers - traced_layers`` blocks not traced."""
    c = ir.meta.collapse
    if c is None or not c.stack or c.num_layers <= c.traced_layers:
        return []
    extra = c.num_layers - c.traced_layers
    blocks: dict[str, set] = {}  # storage -> blocks of the steps that read it
    for n, a in ir.nodes():
        if a.input_setup or not is_kernel_node(a):
            continue
        for v in _tensor_inputs(ir, a):
            blocks.setdefault(root.get(v, v), set()).add(block_of(ir, n, c.stack))
    middle = [s.index for s in steps if any(block_of(ir, n, c.stack) == MIDDLE for n in s.nodes)]
    if not middle:
        return []
    out = []
    for s in storages:
        if s.category == "transient":
            continue
        if s.producer is None:
            if blocks.get(s.id) != {MIDDLE}:
                continue
            start = -1
        elif block_of(ir, s.producer, c.stack) == MIDDLE:
            start = middle[0]
        else:
            continue
        out.append(Storage(f"{s.id}×{extra}", s.nbytes * extra, s.category, start, s.end, s.producer, s.spec,
                           note=f"{extra} more blocks like {c.stack}.{MIDDLE} (collapsed)"))
    return out


# ---- the pass -----------------------------------------------------------------------------


def _sweep(storages: list[Storage], n_steps: int) -> list[dict[str, Poly]]:
    """Bytes per category at every step. A held category's polynomial is shared by the steps
    it does not change at (the result is read-only)."""
    starts: dict[int, list[tuple[Storage, tuple]]] = {}
    ends: dict[int, list[tuple[Storage, tuple]]] = {}
    held: dict[str, Poly] = {c: {} for c in HELD}
    transient: Poly = {}
    for s in storages:
        entry = (s, poly(s.nbytes))
        if s.start < 0:
            add_to(held[s.category], entry[1])
        else:
            starts.setdefault(s.start, []).append(entry)
        ends.setdefault(s.end, []).append(entry)
    out = []
    for i in range(n_steps):
        begin, end = starts.get(i, ()), ends.get(i, ())
        for s, p in begin:
            if s.category == "transient":
                add_to(transient, p)
            else:
                held[s.category] = dict(held[s.category])  # copy on write: earlier steps keep theirs
                add_to(held[s.category], p)
        temps: Poly = {}
        for s, p in begin:
            if s.category == "transient":
                add_to(temps, p)
        for s, p in end:
            if s.category == "transient" and s.start != i:
                add_to(temps, p)
        acts = dict(transient)
        add_to(acts, temps, -1)
        out.append({**held, "activations": acts, "temporaries": temps})
        for s, p in end:
            if s.category == "transient":
                add_to(transient, p, -1)
    return out


def _total(p: dict[str, Poly]) -> Poly:
    acc: Poly = {}
    for c in p.values():
        add_to(acc, c)
    return acc


def _candidates(step_bytes: list[dict[str, Poly]], monomials) -> list[int]:
    """Steps whose totals no other step dominates (one per distinct total)."""
    totals = [_total(p) for p in step_bytes]
    if all(m == 1 for t in totals for m in t):  # every size a number: the first largest step
        values = [t.get(1, 0) for t in totals]
        return [values.index(max(values))] if values else []
    probe = monomial_values(monomials, {s.name: 2 for m in monomials for s in getattr(m, "free_symbols", ())})
    distinct: dict[frozenset, int] = {}
    for i, t in enumerate(totals):
        distinct.setdefault(frozenset(t.items()), i)
    order = sorted(distinct.values(), key=lambda i: -poly_value(totals[i], probe))
    kept: list[int] = []
    for i in order:
        if not any(dominates(totals[k], totals[i]) for k in kept):
            kept.append(i)
    return sorted(k for k in kept if not any(j != k and dominates(totals[j], totals[k]) and
                                             not dominates(totals[k], totals[j]) for j in kept))


def memory(ir: IRGraph, kernels=None, python_refs: bool | None = None) -> MemoryResult:
    """Live bytes at every step of ``ir`` (annotated by the cost pass; ``kernels``: a
    passes.fusion.KernelGraph for fused / flash modes) and their symbolic peak.

    ``python_refs`` (default: in eager mode, for torch graphs) keeps tensors alive as long as
    eager PyTorch's Python references do (passes/python_refs.py); otherwise a tensor is freed
    after its last use, as a compiled graph does."""
    steps = _steps(ir, kernels)
    mode = kernels.mode if kernels is not None else "eager"
    if python_refs is None:
        python_refs = mode == "eager" and ir.frontend == "torch"
    storages, root = _storages(ir, steps, mode != "eager", python_refs)
    storages += _collapsed_copies(ir, storages, steps, root)
    step_bytes = _sweep(storages, len(steps))
    monomials = sorted({m for p in step_bytes for c in p.values() for m in c}, key=sympy.default_sort_key)
    cands = _candidates(step_bytes, monomials) if steps else []
    totals = [to_expr(_total(step_bytes[i])) for i in cands]
    peak = sympy.Max(*totals, evaluate=False) if len(totals) > 1 else (totals[0] if totals else sympy.Integer(0))
    held = {c: to_expr(step_bytes[-1][c]) if steps else sympy.Integer(0) for c in HELD}
    result = MemoryResult(mode, ir.meta.kv_cache or "copy", steps, storages, step_bytes, cands, peak, held,
                          "python" if python_refs else "graph", ir.meta.collapse)
    result._monomials = monomials
    return result


def analyze_memory(ir: IRGraph, kernels=None, bindings: dict[str, float] | None = None) -> MemoryResult:
    """The memory step of the pipeline: :func:`memory`, summarized at ``bindings``."""
    result = memory(ir, kernels)
    result.summary = summarize(result, ir, dict(bindings or {}))
    return result


def summarize(result: MemoryResult, ir: IRGraph, bindings: dict[str, float], top: int = 8) -> PeakInfo | None:
    """The peak of ``result`` under ``bindings`` (None while a dim is unbound): the step and
    node, bytes per category, and the ``top`` largest tensors live there."""
    timeline = result.values(bindings)
    step = result.peak_step(bindings)
    if timeline is None or step is None:
        return None
    subs = {sym(k): sympy.sympify(v) for k, v in bindings.items()}
    live = []
    for s in result.live_at(step):
        category = s.category
        if category == "transient":
            category = "temporaries" if step in (s.start, s.end) else "activations"
        node = ir.node(s.producer) if s.producer is not None and s.producer in ir.graph else None
        spec = s.spec
        live.append(LiveTensor(s.id, s.producer, category, s.nbytes, float(from_kv_len(s.nbytes).xreplace(subs)),
                               tuple(spec.shape) if spec is not None else (), spec.dtype if spec is not None else "",
                               node.source if node is not None else None, s.note))
    live.sort(key=lambda t: -t.bytes)
    st = result.steps[step]
    return PeakInfo(step, st.id, st.anchor, sum(timeline[step].values()), timeline[step], result.breakdown(step),
                    live[:top], timeline)


__all__ = ["CATEGORIES", "HELD", "LiveTensor", "MemoryResult", "MemoryStep", "PeakInfo", "Storage", "analyze_memory",
           "memory", "summarize"]
