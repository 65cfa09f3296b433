"""Reliability regressions (issue 18, medium and smaller items): each test builds its input.

- hangs on tiny inputs end in a few seconds with one line and exit 2 (constant folding,
  shape tensors claiming 2**40 entries, Split num_outputs=10**7, rank 1000, deep metadata,
  /dev/zero or a FIFO as --target or config.json);
- numbers are validated at the edge (NaN, inf, bool, negative, 1e30) and no output holds
  non-finite JSON;
- SystemExit in user code, the working directory on sys.path, the built-in model's origin,
  ONNX-only options and ``sweep --targets ,``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from irtools.cli import main
from irtools.hardware import HERE, TargetError, load_target

LIMIT_S = 5  # "nothing from a small file takes more than a few seconds"


class Hang(BaseException):
    pass


def run(capsys, *args, limit_s: float = LIMIT_S):
    def alarm(*_):
        raise Hang(f"over {limit_s} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s * 4)  # a hard stop well past the asserted bound
    start = time.perf_counter()
    try:
        code = main([str(a) for a in args])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    return code, out, err, elapsed


def refused(capsys, *args, needle: str) -> str:
    code, out, err, elapsed = run(capsys, *args)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("irtools: error: "), err
    assert needle in lines[0] and elapsed < LIMIT_S, (lines[0], elapsed)
    return lines[0]


def _const(name, values):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64), name))


def _save(tmp_path, nodes, inputs=None, inits=(), name="m.onnx"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(nodes, "g", inputs or [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              list(inits))
    path = tmp_path / name
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
    return path


def _tiny(tmp_path):
    return _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])])


# ---- 5. hangs ----------------------------------------------------------------------------------


def _pow(tmp_path):
    return _save(tmp_path, [_const("a", [10]), _const("b", [10**9]), helper.make_node("Pow", ["a", "b"], ["p"]),
                            helper.make_node("Reshape", ["x", "p"], ["y"])])


def _squarings(tmp_path):
    nodes = [_const("s0", [10])] + [helper.make_node("Mul", [f"s{i}", f"s{i}"], [f"s{i + 1}"]) for i in range(40)]
    return _save(tmp_path, nodes + [helper.make_node("Reshape", ["x", "s40"], ["y"])])


def _symbolic_power(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["s"]), _const("one", [1]), helper.make_node("Add", ["s", "one"], ["s1"])]
    nodes += [helper.make_node("Mul", [f"s{i}", f"s{i}"], [f"s{i + 1}"]) for i in range(1, 30)]
    return _save(tmp_path, nodes + [helper.make_node("Reshape", ["x", "s30"], ["y"])])


def _reshape_2_40(tmp_path):
    shape = TensorProto(name="shape", data_type=TensorProto.INT64, dims=[2**40])
    return _save(tmp_path, [helper.make_node("Reshape", ["x", "shape"], ["y"])], inits=[shape])


def _split(tmp_path):
    return _save(tmp_path, [helper.make_node("Split", ["x"], ["y"], axis=0, num_outputs=10**7)])


def _rank_1000(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1] * 1000)
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "b", [], [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    return _save(tmp_path, [helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)], inputs=[x, cond])


def _deep_metadata(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], name="r")
    node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=repr(["", "a"] * 3000 + ["r"]))
    return _save(tmp_path, [node])


HANGS = {
    "pow": (_pow, "constant folding of Pow"),
    "squarings": (_squarings, "constant folding of Mul"),
    "symbolic_power": (_symbolic_power, "a power"),
    "reshape_2_40": (_reshape_2_40, "over the limit of 64"),
    "split": (_split, "num_outputs = 10000000 is over the limit"),
    "rank_1000": (_rank_1000, "rank 1000, over the limit of 64"),
    "deep_metadata": (_deep_metadata, "nests 3000 modules"),
}


@pytest.mark.parametrize("kind", list(HANGS))
def test_hang_inputs_end_quickly_with_one_line(kind, tmp_path, capsys):
    build, needle = HANGS[kind]
    path = build(tmp_path)
    assert path.stat().st_size < 30_000  # small files
    refused(capsys, "analyze", path, needle=needle)


def test_dev_zero_and_fifos_as_target_or_config_are_refused(tmp_path, capsys):
    model = _tiny(tmp_path)
    zero_cfg = tmp_path / "config.json"
    zero_cfg.symlink_to("/dev/zero")
    fifo_toml, fifo_cfg = tmp_path / "t.toml", tmp_path / "f" / "config.json"
    fifo_cfg.parent.mkdir()
    os.mkfifo(fifo_toml)
    os.mkfifo(fifo_cfg)
    refused(capsys, "analyze", model, "--target", "/dev/zero", needle="not a regular file")
    refused(capsys, "analyze", model, "--target", fifo_toml, needle="not a regular file (a FIFO)")
    refused(capsys, "analyze", zero_cfg, needle="not a regular file (a character device)")
    refused(capsys, "analyze", fifo_cfg, needle="not a regular file (a FIFO)")
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(64 * 2**20)  # sparse: 64 MiB of zeros, never read
    refused(capsys, "analyze", model, "--target", big, needle="over the 1048576-byte limit")


# ---- 6. numbers at the edge --------------------------------------------------------------------


def _target_text(**override) -> str:
    text = (HERE / "l4.toml").read_text()
    for key, value in override.items():
        lines = [ln for ln in text.splitlines() if ln.startswith(f"{key} = ")]
        assert lines, key
        text = text.replace(lines[0], f'{key} = {{ value = {value}, source = "test" }}')
    return text


@pytest.mark.parametrize("key,value", [
    ("memory_bandwidth", "nan"), ("memory_bandwidth", "inf"), ("memory_bandwidth", "-3e11"), ("memory_bandwidth", "true"),
    ("fp32", "nan"), ("fp32", "true"), ("fp32", "-inf"), ("launch_overhead", "1e400"), ("gemm_epilogue_fusion", "3"),
])
def test_target_files_with_nan_inf_bool_or_negative_figures_are_refused(key, value, tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(_target_text(**{key: value}))
    with pytest.raises(TargetError) as info:
        load_target(str(path))
    assert "\n" not in str(info.value) and key in str(info.value)


def test_target_tables_with_nan_are_refused(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('gemm_efficiency = { value = [[1, nan], [64, 1.0]], source = "test" }\n' + _target_text())
    with pytest.raises(TargetError, match="finite"):
        load_target(str(path))


@pytest.mark.parametrize("binding,needle", [
    ("w_bytes=inf", "not a finite number"), ("w_bytes=nan", "not a finite number"), ("batch=-inf", "not a finite number"),
    ("batch=1e30", "too large (at most 9007199254740992)"),
])
def test_dims_that_are_not_finite_or_absurd_are_refused(binding, needle, tmp_path, capsys):
    refused(capsys, "analyze", _tiny(tmp_path), "--dim", binding, needle=needle)


def test_grid_values_that_are_not_finite_are_refused(tmp_path, capsys):
    refused(capsys, "sweep", _tiny(tmp_path), "--grid", "batch=1,nan", needle="not a finite number")


@pytest.mark.parametrize("field,value", [("num_hidden_layers", -3), ("hidden_size", 0), ("num_attention_heads", 1e30),
                                         ("vocab_size", True), ("num_key_value_heads", "NaN")])
def test_config_json_sizes_must_be_positive_integers(field, value, tmp_path, capsys):
    config = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
              "num_attention_heads": 4, "vocab_size": 101, field: value}
    path = tmp_path / "config.json"
    text = json.dumps(config)
    path.write_text(text.replace('"NaN"', "NaN"))
    refused(capsys, "analyze", path, needle=field if value != "NaN" else "NaN is not a number JSON allows")


def test_negative_sizes_from_constants_are_refused(tmp_path, capsys):
    path = _save(tmp_path, [_const("k", [-1000]), helper.make_node("TopK", ["x", "k"], ["y", "i"])])
    refused(capsys, "analyze", path, needle="negative dimension -1000")
    path = _save(tmp_path, [_const("z", [0]), _const("t", [-1, 0]), helper.make_node("Reshape", ["x", "t"], ["y"], allowzero=1)],
                 name="zero.onnx")
    refused(capsys, "analyze", path, needle="non-finite dimension")


def test_reports_and_writers_never_hold_non_finite_json(tmp_path):
    from irtools.export.escape import json_text
    from irtools.export.model_explorer import node_values
    from irtools.ir.symbols import evaluate, sym

    x = sym("x")
    assert evaluate("1/x", {"x": 0}) is None and evaluate(x / (x - 2), {"x": 2}) is None and evaluate(x - 3, {"x": 5}) == 2
    text = json_text({"a": [1.0, float("nan")], "b": {"c": float("inf")}}, indent=1)
    assert json.loads(text) == {"a": [1.0, None], "b": {"c": None}, "non_finite": ["a[1]", "b.c"]}
    nodes = [{"id": "n", "flops": {"value": float("inf")}, "bytes_read": {"value": 1}, "bytes_written": {"value": float("nan")}}]
    assert node_values({"nodes": nodes}) == {"flops": {}, "bytes": {}}


def test_oo_and_nan_named_dims_stay_symbols_in_every_output(tmp_path, capsys):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["oo", "nan"])
    w = numpy_helper.from_array(np.zeros((1, 3), np.float32), "w")
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])], inputs=[x], inits=[w])
    code, _, err, _ = run(capsys, "export", path, "--format", "html", "-o", tmp_path / "r.html")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "Infinity PFLOP" not in page and "inf P" not in page and "<label>nan <input" in page  # a symbol to set
    data = page.split('id="irtools-data">')[1].split("</script>")[0]
    assert json.loads(data, parse_constant=lambda c: pytest.fail(f"non-finite {c}"))
    assert '["s", "oo"]' in data and '["s", "nan"]' in data and '["inf"' not in data
    code, _, err, _ = run(capsys, "analyze", path, "--format", "json", "--dim", "oo=3", "--dim", "nan=5", "-o", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["totals"]["flops"]["value"] == 2 * 3 * 5 * 1 * 3  # 2·M·N·K, M = oo·nan


# ---- 8. smaller items ----------------------------------------------------------------------------

_EXITING = {
    "import": "import sys\nsys.exit(0)\n",
    "init": textwrap.dedent("""
        import sys, torch
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                sys.exit(7)
            def example_inputs(self, scenario):
                return (torch.randn(3, 4),), {}, {}
    """),
    "inputs": textwrap.dedent("""
        import torch
        class M(torch.nn.Module):
            def example_inputs(self, scenario):
                raise SystemExit(1)
    """),
    "forward": textwrap.dedent("""
        import sys, torch
        class M(torch.nn.Module):
            def forward(self, x):
                sys.exit(3)
            def example_inputs(self, scenario):
                return (torch.randn(3, 4),), {}, {"x": {0: "batch_size"}}
    """),
}


@pytest.mark.parametrize("where", list(_EXITING))
def test_system_exit_in_a_user_module_is_one_line_exit_2(where, tmp_path, capsys, monkeypatch):
    name = f"irtools_exits_{where}"
    (tmp_path / f"{name}.py").write_text(_EXITING[where])
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err, _ = run(capsys, "analyze", f"{name}:M", limit_s=60)
    line = err.strip()
    assert code == 2 and line.count("\n") == 0 and line.startswith("irtools: error: ") and "called exit(" in line, err


def test_working_directory_is_searched_last_and_never_shadows(tmp_path, monkeypatch):
    from irtools.recipes import presets

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    (tmp_path / "irtools_cwd_mod.py").write_text("import torch\nclass M(torch.nn.Module):\n    pass\n")
    assert presets.resolve_class("irtools_cwd_mod:M").__name__ == "M"
    assert sys.path[-1] == str(tmp_path) and sys.path[0] != str(tmp_path)


def test_the_builtin_model_loads_from_the_installation_not_the_working_directory(tmp_path, monkeypatch):
    from irtools.recipes.builtin import INSTALL_ROOT
    from irtools.recipes.presets import PRESETS, resolve_class

    marker = tmp_path / "ran.txt"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "models" / "gpt2_attention.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # even first on sys.path, as `python -m` would put it
    for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
        monkeypatch.delitem(sys.modules, name)
    cls = resolve_class(PRESETS["gpt2-attention"].cls_path)
    assert not marker.exists()
    assert Path(sys.modules[cls.__module__].__file__).resolve() == INSTALL_ROOT / "models" / "gpt2_attention.py"


def test_plain_irtools_never_runs_models_init_of_the_working_directory(tmp_path):
    marker = tmp_path / "ran.txt"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    script = Path(sys.executable).parent / "irtools"
    if not script.exists():
        pytest.skip("no irtools console script next to the interpreter")
    proc = subprocess.run([str(script), "analyze", "models.gpt2_attention:NoSuchClass"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "has no attribute 'NoSuchClass'" in proc.stderr and not marker.exists(), proc.stderr


@pytest.mark.parametrize("option", [["--scenario", "decode"], ["--symbolic-config"], ["--collapse-layers"]])
def test_options_that_do_not_apply_to_onnx_are_refused(option, tmp_path, capsys):
    line = refused(capsys, "analyze", _tiny(tmp_path), *option, needle="does not apply to an ONNX file")
    assert option[0] in line


def test_sweep_with_no_target_is_refused(tmp_path, capsys):
    refused(capsys, "sweep", _tiny(tmp_path), "--targets", ",", needle="names no target")


def test_error_lines_never_carry_escape_sequences(tmp_path, capsys):
    evil = "\x1b]0;pwned\x07\x1b[2J\u202e"
    path = _save(tmp_path, [helper.make_node("Add", ["x", evil], ["y"])])
    line = refused(capsys, "analyze", path, needle="which no input, initializer or node produces")
    assert not any(c in line for c in "\x1b\x07\u202e") and "\\x1b]0;pwned\\x07" in line


def test_sizes_past_int64_are_refused_and_costs_past_float_range_have_no_value(tmp_path, capsys):
    nodes = [_const("a", [10]), _const("b", [19]), helper.make_node("Pow", ["a", "b"], ["p"]),
             helper.make_node("ConstantOfShape", ["p"], ["y"])]
    refused(capsys, "analyze", _save(tmp_path, nodes), needle="over int64")

    def body(level):  # Loops nested 20 deep, each running 2**62 times: about 2**1240 FLOPs
        vi = helper.make_tensor_value_info
        inner = [helper.make_node("MatMul", ["a", "a"], ["b"])] if level == 0 else [
            _const(f"m{level}", 2**62), helper.make_node("Loop", [f"m{level}", "", "a"], ["b"], body=body(level - 1))]
        inner.append(helper.make_node("Identity", ["c"], ["d"]))
        return helper.make_graph(inner, f"b{level}", [vi("i", TensorProto.INT64, []), vi("c", TensorProto.BOOL, []),
                                                      vi("a", TensorProto.FLOAT, [8, 8])],
                                 [vi("d", TensorProto.BOOL, []), vi("b", TensorProto.FLOAT, [8, 8])])

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 8])
    path = _save(tmp_path, [_const("m", 2**62), helper.make_node("Loop", ["m", "", "x"], ["y"], body=body(19))], inputs=[x],
                 name="loops.onnx")
    code, _, err, _ = run(capsys, "analyze", path, "--target", "h100-sxm", "--format", "json", "-o", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert code == 0 and report["totals"]["flops"]["value"] is None and report["time_s"]["value"] is None, err
    assert int(report["totals"]["flops"]["expr"]) == 2 * 8**3 * (2**62) ** 20  # the exact figure is kept


def test_partial_bindings_of_a_large_max_give_no_value_at_once():
    """A fuzzed GPT2Attention's peak memory is a Max of ~50 sums in unknown sizes; binding the
    byte symbols only used to make sympy re-simplify it for minutes."""
    import sympy

    from irtools.ir.symbols import evaluate, sym

    a, w = sym("a_bytes"), sym("w_bytes")
    expr = sympy.Max(*(a * sym(f"unk_{i % 12}") * (1 + i % 3) + (i * 9173 % 10**6) * a + (i * 31 % 977) * w + 936
                       for i in range(50)), evaluate=False)  # as built (8 s to re-simplify with a, w bound)
    start = time.perf_counter()
    assert evaluate(expr, {"a_bytes": 2, "w_bytes": 2}) is None
    assert evaluate(expr, {"a_bytes": 2, "w_bytes": 2, **{f"unk_{i}": 1 for i in range(12)}}) > 0
    assert time.perf_counter() - start < 2
