"""Cost rules of ONNX ops (default domain by op type, others as ``com.microsoft.Attention``).

Same kinds and conventions as the ATen rules (``torch_ops``): matmul 2·M·N·K (+M·N for a
bias), elementwise 1 flop per output element except ``ELEMENTWISE_FLOPS``, softmax 3,
LayerNormalization 5, RMS/SimplifiedLayerNormalization 3, eval BatchNormalization 2 per
element. Views cost nothing: Transpose, Slice, Split, Squeeze, Unsqueeze, Identity, Dropout
— and Reshape/Flatten where torch's ``view`` could do it (``args["view"]``, see
``irtools.capture.onnx.layout``); onnxruntime materializes a Transpose, irtools follows DESIGN's eager
view convention and charges the copy where a later Reshape needs contiguous data. Concat,
Expand, Tile and Pad copy. Nodes the frontend marked ``shape_computation`` cost nothing.

Conventions beyond the ATen table (each with its source or derivation):
- pooling: one op per window element per output (max: compare, average: add; fvcore and
  onnx-tool count pooling the same way); global pooling one per input element.
- LRN: 2·size + 3 per element (square and sum over ``size`` channels, scale-add, pow, divide:
  the ONNX LRN definition).
- SkipLayerNormalization: LayerNorm's 5 + 1 per element for the skip add (+1 with a bias);
  SkipSimplifiedLayerNormalization: 3 + 1 (+1).
- FastGelu is GELU's tanh form (8, as ``gelu_tanh``; +1 with a bias), BiasGelu the erf form
  + a bias add (5 + 1), QuickGelu x·sigmoid(1.702x) (1 + 4 + 1).
- RotaryEmbedding: 3 per element (x·cos + rotate(x)·sin).
- attention ops: as ``aten.scaled_dot_product_attention`` (QKᵀ and ·V, 4 per score for scale
  and softmax, +1 per score with a mask); com.microsoft.Attention adds its QKV projection.
- MatMulNBits: 2·M·N·K; its packed weight is read as N·K·bits/8 bytes.
"""

from __future__ import annotations

import sympy

from passes.costs.registry import (
    ALIAS,
    FREE,
    ZERO,
    Cost,
    OpCall,
    RuleSet,
    alias,
    copy,
    elementwise,
    free,
    per_input_element,
    produce,
    read_all,
    write_all,
)
from passes.costs.torch_ops import ELEMENTWISE_FLOPS, matmul_flops

MS = "com.microsoft."


def onnx_rules(rules: RuleSet):
    """``onnx_rule(*ops, kind=...)`` registering into ``rules``: ONNX rules are free on
    shape-computation nodes (``args["shape_computation"]``)."""

    def onnx_rule(*ops: str, kind: str):
        def register(fn):
            def rule(call: OpCall) -> Cost:
                if call.arg("shape_computation"):
                    return FREE
                return fn(call)

            rule.__doc__, rule.__name__ = fn.__doc__, fn.__name__
            rules.rule(*ops, kind=kind)(rule)
            return fn

        return register

    return onnx_rule


RULES = RuleSet()
onnx_rule = onnx_rules(RULES)


def _nbytes(spec) -> sympy.Expr:
    return spec.nbytes if spec is not None else ZERO


# ---- free / factory / view / copy ---------------------------------------------------------

onnx_rule("Shape", "Size", "Constant", "Optional", "OptionalGetElement", "OptionalHasElement", kind="free")(free)
onnx_rule("Range", "EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
          "Multinomial", "Bernoulli", kind="factory")(produce)
onnx_rule("Transpose", "Squeeze", "Unsqueeze", "Identity", "Slice", "Split", kind="view")(alias)
onnx_rule("Concat", "Expand", "Tile", "Pad", "DepthToSpace", "SpaceToDepth", "Trilu", "ReverseSequence",
          "Compress", "CenterCropPad", kind="copy")(copy)


