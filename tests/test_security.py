"""Security regressions (issue 18, critical and high): each test builds its hostile input.

- ``annotate`` never reads or writes outside the model's and the output's folders (external
  data of every tensor: Constant attributes, subgraphs, sparse tensors, functions; symlinks);
- a file's metadata never chooses a module to import;
- formula strings are parsed, never evaluated;
- an output that is a device, FIFO or folder is refused; writes are atomic (RLIMIT_FSIZE).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import sympy
from onnx import TensorProto, helper, numpy_helper

from irtools.cli import main
from irtools.files import write_atomic
from irtools.ir.errors import CaptureError, ExportError
from irtools.ir.formula import FormulaError
from irtools.ir.symbols import evaluate, parse, sym


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("irtools: error: "), err
    return lines[0]


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _save(model: onnx.ModelProto, path) -> str:
    path.write_bytes(model.SerializeToString())
    return str(path)


def _external(name: str, location: str, dims=(4,)) -> TensorProto:
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    return t


def _with_external(where: str, location: str) -> onnx.ModelProto:
    """A model whose one external tensor sits in ``where``: an initializer, a Constant's value,
    a subgraph's initializer, a sparse initializer, or a Constant inside a model-local function."""
    x, y = _vi("x", ["batch", 4]), _vi("y", None)
    if where == "initializer":
        graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [_external("w", location)])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if where == "constant":
        nodes = [helper.make_node("Constant", [], ["w"], value=_external("w", location), name="const"),
                 helper.make_node("Add", ["x", "w"], ["y"])]
    elif where == "subgraph":
        body = helper.make_graph([helper.make_node("Add", ["x", "w"], ["a"])], "then", [], [_vi("a", None)],
                                 [_external("w", location)])
        other = helper.make_graph([helper.make_node("Relu", ["x"], ["b"])], "else", [], [_vi("b", None)])
        nodes = [helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=other)]
        graph = helper.make_graph(nodes, "g", [x, helper.make_tensor_value_info("c", TensorProto.BOOL, [])], [y])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    elif where == "sparse":
        values = _external("w_values", location, (2,))
        indices = numpy_helper.from_array(np.array([0, 3], np.int64), "w_indices")
        sparse = helper.make_sparse_tensor(values, indices, [4])
        graph = helper.make_graph([helper.make_node("Add", ["x", "w_values"], ["y"])], "g", [x], [y])
        graph.sparse_initializer.append(sparse)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    else:  # a Constant inside a model-local function
        fn = helper.make_function("local", "F", ["i"], ["o"], [
            helper.make_node("Constant", [], ["k"], value=_external("k", location)),
            helper.make_node("Add", ["i", "k"], ["o"])], [helper.make_opsetid("", 18)])
        graph = helper.make_graph([helper.make_node("F", ["x"], ["y"], domain="local")], "g", [x], [y])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("local", 1)],
                                 functions=[fn])
    graph = helper.make_graph(nodes, "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


# ---- 1. annotate and external data --------------------------------------------------------------


@pytest.mark.parametrize("where", ["constant", "subgraph", "sparse", "function", "initializer"])
def test_annotate_refuses_a_traversal_location_wherever_the_tensor_sits(where, tmp_path, capsys):
    src, dst = tmp_path / "in" / "a" / "b", tmp_path / "out" / "a" / "b"
    src.mkdir(parents=True)
    depth = len(dst.parts)  # enough ../ to reach / from the output folder
    location = "../" * depth + "tmp_irtools_pwned/pwned.txt"
    (tmp_path / "in" / "pwned.txt").write_bytes(b"\0" * 16)
    model = _save(_with_external(where, location), src / "m.onnx")
    code, out, err = run(capsys, "annotate", model, "-o", dst / "m.onnx")
    assert code == 2 and "outside the model folder" in one_line(err) and out == ""
    assert not (dst / "m.onnx").exists() and not os.path.exists("/tmp_irtools_pwned")
    assert not list(tmp_path.rglob("tmp_irtools_pwned"))  # nothing created anywhere under the test folder either


def test_annotate_refuses_a_data_file_symlinked_outside(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").symlink_to(secret)
    model = _save(_with_external("constant", "w.bin"), folder / "m.onnx")
    code, _, err = run(capsys, "annotate", model, "-o", tmp_path / "out" / "m.onnx")
    assert code == 2 and "outside the model folder" in one_line(err) and "symbolic link" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(CaptureError, match="outside the model folder"):  # analyze refuses it the same way
        from irtools.capture.onnx.frontend import capture_onnx

        capture_onnx(model)


def test_annotate_copy_never_lands_outside_the_output_folder(tmp_path, capsys):
    folder, out = tmp_path / "model", tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "sub").symlink_to(elsewhere)  # the output folder's "sub" leads out of it
    model = _save(_with_external("constant", "sub/w.bin"), folder / "m.onnx")
    code, _, err = run(capsys, "annotate", model, "-o", out / "m.onnx")
    assert code == 2 and "outside the output folder" in one_line(err)
    assert list(elsewhere.iterdir()) == [] and not (out / "m.onnx").exists()


def test_annotate_copies_a_constant_data_file_inside_and_needs_force(tmp_path, capsys):
    folder, out = tmp_path / "model", tmp_path / "out"
    (folder / "d").mkdir(parents=True)
    data = np.arange(4, dtype=np.float32).tobytes()
    (folder / "d" / "w.bin").write_bytes(data)
    model = _save(_with_external("constant", "d/w.bin"), folder / "m.onnx")
    assert run(capsys, "annotate", model, "-o", out / "m.onnx")[0] == 0
    assert (out / "d" / "w.bin").read_bytes() == data
    annotated = onnx.load(str(out / "m.onnx"), load_external_data=False)
    assert {p.key for p in annotated.metadata_props} >= {"irtools.totals.flops"}
    code, _, err = run(capsys, "annotate", model, "-o", out / "m.onnx")
    assert code == 2 and "exists (use --force to overwrite)" in one_line(err)
    assert run(capsys, "annotate", model, "-o", out / "m.onnx", "--force")[0] == 0


# ---- 2. metadata never imports ----------------------------------------------------------------


def test_onnx_class_hierarchy_never_imports_the_module_it_names(tmp_path, capsys, monkeypatch):
    probe = "irtools_probe_7f3a"
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{probe}.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("ran")
        class Evil:
            def forward(self, x):
                return x
        class Block(Evil):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, were anything to import it
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu"), helper.make_node("Neg", ["h"], ["y"], name="neg")]
    for node in nodes:
        node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=repr(["", "block", node.name]))
        node.metadata_props.add(key="pkg.torch.onnx.class_hierarchy", value=repr([f"{probe}.Evil", f"{probe}.Block", "Op"]))
        node.metadata_props.add(key="pkg.torch.onnx.stack_trace",
                                value=f'File "{tmp_path / probe}.py", line 5, in forward\n    return x')
    graph = helper.make_graph(nodes, "g", [_vi("x", ["batch", 4])], [_vi("y", None)])
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    assert run(capsys, "analyze", model, "--module", "block", "--format", "json", "-o", tmp_path / "r.json")[0] == 0
    assert run(capsys, "export", model, "--format", "module-analysis", "-o", tmp_path / "ma.json")[0] == 0
    assert not marker.exists() and probe not in sys.modules
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["lines"]["class_name"] == f"{probe}.Block"  # the name is kept as data


