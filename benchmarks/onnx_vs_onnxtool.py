"""ONNX analysis time and memory: irtools vs onnx-tool (and onnxruntime's shape inference).

Three sections (``--sections``):
  * ``process``: per light-zoo file, the whole command as a user runs it -- ``irtools analyze F``
    vs onnx-tool's own CLI ``python -m onnx_tool -i F`` (shape inference, profile, table) --
    wall time, CPU time and peak RSS, ``--runs`` paired runs, medians (procstat.py);
  * ``inprocess``: the figures below, plus time per node;
  * ``large``: GPT-style decoders of ``--large-layers`` layers (gpt_onnx.py: about 200 nodes a
    layer, width 64): a fixed-shape file, irtools vs onnx-tool (numeric), and a file with
    ``batch_size`` / ``seq_len`` dims, irtools (symbolic analysis) vs onnxruntime's
    ``symbolic_shape_infer`` (shapes only), whole process and in process.

onnx-tool is a benchmark-only dependency (not in pyproject). Its wheel pins other numpy /
onnx / protobuf versions, so install it beside the venv, without its dependencies, and put
it on the path for this script only:

    pip install --no-deps --target /tmp/onnxtool onnx-tool tabulate
    PYTHONPATH=/tmp/onnxtool python benchmarks/onnx_vs_onnxtool.py

Without it, or where it fails on a file, the script says so per file and goes on.

Per file, in one run (best of ``--repeats``: the machine is shared, the minimum is the
least disturbed figure; both tools are measured the same way):
  * irtools with numeric bindings -- what ``irtools analyze model.onnx --dim NAME=V ...``
    pays: capture, the pass pipeline, and the report with every node's and module's value
    under the bindings (``analyze`` + ``to_dict`` + the table) -- vs one onnx-tool profile
    (load + shape inference + profile at the same numeric input shapes);
  * irtools symbolic once + ``--evals`` evaluations at different bindings vs ``--evals``
    onnx-tool runs (``--evals`` x the measured median; re-running it is just that).
The GPT-2 (GPT2LMHeadModel(GPT2Config()), random weights) is exported into a temp dir with
the legacy exporter (onnx-tool handles it) and the dynamo exporter (onnx-tool fails on it).

    python benchmarks/onnx_vs_onnxtool.py [--repeats 3] [--evals 100] [--layers 12] [--seq 128]
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import sys
import tempfile
import time
import warnings
from contextlib import redirect_stdout

import numpy as np
import onnx
from procstat import cell, paired, ratios  # benchmarks/ is this script's folder

from irtools.analysis import analyze, analyze_ir
from irtools.capture.onnx.frontend import capture_onnx
from irtools.export.text import RENDERERS

LIGHT = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/*.onnx")))


def export_gpt2(folder: str, layers: int) -> dict[str, str]:
    """GPT-2 small (``layers`` layers) exported both ways with dynamic batch_size / seq_len."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=layers)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).eval()

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids):
            return self.m(ids, use_cache=False).logits

    wrapped, ids, dims = Logits(model), torch.randint(0, cfg.vocab_size, (2, 8)), {0: "batch_size", 1: "seq_len"}
    paths = {"legacy": os.path.join(folder, f"gpt2_{layers}l_legacy.onnx"),
             "dynamo": os.path.join(folder, f"gpt2_{layers}l_dynamo.onnx")}
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        _register_legacy_diff()
        torch.onnx.export(wrapped, (ids,), paths["legacy"], dynamo=False, input_names=["input_ids"],
                          output_names=["logits"], dynamic_axes={"input_ids": dims})
        torch.onnx.export(wrapped, (ids,), dynamo=True, input_names=["input_ids"],
                          dynamic_shapes={"ids": dims}).save(paths["dynamo"])
    return paths


