"""Shape rules of the recurrent ops (RNN, GRU, LSTM) and of com.microsoft fused ops that the
onnxruntime transformer optimizer emits beyond those in ``shape_rules`` (MoE, packed and
decoder attention, GemmFastGelu, SkipGroupNorm, ...)."""

from __future__ import annotations

from irtools.capture.onnx.shape_env import Ctx, RuleTable
from irtools.capture.onnx.shape_rules import matmul_shape
from irtools.capture.onnx.tensors import TInfo, integer

RULES = RuleTable()
rule = RULES.rule
MS = "com.microsoft."


@rule("RNN", "GRU", "LSTM", MS + "DynamicQuantizeLSTM")
def _rnn(c: Ctx):
    """X (seq, batch, input) [layout 1: (batch, seq, input)]; W (directions, gates·hidden, input).
    Y (seq, directions, batch, hidden) [layout 1: (batch, seq, directions, hidden)], Y_h / Y_c
    (directions, batch, hidden) [layout 1: (batch, directions, hidden)]."""
    x, w, r = c.ins[:3]
    layout = c.attr("layout", 0)
    seq, batch = (x.shape[1], x.shape[0]) if layout else (x.shape[0], x.shape[1])
    dirs = w.shape[0]
    hidden = integer(c.attr("hidden_size")) if c.attr("hidden_size") else r.shape[-1]
    y = (batch, seq, dirs, hidden) if layout else (seq, dirs, batch, hidden)
    state = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    return [TInfo(y, x.dtype)] + [TInfo(state, x.dtype)] * 2


@rule(MS + "GemmFastGelu", MS + "TransposeMatMul")
def _gemm_fast_gelu(c: Ctx):
    a, b = c.x.shape, c.inp(1).shape
    if c.attr("transA", 0):
        a = a[:-2] + (a[-1], a[-2])
    if c.attr("transB", 0):
        b = b[:-2] + (b[-1], b[-2])
    return [TInfo(matmul_shape(c.env, a, b), c.x.dtype)]


@rule(MS + "FusedGemm")
def _fused_gemm(c: Ctx):
    a, b = c.x.shape, c.inp(1).shape
    m = a[1] if c.attr("transA", 0) else a[0]
    n = b[0] if c.attr("transB", 0) else b[1]
    return [TInfo((m, n), c.x.dtype)]


@rule(MS + "BiasDropout", MS + "BitmaskBiasDropout")
def _bias_dropout(c: Ctx):
    return [TInfo(c.x.shape, c.x.dtype), TInfo(c.x.shape, "bool")]


@rule(MS + "SkipGroupNorm")
def _skip_group_norm(c: Ctx):
    return [TInfo(c.x.shape, c.x.dtype), TInfo(c.x.shape, c.x.dtype)]


@rule(MS + "BiasSplitGelu")
def _bias_split_gelu(c: Ctx):
    return [TInfo(c.x.shape[:-1] + (c.x.shape[-1] / 2,), c.x.dtype)]


@rule(MS + "MoE", MS + "QMoE")
def _moe(c: Ctx):
    return [TInfo(c.x.shape, c.x.dtype)]


@rule(MS + "DecoderMaskedMultiHeadAttention")
def _decoder_mha(c: Ctx):
    """One step against a preallocated cache: present K/V are the past buffers."""
    q, v, past_k, past_v = c.x, c.inp(2), c.inp(5), c.inp(6)
    heads = integer(c.attr("num_heads"))
    hidden_v = v.shape[2] if v is not None and v.rank == 3 else q.shape[2]
    outs = [TInfo((q.shape[0], q.shape[1], hidden_v), q.dtype)]
    outs += [TInfo(past_k.shape, q.dtype) if past_k is not None else None,
             TInfo(past_v.shape, q.dtype) if past_v is not None else None]
    total = past_k.shape[2] if past_k is not None else q.shape[1]
    return outs + [TInfo((q.shape[0], heads, q.shape[1], total), "float32")]


@rule(MS + "SparseAttention")
def _sparse_attention(c: Ctx):
    q, k, past_k, past_v = c.x, c.inp(1), c.inp(3), c.inp(4)
    heads, kv_heads = integer(c.attr("num_heads")), integer(c.attr("kv_num_heads"))
    d = q.shape[2] / (heads + 2 * kv_heads) if k is None else q.shape[2] / heads
    return [TInfo((q.shape[0], q.shape[1], heads * d), q.dtype), TInfo(past_k.shape, q.dtype), TInfo(past_v.shape, q.dtype)]


@rule(MS + "PackedAttention")
def _packed_attention(c: Ctx):
    x, w = c.x, c.inp(1)
    sizes = c.attr("qkv_hidden_sizes")
    hidden_v = integer(sizes[2]) if sizes else w.shape[1] / 3
    return [TInfo((x.shape[0], hidden_v), x.dtype)]


@rule(MS + "PackedMultiHeadAttention")
def _packed_mha(c: Ctx):
    q, k, v = c.x, c.inp(1), c.inp(2)
    heads = integer(c.attr("num_heads"))
    if k is None:  # packed QKV (tokens, heads, 3, head_size)
        return [TInfo((q.shape[0], heads * q.shape[-1]), q.dtype)]
    return [TInfo((q.shape[0], v.shape[1]), q.dtype)]


@rule(MS + "QEmbedLayerNormalization")
def _qembed_ln(c: Ctx):
    ids, word = c.x, c.inp(2)
    b, s = ids.shape[:2]
    return [TInfo((b, s, word.shape[1]), "float32"), TInfo((b,), "int32")]
