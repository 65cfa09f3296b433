"""Shape rules of quantization ops: QuantizeLinear/DequantizeLinear (QDQ), DynamicQuantizeLinear,
and the com.microsoft quantized ops onnxruntime's quantizer emits (QGemm, QLinear*, QAttention,
DynamicQuantizeMatMul, MatMulBnb4, GatherBlockQuantized, ...).

Output dtypes follow the schemas: a quantized output takes its zero point's dtype (uint8 when
absent), a dequantized one its scale's.
"""

from __future__ import annotations

import sympy

from irtools.capture.onnx.shape_env import ONE, Ctx, RuleTable, exprs
from irtools.capture.onnx.shape_more import dtype_attr
from irtools.capture.onnx.shape_rules import conv_spatial, matmul_shape
from irtools.capture.onnx.tensors import TInfo, integer

RULES = RuleTable()
rule = RULES.rule
MS = "com.microsoft."


def _quantized_dtype(c: Ctx, zero_point: int) -> str:
    zp = c.inp(zero_point)
    return dtype_attr(c, "output_dtype", zp.dtype if zp is not None else "uint8")


@rule("QuantizeLinear", MS + "QuantizeLinear")
def _quantize(c: Ctx):
    return [TInfo(c.x.shape, _quantized_dtype(c, 2))]


@rule("DequantizeLinear", MS + "DequantizeLinear")
def _dequantize(c: Ctx):
    return [TInfo(c.x.shape, dtype_attr(c, "output_dtype", c.inp(1).dtype))]


@rule("DynamicQuantizeLinear")
def _dynamic_quantize(c: Ctx):
    return [TInfo(c.x.shape, "uint8"), TInfo((), "float32"), TInfo((), "uint8")]


@rule(MS + "DynamicQuantizeMatMul", MS + "MatMulInteger16")
def _dq_matmul(c: Ctx):
    dtype = "int32" if c.op.endswith("Integer16") else c.x.dtype
    return [TInfo(matmul_shape(c.env, c.x.shape, c.inp(1).shape), dtype)]


@rule(MS + "QGemm")
def _qgemm(c: Ctx):
    a, b = c.x.shape, c.inp(3).shape
    m, k = (a[1], a[0]) if c.attr("transA", 0) else (a[0], a[1])
    kb, n = (b[1], b[0]) if c.attr("transB", 0) else (b[0], b[1])
    c.env.unify(k, kb)
    dtype = _quantized_dtype(c, 8) if c.inp(7) is not None else "float32"
    return [TInfo((m, n), dtype)]


@rule(MS + "QOrderedMatMul")
def _qordered_matmul(c: Ctx):
    return [TInfo(matmul_shape(c.env, c.x.shape, c.inp(2).shape), "int8")]


@rule(MS + "MatMulBnb4")
def _matmul_bnb4(c: Ctx):
    return [TInfo(tuple(c.x.shape[:-1]) + (integer(c.attr("N")),), c.x.dtype)]


@rule(MS + "MatMulFpQ4")
def _matmul_fpq4(c: Ctx):
    kn = exprs(c.inp(2))
    return [TInfo(tuple(c.x.shape[:-1]) + ((kn[1],) if kn else (c.env.fresh(),)), c.x.dtype)]


@rule(MS + "GatherBlockQuantized")
def _gather_block_quantized(c: Ctx):
    data, idx, scales = c.x, c.inp(1), c.inp(2)
    axis = c.attr("gather_axis", 0) % data.rank
    shape = list(data.shape[:axis]) + list(idx.shape) + list(data.shape[axis + 1:])
    bits = c.attr("bits", 4)
    if data.dtype == "uint8" and bits < 8:  # packed: 8/bits values per byte along the last axis
        shape[-1] = shape[-1] * (8 // bits)
    return [TInfo(tuple(shape), scales.dtype)]


@rule(MS + "QLinearAdd", MS + "QLinearMul")
def _qlinear_binary(c: Ctx):
    return [TInfo(c.env.broadcast(c.x.shape, c.inp(3).shape), c.x.dtype)]


@rule(MS + "QLinearSigmoid", MS + "QLinearLeakyRelu", MS + "QLinearSoftmax", MS + "QLinearReduceMean")
def _qlinear_unary(c: Ctx):
    if c.op.endswith("ReduceMean"):
        axes, keep = c.attr("axes"), c.attr("keepdims", 1)
        axes = {a % c.x.rank for a in axes}
        return [TInfo(tuple(ONE if i in axes else d for i, d in enumerate(c.x.shape) if keep or i not in axes), c.x.dtype)]
    return [TInfo(c.x.shape, c.x.dtype)]


@rule(MS + "QLinearWhere")
def _qlinear_where(c: Ctx):
    return [TInfo(c.env.broadcast(c.x.shape, c.inp(1).shape, c.inp(4).shape), c.inp(1).dtype)]


@rule(MS + "QLinearConcat")
def _qlinear_concat(c: Ctx):
    parts = [t for t in c.ins[2::3] if t is not None]
    axis = c.attr("axis") % parts[0].rank
    shape = list(parts[0].shape)
    shape[axis] = sympy.Add(*(p.shape[axis] for p in parts))
    return [TInfo(tuple(shape), parts[0].dtype)]


@rule(MS + "QLinearAveragePool")
def _qlinear_avg_pool(c: Ctx):
    if c.attr("channels_last", 0):
        return None
    return [TInfo(c.x.shape[:2] + conv_spatial(c, c.attr("kernel_shape")), c.x.dtype)]


@rule(MS + "QLinearGlobalAveragePool")
def _qlinear_global_pool(c: Ctx):
    x = c.x
    if c.attr("channels_last", 0):
        return [TInfo((x.shape[0],) + (ONE,) * (x.rank - 2) + (x.shape[-1],), x.dtype)]
    return [TInfo(x.shape[:2] + (ONE,) * (x.rank - 2), x.dtype)]


@rule(MS + "QAttention")
def _qattention(c: Ctx):
    x, w, bias, past = c.x, c.inp(1), c.inp(2), c.inp(8)
    heads = integer(c.attr("num_heads"))
    b, s = x.shape[:2]
    hidden = w.shape[1] / 3
    total = s + (past.shape[3] if past is not None else 0)
    return [TInfo((b, s, hidden), bias.dtype), TInfo((integer(2), b, heads, total, hidden / heads), bias.dtype)]
