"""ONNX frontend: cross-frontend costs, symbolic shapes vs onnxruntime, the light model zoo,
external data, bad files, metadata scopes, symbols and control flow."""

from __future__ import annotations

import glob
import os
import random
from collections import Counter

import numpy as np
import onnx
import pytest
import sympy
import torch
from onnx import TensorProto, helper

from irtools.capture.onnx.frontend import capture_onnx
from irtools.capture.torch.export import capture_module
from irtools.ir import CaptureError, Scope
from irtools.ir.symbols import evaluate, from_kv_len, sym
from models.gpt2_attention import GPT2Attention
from passes.annotate_costs import annotate_costs, coverage

ort = pytest.importorskip("onnxruntime")

LIGHT = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/*.onnx")))
KEYS = ("flops", "bytes_read", "bytes_written", "matmul_flops")
A, B, S, C = sym("a_bytes"), sym("batch_size"), sym("seq_len"), sym("cache_len")


def totals(ir) -> dict:
    return {k: sympy.expand(from_kv_len(sympy.Add(*(a[k] for _, a in ir.nodes())))) for k in KEYS}


# ---- fixtures: export once per session ------------------------------------------------------


@pytest.fixture(scope="session")
def module():
    torch.manual_seed(0)
    m = GPT2Attention().eval()
    with torch.no_grad():  # non-zero biases, or the exporter's optimizer drops the Gemm bias
        m.c_attn.bias.normal_()
        m.c_proj.bias.normal_()
    return m


@pytest.fixture(scope="session")
def exports(module, tmp_path_factory):
    """GPT2Attention exported three ways, with ONNX-style dim names that need aliases."""
    folder = tmp_path_factory.mktemp("onnx")
    x, pk = torch.randn(3, 5, 768), torch.randn(3, 12, 7, 64)
    paths = {"dynamo": folder / "dynamo.onnx", "legacy": folder / "legacy.onnx", "kv": folder / "kv.onnx"}
    torch.onnx.export(module, (x,), dynamo=True, input_names=["hidden_states"],
                      dynamic_shapes={"hidden_states": {0: "batch", 1: "sequence_length"}}).save(str(paths["dynamo"]))
    torch.onnx.export(module, (x,), str(paths["legacy"]), dynamo=False, input_names=["hidden_states"],
                      dynamic_axes={"hidden_states": {0: "batch", 1: "sequence_length"}})
    kv_dims = {0: "batch", 2: "past_sequence_length"}
    torch.onnx.export(module, (x, (pk, pk.clone())), dynamo=True, input_names=["hidden_states", "past_key", "past_value"],
                      dynamic_shapes=({0: "batch", 1: "sequence_length"}, (kv_dims, kv_dims))).save(str(paths["kv"]))
    return paths


@pytest.fixture(scope="session")
def onnx_irs(exports):
    return {k: annotate_costs(capture_onnx(p)) for k, p in exports.items()}


@pytest.fixture(scope="session")
def torch_irs(module):
    x, pk = torch.randn(3, 5, 768), torch.randn(3, 12, 7, 64)
    prefill = capture_module(module, (x,), dims={"hidden_states": {0: "batch_size", 1: "seq_len"}})
    kv = {0: "batch_size", 2: "cache_len"}
    decode = capture_module(module, (x,), {"layer_past": (pk, pk.clone())},
                            dims={"hidden_states": {0: "batch_size", 1: "seq_len"}, "layer_past.0": kv, "layer_past.1": kv})
    return {"prefill": annotate_costs(prefill), "decode": annotate_costs(decode)}


# ---- (1) cross-frontend --------------------------------------------------------------------


@pytest.mark.parametrize("export,scenario", [("dynamo", "prefill"), ("legacy", "prefill"), ("kv", "decode")])
def test_same_costs_as_torch(onnx_irs, torch_irs, export, scenario):
    on, th = totals(onnx_irs[export]), totals(torch_irs[scenario])
    assert on["flops"] == th["flops"] and on["flops"] != 0
    assert on["matmul_flops"] == th["matmul_flops"]
    assert th["matmul_flops"].subs(C, 0).coeff(B * S) == 2 * 768 * 2304 + 2 * 768 * 768
    # Named difference: torch materializes the two scalars (sqrt(head_dim), the mask value)
    # with aten.full (written, then read at activation precision); ONNX stores them as fp32
    # initializers/constants (read, 4 bytes each). Everything else is equal, including the
    # copy torch's .contiguous() makes, which ONNX charges on the Reshape of a transposed view.
    assert sympy.expand(th["bytes_read"] - on["bytes_read"]) == 2 * A - 8
    assert sympy.expand(th["bytes_written"] - on["bytes_written"]) == 2 * A


def test_dims_become_standard_symbols(onnx_irs):
    assert onnx_irs["dynamo"].inputs["hidden_states"].shape == (B, S, 768)
    kv = onnx_irs["kv"]
    assert kv.inputs["past_key"].shape == (B, 12, C, 64) and kv.inputs["past_key"].role == "kv_cache"
    assert kv.meta["outputs"]["cat"].shape == (B, 12, C + S, 64)
    assert onnx_irs["dynamo"].inputs["c_attn.weight"].role == "weight"


# ---- (2) symbolic shapes vs onnxruntime -----------------------------------------------------


def ort_shapes(model: onnx.ModelProto, feeds: dict) -> dict[str, tuple]:
    """Shapes of every node output when onnxruntime runs the model (all made graph outputs)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    names = [o for n in model.graph.node for o in n.output if o]
    del model.graph.output[:]
    model.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return {o.name: tuple(v.shape) for o, v in zip(sess.get_outputs(), sess.run(None, feeds), strict=True)}


def ir_shapes(ir) -> dict[str, tuple]:
    out = {}
    for _, attrs in ir.nodes():
        for name, spec in zip(attrs["tensor_names"]["outputs"], attrs["outputs"], strict=True):
            if name and spec is not None:
                out[name] = spec.shape
    return out


@pytest.mark.parametrize("export", ["dynamo", "legacy", "kv"])
def test_shapes_match_onnxruntime(exports, onnx_irs, export):
    model = onnx.load(str(exports[export]))
    symbolic = ir_shapes(onnx_irs[export])
    rng = random.Random(export)
    for _ in range(3):
        b, s, c = rng.randint(2, 6), rng.randint(2, 40), rng.randint(2, 40)
        feeds = {"hidden_states": np.random.rand(b, s, 768).astype(np.float32)}
        if export == "kv":
            feeds["past_key"] = feeds["past_value"] = np.random.rand(b, 12, c, 64).astype(np.float32)
        actual = ort_shapes(model, feeds)
        bindings = {"batch_size": b, "seq_len": s, "cache_len": c}
        assert set(actual) <= set(symbolic)
        for name, shape in actual.items():
            assert tuple(evaluate(d, bindings) for d in symbolic[name]) == shape, name


# ---- (3) the light model zoo ---------------------------------------------------------------


@pytest.fixture(scope="session")
def zoo():
    return {os.path.basename(p): annotate_costs(capture_onnx(p)) for p in LIGHT}


def test_light_zoo_all_supported(zoo):
    assert len(zoo) >= 9
    for name, ir in zoo.items():
        cov = coverage(ir)
        assert cov["unsupported"] == [], name
        assert not [n for n, a in ir.nodes() if "cost_error" in a], name
        t = totals(ir)
        assert t["flops"].is_Integer and t["flops"] > 10**8, name
        assert set(cov["supported"]) == set(cov["seen"])


def test_light_zoo_hand_computed_macs(zoo):
    def macs(ir):
        return totals(ir)["matmul_flops"] / 2

    convs = [(54, 96, 3, 11), (26, 256, 48, 5), (12, 384, 256, 3), (12, 384, 192, 3), (12, 256, 192, 3)]  # (H, Cout, Cin/g, k)
    alexnet = sum(h * h * co * ci * k * k for h, co, ci, k in convs) + 9216 * 4096 + 4096 * 4096 + 4096 * 1000
    assert macs(zoo["light_bvlc_alexnet.onnx"]) == alexnet
    vgg_blocks = [(224, [(3, 64), (64, 64)]), (112, [(64, 128), (128, 128)]), (56, [(128, 256)] + [(256, 256)] * 3),
                  (28, [(256, 512)] + [(512, 512)] * 3), (14, [(512, 512)] * 4)]
    vgg = sum(h * h * co * ci * 9 for h, layers in vgg_blocks for ci, co in layers) + 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert macs(zoo["light_vgg19.onnx"]) == vgg


@pytest.mark.parametrize("name", ["light_bvlc_alexnet.onnx", "light_squeezenet.onnx", "light_shufflenet.onnx"])
def test_light_zoo_shapes_match_onnxruntime(zoo, name):
    model = onnx.load(os.path.join(os.path.dirname(LIGHT[0]), name))
    inits = {i.name for i in model.graph.initializer}
    feeds = {i.name: np.random.rand(*[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input if i.name not in inits}
    symbolic = {k: tuple(int(d) for d in v) for k, v in ir_shapes(zoo[name]).items()}
    actual = ort_shapes(model, feeds)
    assert actual and all(symbolic[k] == v for k, v in actual.items())


# ---- (4) external data ----------------------------------------------------------------------


def test_external_data_is_never_read(exports, onnx_irs, tmp_path):
    model = onnx.load(str(exports["dynamo"]))
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=1024)
    assert (tmp_path / "weights.bin").stat().st_size > 9_000_000  # the projections went out
    (tmp_path / "weights.bin").write_bytes(b"garbage")  # corrupt: reading it would fail
    ir = annotate_costs(capture_onnx(path))
    assert totals(ir) == totals(onnx_irs["dynamo"])
    (tmp_path / "weights.bin").unlink()
    assert totals(annotate_costs(capture_onnx(path))) == totals(onnx_irs["dynamo"])
    # Even shape constants stored outside: no crash, matmul FLOPs still exact (sizes that
    # came from those constants become fresh symbols).
    onnx.save_model(model, str(path), save_as_external_data=True, location="all.bin", size_threshold=0)
    (tmp_path / "all.bin").unlink()
    ir = annotate_costs(capture_onnx(path))
    assert not [n for n, a in ir.nodes() if a["unsupported"]]
    gemm = _node(ir, "Gemm")
    assert gemm["matmul_flops"] == 2 * 768 * 2304 * gemm["inputs"][0].shape[0]


def test_external_data_outside_folder_is_refused(tmp_path):
    model = _tiny_model()
    init = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value="../../etc/passwd")
    model.graph.initializer.append(init)
    path = tmp_path / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(CaptureError, match="outside the model folder"):
        capture_onnx(path)


# ---- (5) bad files --------------------------------------------------------------------------


def _tiny_model(nodes=None, inputs=None, opset=18, outputs=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = nodes if nodes is not None else [helper.make_node("Relu", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", inputs or [x], outputs or [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("kind", ["truncated", "random", "text", "missing"])
def test_bad_files_raise_one_line(exports, tmp_path, kind):
    path = tmp_path / f"{kind}.onnx"
    data = exports["dynamo"].read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif kind == "random":
        path.write_bytes(bytes(random.Random(1).getrandbits(8) for _ in range(4096)))
    elif kind == "text":
        path.write_text("this is not an onnx model\n")
    with pytest.raises(CaptureError) as err:
        capture_onnx(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message


@pytest.mark.parametrize("problem,expected", [
    ("cycle", "cycle"), ("dangling", "which no input"), ("negative", "negative dimension"), ("opset", "unsupported opset"),
])
def test_malformed_graphs_raise(problem, expected):
    if problem == "cycle":
        model = _tiny_model([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                             helper.make_node("Relu", ["a"], ["y"])])
    elif problem == "dangling":
        model = _tiny_model([helper.make_node("Add", ["x", "nowhere"], ["y"])])
    elif problem == "negative":
        model = _tiny_model(inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [-3, 4])])
    else:
        model = _tiny_model(opset=999)
    with pytest.raises(CaptureError, match=expected):
        capture_onnx(model)


# ---- scopes, source lines, shape computation ----------------------------------------------


def _node(ir, op, nth=0):
    return [a for _, a in ir.nodes() if a["op"] == op][nth]


def test_scopes_and_lines_from_dynamo_metadata(onnx_irs, torch_irs):
    gemm = _node(onnx_irs["dynamo"], "Gemm")
    addmm = _node(torch_irs["prefill"], "aten.addmm.default")
    assert gemm["scope"] == addmm["scope"] == [
        Scope("", "models.gpt2_attention.GPT2Attention"), Scope("c_attn", "models.gpt2_attention.Conv1D")]
    assert gemm["source"].file.endswith("models/gpt2_attention.py")
    assert (gemm["source"].line, gemm["source"].code) == (addmm["source"].line, addmm["source"].code)
    assert [f.line for f in gemm["source"].frames] == [117, 49]


def test_scopes_from_legacy_node_names(onnx_irs):
    gemm = _node(onnx_irs["legacy"], "Gemm", 1)
    assert [s.path for s in gemm["scope"]] == ["", "c_proj"] and gemm["source"] is None


def test_shape_computation_is_free_and_reshape_stays_symbolic(onnx_irs):
    ir = onnx_irs["legacy"]
    shape_nodes = [a for _, a in ir.nodes() if a["args"].get("shape_computation")]
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Slice", "Squeeze", "Pow", "ConstantOfShape"} <= {a["op"] for a in shape_nodes}
    assert all(a["flops"] == 0 and a["bytes_read"] == 0 and a["bytes_written"] == 0 for a in shape_nodes)
    reshapes = [a["outputs"][0].shape for _, a in ir.nodes() if a["op"] == "Reshape"]
    assert (B, S, 12, 64) in reshapes and (B * S, 768) in reshapes


# ---- symbols, unknown dims, control flow, fused ops -----------------------------------------


def test_symbol_aliases_kv_len_and_unknown_dims():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "total_sequence_length", "heads", None])
    model = _tiny_model(inputs=[x])
    ir = capture_onnx(model, dims={"batch": 2}, aliases={"heads": "num_heads"})
    shape = ir.inputs["x"].shape
    assert shape[:3] == (B, C + S, sym("num_heads")) and shape[3].is_Symbol and shape[3].name.startswith("unk_")
    assert ir.dims == {"batch_size": 2}
    assert capture_onnx(model, aliases={"N": "rows"}).inputs["x"].shape[0] == sym("rows")


def _branch(name, op_count):
    nodes = [helper.make_node("MatMul", ["x", "x"], [f"{name}_0"])]
    for i in range(1, op_count):
        nodes.append(helper.make_node("MatMul", [f"{name}_{i - 1}", "x"], [f"{name}_{i}"]))
    out = helper.make_tensor_value_info(f"{name}_{op_count - 1}", TensorProto.FLOAT, None)
    return helper.make_graph(nodes, name, [], [out])


def test_if_takes_the_larger_branch_and_loop_multiplies():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 8])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node("If", ["c"], ["y"], then_branch=_branch("t", 1), else_branch=_branch("e", 3))
    ir = annotate_costs(capture_onnx(_tiny_model([node], inputs=[x, cond])))
    attrs = _node(ir, "If")
    assert attrs["flops"] == 3 * 2 * 8**3 and attrs["flags"] == ["if: cost of the larger branch"]

    body_in = [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cin", TensorProto.BOOL, []),
               helper.make_tensor_value_info("v", TensorProto.FLOAT, [8, 8])]
    body_out = [helper.make_tensor_value_info("cout", TensorProto.BOOL, []), helper.make_tensor_value_info("v2", TensorProto.FLOAT, [8, 8])]
    body = helper.make_graph([helper.make_node("Identity", ["cin"], ["cout"]), helper.make_node("MatMul", ["v", "x"], ["v2"])],
                             "body", body_in, body_out)
    trip = helper.make_node("Constant", [], ["m"], value=helper.make_tensor("m", TensorProto.INT64, [], [5]))
    loop = helper.make_node("Loop", ["m", "", "x"], ["y"], body=body)
    ir = annotate_costs(capture_onnx(_tiny_model([trip, loop], inputs=[x])))
    assert _node(ir, "Loop")["flops"] == 5 * 2 * 8**3


def test_microsoft_fused_ops():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence_length", 64])
    w = helper.make_tensor("w", TensorProto.UINT8, [32, 2, 16], vals=np.zeros(32 * 2 * 16, np.uint8).tobytes(), raw=True)
    nbits = helper.make_node("MatMulNBits", ["x", "w", "scales"], ["y"], domain="com.microsoft", K=64, N=32, bits=4, block_size=32)
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [64], vals=np.ones(64, np.float32))
    gqa = helper.make_node("GroupQueryAttention", ["x", "k", "k"], ["o"], domain="com.microsoft", num_heads=4, kv_num_heads=2)
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, ["batch", "sequence_length", 32])
    graph = helper.make_graph([nbits, gqa], "ms", [x, k], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    ir = annotate_costs(capture_onnx(model))
    mm = _node(ir, "com.microsoft.MatMulNBits")
    assert mm["outputs"][0].shape == (B, S, 32) and mm["matmul_flops"] == 2 * B * S * 64 * 32
    assert sympy.expand(mm["bytes_read"] - (B * S * 64 * A + 64 * 32 * 4 // 8 + 64 * sym("w_bytes"))) == 0
    attn = _node(ir, "com.microsoft.GroupQueryAttention")
    assert attn["matmul_flops"] == 4 * B * 4 * S * S * 16 and attn["outputs"][0].shape == (B, S, 64)


def test_mutated_files_never_crash(exports, tmp_path):
    """Bounded fuzz: mutated bytes of real models load, or fail with one CaptureError line."""
    import time

    sources = [exports["legacy"].read_bytes(), open(LIGHT[0], "rb").read()]
    rng, path, deadline, outcomes = random.Random(7), tmp_path / "m.onnx", time.monotonic() + 3, Counter()
    while time.monotonic() < deadline:
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            annotate_costs(capture_onnx(path))
            outcomes["ok"] += 1
        except CaptureError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["ok"] and outcomes["refused"]


def test_opset23_attention_with_past():
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["batch", "sequence_length", 64])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, ["batch", "sequence_length", 32])
    past = helper.make_tensor_value_info("pk", TensorProto.FLOAT, ["batch", 2, "past_sequence_length", 16])
    node = helper.make_node("Attention", ["q", "k", "k", "", "pk", "pk"], ["y", "pk_out", "pv_out"], q_num_heads=4, kv_num_heads=2)
    graph = helper.make_graph([node], "attn", [q, k, past], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    ir = annotate_costs(capture_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])))
    attrs = _node(ir, "Attention")
    assert [o.shape for o in attrs["outputs"]] == [(B, S, 64), (B, 2, C + S, 16), (B, 2, C + S, 16)]
    # 4 query heads, head_dim 16: QK^T and ·V (2·16 each per score) + 4 per score (scale, softmax)
    scores = B * 4 * S * (C + S)
    assert attrs["matmul_flops"] == sympy.expand(64 * scores) and attrs["flops"] == sympy.expand(68 * scores)
