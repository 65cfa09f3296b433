"""Cost rules of com.microsoft fused ops that onnxruntime's transformer optimizer emits beyond
those in ``onnx_ops``/``onnx_attention``: embeddings, MoE, packed / decoder / sparse attention,
fused GEMM epilogues, bias + softmax / dropout / split-GELU, SkipGroupNorm.

Same conventions as the default-domain rules (docs/conventions.md). Where the work depends on
runtime values (sparse block layouts, packed sequence lengths, a preallocated KV buffer's fill),
the rule counts the dense, padded or full-buffer case: an upper bound.
"""

from __future__ import annotations

import sympy

from passes.costs.moe import distinct_experts
from passes.costs.onnx_more import causal_conv_with_state, grid_sample, linear_attention
from passes.costs.onnx_ops import MS, onnx_rules
from passes.costs.registry import ZERO, Cost, OpCall, RuleSet, read_all, write_all
from passes.costs.torch_ops import ELEMENTWISE_FLOPS, matmul_flops, sdpa_flops

RULES = RuleSet()
onnx_rule = onnx_rules(RULES)

onnx_rule(MS + "GridSample", kind="gather")(grid_sample)
onnx_rule(MS + "CausalConvWithState", kind="conv")(causal_conv_with_state)
onnx_rule(MS + "LinearAttention", kind="attention")(linear_attention)

ACTIVATIONS = {"Relu": 1, "LeakyRelu": 1, "Tanh": 1, "Sigmoid": ELEMENTWISE_FLOPS["sigmoid"], "HardSigmoid": 3,
               "relu": 1, "gelu": ELEMENTWISE_FLOPS["gelu"], "silu": ELEMENTWISE_FLOPS["silu"],
               "swiglu": ELEMENTWISE_FLOPS["silu"] + 1, "identity": 0}


def present(call: OpCall, i: int) -> bool:
    return len(call.inputs) > i and call.inputs[i] is not None


def _cost(call: OpCall, flops, mm=ZERO, read=None) -> Cost:
    return Cost(flops, read_all(call) if read is None else read, write_all(call), matmul_flops=mm)


def _t(shape, flag) -> tuple:
    shape = tuple(shape)
    return shape[:-2] + (shape[-1], shape[-2]) if flag else shape


# ---- embeddings -----------------------------------------------------------------------------


@onnx_rule(MS + "EmbedLayerNormalization", MS + "QEmbedLayerNormalization", kind="norm")
def embed_layer_norm(call: OpCall) -> Cost:
    """Word + position (+ segment) rows gathered and summed (1-2 adds), LayerNorm (5), and the
    mask index (1 per mask element); the tables are read only where gathered."""
    word, pos = call.inputs[2], call.inputs[3]
    out = call.out
    tables = [word, pos] + ([call.inputs[4]] if present(call, 4) else [])
    rows = sum((out.numel * t.itemsize for t in tables), ZERO)
    small = [t for i, t in enumerate(call.inputs) if t is not None and i not in (2, 3, 4)]
    mask = call.inputs[7].numel if present(call, 7) else ZERO
    adds = len(tables) - 1
    return _cost(call, (adds + 5) * out.numel + mask, read=rows + sum((t.nbytes for t in small), ZERO))


# ---- mixture of experts ---------------------------------------------------------------------


