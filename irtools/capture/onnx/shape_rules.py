"""ONNX shape rules beyond the core shape ops: reductions, norms, matmul, conv, pooling, attention.

Registered in :data:`RULES` (``inference.py`` merges every rule table); same :class:`Ctx` conventions.
"""

from __future__ import annotations

import sympy

from irtools.capture.onnx.shape_env import ONE, Ctx, RuleTable, ShapeEnv, exprs, obj_array, with_value
from irtools.capture.onnx.tensors import TInfo, integer

RULES = RuleTable()
rule = RULES.rule


def _reduced(c: Ctx, axes, keepdims):
    rank = c.x.rank
    if axes is None or (not axes and not c.attr("noop_with_empty_axes", 0)):
        axes = range(rank)
    axes = {a % rank for a in axes} if rank else set()
    shape = tuple(ONE if i in axes else d for i, d in enumerate(c.x.shape) if keepdims or i not in axes)
    return shape, axes


@rule("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
      "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
def _reduce(c: Ctx):
    axes = c.from_attr_or_input("axes", 1)
    shape, all_axes = _reduced(c, axes, c.attr("keepdims", 1))
    value = None
    if c.x.value is not None and c.op in ("ReduceSum", "ReduceProd") and len(all_axes) == c.x.rank:
        flat = list(c.x.value.ravel())
        value = obj_array(sympy.Add(*flat) if c.op == "ReduceSum" else sympy.Mul(*flat))
    return [with_value(shape, c.x.dtype, value)]


@rule("ArgMax", "ArgMin")
def _argmax(c: Ctx):
    shape, _ = _reduced(c, [c.attr("axis", 0)], c.attr("keepdims", 1))
    return [TInfo(shape, "int64")]


@rule("TopK")
def _topk(c: Ctx):
    k = exprs(c.inp(1))
    axis = c.attr("axis", -1) % c.x.rank
    shape = list(c.x.shape)
    shape[axis] = k[0] if k else c.env.fresh()
    return [TInfo(tuple(shape), c.x.dtype), TInfo(tuple(shape), "int64")]


@rule("NonZero")
def _nonzero(c: Ctx):
    return [TInfo((sympy.Integer(c.x.rank), c.env.fresh("nonzero")), "int64")]


@rule("Dropout")
def _dropout(c: Ctx):
    return [TInfo(c.x.shape, c.x.dtype), TInfo(c.x.shape, "bool")]


@rule("LayerNormalization", "com.microsoft.SkipLayerNormalization", "com.microsoft.SkipSimplifiedLayerNormalization",
      "com.microsoft.SimplifiedLayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization")
def _layer_norm(c: Ctx):
    x = c.x
    axis = c.attr("axis", -1) % x.rank
    stats = TInfo(x.shape[:axis] + (ONE,) * (x.rank - axis), "float32")
    outs = [TInfo(x.shape, x.dtype), stats, stats]
    if "Skip" in c.op:
        outs = [TInfo(x.shape, x.dtype), stats, stats, TInfo(x.shape, x.dtype)]
    return outs


# ---- matmul, conv, pooling ---------------------------------------------------------------


def matmul_shape(env: ShapeEnv, a: tuple, b: tuple) -> tuple:
    """numpy.matmul's output shape (1-D operands promoted and dropped)."""
    a2 = (ONE,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (ONE,) if len(b) == 1 else tuple(b)
    env.unify(a2[-1], b2[-2])
    batch = env.broadcast(a2[:-2], b2[:-2])
    out = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
    return out


@rule("MatMul", "MatMulInteger", "com.microsoft.FusedMatMul", "com.microsoft.MatMulIntegerToFloat")
def _matmul(c: Ctx):
    a, b = c.x.shape, c.inp(1).shape
    if c.attr("transA", 0):
        a = a[:-2] + (a[-1], a[-2])
    if c.attr("transB", 0):
        b = b[:-2] + (b[-1], b[-2])
    dtype = "int32" if c.op == "MatMulInteger" else c.inp(2).dtype if c.op.endswith("IntegerToFloat") else c.x.dtype
    return [TInfo(matmul_shape(c.env, a, b), dtype)]


@rule("QLinearMatMul")
def _qmatmul(c: Ctx):
    return [TInfo(matmul_shape(c.env, c.x.shape, c.inp(3).shape), c.inp(7).dtype if c.inp(7) else "uint8")]


@rule("com.microsoft.MatMulNBits")
def _matmul_nbits(c: Ctx):
    return [TInfo(tuple(c.x.shape[:-1]) + (sympy.Integer(c.attr("N")),), c.x.dtype)]


@rule("Gemm")
def _gemm(c: Ctx):
    a, b = c.x.shape, c.inp(1).shape
    m, k = (a[1], a[0]) if c.attr("transA", 0) else (a[0], a[1])
    kb, n = (b[1], b[0]) if c.attr("transB", 0) else (b[0], b[1])
    c.env.unify(k, kb)
    return [TInfo((m, n), c.x.dtype)]


@rule("Einsum")
def _einsum(c: Ctx):
    equation = c.attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    sizes = {}
    for term, info in zip(lhs.split(","), c.ins):
        for ch, d in zip(term, info.shape):
            sizes[ch] = d if ch not in sizes or sizes[ch] == 1 else c.env.unify(sizes[ch], d)
    if not rhs:
        rhs = "".join(sorted(ch for ch in sizes if lhs.count(ch) == 1))
    return [TInfo(tuple(sizes[ch] for ch in rhs), c.x.dtype)]


def _int_or_none(v):
    if type(v) is int:
        return v
    return int(v) if isinstance(v, sympy.Integer) else None


def window_out(size, k, stride, dil, pad_total, ceil_mode=False, auto_pad="NOTSET"):
    """One spatial output size of a convolution or pooling window."""
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return sympy.ceiling(size / stride)
    if auto_pad == "VALID":
        pad_total = 0
    known = [_int_or_none(v) for v in (size, k, stride, dil, pad_total)]
    if None not in known and known[2] > 0:  # all known: integer arithmetic, same result
        size_i, k_i, stride_i, dil_i, pad_i = known
        span = size_i + pad_i - dil_i * (k_i - 1) - 1
        return integer((-(-span // stride_i) if ceil_mode else span // stride_i) + 1)
    span = size + pad_total - dil * (k - 1) - 1
    return (sympy.ceiling(span / stride) if ceil_mode else sympy.floor(span / stride)) + 1


def conv_spatial(c: Ctx, kernel, ceil_mode=False) -> tuple:
    """Output spatial sizes of a convolution or pool window over ``c.x`` (attrs strides/pads/dilations/auto_pad)."""
    nsp = len(kernel)
    strides = c.attr("strides") or [1] * nsp
    dils = c.attr("dilations") or [1] * nsp
    pads = c.attr("pads") or [0] * (2 * nsp)
    auto_pad = c.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    return tuple(window_out(c.x.shape[2 + i], kernel[i], strides[i], dils[i], pads[i] + pads[i + nsp], ceil_mode, auto_pad)
                 for i in range(nsp))


def _window(c: Ctx, kernel, channels):
    return (c.x.shape[0], channels) + conv_spatial(c, kernel, c.attr("ceil_mode", 0))


@rule("Conv", "ConvInteger", "com.microsoft.FusedConv", "com.microsoft.NhwcConv")
def _conv(c: Ctx):
    w = c.inp(1)
    kernel = c.attr("kernel_shape") or list(w.shape[2:])
    return [TInfo(_window(c, kernel, w.shape[0]), c.x.dtype if c.op != "ConvInteger" else "int32")]


@rule("QLinearConv")
def _qconv(c: Ctx):
    w = c.inp(3)
    kernel = c.attr("kernel_shape") or list(w.shape[2:])
    return [TInfo(_window(c, kernel, w.shape[0]), c.x.dtype)]


@rule("ConvTranspose")
def _conv_transpose(c: Ctx):
    x, w = c.x, c.inp(1)
    kernel = c.attr("kernel_shape") or list(w.shape[2:])
    nsp = len(kernel)
    channels = w.shape[1] * c.attr("group", 1)
    if c.attr("output_shape"):
        return [TInfo((x.shape[0], channels) + tuple(sympy.Integer(s) for s in c.attr("output_shape")[-nsp:]), x.dtype)]
    strides = c.attr("strides") or [1] * nsp
    dils = c.attr("dilations") or [1] * nsp
    pads = c.attr("pads") or [0] * (2 * nsp)
    outpad = c.attr("output_padding") or [0] * nsp
    spatial = tuple(
        strides[i] * (x.shape[2 + i] - 1) + outpad[i] + (kernel[i] - 1) * dils[i] + 1 - pads[i] - pads[i + nsp]
        for i in range(nsp)
    )
    return [TInfo((x.shape[0], channels) + spatial, x.dtype)]


@rule("MaxPool", "AveragePool", "LpPool")
def _pool(c: Ctx):
    out = TInfo(_window(c, c.attr("kernel_shape"), c.x.shape[1]), c.x.dtype)
    return [out, TInfo(out.shape, "int64")]


@rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(c: Ctx):
    return [TInfo(c.x.shape[:2] + (ONE,) * (c.x.rank - 2), c.x.dtype)]


@rule("Resize", "Upsample")
def _resize(c: Ctx):
    sizes = exprs(c.inp(3))
    if sizes:
        return [TInfo(tuple(sizes), c.x.dtype)]
    scales = exprs(c.inp(2)) or exprs(c.inp(1)) or c.attr("scales")
    if not scales:
        return [TInfo(c.fresh_shape(c.x.rank), c.x.dtype)]
    return [TInfo(tuple(sympy.floor(d * sympy.nsimplify(s)) for d, s in zip(c.x.shape, scales)), c.x.dtype)]


@rule("DepthToSpace", "SpaceToDepth")
def _depth_space(c: Ctx):
    b = c.attr("blocksize")
    n, ch, h, w = c.x.shape
    if c.op == "DepthToSpace":
        return [TInfo((n, ch / b**2, h * b, w * b), c.x.dtype)]
    return [TInfo((n, ch * b**2, h / b, w / b), c.x.dtype)]


# ---- attention ---------------------------------------------------------------------------


@rule("Attention")
def _attention(c: Ctx):
    """opset 23 Attention: 3-D (B, S, H·D) or 4-D (B, H, S, D) Q/K/V, optional past K/V."""
    q, k, v = c.ins[:3]
    past_k = c.inp(4)
    if q.rank == 3:
        hq, hkv = c.attr("q_num_heads"), c.attr("kv_num_heads")
        b, sq = q.shape[:2]
        skv, d, dv = k.shape[1], q.shape[2] / hq, v.shape[2] / hkv
        y = TInfo((b, sq, hq * dv), q.dtype)
    else:
        b, hq, sq, d = q.shape
        hkv, skv, dv = k.shape[1], k.shape[2], v.shape[3]
        y = TInfo((b, hq, sq, dv), q.dtype)
    total = skv + (past_k.shape[2] if past_k is not None else 0)
    return [y, TInfo((b, hkv, total, d), k.dtype), TInfo((b, hkv, total, dv), v.dtype), TInfo((b, hq, sq, total), q.dtype)]


@rule("com.microsoft.Attention")
def _ms_attention(c: Ctx):
    """Fused QKV projection + attention: input (B, S, in), weights (in, 3·hidden), past (2, B, H, P, D)."""
    x, w = c.x, c.inp(1)
    heads = c.attr("num_heads")
    sizes = c.attr("qkv_hidden_sizes")
    hidden_q = sympy.Integer(sizes[0]) if sizes else w.shape[1] / 3
    hidden_v = sympy.Integer(sizes[2]) if sizes else w.shape[1] / 3
    b, s = x.shape[:2]
    past = c.inp(4)
    total = s + (past.shape[3] if past is not None else 0)
    return [TInfo((b, s, hidden_v), x.dtype), TInfo((sympy.Integer(2), b, sympy.Integer(heads), total, hidden_q / heads), x.dtype)]


@rule("com.microsoft.MultiHeadAttention")
def _mha(c: Ctx):
    q, k, v = c.x, c.inp(1), c.inp(2)
    heads = sympy.Integer(c.attr("num_heads"))
    b, s = q.shape[:2]
    if k is None:  # packed QKV: (B, S, H, 3, d)
        d = q.shape[-1]
        return [TInfo((b, s, heads * d), q.dtype)]
    if k.rank == 4:  # cross attention with keys already in (B, H, L, d)
        length, d, dv = k.shape[2], k.shape[3], v.shape[3]
    else:
        length, d, dv = k.shape[1], q.shape[2] / heads, v.shape[2] / heads
    past = c.inp(6)
    total = length + (past.shape[2] if past is not None and k.rank == 3 else 0)
    present = TInfo((b, heads, total, d), q.dtype)
    return [TInfo((b, s, heads * dv), q.dtype), present, TInfo((b, heads, total, dv), q.dtype), TInfo((b, heads, s, total), q.dtype)]


@rule("com.microsoft.GroupQueryAttention")
def _gqa(c: Ctx):
    q, k, past = c.x, c.inp(1), c.inp(3)
    heads, kv_heads = c.attr("num_heads"), c.attr("kv_num_heads")
    b, s = q.shape[:2]
    d = q.shape[2] / (heads + 2 * kv_heads) if k is None else q.shape[2] / heads
    total = s + (past.shape[2] if past is not None else 0)
    present = TInfo((b, sympy.Integer(kv_heads), total, d), q.dtype)
    return [TInfo((b, s, heads * d), q.dtype), present, present]


@rule("com.microsoft.EmbedLayerNormalization")
def _embed_ln(c: Ctx):
    ids, word = c.x, c.inp(2)
    b, s = ids.shape[:2]
    return [TInfo((b, s, word.shape[1]), word.dtype), TInfo((b,), "int32"), TInfo((b, s, word.shape[1]), word.dtype)]
