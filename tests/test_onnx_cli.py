"""ONNX through the whole stack: a 2-layer transformers GPT-2 analyzed three ways (torch path,
dynamo ONNX export, legacy ONNX export), and the CLI's answer to bad ONNX files."""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import warnings

import onnx
import pytest
import sympy
import torch
from onnx import TensorProto, helper

import irtools
from irtools.analysis import analyze_ir
from irtools.capture.onnx.frontend import capture_onnx
from irtools.cli import main
from irtools.ir.symbols import from_kv_len, sym
from passes.annotate_costs import coverage

transformers = pytest.importorskip("transformers")

B, S = sym("batch_size"), sym("seq_len")
LIGHT = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/*.onnx")))


def total(ir, key: str) -> sympy.Expr:
    return sympy.expand(from_kv_len(sympy.Add(*(a[key] for _, a in ir.nodes()))))


def flops_where(ir, pick) -> sympy.Expr:
    return sympy.expand(sympy.Add(*(from_kv_len(a["flops"]) for _, a in ir.nodes() if pick(a))))


# ---- the 2-layer GPT-2 three ways -----------------------------------------------------------


class LogitsOnly(torch.nn.Module):
    """``model(ids, use_cache=False).logits`` with a positional input, for both ONNX exporters."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, ids):
        return self.m(ids, use_cache=False).logits


def _register_legacy_diff() -> None:
    """The legacy exporter has no ``aten::diff`` (transformers' packed-sequence check uses it):
    export it as Concat(prepend, x) -> Slice[1:] - Slice[:-1], the same B*S subtractions."""
    from torch.onnx import symbolic_helper as sh

    @sh.parse_args("v", "i", "i", "v", "v")
    def diff(g, x, n, dim, prepend, append):
        parts = [p for p in (prepend, x, append) if p is x or not sh._is_none(p)]
        whole = g.op("Concat", *parts, axis_i=dim) if len(parts) > 1 else x

        def const(v):
            return g.op("Constant", value_t=torch.tensor([v]))

        def part(start, end):
            return g.op("Slice", whole, const(start), const(end), const(dim))

        return g.op("Sub", part(1, 2**62), part(0, -1))

    torch.onnx.register_custom_op_symbolic("aten::diff", diff, 9)


@pytest.fixture(scope="module")
def gpt2_three_ways(tmp_path_factory):
    cfg = transformers.GPT2Config(n_layer=2, n_positions=64)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-zero biases, or the dynamo exporter's optimizer drops Gemm biases
        for name, p in model.named_parameters():
            if name.endswith("attn.bias") or name.endswith(".bias"):
                p.normal_()
    ids = torch.randint(0, cfg.vocab_size, (3, 5))
    torch_result = irtools.analyze_module(model, (ids,), {"use_cache": False}, {"input_ids": {0: "batch_size", 1: "seq_len"}})
    folder = tmp_path_factory.mktemp("gpt2")
    wrapped = LogitsOnly(model)
    dims = {0: "batch_size", 1: "seq_len"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (ids,), dynamo=True, input_names=["input_ids"],
                          dynamic_shapes={"ids": dims}).save(str(folder / "dynamo.onnx"))
        _register_legacy_diff()
        try:
            torch.onnx.export(wrapped, (ids,), str(folder / "legacy.onnx"), dynamo=False, input_names=["input_ids"],
                              output_names=["logits"], dynamic_axes={"input_ids": dims})
        finally:
            torch.onnx.unregister_custom_op_symbolic("aten::diff", 9)
    irs = {"torch": torch_result.ir}
    for kind in ("dynamo", "legacy"):
        irs[kind] = analyze_ir(capture_onnx(folder / f"{kind}.onnx")).ir
    return irs, folder


def _int_index_arithmetic(a) -> bool:
    """Integer Max/Add/Mul: the exporters' lowering of aten.index (broadcast / flatten the
    index tensors before a Gather); torch charges aten.index no FLOPs."""
    return a["op"] in ("Max", "Add", "Mul") and all(o is not None and o.dtype == "int64" for o in a["outputs"])


@pytest.mark.parametrize("kind", ["dynamo", "legacy"])
def test_gpt2_three_ways_same_matmul_flops_and_totals(gpt2_three_ways, kind):
    irs, _ = gpt2_three_ways
    th, on = irs["torch"], irs[kind]
    assert [a["op"] for _, a in on.nodes() if a["unsupported"]] == []
    mm = total(th, "matmul_flops")
    assert total(on, "matmul_flops") == mm
    # 2 layers x (c_attn 768x2304, c_proj 768x768, c_fc 768x3072, mlp c_proj 3072x768) + lm_head 768x50257
    per_token = 2 * (2 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257)
    assert mm == per_token * B * S + 2 * 2 * 12 * 2 * 64 * B * S**2
    # Total FLOPs are equal once three named lowering differences are taken out, all in the
    # mask / position-id preprocessing, none larger than O(batch_size * seq_len):
    #  - torch adds offsets to three arange(seq_len) vectors (3*seq_len); in ONNX those are
    #    Range values known symbolically, i.e. shape computation, which costs nothing;
    #  - aten.ne (one op) is exported as Not(Equal(...)): the Not is batch_size*seq_len more;
    #  - aten.index (a gather: 0 FLOPs) is lowered to integer Max (dynamo) or Mul/Add
    #    (legacy) on the index tensors before the Gather.
    torch_index = flops_where(th, lambda a: a["op"] == "aten.add.Tensor" and a["outputs"][0].shape == (S,))
    onnx_not = flops_where(on, lambda a: a["op"] == "Not")
    onnx_index = flops_where(on, _int_index_arithmetic)
    assert torch_index == 3 * S and onnx_not == B * S
    assert onnx_index == {"dynamo": 2 * B * S, "legacy": 4 * B * S + 4 * B}[kind]
    assert sympy.expand(total(on, "flops") - onnx_not - onnx_index) == sympy.expand(total(th, "flops") - torch_index)
    assert sympy.expand(total(on, "flops") - total(th, "flops")) == {
        "dynamo": 3 * B * S - 3 * S, "legacy": 5 * B * S + 4 * B - 3 * S}[kind]


def test_gpt2_dynamo_and_legacy_agree_exactly_on_matmuls_per_module(gpt2_three_ways):
    irs, _ = gpt2_three_ways

    def by_block(ir):
        out: dict[str, sympy.Expr] = {}
        for _, a in ir.nodes():
            found = re.search(r"(?:^|\.)h\.(\d+)(?:\.|$)", a["scope"][-1].path if a["scope"] else "")
            block = found.group(1) if found else "-"
            out[block] = sympy.expand(out.get(block, 0) + a["matmul_flops"])
        return {k: v for k, v in out.items() if v != 0}

    dyn, leg = by_block(irs["dynamo"]), by_block(irs["legacy"])
    assert dyn == leg and {"0", "1"} <= set(dyn)


def test_cli_analyze_gpt2_json_with_dims(gpt2_three_ways, capsys, tmp_path):
    _, folder = gpt2_three_ways
    out = tmp_path / "r.json"
    assert main(["analyze", str(folder / "dynamo.onnx"), "--dim", "batch_size=2", "--dim", "seq_len=16",
                 "--format", "json", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["frontend"] == "onnx" and report["bindings"]["seq_len"] == 16
    flops = report["totals"]["flops"]
    assert flops["value"] == int(sympy.sympify(flops["expr"]).subs({"batch_size": 2, "seq_len": 16}))
    cov = report["coverage"]
    assert cov["ops_unsupported"] == [] and {"MatMul", "Gemm", "Softmax"} <= set(cov["ops_seen"])


# ---- the coverage section -------------------------------------------------------------------


def test_coverage_names_unknown_ops_and_their_nodes(tmp_path, capsys):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Frobnicate", ["r"], ["y"], name="frob", domain="com.example")]
    model = _model(nodes, extra_opsets=[helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    cov = coverage(analyze_ir(capture_onnx(path)).ir)
    assert cov["supported"] == ["Relu"]
    assert cov["unsupported"] == [{"op": "com.example.Frobnicate", "count": 1, "nodes": ["frob"]}]
    assert main(["analyze", str(path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["coverage"]["ops_unsupported"] == ["com.example.Frobnicate"]
    assert [n["id"] for n in report["nodes"] if n["unsupported"]] == ["frob"]


# ---- bad input through the CLI --------------------------------------------------------------


def _model(nodes=None, inputs=None, opset=18, extra_opsets=(), initializers=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = nodes if nodes is not None else [helper.make_node("Relu", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", inputs or [x], [y], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def _bad_bytes(kind: str, folder) -> bytes:
    if kind == "truncated":
        data = open(LIGHT[0], "rb").read()
        return data[: len(data) // 3]
    if kind == "not-onnx":
        return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    if kind == "text":
        return b"name: this is not a protobuf\n"
    if kind == "cycle":
        return _model([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                       helper.make_node("Relu", ["a"], ["y"])]).SerializeToString()
    if kind == "dangling":
        return _model([helper.make_node("Add", ["x", "nowhere"], ["y"])]).SerializeToString()
    if kind == "negative-dim":
        return _model(inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [-3, 4])]).SerializeToString()
    if kind == "opset":
        return _model(opset=999).SerializeToString()
    if kind == "external-outside":
        (folder.parent / "secret.bin").write_bytes(b"\0" * 64)
        init = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
        init.data_location = TensorProto.EXTERNAL
        init.external_data.add(key="location", value="../secret.bin")
        return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], initializers=[init]).SerializeToString()
    raise AssertionError(kind)


EXPECTED = {
    "truncated": "not a valid ONNX model", "not-onnx": "ONNX model", "text": "ONNX model", "cycle": "cycle",
    "dangling": "no input, initializer or node produces", "negative-dim": "negative dimension",
    "opset": "unsupported opset", "external-outside": "outside the model folder",
}


class _Opens:
    """Audit hook recording files opened while armed (hooks cannot be removed; this one idles)."""

    armed: list[str] | None = None
    installed = False

    @classmethod
    def hook(cls, event, args):
        if cls.armed is not None and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            cls.armed.append(os.fsdecode(args[0]))


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_cli_bad_onnx_is_one_line_exit_2(kind, tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    path, out = folder / f"{kind}.onnx", tmp_path / "report.json"
    path.write_bytes(_bad_bytes(kind, folder))
    if not _Opens.installed:
        sys.addaudithook(_Opens.hook)
        _Opens.installed = True
    _Opens.armed = []
    try:
        status = main(["analyze", str(path), "--format", "json", "-o", str(out)])
    finally:
        opened, _Opens.armed = _Opens.armed, None
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("irtools: error: "), captured.err
    assert EXPECTED[kind] in lines[0] and str(path) in lines[0]
    assert "Traceback" not in captured.err + captured.out and captured.out == ""
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model"] + (["secret.bin"] if kind == "external-outside" else []))
    assert any(os.path.abspath(p) == str(path) for p in opened)  # the hook sees the loader's reads
    outside = [p for p in opened if str(tmp_path) in os.path.abspath(p) and not os.path.abspath(p).startswith(str(folder))]
    assert outside == [], outside


def test_cli_missing_onnx_file(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "absent.onnx"), "-o", str(tmp_path / "r.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("irtools: error: ") and "no such ONNX file" in err
    assert not (tmp_path / "r.txt").exists()


def test_capture_reports_progress_on_top_level_nodes():
    nodes = [helper.make_node("Relu", ["x"], ["r0"])] + [helper.make_node("Relu", [f"r{i}"], [f"r{i + 1}"]) for i in range(298)]
    nodes.append(helper.make_node("Relu", ["r298"], ["y"]))
    calls: list[tuple[int, int]] = []
    capture_onnx(_model(nodes), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (300, 300) and 50 <= len(calls) <= 101
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:], strict=False))