@onnx_rule("ConstantOfShape", kind="factory")
def constant_of_shape(call: OpCall) -> Cost:
    """A constant shape is a load-time constant (stripped-weight stand-in): free; else a fill."""
    return FREE if call.arg("constant_shape") else Cost(ZERO, ZERO, write_all(call))


@onnx_rule("Reshape", "Flatten", kind="copy")
def reshape(call: OpCall) -> Cost:
    """A view where torch's ``view`` could do it, else a copy (read the data, write the result)."""
    src = call.tensors_in[0]
    if call.arg("view", src.contiguous):
        return ALIAS
    return Cost(ZERO, src.nbytes, call.out.nbytes)


@onnx_rule("Cast", "CastLike", kind="copy")
def cast(call: OpCall) -> Cost:
    """A conversion copies; a Cast to the dtype a tensor already has returns it (as ``.to``)."""
    src = call.tensors_in[0]
    if src.dtype == call.out.dtype:
        return ALIAS
    return Cost(ZERO, src.nbytes, call.out.nbytes)


@onnx_rule("Dropout", kind="dropout")
def dropout(call: OpCall) -> Cost:
    """Inference graphs run Dropout as the identity (torch exports eval-mode models)."""
    return ALIAS


# ---- matmul class ---------------------------------------------------------------------------


def _t(shape, flag) -> tuple:
    shape = tuple(shape)
    return shape[:-2] + (shape[-1], shape[-2]) if flag else shape


def _mm(call: OpCall, a_shape, b_shape, extra=ZERO, read=None) -> Cost:
    mm = matmul_flops(a_shape, b_shape)
    return Cost(mm + extra, read_all(call) if read is None else read, write_all(call), matmul_flops=mm)


@onnx_rule("MatMul", "MatMulInteger", MS + "MatMulIntegerToFloat", kind="matmul")
def matmul(call: OpCall) -> Cost:
    a, b = call.inputs[:2]
    return _mm(call, a.shape, b.shape)


@onnx_rule(MS + "FusedMatMul", kind="matmul")
def fused_matmul(call: OpCall) -> Cost:
    a, b = call.inputs[:2]
    return _mm(call, _t(a.shape, call.arg("transA", 0)), _t(b.shape, call.arg("transB", 0)))


@onnx_rule("QLinearMatMul", kind="matmul")
def qlinear_matmul(call: OpCall) -> Cost:
    return _mm(call, call.inputs[0].shape, call.inputs[3].shape)


@onnx_rule("Gemm", kind="matmul")
def gemm(call: OpCall) -> Cost:
    """alpha·A·B + beta·C: 2·M·N·K, plus M·N for the bias C (as aten.addmm)."""
    a, b = call.inputs[:2]
    has_bias = len(call.inputs) > 2 and call.inputs[2] is not None and call.arg("beta", 1.0) != 0
    return _mm(call, _t(a.shape, call.arg("transA", 0)), _t(b.shape, call.arg("transB", 0)),
               extra=call.out.numel if has_bias else ZERO)


@onnx_rule(MS + "MatMulNBits", kind="matmul")
def matmul_nbits(call: OpCall) -> Cost:
    """A (…, K) · dequantized B (K, N); B is read packed: N·K·bits/8 bytes, plus scales/zero points."""
    a = call.inputs[0]
    k, n, bits = sympy.Integer(call.arg("K")), sympy.Integer(call.arg("N")), call.arg("bits", 4)
    weight = n * k * sympy.Rational(bits, 8)
    rest = sympy.Add(*(_nbytes(t) for i, t in enumerate(call.inputs) if i >= 2 and t is not None))
    bias = call.out.numel if len(call.inputs) > 5 and call.inputs[5] is not None else ZERO
    return _mm(call, a.shape, (k, n), extra=bias, read=a.nbytes + weight + rest)


