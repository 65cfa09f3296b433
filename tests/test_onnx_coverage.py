"""Every ONNX default-domain op has a cost rule and a shape rule; irtools' symbolic shapes match
what onnxruntime (or onnx.reference, for ops onnxruntime lacks) computes for one small model per
op; a statically quantized QDQ model reads its int8 weights at one byte; RNN FLOPs by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import sympy
from onnx import helper, numpy_helper

from irtools.capture.onnx import frontend
from irtools.capture.onnx.frontend import CONTROL_OPS, capture_onnx
from irtools.capture.onnx.inference import RULES as SHAPE_RULES
from irtools.ir.symbols import sym
from passes.annotate_costs import annotate_costs, coverage
from passes.costs import lookup
from passes.costs.onnx_coverage import onnx_coverage
from tests.onnx_op_cases import CASES, MS

ort = pytest.importorskip("onnxruntime")

OPS, MISSING = onnx_coverage()


def test_coverage_function():
    assert MISSING == []
    assert len(OPS) > 190 and {"LSTM", "Resize", "SequenceMap", "QuantizeLinear", "Add"} <= set(OPS)
    assert "Upsample" not in OPS and "Scatter" not in OPS  # deprecated


@pytest.mark.parametrize("op", OPS)
def test_cost_rule(op):
    assert lookup(op) is not None


@pytest.mark.parametrize("op", OPS)
def test_shape_rule(op):
    assert op in SHAPE_RULES or op in CONTROL_OPS


def test_every_op_has_a_case():
    used = {n.op_type for c in CASES.values() for n in c.nodes if n.domain in ("", "ai.onnx")}
    assert set(OPS) - used <= {"ImageDecoder"}


# ---- symbolic shapes against the runtime ---------------------------------------------------


def run(case):
    model = case.model()
    if case.runner == "ort":
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return model, sess.run(None, case.feeds())
    from onnx.reference import ReferenceEvaluator

    return model, ReferenceEvaluator(model).run(None, case.feeds())


def described(value) -> tuple[tuple, str]:
    """(shape, dtype) of a runtime output; a sequence as its elements stacked."""
    if isinstance(value, list):
        shapes = {np.asarray(v).shape for v in value}
        assert len(shapes) <= 1, f"sequence elements of different shapes {shapes}"
        elem = np.asarray(value[0]) if value else np.zeros((), np.float32)
        return (len(value),) + (elem.shape if value else ()), elem.dtype.name
    arr = np.asarray(value)
    return arr.shape, ("string" if arr.dtype.kind in "OUS" else arr.dtype.name)


def evaluated(dims, case) -> list:
    names = {sym(f"n{d}"): d for spec in case.inputs.values() for d in spec.value.shape}
    return [sympy.sympify(d).subs(names) for d in dims]


@pytest.mark.parametrize("cid", sorted(CASES))
def test_shapes_match_runtime(cid, monkeypatch):
    """Shapes from irtools' rules alone: onnx.shape_inference's static hints are switched off."""
    monkeypatch.setattr(frontend, "_static_hints", lambda model: {})
    case = CASES[cid]
    for module in case.needs:
        pytest.importorskip(module)
    model, results = run(case)
    ir = capture_onnx(model)
    for i, (name, value) in enumerate(zip(case.outputs, results, strict=True)):
        shape, dtype = described(value)
        spec = ir.meta["outputs"][name]
        got = evaluated(spec.shape, case)
        assert len(got) == len(shape), f"{name}: rank {spec.shape} vs {shape}"
        for j, (g, want) in enumerate(zip(got, shape, strict=True)):
            if (i, j) not in case.dynamic:
                assert g == want, f"{name}: {spec.shape} -> {got} vs runtime {shape}"
        assert spec.dtype == dtype, f"{name}: dtype {spec.dtype} vs {dtype}"
    annotate_costs(ir)
    assert coverage(ir)["unsupported"] == []
    assert not any("cost_error" in a for _, a in ir.nodes())


# ---- costs by hand ---------------------------------------------------------------------------


def costs(model) -> dict:
    ir = annotate_costs(capture_onnx(model))
    assert coverage(ir)["unsupported"] == []
    return {a["op"]: a for _, a in ir.nodes()}


def rnn_flops(op, seq, batch, inp, hidden, dirs, bias):
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    cell = {"RNN": hidden, "GRU": 14 * hidden, "LSTM": 18 * hidden}[op]
    step = 2 * (inp + hidden) * gates * hidden + gates * hidden + (2 * gates * hidden if bias else 0) + cell
    return seq * batch * dirs * step, seq * batch * dirs * 2 * (inp + hidden) * gates * hidden


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_flops(op, bidirectional):
    """LSTM gates 4·hidden wide, 18 elementwise per hidden unit; GRU 3 and 14; RNN 1 and 1."""
    cid = op if bidirectional else f"{op}_forward"
    node = costs(CASES[cid].model())[op]
    dirs = 2 if bidirectional else 1
    seq, batch = sym("n5"), sym("n3")
    flops, mm = rnn_flops(op, seq, batch, sym("n4"), 6, dirs, bias=bidirectional)
    assert sympy.expand(node["flops"] - flops) == 0
    assert sympy.expand(node["matmul_flops"] - mm) == 0
    if op == "LSTM" and bidirectional:  # 5·3·2·(2·10·24 + 24 + 48 + 108) at seq 5, batch 3
        assert node["flops"].subs({seq: 5, batch: 3, sym("n4"): 4}) == 5 * 3 * 2 * (480 + 24 + 48 + 108)


def test_sequence_map_costs_body_per_element():
    ops = costs(CASES["SequenceMap"].model())
    node = ops["SequenceMap"]
    elem = sym("n2") * sym("n3")
    assert sympy.expand(node["flops"] - 2 * 2 * elem) == 0  # two elements × (Relu + Add)
    assert node["kind"] == "control"


def test_int4_and_fp8_stored_width():
    w4 = helper.make_tensor("w", onnx.TensorProto.INT4, [64, 32], np.zeros(64 * 32, np.int8).tolist())
    w8 = helper.make_tensor("w8", onnx.TensorProto.FLOAT8E4M3FN, [64, 32], np.zeros(64 * 32).tolist())
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["y"]), helper.make_node("DequantizeLinear", ["w8", "s"], ["y8"])]
    graph = helper.make_graph(nodes, "g", [], [helper.make_value_info(n, onnx.TypeProto()) for n in ("y", "y8")],
                              [w4, w8, numpy_helper.from_array(np.array(0.5, np.float32), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    ir = annotate_costs(capture_onnx(model))
    reads = {a["outputs"][0].dtype: a for _, a in ir.nodes()}
    by_input = {a["inputs"][0].dtype: a["bytes_read"] for _, a in ir.nodes()}
    assert by_input == {"int4": 64 * 32 // 2 + 4, "float8_e4m3fn": 64 * 32 + 4}
    assert reads["float32"]["flops"] == 64 * 32  # scale multiply, no zero point


# (case, op, flops, bytes_read, bytes_written) by hand at the case's sizes, 4-byte floats
HAND = [
    ("Resize", "Resize", 2 * 4 * 3 * 8 * 7, None, 3 * 8 * 7 * 4),  # linear on 2 axes: 4 taps, 2 each
    ("DFT", "DFT", 2 * 2.5 * 8 * 3, None, 2 * 5 * 2 * 4),  # 2 real transforms of 8: 2.5·n·log2 n
    ("DequantizeLinear", "DequantizeLinear", 2 * 6, 6 * 1 + 4 + 1, 6 * 4),  # int8 read at 1 byte
    ("QuantizeLinear", "QuantizeLinear", 4 * 24, 24 * 4 + 4 + 1, 24 * 1),
    ("DynamicQuantizeLinear", "DynamicQuantizeLinear", 6 * 24, 24 * 4, 24 + 4 + 1),
    ("TensorScatter", "TensorScatter", 0, 2 * 3 * 2 * 4 * 4 + 16, 2 * 3 * 2 * 4 * 4),  # in-place update
    ("SequenceConstruct", "SequenceConstruct", 0, 2 * 6 * 4, 2 * 6 * 4),
    ("SequenceAt", "SequenceAt", 0, 6 * 4 + 8, 6 * 4),
    ("NonMaxSuppression", "NonMaxSuppression", 12 * 2 * 6 * 5 / 2, None, None),
    ("Det", "Det", 2 * 64 / 3 * 3, None, None),
    ("SoftmaxCrossEntropyLoss", "SoftmaxCrossEntropyLoss", 3 * 15 + 2 * 3, None, None),
    ("OneHot_sym", "OneHot", 3 * 5, None, 3 * 5 * 4),
    ("RoiAlign", "RoiAlign", 3 * 3 * 2 * 3 * 4 * 9, None, None),
    ("GridSample", "GridSample", 2 * 3 * 6 * 7 * 4 * 2, None, None),
    ("SwiGLU", "SwiGLU", 24 * 6, 2 * 24 * 4, 24 * 4),
    ("com.microsoft.MoE", "com.microsoft.MoE", 4 * 2 * 512 + 4 * 2 * (16 + 8) + 4 * 4 * 3, None, None),
    ("com.microsoft.QAttention", "com.microsoft.QAttention", 2304 + 288 + 576 + 144, None, None),
    ("com.microsoft.GatherBlockQuantized", "com.microsoft.GatherBlockQuantized", 2 * 32, 16 + 2 * 4 + 2 * 8, 32 * 4),
]


@pytest.mark.parametrize(("cid", "op", "flops", "read", "written"), HAND, ids=[h[0] for h in HAND])
def test_costs_by_hand(cid, op, flops, read, written):
    case = CASES[cid]
    node = costs(case.model())[op]
    values = {sym(f"n{d}"): d for spec in case.inputs.values() for d in spec.value.shape}
    values.update({sym("a_bytes"): 4, sym("w_bytes"): 4})
    for key, want in (("flops", flops), ("bytes_read", read), ("bytes_written", written)):
        if want is not None:
            assert float(sympy.sympify(node[key]).subs(values)) == pytest.approx(want), key


# ---- QDQ: a statically quantized model -------------------------------------------------------


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory):
    quant = pytest.importorskip("onnxruntime.quantization")
    rng = np.random.default_rng(1)
    w_conv = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w_conv")
    w_mm = numpy_helper.from_array(rng.standard_normal((8 * 6 * 6, 10)).astype(np.float32), "w_mm")
    nodes = [helper.make_node("Conv", ["x", "w_conv"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("MatMul", ["f", "w_mm"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", 1, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", 1, [1, 10])], [w_conv, w_mm])
    folder = tmp_path_factory.mktemp("qdq")
    src, dst = folder / "float.onnx", folder / "qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)

    class Reader(quant.CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    quant.quantize_static(str(src), str(dst), Reader(), quant_format=quant.QuantFormat.QDQ,
                          activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8)
    return onnx.load(dst)


def test_qdq_weights_read_at_one_byte(qdq_model):
    ir = annotate_costs(capture_onnx(qdq_model))
    assert coverage(ir)["unsupported"] == []
    inits = {t.name: t for t in qdq_model.graph.initializer}
    weights = {n: t for n, t in inits.items() if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1}
    assert len(weights) == 2  # the conv and matmul weights, stored int8
    seen = 0
    for _, a in ir.nodes():
        names = a["tensor_names"]["inputs"]
        if a["op"] == "DequantizeLinear" and names[0] in weights:
            numel = int(np.prod(weights[names[0]].dims))
            params = sum(int(np.prod(inits[n].dims)) * (4 if inits[n].data_type == 1 else 1) for n in names[1:] if n)
            assert a["bytes_read"] == numel * 1 + params
            assert a["inputs"][0].itemsize == 1 and a["outputs"][0].dtype == "float32"
            seen += 1
    assert seen == 2
    ops = {a["op"] for _, a in ir.nodes()}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "MatMul"} <= ops


# ---- com.microsoft ops -------------------------------------------------------------------------


def test_ms_rules_registered():
    for op in ("Attention", "MultiHeadAttention", "GroupQueryAttention", "SkipLayerNormalization", "FastGelu",
               "BiasGelu", "EmbedLayerNormalization", "QOrderedMatMul", "MatMulNBits", "QuickGelu", "RotaryEmbedding",
               "DynamicQuantizeMatMul", "QAttention", "QGemm", "QLinearAdd", "MoE", "GatherBlockQuantized",
               "DynamicQuantizeLSTM", "DecoderMaskedMultiHeadAttention", "SparseAttention", "PackedAttention"):
        assert lookup(f"{MS}.{op}") is not None, op