def _register_legacy_diff() -> None:
    """aten::diff (transformers' packed-sequence check) for the legacy exporter: Slice - Slice."""
    import torch
    from torch.onnx import symbolic_helper as sh

    @sh.parse_args("v", "i", "i", "v", "v")
    def diff(g, x, n, dim, prepend, append):
        parts = [p for p in (prepend, x, append) if p is x or not sh._is_none(p)]
        whole = g.op("Concat", *parts, axis_i=dim) if len(parts) > 1 else x

        def const(v):
            return g.op("Constant", value_t=torch.tensor([v]))

        return g.op("Sub", g.op("Slice", whole, const(1), const(2**62), const(dim)),
                    g.op("Slice", whole, const(0), const(-1), const(dim)))

    torch.onnx.register_custom_op_symbolic("aten::diff", diff, 9)


# ---- the two tools --------------------------------------------------------------------------


def irtools_numeric(path: str, bindings: dict[str, int]) -> float:
    """The CLI's ``analyze model.onnx --dim ...``: analysis, report values, the table text."""
    result = analyze(path, bindings=bindings)
    report = result.to_dict()
    RENDERERS["table"](report)
    return report["totals"]["flops"]["value"]


def irtools_symbolic(path: str, points: list[dict[str, int]]) -> list[float]:
    result = analyze_ir(capture_onnx(path))
    return [result.evaluate(**p)["flops"] for p in points]


def onnx_tool_run(path: str, feeds: dict[str, tuple]) -> float:
    """One onnx-tool profile (load, shape inference, per-node MACs) without printing a table."""
    import onnx_tool

    with redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = onnx_tool.loadmodel(path, {"verbose": False})
        graph = model.graph
        graph.graph_reorder_nodes()
        graph.shape_infer({k: np.zeros(v, dtype=np.int64 if k == "input_ids" else np.float32) for k, v in feeds.items()})
        graph.profile()
    return graph.macs[0]


