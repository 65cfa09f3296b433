"""One device's graph cut into what comes before the layer stack, one layer, and what follows.

Pipeline stages hold whole layers, so every per-device figure is ``pre`` (embeddings, on the
first stage) + ``n`` × ``layer`` + ``post`` (final norm, LM head, on the last stage). Each part
carries, per micro-batch forward: FLOPs, bytes, roofline compute time of its kernels (collective
kernels left out: the wire is priced by ``passes.collectives``), the attention-score kernels'
time (what selective recompute repeats), the parameters and KV cache it holds, the activations
it saves for backward, and its collectives. A collapsed stack (``ir.meta.collapse``) counts
through its kernels' repeats; per-layer state (parameters, cache, saved activations,
collectives) is read off one traced block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from irtools.hardware import Target
from irtools.ir import IRGraph
from passes.collapse import block_of
from passes.collectives import Collective
from passes.fusion import KernelGraph
from passes.hierarchy import layer_stacks
from passes.parallel.saved import is_score, saved_bytes
from passes.roofline import gemm_dims, kernel_time

PARTS = ("pre", "layer", "post")
ZERO = sympy.Integer(0)


@dataclass
class Part:
    """Per-device costs of one part, per micro-batch forward (sympy expressions)."""

    flops: sympy.Expr = ZERO
    matmul_flops: sympy.Expr = ZERO
    bytes: sympy.Expr = ZERO
    compute: sympy.Expr = ZERO  # seconds: roofline time of the part's kernels
    attention: sympy.Expr = ZERO  # seconds of attention-score kernels (recomputed by selective recompute)
    params: sympy.Expr = ZERO  # parameter elements held
    weights: sympy.Expr = ZERO  # parameter bytes held (w_bytes each)
    expert_weights: sympy.Expr = ZERO  # of which expert (mixture-of-experts) weights
    kv: sympy.Expr = ZERO  # KV-cache bytes held
    saved: sympy.Expr = ZERO  # activation bytes saved for backward
    scores: sympy.Expr = ZERO  # of which seq × seq attention scores (dropped by selective recompute)
    boundary: sympy.Expr = ZERO  # bytes of the activation leaving the part (pipeline send)
    tied: tuple = (ZERO, ZERO)  # (elements, bytes) also held by ``pre`` (tied embeddings): counted once on one stage
    collectives: list[Collective] = field(default_factory=list)


@dataclass
class Cut:
    """Where the layer stack is: its module path, its depth, and the traced block standing for one layer."""

    stack: str
    layers: int
    reference: int | None  # traced block index one layer's state is read from
    traced: int


def find_stack(ir: IRGraph) -> Cut:
    """The layer stack of ``ir`` (collapsed or traced whole); ``layers`` 0 when there is none."""
    c = ir.meta.collapse
    if c is not None and c.stack:
        return Cut(c.stack, c.num_layers, 1 if c.traced_layers > 1 else 0, c.traced_layers)
    tree = ir.meta.modules
    stacks = layer_stacks(tree) if tree is not None else []
    if not stacks:
        return Cut("", 0, None, 0)
    blocks = max(stacks, key=len)
    return Cut(blocks[0].rsplit(".", 1)[0], len(blocks), 0, len(blocks))


def part_of_nodes(ir: IRGraph, cut: Cut) -> dict[str, str]:
    """Node id -> ``pre`` | ``layer`` | ``post`` (``layer`` for every block of the stack)."""
    out: dict[str, str] = {}
    seen_stack = False
    for n, _a in ir.nodes():
        if cut.stack and block_of(ir, n, cut.stack) is not None:
            out[n] = "layer"
            seen_stack = True
        else:
            out[n] = "post" if seen_stack else "pre"
    return out


def _kernel_part(kg: KernelGraph, kernel, parts: dict[str, str]) -> str:
    where = [parts[n] for n in kernel.nodes if n in parts]
    anchor = parts.get(kernel.anchor)
    if anchor is not None:
        return anchor
    return "layer" if "layer" in where else (where[0] if where else "pre")


def _params(ir: IRGraph, nodes, experts: set[str], expert_params: set[str]) -> tuple:
    """(dense elements, expert elements, bytes, expert bytes, kv-cache bytes) of the graph inputs ``nodes`` read."""
    weights, kv, expert = {}, {}, {}
    outputs = set(ir.meta.output_values or [])
    for n in nodes:
        a = ir.node(n)
        for v, spec in zip(a.output_values, a.outputs):  # the cache a layer returns: what it holds
            if v in outputs and spec is not None and spec.role == "kv_cache":
                kv[v] = spec
    returned = bool(kv)
    for n in nodes:
        a = ir.node(n)
        for v in a.input_values:
            val = ir.values.get(v) if v is not None else None
            if val is None or val.producer is not None or val.spec is None:
                continue
            if val.spec.role == "weight":
                weights[v] = val.spec
                if n in experts or v in expert_params:
                    expert[v] = val.spec
            elif val.spec.role == "kv_cache" and not returned:
                kv[v] = val.spec
    count = sympy.Add(*(s.numel for v, s in weights.items() if v not in expert))
    expert_count = sympy.Add(*(s.numel for s in expert.values()))
    return (count, expert_count, sympy.Add(*(s.nbytes for s in weights.values())),
            sympy.Add(*(s.nbytes for s in expert.values())), sympy.Add(*(s.nbytes for s in kv.values())))


def split_parts(ir: IRGraph, kernels: KernelGraph, target: Target, bindings: dict, collectives: list[Collective],
                experts: set[str] | None = None, expert_scale=1, expert_params: set[str] | None = None
                ) -> tuple[dict[str, Part], Cut]:
    """Per-part costs of a per-device graph ``ir`` (annotated) and its kernel graph.

    ``collectives``: the part's tensor-parallel collectives (``module`` says where each is);
    ``experts``: nodes of expert layers, whose kernels are scaled by ``expert_scale`` (1/ep), as
    are the ``expert_params`` they read."""
    experts, expert_params = experts or set(), expert_params or set()
    cut = find_stack(ir)
    parts_of = part_of_nodes(ir, cut)
    out = {p: Part() for p in PARTS}
    layers = cut.layers or 1
    for k in kernels.kernels:
        if "collective" in k.kinds:
            continue
        part = _kernel_part(kernels, k, parts_of)
        scale = sympy.Integer(k.repeat) / (layers if part == "layer" else 1)
        if experts.intersection(k.nodes):
            scale = scale * expert_scale
        dims = gemm_dims(kernels, k) if target.gemm_efficiency else None
        _, _, time = kernel_time(k, target, bindings, dims)
        p = out[part]
        p.flops += scale * k.flops
        p.matmul_flops += scale * k.matmul_flops
        p.bytes += scale * k.bytes
        p.compute += scale * time
        if "attention" in k.kinds or "softmax" in k.kinds or k.pattern == "flash_attention":
            p.attention += scale * time
    by_part: dict[str, list[str]] = {p: [] for p in PARTS}
    ref_nodes = []
    for n, p in parts_of.items():
        if p != "layer":
            by_part[p].append(n)
        elif block_of(ir, n, cut.stack) == cut.reference:
            ref_nodes.append(n)
    by_part["layer"] = ref_nodes
    for p in PARTS:
        count, expert_count, nbytes, expert, kv = _params(ir, by_part[p], experts, expert_params)
        out[p].params, out[p].kv = count + expert_count * expert_scale, kv
        out[p].weights = nbytes - expert + expert * expert_scale
        out[p].expert_weights = expert * expert_scale
        out[p].saved = saved_bytes(ir, by_part[p])
        out[p].scores = saved_bytes(ir, by_part[p], select=is_score)
    pre_w = _weight_values(ir, by_part["pre"])
    shared = [v for v in _weight_values(ir, by_part["post"]) if v in pre_w]
    out["post"].tied = (sympy.Add(*(ir.values[v].spec.numel for v in shared)),
                        sympy.Add(*(ir.values[v].spec.nbytes for v in shared)))
    for c in collectives:
        block = _block_of_module(c.module, cut.stack)
        if block is None:
            part = _module_part(ir, c.module, parts_of)
            out[part].collectives.append(c)
        elif block == cut.reference:
            out["layer"].collectives.append(c)
    if cut.stack and ref_nodes:
        out["layer"].boundary = _boundary(ir, ref_nodes, cut)
        out["pre"].boundary = out["layer"].boundary
    return out, cut


def _weight_values(ir: IRGraph, nodes) -> set[str]:
    return {v for n in nodes for v in ir.node(n).input_values if v is not None and v in ir.values
            and ir.values[v].producer is None and ir.values[v].spec is not None and ir.values[v].spec.role == "weight"}


def _block_of_module(module: str, stack: str) -> int | None:
    if not stack or not module.startswith(stack + "."):
        return None
    head = module[len(stack) + 1:].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _module_part(ir: IRGraph, module: str, parts_of: dict[str, str]) -> str:
    for n, p in parts_of.items():
        if (ir.node(n).module or "") == module:
            return p
    return "post"


def _boundary(ir: IRGraph, nodes: list[str], cut: Cut) -> sympy.Expr:
    """Bytes of the activation a block hands the next one (its output read outside the block):
    what a pipeline stage sends per micro-batch."""
    inside = set(nodes)
    best = ZERO
    for n in nodes:
        a = ir.node(n)
        for v, spec in zip(a.output_values, a.outputs):
            if v is None or spec is None or spec.role != "activation":
                continue
            for consumer in _consumers(ir, v):
                if consumer not in inside and block_of(ir, consumer, cut.stack) != cut.reference:
                    best = spec.nbytes
    return best


def _consumers(ir: IRGraph, value: str):
    producer = ir.values[value].producer
    for succ in ir.graph.successors(producer):
        if value in ir.graph.edges[producer, succ]["values"]:
            yield succ


__all__ = ["Cut", "PARTS", "Part", "find_stack", "part_of_nodes", "split_parts"]