@onnx_rule(MS + "MoE", MS + "QMoE", kind="matmul")
def moe(call: OpCall) -> Cost:
    """Each token through k experts: 2 flops per expert weight (fc1, fc2, fc3), the activation
    on the intermediate, the gate multiply with fc3 or SwiGLU; routing: softmax + top-k over
    the experts (4 per logit). Expert weights are read for the experts some token picks
    (``passes.costs.moe.distinct_experts``: uniform routing)."""
    x, router = call.inputs[:2]
    quant = call.op.endswith("QMoE")
    fc = (2, 5, 8) if quant else (2, 4, 6)
    bits = call.arg("expert_weight_bits", 4) if quant else 8
    experts = router.shape[-1]
    hidden = x.shape[-1]
    tokens = x.numel / hidden
    k = sympy.Integer(call.arg("k", 1))
    weights = [call.inputs[i] for i in fc if present(call, i)]
    scale = sympy.Rational(8, bits) if quant and weights[0].dtype in ("uint8", "int8") else 1
    per_token = 2 * sum((w.numel for w in weights), ZERO) * scale / experts
    inter = call.inputs[fc[1]].numel * scale / (experts * hidden)
    act = ACTIVATIONS.get(str(call.arg("activation_type", "relu")), 1)
    gate = inter if len(weights) > 2 or call.arg("swiglu_fusion", 0) else ZERO
    mm = tokens * k * per_token
    picked = distinct_experts(experts, k, tokens) / experts
    weight_bytes = sum((w.nbytes for w in weights), ZERO)
    rest = sum((t.nbytes for t in call.inputs if t is not None and not any(t is w for w in weights)), ZERO)
    return _cost(call, mm + tokens * k * (act * inter + gate + hidden) + 4 * tokens * experts, mm,
                 read=rest + picked * weight_bytes)


# ---- fused GEMM epilogues, bias ops ---------------------------------------------------------


@onnx_rule(MS + "GemmFastGelu", kind="matmul")
def gemm_fast_gelu(call: OpCall) -> Cost:
    a, b = call.inputs[:2]
    mm = matmul_flops(a.shape, b.shape)
    out = call.out.numel
    return _cost(call, mm + out * (ELEMENTWISE_FLOPS["gelu_tanh"] + (1 if present(call, 2) else 0)), mm)


@onnx_rule(MS + "FusedGemm", kind="matmul")
def fused_gemm(call: OpCall) -> Cost:
    a, b = call.inputs[:2]
    mm = matmul_flops(_t(a.shape, call.arg("transA", 0)), _t(b.shape, call.arg("transB", 0)))
    out = call.out.numel
    act = ACTIVATIONS.get(str(call.arg("activation", "identity")), 1)
    return _cost(call, mm + out * ((1 if present(call, 2) else 0) + act), mm)


@onnx_rule(MS + "TransposeMatMul", kind="matmul")
def transpose_matmul(call: OpCall) -> Cost:
    a, b = call.inputs[:2]
    mm = matmul_flops(_t(a.shape, call.arg("transA", 0)), _t(b.shape, call.arg("transB", 0)))
    return _cost(call, mm, mm)


@onnx_rule(MS + "BiasSoftmax", kind="softmax")
def bias_softmax(call: OpCall) -> Cost:
    return _cost(call, 4 * call.inputs[0].numel)


@onnx_rule(MS + "BiasDropout", MS + "BitmaskBiasDropout", kind="elementwise")
def bias_dropout(call: OpCall) -> Cost:
    """Inference: the bias add, + the residual add."""
    return _cost(call, (2 if present(call, 2) else 1) * call.inputs[0].numel)


@onnx_rule(MS + "BiasSplitGelu", kind="elementwise")
def bias_split_gelu(call: OpCall) -> Cost:
    """Bias add on the input, then GELU(second half) × first half (5 + 1 per output)."""
    return _cost(call, call.inputs[0].numel + (ELEMENTWISE_FLOPS["gelu"] + 1) * call.out.numel)


@onnx_rule(MS + "SkipGroupNorm", kind="norm")
def skip_group_norm(call: OpCall) -> Cost:
    """GroupNorm (5) after x + skip (+ bias), + SiLU (5) when ``activation`` is set."""
    act = ELEMENTWISE_FLOPS["silu"] if call.arg("activation", 0) else 0
    return _cost(call, (5 + 1 + (1 if present(call, 4) else 0) + act) * call.inputs[0].numel)


