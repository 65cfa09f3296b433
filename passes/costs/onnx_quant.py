"""Cost rules of quantization ops: QDQ (QuantizeLinear, DequantizeLinear), DynamicQuantizeLinear
and the com.microsoft quantized ops of onnxruntime's quantizer and transformer optimizer.

Quantized tensors cost their stored width (``TensorSpec.itemsize``: int8/uint8/fp8 1 byte,
int4/uint4/fp4 half a byte), so an int8 weight initializer is read at 1 byte per element and
the dequantized tensor is written at the compute dtype. Per element (docs/conventions.md):

- QuantizeLinear: divide by the scale, round, saturate (3), + 1 with a zero point;
- DequantizeLinear: multiply by the scale (1), + 1 with a zero point (subtracted first);
- DynamicQuantizeLinear: min and max over the input (2) then quantizing (4): 6;
- QLinear* elementwise ops: dequantize each input (2), the op, requantize the output (4);
- quantized matmuls: 2·M·N·K plus the per-output rescale (and bias) they fuse.
"""

from __future__ import annotations

import sympy

from passes.costs.onnx_ops import MS, onnx_rules
from passes.costs.registry import ZERO, Cost, OpCall, RuleSet, read_all, write_all
from passes.costs.torch_ops import ELEMENTWISE_FLOPS, matmul_flops, sdpa_flops

RULES = RuleSet()
onnx_rule = onnx_rules(RULES)

QUANTIZE, DEQUANTIZE = 4, 2
REQUANT = DEQUANTIZE + QUANTIZE


def present(call: OpCall, i: int) -> bool:
    return len(call.inputs) > i and call.inputs[i] is not None


def _cost(call: OpCall, flops, mm=ZERO) -> Cost:
    return Cost(flops, read_all(call), write_all(call), matmul_flops=mm)


@onnx_rule("QuantizeLinear", MS + "QuantizeLinear", kind="elementwise")
def quantize_linear(call: OpCall) -> Cost:
    return _cost(call, (3 + (1 if present(call, 2) else 0)) * call.inputs[0].numel)


@onnx_rule("DequantizeLinear", MS + "DequantizeLinear", kind="elementwise")
def dequantize_linear(call: OpCall) -> Cost:
    return _cost(call, (1 + (1 if present(call, 2) else 0)) * call.inputs[0].numel)


@onnx_rule("DynamicQuantizeLinear", kind="reduction")
def dynamic_quantize_linear(call: OpCall) -> Cost:
    return _cost(call, (2 + QUANTIZE) * call.inputs[0].numel)


# ---- quantized matmuls ----------------------------------------------------------------------


def _t(shape, flag) -> tuple:
    shape = tuple(shape)
    return shape[:-2] + (shape[-1], shape[-2]) if flag else shape


@onnx_rule(MS + "DynamicQuantizeMatMul", kind="matmul")
def dynamic_quantize_matmul(call: OpCall) -> Cost:
    """A quantized on the fly (6 per element), the integer matmul, the output rescaled (+ bias)."""
    a, b = call.inputs[:2]
    mm = matmul_flops(a.shape, b.shape)
    out = call.out.numel
    return _cost(call, mm + (2 + QUANTIZE) * a.numel + out * (2 if present(call, 4) else 1), mm)


@onnx_rule(MS + "MatMulInteger16", kind="matmul")
def matmul_integer16(call: OpCall) -> Cost:
    mm = matmul_flops(call.inputs[0].shape, call.inputs[1].shape)
    return _cost(call, mm, mm)


@onnx_rule(MS + "QGemm", kind="matmul")
def qgemm(call: OpCall) -> Cost:
    """2·M·N·K, + M·N for C, then the rescale (1 per output) or a requantize (4 per output)."""
    a, b = call.inputs[0], call.inputs[3]
    mm = matmul_flops(_t(a.shape, call.arg("transA", 0)), _t(b.shape, call.arg("transB", 0)))
    out = call.out.numel
    rescale = QUANTIZE if present(call, 7) else 1
    return _cost(call, mm + out * ((1 if present(call, 6) else 0) + rescale), mm)