# ---- 3. formulas are parsed, never evaluated ----------------------------------------------------

CODE = [
    "__import__('os').system('touch {m}')",
    "Symbol('x').__class__.__init__.__globals__['os'].system('touch {m}')",
    "(lambda: __import__('os').system('touch {m}'))()",
    "Max.__call__.__globals__",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "exec('import os')",
    "x if y else z",
    "'a' + 'b'",
    "10**10**9",
    "(seq_len + 1)**100000",
]


@pytest.mark.parametrize("text", CODE)
def test_formula_parser_rejects_code(text, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(FormulaError) as info:
        parse(text.format(m=marker))
    assert "\n" not in str(info.value) and not marker.exists()


def test_formula_parser_keeps_arithmetic_and_sympy_constant_names():
    expr = parse("2*batch_size*seq_len**2 + Max(1, cache_len)/3 - ceiling(seq_len/64) + 0.5*w_bytes")
    b, s, c, w = (sym(n) for n in ("batch_size", "seq_len", "cache_len", "w_bytes"))
    assert expr == 2 * b * s**2 + c / 3 - sympy.ceiling(s / 64) + sympy.Float(0.5) * w
    consts = parse("oo*nan + E + I + pi")
    assert {str(s) for s in consts.free_symbols} == {"oo", "nan", "E", "I", "pi"} and consts.is_finite
    assert evaluate("oo*nan + E", {"oo": 2, "nan": 3, "E": 4}) == 10
    assert evaluate("x/y", {"x": 1, "y": 0}) is None  # zoo: no value rather than NaN


def test_report_json_with_code_in_a_formula_is_refused(tmp_path, capsys):
    marker = tmp_path / "ran"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [_vi("x", ["batch", 4])], [_vi("y", None)])
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    assert run(capsys, "analyze", model, "--format", "json", "-o", tmp_path / "r.json")[0] == 0
    report = json.loads((tmp_path / "r.json").read_text())
    report["totals"]["flops"]["expr"] = f"__import__('os').system('touch {marker}')"
    from irtools.export import EXPORTERS
    from irtools.export.text import render_markdown, render_table

    for render in (render_table, render_markdown):
        with pytest.raises(FormulaError):
            render(report)
    EXPORTERS["html"](report, tmp_path / "r.html")  # the page drops the formula, never runs it
    assert not marker.exists()


