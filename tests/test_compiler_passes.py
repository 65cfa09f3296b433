"""Library passes in compiler pipelines: the FX pass and the torch.compile backend."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import irtools
from irtools.ir.kinds import COSTS
from models.gpt2_attention import GPT2Attention, GPT2Config
from passes.compiler import torch_backend
from passes.compiler.fx_pass import KEY, IrtoolsCostPass, annotate_exported, costs_from_meta

DIMS = {0: "batch_size", 1: "seq_len"}


@torch.library.custom_op("irtools_test::scramble", mutates_args=())
def scramble(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1) * 2


@scramble.register_fake
def _(x):
    return torch.empty_like(x)


class WithUnknownOp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.lin(scramble(x)).relu()


@pytest.fixture(scope="module")
def attention():
    torch.manual_seed(0)
    module = GPT2Attention(GPT2Config(n_embd=64, n_head=4)).eval()
    x = torch.randn(3, 5, 64)
    return module, x, irtools.analyze_module(module, (x,), dims={"hidden_states": DIMS})


def _compile_and_check(module, args, kwargs, atol=1e-5):
    torch_backend.clear_reports()
    compiled = torch.compile(module, backend=torch_backend.irtools_backend, dynamic=True)
    with torch.no_grad():
        got, want = compiled(*args, **kwargs), module(*args, **kwargs)
    got, want = (t[0] if isinstance(t, tuple) else getattr(t, "logits", t) for t in (got, want))
    torch.testing.assert_close(got, want, atol=atol, rtol=1e-5)
    reports = torch_backend.reports()
    assert reports and all(r.error is None for r in reports)
    return reports


def test_backend_attention_outputs_and_totals(attention):
    module, x, expected = attention
    (report,) = _compile_and_check(module, (x,), {})
    for c in COSTS:
        assert report.totals[c] == expected.totals[c], c
    assert report.result is not None and report.result.totals["flops"] == expected.totals["flops"]


@pytest.mark.slow
def test_backend_gpt2_two_layers():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=101, n_positions=64, use_cache=False)
    cfg._attn_implementation = "eager"
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 101, (3, 5))
    reports = _compile_and_check(model, (), {"input_ids": ids}, atol=1e-4)
    expected = irtools.analyze_module(model, (), {"input_ids": ids}, dims={"input_ids": DIMS})
    total = sum((r.totals["flops"] for r in reports), 0)
    assert total == expected.totals["flops"]


def test_graph_breaks_give_several_reports(attention):
    module, x, _ = attention

    def f(t):
        t = module(t)[0]
        torch._dynamo.graph_break()
        return t @ t.transpose(-1, -2)

    torch._dynamo.reset()
    torch_backend.clear_reports()
    compiled = torch.compile(f, backend=torch_backend.make_backend())
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), f(x))
    reports = torch_backend.reports()
    assert len(reports) == 2
    assert reports[1].evaluate()["matmul_flops"] == 2 * 3 * 5 * 5 * 64


def test_fx_pass_on_export_and_decompositions(attention):
    module, x, expected = attention
    ep = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC},))
    cost_pass = annotate_exported(ep)
    assert cost_pass.totals["flops"] == expected.totals["flops"]
    assert costs_from_meta(ep.graph_module)["flops"] == expected.totals["flops"]
    addmm = next(n for n in ep.graph.nodes if n.target == torch.ops.aten.addmm.default)
    assert addmm.meta["custom"][KEY]["kind"] == "matmul"

    decomposed = ep.run_decompositions()
    kept = [n for n in decomposed.graph.nodes if KEY in n.meta.get("custom", {})]
    assert any(n.target == torch.ops.aten.addmm.default for n in kept)  # the key survives
    again = annotate_exported(decomposed)  # re-derived on the decomposed graph
    assert again.totals["flops"] == expected.totals["flops"]
    assert again.totals["matmul_flops"] == cost_pass.totals["matmul_flops"]


def test_unknown_op_is_flagged_not_raised():
    module, x = WithUnknownOp().eval(), torch.randn(3, 8)
    ep = torch.export.export(module, (x,))
    cost_pass = annotate_exported(ep)
    by_target = {str(n.target): n.meta["custom"][KEY] for n in ep.graph.nodes if n.op == "call_function"}
    assert by_target["irtools_test.scramble.default"]["unsupported"] is True
    assert by_target["aten.linear.default"]["flops"] == str(2 * 3 * 8 * 8 + 3 * 8)
    assert "unsupported" not in by_target["aten.linear.default"]
    assert any("scramble" in name for name in cost_pass.unsupported)

    torch._dynamo.reset()
    torch_backend.clear_reports()
    compiled = torch.compile(module, backend="irtools")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x))
    (report,) = torch_backend.reports()
    assert report.error is None and report.result.unsupported == [("irtools_test.scramble.default", 1)]


def test_missing_shapes_are_flagged_not_raised():
    gm = torch.fx.symbolic_trace(WithUnknownOp())
    cost_pass = IrtoolsCostPass()
    result = cost_pass(gm)
    assert result.graph_module is gm
    entries = [n.meta["custom"][KEY] for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    assert entries and all(e["unsupported"] for e in entries)

    torch.fx.passes.shape_prop.ShapeProp(gm).propagate(torch.randn(3, 8))  # shapes, still torch-level ops
    assert IrtoolsCostPass()(gm).graph_module is gm


def test_backend_by_name_without_importing_irtools():
    code = (
        "import sys, torch\n"
        "m = torch.nn.Linear(4, 3)\n"
        "out = torch.compile(m, backend='irtools')(torch.randn(2, 4))\n"
        "assert 'irtools' in sys.modules\n"
        "from passes.compiler.torch_backend import reports\n"
        "(r,) = reports()\n"
        "print(r.evaluate()['flops'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] in {"54", "54.0"}  # 2*2*4*3 + 2*3 (bias)


def test_onnx_annotate_keeps_external_data(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ort = pytest.importorskip("onnxruntime")
    from passes.compiler.onnx_annotate import annotate_onnx

    w = numpy_helper.from_array(np.random.rand(8, 4).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"], name="r")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4])], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "in.onnx", save_as_external_data=True, location="in.data", size_threshold=0)
    out = tmp_path / "out" / "out.onnx"
    annotate_onnx(tmp_path / "in.onnx", out)
    onnx.checker.check_model(str(out))
    assert (out.parent / "in.data").read_bytes() == (tmp_path / "in.data").read_bytes()
    annotated = onnx.load(str(out), load_external_data=False)
    for node in annotated.graph.node:
        keys = {p.key for p in node.metadata_props}
        assert {f"irtools.{k}" for k in ("kind", "flops", "bytes_read", "bytes_written")} <= keys
    assert any(p.key == "irtools.totals.flops" for p in annotated.metadata_props)
    x = np.random.rand(3, 8).astype(np.float32)
    a, b = (ort.InferenceSession(str(p)).run(None, {"x": x})[0] for p in (tmp_path / "in.onnx", out))
    np.testing.assert_array_equal(a, b)
