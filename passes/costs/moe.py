"""Cost rules of mixture-of-experts ops: grouped (per-expert) matmuls.

A grouped matmul multiplies ``S`` rows, sorted by expert, each by its own expert's
``(K, N)`` weight: 2·S·K·N flops whatever the routing (every row meets exactly one expert),
so routed FLOPs are tokens × ``num_experts_per_tok`` × the expert's FLOPs. What the routing
changes is the weight bytes: only the experts some token picked are read
(:data:`ROUTING_ASSUMPTION`, docs/conventions.md).
"""

from __future__ import annotations

import sympy

from passes.costs.registry import Cost, OpCall, RuleSet

RULES = RuleSet()

#: How expected expert weight reads are derived (the report shows it beside the totals).
ROUTING_ASSUMPTION = (
    "mixture of experts: routing is assumed uniform and independent per token (each token picks "
    "num_experts_per_tok = k distinct experts of E, each with probability k/E), so a batch of T = "
    "batch_size*seq_len tokens reads the weights of E*(1 - (1 - k/E)**T) distinct experts on average; "
    "FLOPs do not depend on routing (T*k rows, each through one expert)"
)


def distinct_experts(experts, top_k, tokens) -> sympy.Expr:
    """Expected number of distinct experts ``tokens`` uniform top-``top_k`` picks touch."""
    experts = sympy.sympify(experts)
    return experts * (1 - (1 - sympy.sympify(top_k) / experts) ** sympy.sympify(tokens))


def _grouped(call: OpCall, rows: sympy.Expr, touched_share: sympy.Expr) -> Cost:
    """``rows`` (S) rows of input (S, K) through weight (E, K, N); input and output bytes
    from ``rows`` so they stay in the same symbols as the flops."""
    x, weight, offs = call.inputs[:3]
    k_in, n_out = weight.shape[-2], weight.shape[-1]
    matmul = 2 * rows * k_in * n_out
    read = rows * k_in * x.itemsize + offs.nbytes + weight.nbytes * touched_share
    return Cost(matmul, read, rows * n_out * call.out.itemsize, matmul)


@RULES.rule("irtools.routed_mm.default", kind="matmul")
def routed_mm(call: OpCall) -> Cost:
    """irtools' grouped matmul (``irtools/recipes/moe_capture.py``): input (S, K) sorted by
    expert, weight (E, K, N), offsets (E,), and the routing (T, k) for its shape alone:
    rows S = T·k; weights read for the expected distinct experts of uniform routing."""
    weight, routing = call.inputs[1], call.inputs[3]
    tokens, top_k = routing.shape[0], routing.shape[-1]
    experts = weight.shape[0]
    return _grouped(call, tokens * top_k, distinct_experts(experts, top_k, tokens) / experts)


@RULES.rule("transformers.grouped_mm_fallback.default", kind="matmul")
def grouped_mm_fallback(call: OpCall) -> Cost:
    """transformers' grouped matmul custom op (its default expert path under export):
    input (S, K), weight (E, K, N), offsets (E,). The op does not see ``num_experts_per_tok``,
    so the routing assumption cannot apply: every expert's weight counts as read (an upper
    bound; irtools' own recipes capture ``irtools.routed_mm`` instead)."""
    return _grouped(call, call.inputs[0].shape[0], sympy.Integer(1))


@RULES.rule("aten._grouped_mm", kind="matmul")
def aten_grouped_mm(call: OpCall) -> Cost:
    """torch's grouped matmul (transformers' expert path for bf16 weights under export).
    2-D x 3-D: rows (S, K) through weight (E, K, N) by offsets — as the fallback, every
    expert's weight read; 3-D x 3-D batched; 3-D x 2-D and 2-D x 2-D split N or K by group."""
    a, b = call.inputs[0], call.inputs[1]
    if len(a.shape) == 2 and len(b.shape) == 3:
        return _grouped(call, a.shape[0], sympy.Integer(1))
    if len(a.shape) == 2 and len(b.shape) == 2:  # K split by group: (M, K) x (K, N) -> (G, M, N)
        matmul = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    else:  # batched, or N split by group: each output element one K-long dot product
        matmul = 2 * call.out.numel * a.shape[-1]
    read = sympy.Add(*(t.nbytes for t in call.tensors_in))
    return Cost(matmul, read, call.out.nbytes, matmul)
