"""Cost rules of ONNX attention ops (opset 23 Attention, com.microsoft fused attention) and of
control flow (If: the larger branch; Loop/Scan: the body × the trip count).

Attention follows ``aten.scaled_dot_product_attention`` (``torch_ops.sdpa_flops``): QKᵀ and
·V, 4 per score for scale and softmax, +1 per score when a mask or bias is added; causal
masking is counted dense. Grouped-query attention counts every query head against its
shared K/V head.
"""

from __future__ import annotations

import sympy

from irtools.ir.symbols import as_expr
from passes.costs.onnx_ops import MS, onnx_rules
from passes.costs.registry import ZERO, Cost, OpCall, RuleSet, read_all, write_all
from passes.costs.torch_ops import matmul_flops, sdpa_flops

RULES = RuleSet()
onnx_rule = onnx_rules(RULES)


def _present(call: OpCall, i: int):
    return call.inputs[i] if len(call.inputs) > i and call.inputs[i] is not None else None


def _attention_cost(call, b, heads, sq, skv, d, dv, masked, extra=ZERO, extra_mm=ZERO) -> Cost:
    mm, total = sdpa_flops((b, heads, sq, d), (b, heads, skv, d), (b, heads, skv, dv))
    if masked:
        total += b * heads * sq * skv
    return Cost(total + extra, read_all(call), write_all(call), matmul_flops=mm + extra_mm)


@onnx_rule("Attention", kind="attention")
def attention(call: OpCall) -> Cost:
    """opset 23: Q/K/V 3-D (B, S, H·D) with head counts as attributes, or 4-D (B, H, S, D)."""
    q, k, v = call.inputs[:3]
    past = _present(call, 4)
    if len(q.shape) == 3:
        hq, hkv = sympy.Integer(call.arg("q_num_heads")), sympy.Integer(call.arg("kv_num_heads"))
        b, sq = q.shape[:2]
        skv, d, dv = k.shape[1], q.shape[2] / hq, v.shape[2] / hkv
    else:
        b, hq, sq, d = q.shape
        skv, dv = k.shape[2], v.shape[3]
    if past is not None:
        skv = skv + past.shape[2]
    return _attention_cost(call, b, hq, sq, skv, d, dv, _present(call, 3) is not None)


@onnx_rule(MS + "Attention", kind="attention")
def ms_attention(call: OpCall) -> Cost:
    """QKV projection (input · weights + bias) then attention over past + new tokens."""
    x, w = call.inputs[:2]
    heads = sympy.Integer(call.arg("num_heads"))
    b, s, _ = x.shape
    sizes = call.arg("qkv_hidden_sizes")
    hq = sympy.Integer(sizes[0]) if sizes else w.shape[1] / 3
    hv = sympy.Integer(sizes[2]) if sizes else w.shape[1] / 3
    proj = matmul_flops(x.shape, w.shape)
    bias = b * s * w.shape[1] if _present(call, 2) is not None else ZERO
    past = _present(call, 4)
    skv = s + (past.shape[3] if past is not None else 0)
    masked = _present(call, 3) is not None or _present(call, 5) is not None
    return _attention_cost(call, b, heads, s, skv, hq / heads, hv / heads, masked, extra=proj + bias, extra_mm=proj)


@onnx_rule(MS + "MultiHeadAttention", kind="attention")
def multi_head_attention(call: OpCall) -> Cost:
    q, k, v = call.inputs[0], _present(call, 1), _present(call, 2)
    heads = sympy.Integer(call.arg("num_heads"))
    b, s = q.shape[:2]
    if k is None:  # packed QKV (B, S, H, 3, d)
        length, d, dv = s, q.shape[-1], q.shape[-1]
    elif len(k.shape) == 4:
        length, d, dv = k.shape[2], k.shape[3], v.shape[3]
    else:
        length, d, dv = k.shape[1], q.shape[2] / heads, v.shape[2] / heads
    past = _present(call, 6)
    if past is not None and k is not None and len(k.shape) == 3:
        length = length + past.shape[2]
    bias = _present(call, 3)
    extra = bias.numel * b * s if bias is not None else ZERO  # q, k, v bias adds
    masked = _present(call, 4) is not None or _present(call, 5) is not None
    return _attention_cost(call, b, heads, s, length, d, dv, masked, extra=extra)


@onnx_rule(MS + "GroupQueryAttention", kind="attention")
def group_query_attention(call: OpCall) -> Cost:
    """Every query head against its group's K/V over past + new tokens (rotary: 3 per q/k element)."""
    q, k, past = call.inputs[0], _present(call, 1), _present(call, 3)
    heads, kv_heads = sympy.Integer(call.arg("num_heads")), sympy.Integer(call.arg("kv_num_heads"))
    b, s = q.shape[:2]
    d = q.shape[2] / (heads + 2 * kv_heads) if k is None else q.shape[2] / heads
    skv = s + (past.shape[2] if past is not None else 0)
    rotary = 3 * b * s * (heads + kv_heads) * d if call.arg("do_rotary", 0) else ZERO
    return _attention_cost(call, b, heads, s, skv, d, d, False, extra=rotary)


# ---- control flow ---------------------------------------------------------------------------


def subgraph_cost(sub_ir) -> Cost:
    """Total cost of a body's IR (the cost pass annotates bodies before their node)."""
    sums = [sympy.Add(*(a[key] for _, a in sub_ir.nodes())) for key in ("flops", "bytes_read", "bytes_written", "matmul_flops")]
    return Cost(*sums)


def _size(expr) -> float:
    expr = as_expr(expr)
    return float(expr.subs({s: 64 for s in expr.free_symbols})) if expr.free_symbols else float(expr)


@onnx_rule("If", kind="control")
def if_node(call: OpCall) -> Cost:
    """The larger branch (by FLOPs at size 64 for every symbol, then bytes); the node is flagged."""
    branches = [subgraph_cost(g) for g in call.arg("subgraphs").values()]
    return max(branches, key=lambda c: (_size(c.flops), _size(c.bytes_read + c.bytes_written)))


@onnx_rule("Loop", "Scan", kind="control")
def loop(call: OpCall) -> Cost:
    """The body × the trip count (a symbol, and a flag, when the model does not fix it)."""
    body = subgraph_cost(call.arg("subgraphs")["body"])
    n = as_expr(call.arg("trip_count", 1))
    return Cost(n * body.flops, n * body.bytes_read, n * body.bytes_written, n * body.matmul_flops)