@onnx_rule("Einsum", kind="matmul")
def einsum(call: OpCall) -> Cost:
    """Two operands: 2 × the product of every index size (a contraction); one: a reduction."""
    lhs = call.arg("equation").replace(" ", "").partition("->")[0].split(",")
    sizes = {}
    for term, spec in zip(lhs, call.inputs, strict=False):
        for ch, d in zip(term, spec.shape, strict=False):
            if d != 1 or ch not in sizes:
                sizes[ch] = d
    total = sympy.Mul(*sizes.values())
    if len(lhs) == 2:
        return Cost(2 * total, read_all(call), write_all(call), matmul_flops=2 * total)
    return Cost(total, read_all(call), write_all(call))


# ---- convolution, pooling -------------------------------------------------------------------


def _conv(call: OpCall, w, bias_present, extra_per_out=0) -> Cost:
    out = call.out
    mm = 2 * out.numel * sympy.Mul(*w.shape[1:])  # (C_in/groups) · kernel per output
    return Cost(mm + (out.numel if bias_present else ZERO) + extra_per_out * out.numel,
                read_all(call), write_all(call), matmul_flops=mm)


@onnx_rule("Conv", "ConvInteger", MS + "NhwcConv", kind="conv")
def conv(call: OpCall) -> Cost:
    """2 · output elements · (C_in/groups) · kernel elements, + output elements for a bias."""
    return _conv(call, call.inputs[1], len(call.inputs) > 2 and call.inputs[2] is not None)


@onnx_rule(MS + "FusedConv", kind="conv")
def fused_conv(call: OpCall) -> Cost:
    return _conv(call, call.inputs[1], len(call.inputs) > 2 and call.inputs[2] is not None, extra_per_out=1)


@onnx_rule("QLinearConv", kind="conv")
def qlinear_conv(call: OpCall) -> Cost:
    return _conv(call, call.inputs[3], len(call.inputs) > 8 and call.inputs[8] is not None)


@onnx_rule("ConvTranspose", kind="conv")
def conv_transpose(call: OpCall) -> Cost:
    """Each input element meets (C_out/groups) · kernel weights: 2 · that, + bias per output."""
    x, w = call.inputs[:2]
    mm = 2 * x.numel * sympy.Mul(*w.shape[1:])
    bias = call.out.numel if len(call.inputs) > 2 and call.inputs[2] is not None else ZERO
    return Cost(mm + bias, read_all(call), write_all(call), matmul_flops=mm)


@onnx_rule("MaxPool", "AveragePool", "LpPool", kind="pool")
def pool(call: OpCall) -> Cost:
    """One op per window element per output."""
    kernel = sympy.Mul(*(sympy.Integer(k) for k in call.arg("kernel_shape", [])))
    return Cost(call.out.numel * kernel, read_all(call), call.out.nbytes)


onnx_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", kind="pool")(per_input_element(1))


# ---- normalization, softmax, reductions ------------------------------------------------------

onnx_rule("Softmax", "LogSoftmax", kind="softmax")(per_input_element(3))
onnx_rule("Hardmax", kind="softmax")(per_input_element(1))
onnx_rule("LayerNormalization", "InstanceNormalization", "GroupNormalization", MS + "GroupNorm",
          "MeanVarianceNormalization", kind="norm")(per_input_element(5))
onnx_rule("RMSNormalization", "SimplifiedLayerNormalization", MS + "SimplifiedLayerNormalization", "LpNormalization",
          kind="norm")(per_input_element(3))
onnx_rule("BatchNormalization", kind="norm")(per_input_element(2))


@onnx_rule(MS + "SkipLayerNormalization", MS + "SkipSimplifiedLayerNormalization", kind="norm")
def skip_layer_norm(call: OpCall) -> Cost:
    """The norm (5 or 3 per element) after x + skip (+ bias)."""
    base = 3 if "Simplified" in call.op else 5
    bias = 1 if len(call.inputs) > 4 and call.inputs[4] is not None else 0
    if "Simplified" in call.op:
        bias = 1 if len(call.inputs) > 3 and call.inputs[3] is not None else 0
    return Cost((base + 1 + bias) * call.inputs[0].numel, read_all(call), write_all(call))


