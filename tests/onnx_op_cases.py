"""One small runnable model per ONNX op (default domain and com.microsoft), for the shape tests
of ``test_onnx_coverage``: a table of op -> inputs and attributes.

Graph inputs made with :func:`X` get symbolic dims named after their size (``n3`` for 3; sizes
0 and 1 stay concrete), so irtools infers shapes from symbols; :func:`K` inputs are initializers
(their small contents are known, as shape operands are in real models).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

RNG = np.random.default_rng(0)
F32 = np.float32
MS = "com.microsoft"


@dataclass(frozen=True)
class In:
    kind: str  # "x" symbolic graph input, "c" initializer
    value: np.ndarray


def X(*shape, dtype=F32, lo=-1.0, hi=1.0) -> In:
    if np.dtype(dtype).kind == "b":
        return In("x", RNG.random(shape) > 0.5)
    if np.dtype(dtype).kind in "iu":
        return In("x", RNG.integers(int(lo), int(hi) + 1, size=shape).astype(dtype))
    return In("x", RNG.uniform(lo, hi, size=shape).astype(dtype))


def K(value, dtype=None) -> In:
    return In("c", np.array(value, dtype=dtype))


@dataclass
class Case:
    id: str
    nodes: list
    inputs: dict  # name -> In
    outputs: list
    domain: str = ""
    opset: int = 28
    dynamic: frozenset = frozenset()  # (output index, dim index) of data-dependent sizes
    runner: str = "ort"  # "ort" or "reference" (onnx.reference, for ops onnxruntime lacks)
    needs: tuple = field(default=())  # modules the runner needs (skipped when missing)

    def model(self) -> onnx.ModelProto:
        ins, inits = [], []
        for name, spec in self.inputs.items():
            if spec.kind == "c":
                inits.append(numpy_helper.from_array(spec.value, name))
                continue
            arr = spec.value
            dims = [d if d in (0, 1) else f"n{d}" for d in arr.shape]
            elem = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype) if arr.dtype != object else onnx.TensorProto.STRING
            ins.append(helper.make_tensor_value_info(name, elem, dims))
        outs = [helper.make_value_info(o, onnx.TypeProto()) for o in self.outputs]
        graph = helper.make_graph(self.nodes, self.id, ins, outs, inits)
        opsets = [helper.make_opsetid("", self.opset)] + ([helper.make_opsetid(MS, 1)] if self.domain == MS else [])
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 10
        return onnx.shape_inference.infer_shapes(model)

    def feeds(self) -> dict:
        return {k: v.value for k, v in self.inputs.items() if v.kind == "x"}


CASES: dict[str, Case] = {}


def case(op, *ins, n=1, cid=None, domain="", opset=28, dynamic=(), runner="ort", needs=(), attrs=None, **kw) -> Case:
    """A one-node model: inputs named i0.., outputs y0..; ``None`` marks an absent optional input;
    attributes as keywords (``attrs`` for names the keywords take)."""
    names, inputs = [], {}
    for i, spec in enumerate(ins):
        names.append("" if spec is None else f"i{i}")
        if spec is not None:
            inputs[f"i{i}"] = spec
    outs = [f"y{j}" for j in range(n)]
    node = helper.make_node(op, names, outs, domain=domain or None, **kw, **(attrs or {}))
    c = Case(cid or op if not domain else f"{domain}.{cid or op}", [node], inputs, outs, domain, opset,
             frozenset(dynamic), runner, needs)
    CASES[c.id] = c
    return c


def chain(cid, nodes, inputs, outputs, **kw) -> Case:
    c = Case(cid, nodes, inputs, outputs, **kw)
    CASES[c.id] = c
    return c


node = helper.make_node

# ---- elementwise --------------------------------------------------------------------------

for _op in ("Abs", "Ceil", "Cos", "Cosh", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity",
            "IsInf", "IsNaN", "LeakyRelu", "Mish", "Neg", "Reciprocal", "Relu", "Round", "Selu", "Shrink", "Sigmoid",
            "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Tan", "Tanh", "ThresholdedRelu", "Asin", "Atan",
            "Asinh", "Softmax", "LogSoftmax", "Hardmax", "LpNormalization", "Celu"):
    case(_op, X(2, 3, 4))
case("Swish", X(2, 3, 4), opset=24)
case("Acos", X(2, 3, 4, lo=-0.9, hi=0.9))
case("Atanh", X(2, 3, 4, lo=-0.9, hi=0.9))
case("Acosh", X(2, 3, 4, lo=1.5, hi=3))
case("Log", X(2, 3, 4, lo=0.5, hi=2))
case("Sqrt", X(2, 3, 4, lo=0.5, hi=2))
case("Clip", X(2, 3, 4), K(-0.5, F32), K(0.5, F32))
case("Not", X(2, 3, dtype=bool))
case("BitwiseNot", X(2, 3, dtype=np.int32, lo=0, hi=9))
case("MeanVarianceNormalization", X(2, 3, 4, 5))
for _op in ("Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Sum", "Mean", "Equal", "Less", "Greater", "LessOrEqual",
            "GreaterOrEqual"):
    case(_op, X(2, 3, 4, lo=0.5, hi=2), X(3, 1, lo=0.5, hi=2))
for _op in ("And", "Or", "Xor"):
    case(_op, X(2, 3, dtype=bool), X(2, 3, dtype=bool))
for _op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
    case(_op, X(2, 3, dtype=np.int32, lo=0, hi=9), X(3, dtype=np.int32, lo=0, hi=9))
case("Mod", X(2, 3, dtype=np.int32, lo=1, hi=9), X(2, 3, dtype=np.int32, lo=1, hi=4))
case("BitShift", X(2, 3, dtype=np.uint8, lo=0, hi=9), X(2, 3, dtype=np.uint8, lo=0, hi=3), direction="LEFT")
case("PRelu", X(2, 3, 4), X(4))
case("Where", X(3, 4, dtype=bool), X(2, 3, 4), X(4))
case("SwiGLU", X(2, 3, 4), X(2, 3, 4), runner="reference")
case("Cast", X(2, 3), to=onnx.TensorProto.INT64)
case("CastLike", X(2, 3), K([1], np.int32))
case("BitCast", X(2, 3), to=onnx.TensorProto.INT32)
case("Dropout", X(2, 3, 4), n=2)
case("CumSum", X(2, 3, 4), K(1, np.int64))
case("CumProd", X(2, 3, 4), K(1, np.int64))
case("Trilu", X(2, 3, 4))
case("ReverseSequence", X(4, 3), K([4, 2, 1], np.int64), batch_axis=1, time_axis=0)
case("Det", X(3, 4, 4))
case("Bernoulli", X(2, 3, lo=0, hi=1), opset=21)
case("RandomNormalLike", X(2, 3), opset=21)
case("RandomUniformLike", X(2, 3), opset=21)
case("EyeLike", X(3, 4))

# ---- normalization, reductions -------------------------------------------------------------

case("LayerNormalization", X(2, 3, 4), K(np.ones(4, F32)), K(np.zeros(4, F32)), n=3)
case("RMSNormalization", X(2, 3, 4), K(np.ones(4, F32)))
case("GroupNormalization", X(2, 4, 5), K(np.ones(4, F32)), K(np.zeros(4, F32)), num_groups=2)
case("InstanceNormalization", X(2, 3, 5), K(np.ones(3, F32)), K(np.zeros(3, F32)))
case("BatchNormalization", X(2, 3, 5), *(K(np.ones(3, F32)) for _ in range(4)))
case("LRN", X(2, 3, 5, 6), size=3)
for _op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
            "ReduceLogSumExp", "ReduceSumSquare"):
    case(_op, X(2, 3, 4, lo=0.5, hi=2), K([1], np.int64), keepdims=0)
case("ArgMax", X(2, 3, 4), axis=1)
case("ArgMin", X(2, 3, 4), axis=-1, keepdims=0)
case("TopK", X(2, 5, 4), K([3], np.int64), axis=1, n=2)
case("NonZero", X(3, 4, dtype=bool), dynamic={(0, 1)})
case("Unique", X(6, dtype=np.int64, lo=0, hi=3), n=4, dynamic={(0, 0), (1, 0), (3, 0)})
case("Unique", X(4, 3, dtype=np.int64, lo=0, hi=1), n=4, cid="Unique_axis", axis=0, dynamic={(0, 0), (1, 0), (3, 0)})

# ---- shape ops, copies, gathers -----------------------------------------------------------

case("Shape", X(2, 3, 4))
case("Size", X(2, 3, 4))
case("Constant", value=numpy_helper.from_array(np.ones((2, 3), F32)))
case("ConstantOfShape", K([2, 3], np.int64))
case("Reshape", X(2, 3, 4), K([4, -1], np.int64))
case("Flatten", X(2, 3, 4, 5), axis=2)
case("Transpose", X(2, 3, 4), perm=[1, 2, 0])
case("Squeeze", X(2, 1, 4), K([1], np.int64))
case("Unsqueeze", X(2, 3), K([0, 3], np.int64))
case("Slice", X(6, 5), K([1, 0], np.int64), K([5, -1], np.int64), K([0, 1], np.int64), K([2, 1], np.int64))
case("Split", X(6, 4), K([2, 4], np.int64), n=2)
case("Concat", X(2, 3), X(2, 5), axis=1)
case("Expand", X(3, 1), K([2, 3, 4], np.int64))
case("Tile", X(2, 3), K([2, 3], np.int64))
case("Pad", X(2, 3), K([0, 1, 2, 0], np.int64))
case("Range", K(1, F32), K(9, F32), K(2, F32))
case("Gather", X(5, 4), K([[0, 2, 1]], np.int64), axis=0)
case("GatherElements", X(3, 4), K([[0, 1], [2, 0], [1, 1]], np.int64), axis=1)
case("GatherND", X(3, 4, 5), K([[0, 1], [2, 3]], np.int64))
case("ScatterElements", X(3, 4), K([[0, 1]], np.int64), K([[1.0, 2.0]], F32), axis=0)
case("ScatterND", X(3, 4), K([[1], [0]], np.int64), X(2, 4))
case("DepthToSpace", X(1, 8, 2, 3), blocksize=2)
case("SpaceToDepth", X(1, 2, 4, 6), blocksize=2)
case("Compress", X(4, 3), K([True, False, True, True]), axis=0)
case("CenterCropPad", X(5, 4), K([3, 6], np.int64))
case("OneHot", K([[1, 0, 2]], np.int64), K(4, np.int64), K([0.0, 1.0], F32), axis=1)
case("OneHot", X(3, dtype=np.int64, lo=0, hi=2), K(5, np.int64), K([0.0, 1.0], F32), cid="OneHot_sym")
case("TensorScatter", X(2, 3, 8, 4), X(2, 3, 2, 4), K([1, 3], np.int64))

# ---- matmul, conv, pooling ----------------------------------------------------------------

case("MatMul", X(2, 3, 4), X(4, 5))
case("Gemm", X(3, 4), K(RNG.random((5, 4), F32)), K(np.ones(5, F32)), transB=1)
case("Einsum", X(2, 3, 4), X(2, 4, 5), equation="bij,bjk->bik")
case("MatMulInteger", X(3, 4, dtype=np.uint8, lo=0, hi=9), K(RNG.integers(0, 9, (4, 5)).astype(np.uint8)))
case("QLinearMatMul", X(3, 4, dtype=np.uint8, lo=0, hi=9), K(0.1, F32), K(3, np.uint8),
     K(RNG.integers(0, 9, (4, 5)).astype(np.uint8)), K(0.1, F32), K(2, np.uint8), K(0.2, F32), K(1, np.uint8))
_W = RNG.uniform(-1, 1, (4, 3, 3, 3)).astype(F32)
case("Conv", X(2, 3, 7, 6), K(_W), K(np.ones(4, F32)), pads=[1, 0, 1, 0], strides=[2, 1])
case("ConvTranspose", X(2, 3, 5, 4), K(RNG.random((3, 2, 3, 3), F32)), strides=[2, 1], output_padding=[1, 0])
case("ConvInteger", X(1, 3, 6, 5, dtype=np.uint8, lo=0, hi=9), K(RNG.integers(0, 5, (4, 3, 3, 3)).astype(np.uint8)))
case("QLinearConv", X(1, 3, 6, 5, dtype=np.uint8, lo=0, hi=9), K(0.1, F32), K(2, np.uint8),
     K(RNG.integers(-3, 3, (4, 3, 3, 3)).astype(np.int8)), K(0.1, F32), K(0, np.int8), K(0.2, F32), K(1, np.uint8))
case("DeformConv", X(1, 2, 6, 5), K(RNG.random((3, 2, 3, 3), F32)), X(1, 18, 4, 3), K(np.ones(3, F32)),
     runner="reference")
case("MaxPool", X(2, 3, 7, 6), kernel_shape=[3, 2], strides=[2, 2], n=2)
case("AveragePool", X(2, 3, 7, 6), kernel_shape=[3, 3], pads=[1, 1, 1, 1], ceil_mode=1)
case("LpPool", X(2, 3, 7, 6), kernel_shape=[2, 2])
for _op in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
    case(_op, X(2, 3, 5, 4), opset=21)
chain("MaxUnpool", [node("MaxPool", ["x"], ["p", "idx"], kernel_shape=[2, 2], strides=[2, 2]),
                    node("MaxUnpool", ["p", "idx"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
      {"x": X(1, 2, 6, 4)}, ["y"])
_ROIS = K([[0.0, 0.0, 3.0, 3.0], [1.0, 1.0, 4.0, 5.0], [0.0, 2.0, 2.0, 4.0]], F32)
case("RoiAlign", X(2, 3, 6, 7), _ROIS, K([0, 1, 1], np.int64), output_height=2, output_width=3, opset=21)
case("MaxRoiPool", X(2, 3, 6, 7), K([[0, 0, 0, 3, 3], [1, 1, 1, 4, 5]], F32), pooled_shape=[2, 3], opset=21)
case("Col2Im", X(1, 8, 6), K([3, 4], np.int64), K([2, 2], np.int64))
case("GridSample", X(2, 3, 5, 4), X(2, 6, 7, 2), mode="linear")
case("AffineGrid", X(2, 2, 3), K([2, 3, 5, 4], np.int64))
case("Resize", X(1, 3, 4, 5), None, K([1, 1, 2, 1.5], F32), mode="linear")
case("Resize", X(1, 3, 4, 5), None, None, K([1, 3, 8, 6], np.int64), cid="Resize_sizes")

# ---- attention, recurrent -----------------------------------------------------------------

case("Attention", X(2, 4, 3, 8), X(2, 2, 5, 8), X(2, 2, 5, 6), n=1)
case("RotaryEmbedding", X(2, 3, 4, 8), X(5, 4), X(5, 4), K([[0, 1, 2, 3], [1, 2, 3, 4]], np.int64))
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
for _op, _g in _GATES.items():
    case(_op, X(5, 3, 4), K(RNG.random((2, _g * 6, 4), F32)), K(RNG.random((2, _g * 6, 6), F32)),
         K(RNG.random((2, 2 * _g * 6), F32)), hidden_size=6, direction="bidirectional", n=3 if _op == "LSTM" else 2)
for _op, _g in _GATES.items():
    case(_op, X(5, 3, 4), K(RNG.random((1, _g * 6, 4), F32)), K(RNG.random((1, _g * 6, 6), F32)), hidden_size=6, n=2,
         cid=f"{_op}_forward")
case("LSTM", X(3, 5, 4), K(RNG.random((1, 24, 4), F32)), K(RNG.random((1, 24, 6), F32)), hidden_size=6, layout=1,
     n=3, cid="LSTM_layout1", runner="reference")
case("LinearAttention", X(2, 3, 8), X(2, 3, 4), X(2, 3, 6), q_num_heads=2, kv_num_heads=1, n=2, update_rule="linear",
     runner="reference")
case("CausalConvWithState", X(2, 3, 5), K(RNG.random((3, 1, 4), F32)), n=2, runner="reference")

# ---- quantization -------------------------------------------------------------------------

case("QuantizeLinear", X(2, 3, 4), K(0.05, F32), K(3, np.int8), opset=27)
case("DequantizeLinear", X(2, 3, dtype=np.int8, lo=-9, hi=9), K(0.1, F32), K(1, np.int8), opset=27)
case("DynamicQuantizeLinear", X(2, 3, 4), n=3)

# ---- signal processing, random, windows ----------------------------------------------------

case("DFT", X(2, 8, 1), K(8, np.int64), K(1, np.int64), onesided=1, opset=20)
case("DFT", X(2, 6, 2), cid="DFT_complex", opset=20)
case("STFT", X(2, 16, 1), K(4, np.int64), K(np.hanning(6).astype(F32)), opset=17)
for _op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
    case(_op, K(7, np.int64))
case("MelWeightMatrix", K(5, np.int64), K(16, np.int64), K(8000, np.int64), K(0.0, F32), K(4000.0, F32))
case("RandomNormal", shape=[2, 3], opset=21)
case("RandomUniform", shape=[3, 4], dtype=onnx.TensorProto.DOUBLE, opset=21)
case("Multinomial", X(2, 5), sample_size=3, opset=21)

# ---- detection, losses, strings -----------------------------------------------------------

case("NonMaxSuppression", X(1, 6, 4, lo=0, hi=5), X(1, 2, 6, lo=0, hi=1), K([3], np.int64), dynamic={(0, 0)})
case("SoftmaxCrossEntropyLoss", X(3, 5), K([1, 0, 4], np.int64), n=2)
case("SoftmaxCrossEntropyLoss", X(3, 5, 2), K([[1, 0], [4, 2], [0, 0]], np.int64), reduction="none",
     cid="SoftmaxCrossEntropyLoss_none")
case("NegativeLogLikelihoodLoss", X(3, 5), K([1, 0, 4], np.int64), reduction="sum")
_STR = In("x", np.array([["ab cd", "a"], ["xyz", "q q"], ["", "k"]], dtype=object))
case("RegexFullMatch", _STR, pattern="a.*")
case("StringConcat", _STR, In("x", np.array(["!", "?"], dtype=object)))
case("StringNormalizer", In("x", np.array(["Ab", "cD", "ef"], dtype=object)), case_change_action="UPPER",
     runner="reference")
case("StringSplit", _STR, n=2, delimiter=" ", dynamic={(0, 2)})
case("TfIdfVectorizer", X(2, 6, dtype=np.int64, lo=0, hi=4), mode="TF", min_gram_length=1, max_gram_length=1,
     max_skip_count=0, ngram_counts=[0], ngram_indexes=[0, 1, 2], pool_int64s=[1, 2, 3])

# ---- control flow, sequences, optional ----------------------------------------------------

_VI = helper.make_tensor_value_info


def _body(name, nodes, ins, outs):
    return helper.make_graph(nodes, name, [_VI(n, t, s) for n, t, s in ins], [_VI(n, t, s) for n, t, s in outs])


_THEN = _body("then", [node("Relu", ["x"], ["r"])], [], [("r", 1, None)])
_ELSE = _body("else", [node("Neg", ["x"], ["r2"])], [], [("r2", 1, None)])
chain("If", [node("If", ["c"], ["y"], then_branch=_THEN, else_branch=_ELSE)], {"c": K(True), "x": X(2, 3)}, ["y"])
_LOOP = _body("loop", [node("Identity", ["cond"], ["cond_out"]), node("Add", ["acc", "x"], ["acc_out"]),
                       node("Mul", ["acc_out", "x"], ["scan_out"])],
              [("i", 7, []), ("cond", 9, []), ("acc", 1, None)], [("cond_out", 9, []), ("acc_out", 1, None),
                                                                  ("scan_out", 1, None)])
chain("Loop", [node("Loop", ["trip", "", "init"], ["y", "ys"], body=_LOOP)],
      {"trip": K(4, np.int64), "init": X(2, 3), "x": X(2, 3)}, ["y", "ys"])
_SCAN = _body("scan", [node("Add", ["s", "e"], ["s2"]), node("Identity", ["s2"], ["o"])],
              [("s", 1, None), ("e", 1, None)], [("s2", 1, None), ("o", 1, None)])
chain("Scan", [node("Scan", ["s0", "xs"], ["y", "ys"], body=_SCAN, num_scan_inputs=1)],
      {"s0": X(3), "xs": X(5, 3)}, ["y", "ys"])
_A, _B, _C = X(2, 3), X(2, 3), X(2, 3)
_SEQ = node("SequenceConstruct", ["a", "b"], ["s"])
chain("SequenceConstruct", [_SEQ], {"a": _A, "b": _B}, ["s"])
chain("SequenceAt", [_SEQ, node("SequenceAt", ["s", "p"], ["y"])], {"a": _A, "b": _B, "p": K(-1, np.int64)}, ["y"])
chain("SequenceInsert", [_SEQ, node("SequenceInsert", ["s", "c"], ["y"])], {"a": _A, "b": _B, "c": _C}, ["y"])
chain("SequenceErase", [_SEQ, node("SequenceErase", ["s"], ["y"])], {"a": _A, "b": _B}, ["y"])
chain("SequenceLength", [_SEQ, node("SequenceLength", ["s"], ["y"])], {"a": _A, "b": _B}, ["y"])
chain("SequenceEmpty", [node("SequenceEmpty", [], ["e"]), node("SequenceInsert", ["e", "a"], ["y"])], {"a": _A}, ["y"])
chain("SplitToSequence", [node("SplitToSequence", ["x", "k"], ["y"], axis=1)], {"x": X(3, 8), "k": K(2, np.int64)},
      ["y"])
chain("SplitToSequence_keepdims0", [node("SplitToSequence", ["x"], ["y"], axis=0, keepdims=0)], {"x": X(3, 4)}, ["y"])
chain("ConcatFromSequence", [_SEQ, node("ConcatFromSequence", ["s"], ["y"], axis=1)], {"a": _A, "b": _B}, ["y"])
chain("ConcatFromSequence_new_axis", [_SEQ, node("ConcatFromSequence", ["s"], ["y"], axis=-1, new_axis=1)],
      {"a": _A, "b": _B}, ["y"])
_MAP = _body("map", [node("Relu", ["e"], ["r"]), node("Add", ["r", "t"], ["r2"])], [("e", 1, None), ("t", 1, None)],
             [("r2", 1, None)])
chain("SequenceMap", [_SEQ, node("SequenceMap", ["s", "t"], ["y"], body=_MAP)], {"a": _A, "b": _B, "t": X(3)}, ["y"])
chain("Optional", [node("Optional", ["x"], ["o"]), node("OptionalGetElement", ["o"], ["y"]),
                   node("OptionalHasElement", ["o"], ["h"])], {"x": X(2, 3)}, ["y", "h"], opset=27)

# ---- com.microsoft (onnxruntime contrib ops with CPU kernels) -------------------------------

_U8 = np.uint8


def ms(op, *ins, **kw) -> Case:
    return case(op, *ins, domain=MS, **kw)


def _q(*shape):
    return X(*shape, dtype=_U8, lo=0, hi=200)


_S, _Z = K(0.05, F32), K(128, _U8)
ms("DynamicQuantizeMatMul", X(3, 4), K(RNG.integers(-9, 9, (4, 5)).astype(np.int8)), K([0.1], F32), None,
   K(np.ones(5, F32)))
ms("MatMulInteger16", X(3, 4, dtype=np.int16, lo=-9, hi=9), K(RNG.integers(-9, 9, (4, 5)).astype(np.int16)))
ms("MatMulIntegerToFloat", _q(3, 4), K(RNG.integers(0, 9, (4, 5)).astype(_U8)), _S, K([0.1], F32), _Z)
ms("QGemm", _q(3, 4), _S, _Z, K(RNG.integers(-9, 9, (5, 4)).astype(np.int8)), K(0.1, F32), K(0, np.int8),
   None, K(0.2, F32), K(10, _U8), transB=1)
ms("QGemm", _q(3, 4), _S, _Z, K(RNG.integers(-9, 9, (4, 5)).astype(np.int8)), K(0.1, F32), K(0, np.int8),
   cid="QGemm_float")
for _op in ("QLinearAdd", "QLinearMul"):
    ms(_op, _q(2, 3, 4), _S, _Z, _q(4), _S, _Z, K(0.1, F32), _Z)
for _op in ("QLinearSigmoid", "QLinearLeakyRelu"):
    ms(_op, _q(2, 3, 4), _S, _Z, K(0.1, F32), _Z)
ms("QLinearSoftmax", _q(2, 3, 4), _S, _Z, K(1 / 256, F32), K(0, _U8), attrs={"opset": 13})
ms("QLinearConcat", K(0.1, F32), _Z, _q(2, 3), _S, _Z, _q(2, 5), _S, _Z, axis=1)
ms("QLinearAveragePool", _q(1, 3, 6, 5), _S, _Z, _S, _Z, kernel_shape=[2, 2], strides=[2, 1])
ms("QLinearGlobalAveragePool", _q(2, 3, 5, 4), _S, _Z, _S, _Z, channels_last=0)
ms("QLinearWhere", X(3, 4, dtype=bool), _q(2, 3, 4), _S, _Z, _q(4), _S, _Z, _S, _Z)
ms("QAttention", _q(2, 3, 8), K(RNG.integers(0, 9, (8, 24)).astype(_U8)), K(np.zeros(24, F32)), K(0.05, F32),
   K(0.05, F32), None, _Z, K(0, _U8), num_heads=2)
ms("EmbedLayerNormalization", X(2, 3, dtype=np.int32, lo=0, hi=9), X(2, 3, dtype=np.int32, lo=0, hi=1),
   K(RNG.random((10, 8), F32)), K(RNG.random((6, 8), F32)), K(RNG.random((2, 8), F32)), K(np.ones(8, F32)),
   K(np.zeros(8, F32)), n=2)
ms("FusedGemm", X(3, 4), X(4, 5), K(np.ones(5, F32)), activation="Relu")
ms("TransposeMatMul", X(4, 3), X(4, 5), transA=1)
ms("FusedMatMul", X(2, 4, 3), X(5, 4), transA=1, transB=1)
ms("FusedConv", X(2, 3, 7, 6), K(_W), K(np.ones(4, F32)), activation="Relu")
ms("Inverse", X(2, 3, 3))
ms("GridSample", X(2, 3, 5, 4), X(2, 6, 7, 2))
ms("MoE", X(4, 8), X(4, 3), K(RNG.random((3, 16, 8), F32)), None, K(RNG.random((3, 8, 16), F32)), k=2)
ms("GatherBlockQuantized", K(RNG.integers(0, 255, (4, 8)).astype(_U8)), X(2, dtype=np.int64, lo=0, hi=3),
   K(np.ones((4, 1), F32)), gather_axis=0, quantize_axis=1, block_size=16, bits=4)
ms("MatMulBnb4", X(3, 32), K(RNG.integers(0, 255, 128).astype(_U8)), K(np.ones(16, F32)), K=32, N=8, block_size=16,
   quant_type=1)
ms("MatMulNBits", X(3, 32), K(RNG.integers(0, 255, (8, 2, 8)).astype(_U8)), K(np.ones(16, F32)), K=32, N=8, bits=4,
   block_size=16)
ms("DynamicQuantizeLSTM", X(5, 3, 4), K(RNG.integers(-9, 9, (1, 4, 24)).astype(np.int8)),
   K(RNG.integers(-9, 9, (1, 6, 24)).astype(np.int8)), K(np.zeros((1, 48), F32)), None, None, None, None,
   K([0.1], F32), K([0], np.int8), K([0.1], F32), K([0], np.int8), hidden_size=6, n=3)
ms("Attention", X(2, 3, 8), K(RNG.random((8, 24), F32)), K(np.zeros(24, F32)), num_heads=2)
ms("MultiHeadAttention", X(2, 3, 8), X(2, 5, 8), X(2, 5, 6), num_heads=2)
ms("DecoderMaskedMultiHeadAttention", X(2, 1, 8), X(2, 1, 8), X(2, 1, 8), None, None, X(2, 2, 6, 4), X(2, 2, 6, 4),
   K([3], np.int32), num_heads=2, past_present_share_buffer=1, n=3)
ms("SkipLayerNormalization", X(2, 3, 8), X(2, 3, 8), K(np.ones(8, F32)), K(np.zeros(8, F32)))
ms("SkipSimplifiedLayerNormalization", X(2, 3, 8), X(2, 3, 8), K(np.ones(8, F32)))
for _op in ("FastGelu", "Gelu", "QuickGelu"):
    ms(_op, X(2, 3, 8))
ms("BiasGelu", X(2, 3, 8), K(np.ones(8, F32)))
ms("RotaryEmbedding", X(2, 3, 8), K([[0, 1, 2], [1, 2, 3]], np.int64), X(5, 4), X(5, 4))
