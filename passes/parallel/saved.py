"""Activations a forward node keeps for its backward (eager autograd's saved tensors), by op.

Used for training memory where only the forward graph is at hand: a per-op table of what
PyTorch's derivative formulas save (``tools/autograd/derivatives.yaml``): a matmul its
activation inputs, a nonlinear pointwise op its inputs, softmax its output, dropout its mask
(1 byte per element), a norm its input, attention (SDPA / flash) q, k, v, its output and
the row log-sum-exp; additions, casts, copies and views save nothing. Tensors are counted
once however many nodes save them; a sequence-parallel all-gather's output counts as its
input, the slice (Megatron-LM keeps the slice and gathers it again in backward). A forward+backward capture (``--scenario train``) reads
the saved tensors straight off the joint graph instead.
"""

from __future__ import annotations

import sympy

from irtools.ir import IRGraph
from irtools.ir.kinds import op_packet
from irtools.ir.symbols import sym

SEQ = {sym("seq_len"), sym("cache_len"), sym("kv_len")}
NOTHING = {"add", "sub", "neg", "to", "_to_copy", "clone", "contiguous", "cat", "copy", "copy_", "type_as", "fill",
           "zeros_like", "ones_like", "arange", "full", "new_ones", "new_zeros", "index_put", "index_put_",
           "eq", "ne", "lt", "le", "gt", "ge", "__and__", "__or__", "bitwise_and", "logical_and", "cumsum", "mean",
           "sum", "embedding", "index", "slice_scatter", "scatter", "masked_fill", "where", "expand", "repeat",
           "constant_pad_nd", "pad", "stack", "reshape", "view", "_unsafe_view"}
OUTPUT = {"softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax", "exp", "tanh", "sigmoid", "rsqrt",
          "sqrt"}


def _saves(ir: IRGraph, node: str) -> list[tuple[str, sympy.Expr, object]]:
    a = ir.node(node)
    name = op_packet(a.op).rsplit(".", 1)[-1]
    acts = [(v, s) for v, s in zip(a.input_values, a.inputs)
            if v is not None and s is not None and s.role == "activation" and v in ir.values]
    outs = [(v, s) for v, s in zip(a.output_values, a.outputs) if v is not None and s is not None]
    if a.kind in ("view", "free", "factory", "collective", "gather") or name in NOTHING or a.input_setup:
        return []
    if a.kind == "dropout":
        return [(f"{node}:mask", outs[0][1].numel, outs[0][1])] if outs else []
    if a.kind == "attention":
        q = a.inputs[0]
        lse = sympy.Mul(*q.shape[:-1]) * 4  # fp32 log-sum-exp per query row
        return [(v, s.nbytes, s) for v, s in acts[:3] + outs[:1]] + [(f"{node}:lse", lse, None)]
    if name in OUTPUT or a.kind == "softmax":
        return [(v, s.nbytes, s) for v, s in outs[:1]]
    if a.kind in ("matmul", "norm", "elementwise", "reduction", "conv", "pool"):
        return [(v, s.nbytes, s) for v, s in acts]
    return []


def _storage(ir: IRGraph, value: str) -> str:
    """The value whose storage ``value`` views (a view's base), so a tensor counts once."""
    for _ in range(16):
        val = ir.values.get(value)
        if val is None or val.producer is None:
            return value
        prod = ir.node(val.producer)
        if prod.op == "collective.all_gather":  # Megatron keeps the sequence slice and gathers it again
            value = prod.input_values[0]
            continue
        if prod.kind != "view" and not prod.alias:
            return value
        nxt = next((v for v in prod.input_values if v is not None), None)
        if nxt is None:
            return value
        value = nxt
    return value


def saved_bytes(ir: IRGraph, nodes, select=None) -> sympy.Expr:
    """Bytes the forward ``nodes`` of ``ir`` keep for backward (each storage once); ``select``
    (a predicate on the saved tensor's spec) keeps only some (the ``seq × seq`` scores)."""
    seen: dict[str, sympy.Expr] = {}
    for n in nodes:
        for v, nbytes, spec in _saves(ir, n):
            key = _storage(ir, v) if ":" not in v else v
            if key in seen or (select is not None and not select(spec)):
                continue
            stored = ir.values[key].spec if key in ir.values else None
            seen[key] = stored.nbytes if stored is not None and ":" not in v else nbytes
    return sympy.Add(*seen.values())


def is_score(spec) -> bool:
    """A ``seq × seq`` tensor (attention scores, their softmax, their dropout mask)."""
    if spec is None:
        return False
    return sum(1 for d in spec.shape if getattr(d, "free_symbols", set()) & SEQ) >= 2


__all__ = ["is_score", "saved_bytes"]