def timed(fn, repeats: int):
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def inprocess(args, tool_version) -> None:
    """In-process time per file (best of ``--repeats``), irtools vs onnx-tool, and per node."""
    print(f"== in process: analysis time per file and per node (irtools / onnx-tool), best of {args.repeats}")
    rng = np.random.default_rng(0)
    points = [{"batch_size": int(b), "seq_len": int(s)} for b, s in zip(rng.integers(1, 9, args.evals),
                                                                        rng.integers(1, 1025, args.evals), strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        gpt2 = export_gpt2(tmp, args.layers)
        print(f"exported GPT-2 ({args.layers} layers) both ways in {time.perf_counter() - t:.1f} s; "
              f"onnx-tool {tool_version}; batch_size={args.batch}, seq_len={args.seq}; best of {args.repeats}\n")
        files = [(os.path.basename(p), p, {}, None) for p in LIGHT]
        bind = {"batch_size": args.batch, "seq_len": args.seq}
        files += [(os.path.basename(p), p, bind, {"input_ids": (args.batch, args.seq)}) for p in gpt2.values()]
        head = (f"{'file':28s} {'nodes':>5s} | {'irtools num':>11s} {'onnx-tool':>10s} {'ratio':>6s} "
                f"{'us/node':>15s} | "
                f"{'irt sym+' + str(args.evals):>11s} {'tool x' + str(args.evals):>10s} {'ratio':>6s} | matmul MACs irtools / all MACs onnx-tool")
        print(head)
        print("-" * len(head))
        sums = {"num": 0.0, "tool": 0.0, "sym": 0.0, "n": 0, "ratios": []}
        for name, path, bindings, feeds in files:
            nodes = len(onnx.load(path, load_external_data=False).graph.node)
            t_num, flops = timed(lambda p=path, b=bindings: irtools_numeric(p, b), args.repeats)
            # matmul-class MACs, the quantity onnx-tool reports
            ir_result = analyze_ir(capture_onnx(path, dims=bindings), None, bindings)
            macs = ir_result.value(sum(a["matmul_flops"] for _, a in ir_result.ir.nodes())) / 2
            pts = points if bindings else [{} for _ in points]
            t_sym, _ = timed(lambda p=path, q=pts: irtools_symbolic(p, q), 1 if bindings else args.repeats)
            tool_text, tool_n, ratio_n, ratio_s, tool_macs, per_node = "-", "-", "-", "-", "-", f"{1e6 * t_num / nodes:6.0f} / -"
            if tool_version is not None:
                try:
                    t_tool, tool_macs_v = timed(lambda p=path, f=feeds or {}: onnx_tool_run(p, f), args.repeats)
                    tool_text, tool_n = f"{t_tool:9.4f}s", f"{args.evals * t_tool:9.2f}s"
                    ratio_n, ratio_s = f"{t_num / t_tool:6.2f}", f"{t_sym / (args.evals * t_tool):6.3f}"
                    tool_macs = f"{tool_macs_v:.4g}"
                    per_node = f"{1e6 * t_num / nodes:6.0f} / {1e6 * t_tool / nodes:<6.0f}"
                    sums["num"] += t_num
                    sums["tool"] += t_tool
                    sums["sym"] += t_sym
                    sums["n"] += 1
                    sums["ratios"].append((name, t_num / t_tool))
                except Exception as exc:  # noqa: BLE001 - report the failure, keep going
                    tool_text = "FAILED"
                    tool_macs = f"onnx-tool: {type(exc).__name__}: {' '.join(str(exc).split())[:60]}"
            print(f"{name:28s} {nodes:5d} | {t_num:10.4f}s {tool_text:>10s} {ratio_n:>6s} {per_node:>15s} | "
                  f"{t_sym:10.3f}s {tool_n:>10s} {ratio_s:>6s} | {macs:.4g} / {tool_macs}")
        if sums["n"]:
            slower = [n for n, r in sums["ratios"] if r > 1]
            print(f"\nfiles both tools ran ({sums['n']}): irtools numeric {sums['num']:.3f} s vs onnx-tool "
                  f"{sums['tool']:.3f} s (ratio {sums['num'] / sums['tool']:.2f}; target <= 1 on each file: "
                  f"{len(slower)} slower{': ' + ', '.join(slower) if slower else ''}); "
                  f"irtools symbolic+{args.evals} evals {sums['sym']:.2f} s vs {args.evals} onnx-tool runs "
                  f"{args.evals * sums['tool']:.1f} s (ratio {sums['sym'] / (args.evals * sums['tool']):.3f}; target < 1)")



# ---- whole processes: the command line, cold, as a user runs it -----------------------------

ORT_SHAPES = ("import sys, onnx\n"
              "from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference\n"
              "SymbolicShapeInference.infer_shapes(onnx.load(sys.argv[1], load_external_data=False), auto_merge=True)\n")


def _irtools_cmd(path: str, *extra: str) -> tuple[list[str], None]:
    return [sys.executable, "-m", "irtools.cli", "analyze", path, *extra], None


def _tool_cmd(path: str, tool_path: str) -> tuple[list[str], dict]:
    return [sys.executable, "-m", "onnx_tool", "-i", path], {"PYTHONPATH": tool_path}


def zoo_processes(args, tool_path: str | None) -> None:
    """Per light-zoo file: ``irtools analyze`` vs onnx-tool's CLI (profile + table), whole processes."""
    print(f"\n== whole process per light-zoo file: `irtools analyze F` vs `python -m onnx_tool -i F`, "
          f"{args.runs} paired runs, medians (wall s, cpu s, peak RSS)")
    print(f"{'file':26s} {'irtools':>31s} {'onnx-tool':>31s}   irtools / onnx-tool")
    slower = []
    for path in LIGHT:
        cmds = {"irtools": _irtools_cmd(path)}
        if tool_path:
            cmds["tool"] = _tool_cmd(path, tool_path)
        m = paired(cmds, args.runs)
        tool = m.get("tool", {"error": "not installed"})
        print(f"{os.path.basename(path):26s} {cell(m['irtools']):>31s} {cell(tool):>31s}   {ratios(m['irtools'], tool)}")
        if "error" not in tool and "error" not in m["irtools"] and m["irtools"]["wall_s"] > tool["wall_s"]:
            slower.append(os.path.basename(path))
    print(f"target <= 1.0x wall on every file: {len(slower)} slower{': ' + ', '.join(slower) if slower else ''}")


def large_graphs(args, tool_path: str | None) -> None:
    """GPT-style decoders of ``--large-layers`` layers (gpt_onnx.py): numeric vs onnx-tool,
    symbolic vs onnxruntime's symbolic shape inference (shapes only), whole process and in process."""
    from gpt_onnx import gpt_model  # benchmarks/ is this script's folder

    batch, seq = args.batch, args.seq
    print(f"\n== large GPT-style graphs (benchmarks/gpt_onnx.py, width 64), numeric at batch {batch}, seq {seq}; "
          f"{args.runs} paired runs, medians")
    with tempfile.TemporaryDirectory() as tmp:
        for layers in args.large_layers:
            sym_path, num_path = os.path.join(tmp, f"gpt{layers}.onnx"), os.path.join(tmp, f"gpt{layers}_fixed.onnx")
            onnx.save(gpt_model(layers), sym_path)
            onnx.save(gpt_model(layers, fixed=(batch, seq)), num_path)
            nodes = len(onnx.load(sym_path, load_external_data=False).graph.node)
            print(f"-- {layers} layers, {nodes} nodes")
            num = {"irtools": _irtools_cmd(num_path)}
            if tool_path:
                num["tool"] = _tool_cmd(num_path, tool_path)
            m = paired(num, args.runs)
            tool = m.get("tool", {"error": "not installed"})
            print(f"   numeric   irtools analyze {cell(m['irtools'])}   onnx-tool {cell(tool)}   "
                  f"{ratios(m['irtools'], tool)}")
            sym = {"irtools": _irtools_cmd(sym_path), "ort": ([sys.executable, "-c", ORT_SHAPES, sym_path], None)}
            m = paired(sym, args.runs)
            print(f"   symbolic  irtools analyze {cell(m['irtools'])}   ORT shapes {cell(m['ort'])}   "
                  f"{ratios(m['irtools'], m['ort'])}")
            _large_inprocess(sym_path, num_path, nodes, tool_path is not None)


def _large_inprocess(sym_path: str, num_path: str, nodes: int, with_tool: bool) -> None:
    """In process (this interpreter, imports done): shapes only and the whole analysis."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(sym_path, load_external_data=False)
    t_ort, _ = timed(lambda: SymbolicShapeInference.infer_shapes(model, auto_merge=True), 1)
    t_cap, _ = timed(lambda: capture_onnx(sym_path), 1)
    t_sym, _ = timed(lambda: irtools_numeric(sym_path, {}), 1)
    t_num, _ = timed(lambda: irtools_numeric(num_path, {}), 1)
    t_tool = None
    if with_tool:
        t_tool, _ = timed(lambda: onnx_tool_run(num_path, {}), 1)
    us = 1e6 / nodes
    print(f"   in process: shapes irtools {t_cap:.2f} s ({t_cap * us:.0f} us/node) vs ORT {t_ort:.2f} s "
          f"({t_ort * us:.0f} us/node); whole analysis symbolic {t_sym:.2f} s, numeric {t_num:.2f} s "
          f"({t_num * us:.0f} us/node)" + (f" vs onnx-tool {t_tool:.2f} s ({t_tool * us:.0f} us/node)" if t_tool else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="process,inprocess,large", help="comma-separated: process, inprocess, large")
    ap.add_argument("--runs", type=int, default=5, help="paired whole-process runs (medians)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--evals", type=int, default=100)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--large-layers", type=int, nargs="+", default=[48, 96])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    try:
        import onnx_tool
        tool_version = getattr(onnx_tool, "VERSION", "?")
        tool_path = os.path.dirname(os.path.dirname(onnx_tool.__file__))
    except ImportError:
        tool_version = tool_path = None
        print("onnx-tool is not installed (pip install onnx-tool): irtools times only")
    if "process" in sections:
        zoo_processes(args, tool_path)
    if "inprocess" in sections:
        inprocess(args, tool_version)
    if "large" in sections:
        large_graphs(args, tool_path)


if __name__ == "__main__":
    main()