@onnx_rule("LRN", kind="norm")
def lrn(call: OpCall) -> Cost:
    return Cost((2 * call.arg("size", 1) + 3) * call.out.numel, read_all(call), write_all(call))


onnx_rule("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceLogSum",
          "ArgMax", "ArgMin", "CumSum", "TopK", "NonZero", kind="reduction")(per_input_element(1))
onnx_rule("ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", kind="reduction")(per_input_element(2))


# ---- gather / scatter ------------------------------------------------------------------------


@onnx_rule("Gather", "GatherElements", "GatherND", kind="gather")
def gather(call: OpCall) -> Cost:
    """No flops; read the gathered rows (output elements at the table's precision) and indices."""
    table, indices = call.inputs[:2]
    return Cost(ZERO, call.out.numel * table.itemsize + indices.nbytes, write_all(call))


@onnx_rule("ScatterND", "ScatterElements", "Scatter", kind="scatter")
def scatter(call: OpCall) -> Cost:
    return Cost(call.tensors_in[-1].numel, read_all(call), write_all(call))


# ---- elementwise ----------------------------------------------------------------------------

UNARY = (
    "Relu", "Neg", "Abs", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Not", "IsNaN", "IsInf",
    "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Softplus", "Softsign",
    "ThresholdedRelu", "Mish", "Clip", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
    "Asinh", "Acosh", "Atanh", "Shrink", "BitwiseNot", "Erf", "Pow", "Tanh", "Exp", "Log", "Sqrt",
)
BINARY = (
    "Add", "Sub", "Mul", "Div", "Mod", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
    "And", "Or", "Xor", "BitShift", "PRelu", "Where", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
)
onnx_rule(*UNARY, *BINARY, kind="elementwise")(elementwise(1))
onnx_rule("Sigmoid", kind="elementwise")(elementwise(ELEMENTWISE_FLOPS["sigmoid"]))
onnx_rule("Swish", kind="elementwise")(elementwise(ELEMENTWISE_FLOPS["silu"]))
onnx_rule(MS + "Gelu", kind="elementwise")(elementwise(ELEMENTWISE_FLOPS["gelu"]))
onnx_rule(MS + "BiasGelu", kind="elementwise")(elementwise(ELEMENTWISE_FLOPS["gelu"] + 1))
onnx_rule(MS + "QuickGelu", kind="elementwise")(elementwise(1 + ELEMENTWISE_FLOPS["sigmoid"] + 1))
onnx_rule(MS + "BiasAdd", kind="elementwise")(elementwise(2))
onnx_rule(MS + "RotaryEmbedding", "RotaryEmbedding", kind="elementwise")(elementwise(3))


@onnx_rule("Gelu", kind="elementwise")
def gelu(call: OpCall) -> Cost:
    """opset 20 Gelu: the erf form, or the tanh form with ``approximate="tanh"``."""
    key = "gelu_tanh" if call.arg("approximate", "none") == "tanh" else "gelu"
    return elementwise(ELEMENTWISE_FLOPS[key])(call)


@onnx_rule(MS + "FastGelu", kind="elementwise")
def fast_gelu(call: OpCall) -> Cost:
    bias = 1 if len(call.inputs) > 1 and call.inputs[1] is not None else 0
    return elementwise(ELEMENTWISE_FLOPS["gelu_tanh"] + bias)(call)


@onnx_rule("Sum", "Max", "Min", "Mean", kind="elementwise")
def variadic(call: OpCall) -> Cost:
    """n inputs: n-1 ops per output element (Mean: n, the last being the divide)."""
    n = len(call.tensors_in)
    per = n if call.op == "Mean" else max(n - 1, 1)
    return Cost(per * call.out.numel, read_all(call), write_all(call))

