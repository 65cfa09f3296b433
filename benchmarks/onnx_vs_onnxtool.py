"""ONNX analysis time: irtools vs onnx-tool on the light model-zoo graphs and a 12-layer GPT-2.

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
import tempfile
import time
import warnings
from contextlib import redirect_stdout

import numpy as np
import onnx

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--evals", type=int, default=100)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    try:
        import onnx_tool
        tool_version = getattr(onnx_tool, "VERSION", "?")
    except ImportError:
        tool_version = None
        print("onnx-tool is not installed (pip install onnx-tool): irtools times only")
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
        head = (f"{'file':28s} {'nodes':>5s} | {'irtools num':>11s} {'onnx-tool':>10s} {'ratio':>6s} | "
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
            tool_text, tool_n, ratio_n, ratio_s, tool_macs = "-", "-", "-", "-", "-"
            if tool_version is not None:
                try:
                    t_tool, tool_macs_v = timed(lambda p=path, f=feeds or {}: onnx_tool_run(p, f), args.repeats)
                    tool_text, tool_n = f"{t_tool:9.4f}s", f"{args.evals * t_tool:9.2f}s"
                    ratio_n, ratio_s = f"{t_num / t_tool:6.2f}", f"{t_sym / (args.evals * t_tool):6.3f}"
                    tool_macs = f"{tool_macs_v:.4g}"
                    sums["num"] += t_num
                    sums["tool"] += t_tool
                    sums["sym"] += t_sym
                    sums["n"] += 1
                    sums["ratios"].append((name, t_num / t_tool))
                except Exception as exc:  # noqa: BLE001 - report the failure, keep going
                    tool_text = "FAILED"
                    tool_macs = f"onnx-tool: {type(exc).__name__}: {' '.join(str(exc).split())[:60]}"
            print(f"{name:28s} {nodes:5d} | {t_num:10.4f}s {tool_text:>10s} {ratio_n:>6s} | "
                  f"{t_sym:10.3f}s {tool_n:>10s} {ratio_s:>6s} | {macs:.4g} / {tool_macs}")
        if sums["n"]:
            slower = [n for n, r in sums["ratios"] if r > 1]
            print(f"\nfiles both tools ran ({sums['n']}): irtools numeric {sums['num']:.3f} s vs onnx-tool "
                  f"{sums['tool']:.3f} s (ratio {sums['num'] / sums['tool']:.2f}; target <= 1 on each file: "
                  f"{len(slower)} slower{': ' + ', '.join(slower) if slower else ''}); "
                  f"irtools symbolic+{args.evals} evals {sums['sym']:.2f} s vs {args.evals} onnx-tool runs "
                  f"{args.evals * sums['tool']:.1f} s (ratio {sums['sym'] / (args.evals * sums['tool']):.3f}; target < 1)")


if __name__ == "__main__":
    main()