def test_module_documents_and_fx_metadata_formulas_are_parsed_not_evaluated(tmp_path):
    from passes.compose import expand_document

    marker = tmp_path / "ran"
    evil = f"__import__('os').system('touch {marker}')"
    docs = [{"class_name": "A", "parameters": [], "kernels": [{"own": {"flops": evil, "read": "0", "write": "0"}, "references": []}]}]
    with pytest.raises(FormulaError):
        expand_document(docs, "A")
    torch = pytest.importorskip("torch")
    from passes.compiler.fx_pass import KEY, costs_from_meta

    gm = torch.fx.symbolic_trace(torch.nn.ReLU())
    next(iter(gm.graph.nodes)).meta["custom"] = {KEY: {"flops": evil, "bytes_read": "0", "bytes_written": "0"}}
    with pytest.raises(FormulaError):
        costs_from_meta(gm)
    assert not marker.exists()


# ---- 4. outputs ------------------------------------------------------------------------------


def test_outputs_that_are_not_regular_files_are_refused(tmp_path):
    fifo, folder, link = tmp_path / "fifo", tmp_path / "dir", tmp_path / "null"
    os.mkfifo(fifo)
    folder.mkdir()
    link.symlink_to("/dev/null")
    for path in (fifo, folder, link, "/dev/full", "/dev/null"):
        with pytest.raises(ExportError, match="not a regular file"):
            write_atomic(path, "data", force=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.path.islink(link) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_device_node_given_as_output_stays_a_device(tmp_path, capsys):
    dev = tmp_path / "dev"
    dev.mkdir()
    try:
        os.mknod(dev / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("creating a device node needs CAP_MKNOD")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [_vi("x", [2])], [_vi("y", None)])
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    code, _, err = run(capsys, "analyze", model, "-o", dev / "null", "--force")
    assert code == 2 and "not a regular file" in one_line(err)
    assert stat.S_ISCHR(os.stat(dev / "null").st_mode)


def test_existing_outputs_need_force_in_every_command(tmp_path, capsys):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [_vi("x", ["batch", 2])], [_vi("y", None)])
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    existing = tmp_path / "old.txt"
    existing.write_text("keep")
    for args in (["analyze", model], ["sweep", model, "--grid", "batch_size=1,2"], ["annotate", model], ["calibrate"]):
        code, _, err = run(capsys, *args, "-o", existing)
        assert code == 2 and "exists (use --force to overwrite)" in one_line(err), args
        assert existing.read_text() == "keep"


_FSIZE_SCRIPT = """
import json, resource, sys
from irtools.cli import main
from irtools.hardware import load_target, save_target
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
out = {"analyze": main(["analyze", sys.argv[1], "--format", "json", "-o", sys.argv[2], "--force"])}
try:
    save_target(load_target("h100-sxm"), sys.argv[3], force=True)
except Exception as exc:
    out["save_target"] = type(exc).__name__
print(json.dumps(out))
"""


def test_a_write_cut_short_by_rlimit_fsize_leaves_the_old_file_whole(tmp_path):
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"relu_{i}") for i in range(60)]
    graph = helper.make_graph(nodes, "g", [_vi("t0", ["batch", 4])], [_vi("t60", None)])
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    report, toml = tmp_path / "r.json", tmp_path / "cpu-local.toml"
    report.write_text('{"old": true}\n')
    toml.write_text((__import__("irtools.hardware", fromlist=["HERE"]).HERE / "l4.toml").read_text())
    proc = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, model, str(report), str(toml)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"analyze": 2, "save_target": "TargetError"}, proc.stderr[-2000:]
    assert "File too large" in proc.stderr and proc.stderr.count("irtools: error:") == 1
    assert json.loads(report.read_text()) == {"old": True}
    from irtools.hardware import load_target

    assert load_target(str(toml)).name == "l4"  # still the whole old target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu-local.toml", "m.onnx", "r.json"]  # no temp files left
