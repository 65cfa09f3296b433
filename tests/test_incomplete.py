"""Totals with an uncosted op are marked as lower bounds everywhere they are shown, and
``--strict`` refuses them; the JSON carries ``matmul_flops`` comparable to FlopCounterMode."""

from __future__ import annotations

import json

import onnx
import torch
from onnx import TensorProto, helper
from torch.utils.flop_counter import FlopCounterMode

from irtools.cli import main
from models.gpt2_attention import GPT2Attention, GPT2Config


def _model_with_unknown_op(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Frobnicate", ["r"], ["y"], name="mystery", domain="com.example")]
    graph = helper.make_graph(nodes, "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, path)
    return path


def test_json_table_and_strict_mark_incomplete_totals(tmp_path, capsys):
    path = str(_model_with_unknown_op(tmp_path / "m.onnx"))
    assert main(["analyze", path, "--format", "json"]) in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is False
    assert report["unsupported"] == [{"op": "com.example.Frobnicate", "count": 1}]
    assert main(["analyze", path]) in (0, None)
    table = capsys.readouterr().out
    assert "INCOMPLETE: totals are lower bounds" in table and "com.example.Frobnicate×1" in table
    assert main(["analyze", path, "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--strict" in err and "Frobnicate" in err


def test_complete_model_is_marked_complete(capsys):
    assert main(["analyze", "--format", "json", "--dim", "seq_len=64"]) in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is True and report["unsupported"] == []
    assert all("matmul_flops" in n for n in report["nodes"])


def test_matmul_flops_in_json_equal_flop_counter(capsys):
    b, s = 2, 37
    assert main(["analyze", "--format", "json", "--dim", f"batch_size={b}", "--dim", f"seq_len={s}"]) in (0, None)
    report = json.loads(capsys.readouterr().out)
    module = GPT2Attention(GPT2Config()).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.randn(b, s, 768))
    assert report["totals"]["matmul_flops"]["value"] == counter.get_total_flops()
    assert sum(n["matmul_flops"]["value"] for n in report["nodes"]) == counter.get_total_flops()
