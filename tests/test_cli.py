"""The command line: the default job, formats, and one-line errors with exit status 2."""

import json
import os
import subprocess
import sys

import pytest

from irtools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_default_analyze_prints_the_line_table(capsys):
    code, out, err = run_cli(capsys, "analyze")
    assert code == 0, err
    assert "GPT2Attention" in out and "batch_size=1" in out and "seq_len=1024" in out
    assert "${models.gpt2_attention.Conv1D}(batch_size, seq_len, 768, 2304)" in out
    # total FLOPs at B=1, S=1024: 3132·S² + 4721664·S (hand: see test_seed_lines)
    assert f"{(3132 * 1024**2 + 4721664 * 1024) / 1e9:.3g} GFLOP" in out


def test_json_report_follows_schema(capsys, tmp_path):
    path = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "analyze", "--scenario", "decode", "--dim", "cache_len=100", "--dim", "seq_len=4", "--format", "json", "-o", str(path))
    assert code == 0, err
    report = json.loads(path.read_text())
    for key in ("schema", "model", "frontend", "scenario", "bindings", "totals", "nodes", "modules", "lines", "unsupported"):
        assert key in report
    assert report["bindings"]["cache_len"] == 100 and report["scenario"] == "decode"
    flops = report["totals"]["flops"]
    b, s, c = 1, 4, 100
    assert flops["value"] == 3132 * b * s * (s + c) + 4721664 * b * s
    assert {"id", "op", "kind", "module", "module_class", "source", "flops", "bytes_read", "bytes_written"} <= set(report["nodes"][0])
    assert report["modules"][0]["children"][0]["path"] == "c_attn"


@pytest.mark.parametrize("fmt,needle", [("md", "| line | type |"), ("csv", "table,id,op_or_class,kind,module")])
def test_other_formats(capsys, fmt, needle):
    code, out, _ = run_cli(capsys, "analyze", "--format", fmt, "--dim", "seq_len=8", "--target", "h100-sxm", "--mode", "fused")
    assert code == 0 and needle in out
    if fmt == "csv":  # node, module, line and kernel rows in one file, same totals
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(out)))
        assert {r["table"] for r in rows} == {"node", "module", "line", "kernel"}
        node_flops = sum(float(r["flops_value"]) for r in rows if r["table"] == "node")
        root = next(r for r in rows if r["table"] == "module" and r["id"] == "")
        kernel_flops = sum(float(r["flops_value"]) for r in rows if r["table"] == "kernel")
        assert node_flops == float(root["flops_value"]) == kernel_flops == 3132 * 64 + 4721664 * 8
    else:
        assert "## Modules" in out and "## Kernels (fused on h100-sxm)" in out and "## Nodes" in out


def test_class_spec_with_example_inputs(capsys):
    code, out, err = run_cli(capsys, "analyze", "tests.bad_models:Tiny", "--format", "json", "--dim", "seq_len=10", "--dim", "batch_size=2")
    assert code == 0, err
    report = json.loads(out)
    assert report["totals"]["flops"]["value"] == 2 * 2 * 10 * 16 * 32 + 2 * 10 * 32 + 2 * 10 * 32  # matmul + bias + relu


@pytest.mark.parametrize(
    "args,message",
    [
        (["analyze", "no-such-model"], "unknown model 'no-such-model'"),
        (["analyze", "--dim", "hidden=3"], "no dimension named 'hidden'"),
        (["analyze", "--dim", "seq_len=0"], "dimension seq_len must be a positive integer, got 0"),
        (["analyze", "--dim", "seq_len=2.5"], "dimension seq_len must be a positive integer, got 2.5"),
        (["analyze", "--dim", "seq_len=abc"], "--dim seq_len: 'abc' is not a number"),
        (["analyze", "--dim", "seq_len"], "--dim expects NAME=VALUE"),
        (["analyze", "--dim", "a_bytes=-1"], "a_bytes must be a positive number of bytes"),
        (["analyze", "tests.bad_models:DataDependent"], "bad_models.py:10: if x.sum() > 0:"),
        (["analyze", "tests.bad_models:Nope"], "cannot import 'tests.bad_models:Nope'"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("irtools: error: ")
    assert "Traceback" not in err and out == ""


def test_failed_run_writes_nothing(capsys, tmp_path):
    path = tmp_path / "out.json"
    code, _, _ = run_cli(capsys, "analyze", "--dim", "seq_len=0", "-o", str(path))
    assert code == 2 and not path.exists() and list(tmp_path.iterdir()) == []


def test_subprocess_no_traceback_and_debug_shows_it():
    cmd = [sys.executable, "-m", "irtools.cli", "analyze", "tests.bad_models:DataDependent"]
    plain = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "torch.export failed at" in plain.stderr
    debug = subprocess.run([*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True, cwd=ROOT)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_console_entry_quick_exit_keeps_status_output_and_exit_hooks(tmp_path):
    """``irtools`` (cli.entry) skips the interpreter's teardown but still returns main's status,
    flushes everything it printed and runs the ``atexit`` functions registered before it."""
    marker = tmp_path / "hook_ran"
    code = ("import atexit, runpy, sys\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
            "runpy.run_module('irtools.cli', run_name='__main__', alter_sys=True)\n")
    ok = subprocess.run([sys.executable, "-c", code, "targets"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "h100-sxm" in ok.stdout and marker.read_text() == "ran"
    marker.unlink()
    bad = subprocess.run([sys.executable, "-c", code, "analyze", str(tmp_path / "missing.onnx")], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.startswith("irtools: error: ") and marker.read_text() == "ran"


@pytest.mark.parametrize("args", [["analyze", "--format", "xml"], ["analyze", "--bogus"], ["export"]])
def test_usage_errors_are_one_line(capsys, args):
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("irtools: error: ") and err.count("\n") == 1