@onnx_rule(MS + "Inverse", kind="reduction")
def inverse(call: OpCall) -> Cost:
    """Gauss-Jordan: 2·M³ per matrix."""
    x = call.inputs[0]
    return _cost(call, 2 * x.shape[-1] ** 3 * sympy.Mul(*x.shape[:-2]))


# ---- attention variants ---------------------------------------------------------------------


def _attention(b, heads, sq, skv, d, dv) -> tuple[sympy.Expr, sympy.Expr]:
    return sdpa_flops((b, heads, sq, d), (b, heads, skv, d), (b, heads, skv, dv))


@onnx_rule(MS + "DecoderMaskedMultiHeadAttention", kind="attention")
def decoder_masked_mha(call: OpCall) -> Cost:
    """New tokens against the whole preallocated past buffer (an upper bound), + q/k/v bias."""
    q, past = call.inputs[0], call.inputs[5] if present(call, 5) else None
    heads = sympy.Integer(call.arg("num_heads"))
    b, s, hidden = q.shape
    d = hidden / heads
    skv = past.shape[2] if past is not None else s
    mm, total = _attention(b, heads, s, skv, d, d)
    masked = b * heads * s * skv if present(call, 3) or present(call, 4) else ZERO
    bias = 3 * b * s * hidden if present(call, 10) else ZERO
    return _cost(call, total + masked + bias, mm)


@onnx_rule(MS + "SparseAttention", kind="attention")
def sparse_attention(call: OpCall) -> Cost:
    """Dense attention over the KV buffer (the sparse block layout is runtime data: an upper
    bound), + rotary (3 per q/k element) when ``do_rotary``."""
    q, k, past = call.inputs[0], call.inputs[1] if present(call, 1) else None, call.inputs[3]
    heads, kv_heads = sympy.Integer(call.arg("num_heads")), sympy.Integer(call.arg("kv_num_heads"))
    b, s = q.shape[:2]
    d = q.shape[2] / (heads + 2 * kv_heads) if k is None else q.shape[2] / heads
    mm, total = _attention(b, heads, s, past.shape[2], d, d)
    rotary = 3 * b * s * (heads + kv_heads) * d if call.arg("do_rotary", 0) else ZERO
    return _cost(call, total + rotary, mm)


def _padded(call: OpCall, offset_index: int):
    """(batch, padded sequence length) from the token_offset input (batch, seq)."""
    offset = call.inputs[offset_index]
    return offset.shape[0], offset.shape[1]


@onnx_rule(MS + "PackedAttention", kind="attention")
def packed_attention(call: OpCall) -> Cost:
    """The QKV projection over the packed tokens, then attention per padded sequence."""
    x, w = call.inputs[:2]
    heads = sympy.Integer(call.arg("num_heads"))
    sizes = call.arg("qkv_hidden_sizes")
    hq = sympy.Integer(sizes[0]) if sizes else w.shape[1] / 3
    hv = sympy.Integer(sizes[2]) if sizes else w.shape[1] / 3
    proj = matmul_flops(x.shape, w.shape)
    b, s = _padded(call, 3)
    mm, total = _attention(b, heads, s, s, hq / heads, hv / heads)
    masked = b * heads * s * s if present(call, 5) else ZERO
    return _cost(call, proj + x.shape[0] * w.shape[1] + total + masked, proj + mm)


@onnx_rule(MS + "PackedMultiHeadAttention", kind="attention")
def packed_mha(call: OpCall) -> Cost:
    q = call.inputs[0]
    heads = sympy.Integer(call.arg("num_heads"))
    d = q.shape[-1] if not present(call, 1) else q.shape[1] / heads
    dv = d if not present(call, 2) else call.inputs[2].shape[1] / heads
    b, s = _padded(call, 4)
    mm, total = _attention(b, heads, s, s, d, dv)
    masked = b * heads * s * s if present(call, 6) else ZERO
    bias = call.inputs[3].numel * q.shape[0] if present(call, 3) else ZERO
    return _cost(call, total + masked + bias, mm)
