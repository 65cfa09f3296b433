"""The export, annotate, targets and sweep commands end to end, on torch and ONNX inputs."""

import json
import os
import pathlib
import stat
import warnings

import networkx as nx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from irtools.cli import main
from irtools.ir.symbols import parse

WEIRD = 'x<script>alert("1")</script>\n"q'


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def gpt2_onnx(tmp_path_factory):
    """A 2-layer GPT-2 exported by the legacy exporter with dynamic batch / sequence."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=101, n_positions=64)
    cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(cfg).eval()

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids):
            return self.model(input_ids=ids, use_cache=False).logits

    path = tmp_path_factory.mktemp("onnx") / "gpt2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            Logits(), (torch.randint(0, 101, (2, 8)),), dynamo=True, input_names=["input_ids"],
            dynamic_shapes={"ids": {0: "batch_size", 1: "seq_len"}},
        )
    program.save(str(path))
    return path


@pytest.fixture()
def weird_onnx(tmp_path):
    """A graph whose node, input and output names are markup and quotes."""
    x = helper.make_tensor_value_info(WEIRD, TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("out" + WEIRD, TensorProto.FLOAT, ["batch", 8])
    w = helper.make_tensor("w" + WEIRD, TensorProto.FLOAT, [16, 8], np.zeros(128, np.float32).tolist())
    node = helper.make_node("MatMul", [WEIRD, "w" + WEIRD], ["out" + WEIRD], name="mm" + WEIRD)
    model = helper.make_model(helper.make_graph([node], "g" + WEIRD, [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "weird.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("source", ["torch", "onnx"])
def test_exports_load_back_with_the_same_totals(capsys, tmp_path, gpt2_onnx, source):
    model = [] if source == "torch" else [str(gpt2_onnx)]
    common = [*model, "--dim", "seq_len=128", "--target", "h100-sxm", "--mode", "fused"]
    code, _, err = run(capsys, "export", *common, "--format", "json", "-o", str(tmp_path / "r.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    flops = report["totals"]["flops"]["value"]
    assert flops and report["kernels"]

    assert run(capsys, "export", *common, "--format", "graphml", "-o", str(tmp_path / "g.graphml"))[0] == 0
    g = nx.read_graphml(tmp_path / "g.graphml")
    assert sum(float(d.get("flops", 0) or 0) for _, d in g.nodes(data=True)) == pytest.approx(flops)

    assert run(capsys, "export", *common, "--format", "dot", "-o", str(tmp_path / "g.dot"))[0] == 0
    pydot = pytest.importorskip("pydot")
    assert pydot.graph_from_dot_file(str(tmp_path / "g.dot"))

    assert run(capsys, "export", *common, "--format", "trace", "-o", str(tmp_path / "t.json"))[0] == 0
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    assert all({"name", "ph", "ts", "dur", "pid", "tid"} <= set(e) for e in spans)
    assert sum(e["dur"] for e in spans) == pytest.approx(report["time_s"]["value"] * 1e6, rel=1e-6)


def test_onnx_names_are_escaped_in_html_and_dot(capsys, tmp_path, weird_onnx):
    for fmt, name in (("html", "r.html"), ("dot", "g.dot")):
        code, _, err = run(capsys, "export", str(weird_onnx), "--format", fmt, "-o", str(tmp_path / name))
        assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    dot = (tmp_path / "g.dot").read_text()
    assert "<script>" not in dot
    pydot = pytest.importorskip("pydot")
    assert pydot.graph_from_dot_file(str(tmp_path / "g.dot"))


def test_existing_file_and_unwritable_paths(capsys, tmp_path):
    target = tmp_path / "r.json"
    target.write_text("keep me")
    code, out, err = run(capsys, "export", "--format", "json", "-o", str(target), "--dim", "seq_len=8")
    assert code == 2 and "exists (use --force to overwrite)" in err and err.count("\n") == 1
    assert target.read_text() == "keep me"
    code, _, err = run(capsys, "export", "--format", "json", "-o", str(tmp_path / "missing" / "r.json"))
    assert code == 2 and "does not exist" in err
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IREAD | stat.S_IEXEC)
        code, _, err = run(capsys, "export", "--format", "json", "-o", str(ro / "r.json"))
        assert code == 2 and "cannot write" in err
    assert run(capsys, "export", "--format", "json", "-o", str(target), "--force", "--dim", "seq_len=8")[0] == 0
    assert json.loads(target.read_text())["schema"] == "irtools.report/1"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_module_analysis_export(capsys, tmp_path):
    path = tmp_path / "ma.json"
    code, _, err = run(capsys, "export", "--symbolic-config", "--format", "module-analysis", "-o", str(path))
    assert code == 0, err
    docs = json.loads(path.read_text())
    attn = docs[0]
    assert attn["class_name"] == "models.gpt2_attention.GPT2Attention"
    assert attn["kernels"][0]["flops"] == "${models.gpt2_attention.Conv1D}(batch_size, seq_len, hidden_size, 3*hidden_size)"
    conv = next(d for d in docs if d["class_name"].endswith("Conv1D"))
    assert parse(conv["total"]["flops"]) == parse("2*batch_size*seq_len*hidden_size*out_features + batch_size*seq_len*out_features")


def test_targets_and_bad_target_files(capsys, tmp_path):
    code, out, _ = run(capsys, "targets")
    assert code == 0 and "h100-sxm" in out and "989.4 TFLOP/s" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ndescription = "x"\n')
    code, _, err = run(capsys, "analyze", "--target", str(bad), "--mode", "fused")
    assert code == 2 and err.startswith("irtools: error: ") and err.count("\n") == 1 and "Traceback" not in err
    code, _, err = run(capsys, "analyze", "--target", "no-such-gpu")
    assert code == 2 and "no-such-gpu" in err


def test_sweep_matches_analyze(capsys):
    code, out, err = run(capsys, "sweep", "--grid", "seq_len=128,1024", "--targets", "h100-sxm,a100-sxm-80gb",
                         "--mode", "flash", "--dim", "a_bytes=2", "--dim", "w_bytes=2")
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert header == ("seq_len,time_s[h100-sxm],time_s[a100-sxm-80gb],"
                      "peak_bytes,fits[h100-sxm],fits[a100-sxm-80gb]") and len(rows) == 2  # issue 14: memory, fit
    code, out, _ = run(capsys, "analyze", "--format", "json", "--target", "a100-sxm-80gb", "--mode", "flash",
                       "--dim", "a_bytes=2", "--dim", "w_bytes=2", "--dim", "seq_len=1024")
    assert float(rows[1].split(",")[2]) == pytest.approx(json.loads(out)["time_s"]["value"], rel=1e-5)
    assert float(rows[1].split(",")[3]) == pytest.approx(json.loads(out)["memory"]["peak"]["value"], rel=1e-5)
    code, _, err = run(capsys, "sweep", "--grid", "seq_len=0,5")
    assert code == 2 and "must be a positive integer" in err


def test_annotate_command(capsys, tmp_path, weird_onnx):
    out = tmp_path / "annotated.onnx"
    code, stdout, err = run(capsys, "annotate", str(weird_onnx), "-o", str(out))
    assert code == 0, err
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.graph.node[0].metadata_props}
    assert parse(props["irtools.flops"]) == parse("256*batch_size")
    code, _, err = run(capsys, "annotate", str(tmp_path / "none.onnx"), "-o", str(tmp_path / "x.onnx"))
    assert code == 2 and not (tmp_path / "x.onnx").exists()


def test_model_explorer_keys_are_onnx_node_names(capsys, tmp_path, gpt2_onnx):
    out = tmp_path / "me.json"
    code, stdout, err = run(capsys, "export", str(gpt2_onnx), "--format", "model-explorer", "-o", str(out),
                            "--target", "h100-sxm", "--mode", "fused", "--dim", "seq_len=64")
    assert code == 0, err
    names = {n.name for n in onnx.load(str(gpt2_onnx), load_external_data=False).graph.node}
    written = [line for line in stdout.splitlines() if line.endswith(".json")]
    assert {pathlib.Path(p).name for p in written} == {"me.flops.json", "me.bytes.json", "me.time.json"}
    for path in written:
        data = json.loads(pathlib.Path(path).read_text())
        (graph,) = data.values()
        assert graph["results"] and set(graph["results"]) <= names
        assert {s["stop"] for s in graph["gradient"]} >= {0, 1}