@onnx_rule(MS + "QOrderedMatMul", kind="matmul")
def qordered_matmul(call: OpCall) -> Cost:
    mm = matmul_flops(call.inputs[0].shape, call.inputs[2].shape)
    extra = (1 if present(call, 5) else 0) + (1 if present(call, 6) else 0)
    return _cost(call, mm + (extra + QUANTIZE) * call.out.numel, mm)


@onnx_rule(MS + "MatMulBnb4", MS + "MatMulFpQ4", kind="matmul")
def matmul_packed4(call: OpCall) -> Cost:
    """A (…, K) · dequantized B (K, N): 2·M·N·K; B is read packed (its stored bytes)."""
    a = call.inputs[0]
    mm = 2 * a.numel * call.out.shape[-1]
    return _cost(call, mm, mm)


@onnx_rule(MS + "GatherBlockQuantized", kind="gather")
def gather_block_quantized(call: OpCall) -> Cost:
    """Rows gathered packed (``bits`` per value) with their block scales, dequantized (2 per value)."""
    data, idx, scales = call.inputs[:3]
    out = call.out.numel
    bits, block = call.arg("bits", 4), call.arg("block_size", 128)
    read = out * sympy.Rational(bits, 8) + out / block * scales.itemsize + idx.nbytes
    if present(call, 3):
        read += out / block * sympy.Rational(bits, 8)
    return Cost(DEQUANTIZE * out, read, write_all(call))


# ---- QLinear elementwise, pooling, concat ---------------------------------------------------


def _qlinear(op_flops: int, per_input: bool = False):
    def rule(call: OpCall) -> Cost:
        n = call.inputs[0].numel if per_input else call.out.numel
        return _cost(call, (op_flops + REQUANT) * n)

    return rule


onnx_rule(MS + "QLinearAdd", MS + "QLinearMul", kind="elementwise")(_qlinear(1 + DEQUANTIZE))
onnx_rule(MS + "QLinearSigmoid", kind="elementwise")(_qlinear(ELEMENTWISE_FLOPS["sigmoid"]))
onnx_rule(MS + "QLinearLeakyRelu", kind="elementwise")(_qlinear(1))
onnx_rule(MS + "QLinearWhere", MS + "QLinearConcat", kind="elementwise")(_qlinear(0))
onnx_rule(MS + "QLinearSoftmax", kind="softmax")(_qlinear(3, per_input=True))


@onnx_rule(MS + "QLinearAveragePool", kind="pool")
def qlinear_average_pool(call: OpCall) -> Cost:
    kernel = sympy.Mul(*(sympy.Integer(k) for k in call.arg("kernel_shape", [])))
    return _cost(call, call.out.numel * (kernel + QUANTIZE) + DEQUANTIZE * call.inputs[0].numel)


@onnx_rule(MS + "QLinearGlobalAveragePool", MS + "QLinearReduceMean", kind="pool")
def qlinear_global_pool(call: OpCall) -> Cost:
    x = call.inputs[0]
    return _cost(call, (1 + DEQUANTIZE) * x.numel + QUANTIZE * call.out.numel)


# ---- quantized attention --------------------------------------------------------------------


@onnx_rule(MS + "QAttention", kind="attention")
def qattention(call: OpCall) -> Cost:
    """Integer QKV projection, dequantized with the bias (2 per element), then attention over
    past + new tokens as ``com.microsoft.Attention`` (+1 per score with a mask)."""
    x, w = call.inputs[:2]
    heads = sympy.Integer(call.arg("num_heads"))
    b, s, _ = x.shape
    proj = matmul_flops(x.shape, w.shape)
    hidden = w.shape[1] / 3
    skv = s + (call.inputs[8].shape[3] if present(call, 8) else 0)
    d = hidden / heads
    mm, total = sdpa_flops((b, heads, s, d), (b, heads, skv, d), (b, heads, skv, d))
    masked = b * heads * s * skv if present(call, 5) else ZERO
    return _cost(call, proj + DEQUANTIZE * b * s * w.shape[1] + total + masked, proj + mm)
