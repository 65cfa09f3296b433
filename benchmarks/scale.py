"""Time and peak memory of irtools on whole HF models (meta device), beside a bare export.

For each model: a bare ``torch.export`` of the meta-device model, irtools' full capture +
analysis, and the block-collapsed analysis (two layers traced, verified identical, repeated
``num_layers`` times). Each measurement runs in a fresh subprocess so peak RSS is its own.
Usage: python benchmarks/scale.py [gpt2 llama-3-8b llama-3-70b]

``--layers 12 32 48 96`` (issue 17) instead traces one model (``--model``, default
llama-3-8b) at each depth and times, apart from capture, the passes, the report (``to_dict``)
and its rendering (the table and the JSON text): per node they must not grow with depth (no
quadratic step), and report + rendering of the 32-layer model stays under a second.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from irtools.recipes import hf
from irtools.capture.torch.export import bind_inputs, dynamic_spec, nest_var_keyword
model, mode = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if mode == "bare":  # the same model building as irtools does, then a plain export
    r = hf.hf_recipe(model, "prefill")
    inputs = bind_inputs(r.module, r.args, r.kwargs)
    dyn = nest_var_keyword(r.module, {k: dynamic_spec(v, k, r.dims) for k, v in inputs.items()})
    torch.export.export(r.module, (), inputs, dynamic_shapes=dyn, strict=False)
    extra = {}
else:
    import irtools
    res = irtools.analyze(model, "prefill", collapse_layers=(mode == "collapsed"))
    extra = {"flops": str(res.totals["flops"])[:80], "nodes": len(res.ir)}
elapsed = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"time_s": elapsed, "peak_rss_mb": rss, **extra}))
"""


DEPTH_CHILD = r"""
import json, resource, sys, time
from irtools import pipeline
from irtools.export.text import RENDERERS
from irtools.recipes import hf
model, layers = sys.argv[1], int(sys.argv[2])
recipe = hf.hf_recipe(model, "prefill")
recipe = recipe.rebuild({recipe.space.layers_field: layers})
marks = [(time.perf_counter(), time.process_time())]
ir = pipeline.capture_recipe(recipe)
marks.append((time.perf_counter(), time.process_time()))
result = pipeline.run_ir(ir, pipeline.Options(scenario="prefill"))
marks.append((time.perf_counter(), time.process_time()))
report = result.to_dict()
marks.append((time.perf_counter(), time.process_time()))
RENDERERS["table"](report), json.dumps(report, indent=2)
marks.append((time.perf_counter(), time.process_time()))
steps = ("capture", "passes", "report", "render")
print(json.dumps({"nodes": len(ir), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  **{s: [b[0] - a[0], b[1] - a[1]] for s, a, b in zip(steps, marks, marks[1:])}}))
"""


def depth_scaling(model: str, depths: list[int]) -> None:
    """Each depth in a fresh process; wall (cpu) seconds per step and microseconds per node."""
    print(f"{model}: capture apart from the rest, wall s (cpu s); us per node of cpu time")
    print(f"{'layers':>6} {'nodes':>6} {'capture':>16} {'passes':>15} {'report':>15} {'render':>15} "
          f"{'report+render':>14} {'us/node: passes':>16} {'report+render':>14}")
    rows = []
    for layers in depths:
        out = subprocess.run([sys.executable, "-c", DEPTH_CHILD, model, str(layers)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{layers:>6} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        m = json.loads(out.stdout.strip().splitlines()[-1])
        n, rr = m["nodes"], [m["report"][i] + m["render"][i] for i in (0, 1)]
        rows.append((layers, n, m["passes"][1] / n, rr[1] / n))
        cells = " ".join(f"{m[s][0]:7.2f} ({m[s][1]:5.2f})" for s in ("capture", "passes", "report", "render"))
        print(f"{layers:>6} {n:>6} {cells} {rr[0]:6.2f} ({rr[1]:5.2f}) {1e6 * m['passes'][1] / n:>16.0f} "
              f"{1e6 * rr[1] / n:>14.0f}")
    if len(rows) > 1:
        (l0, n0, p0, r0), (l1, n1, p1, r1) = rows[0], rows[-1]
        print(f"per-node cpu time, {l1} vs {l0} layers ({n1 / n0:.1f}x the nodes): passes {p1 / p0:.2f}x, "
              f"report+render {r1 / r0:.2f}x (a quadratic step would show ~{n1 / n0:.0f}x)")


def run(model: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, model, mode], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(models: list[str]) -> None:
    print(f"{'model':<14}{'bare export':>14}{'irtools full':>20}{'ratio':>8}{'collapsed':>20}{'ratio':>8}")
    for model in models:
        bare, full, coll = run(model, "bare"), run(model, "full"), run(model, "collapsed")
        if "error" in bare or "error" in full or "error" in coll:
            print(model, bare, full, coll)
            continue

        def cell(m):
            return f"{m['time_s']:6.2f} s {m['peak_rss_mb']:6.0f} MB"

        print(
            f"{model:<14}{bare['time_s']:>12.2f} s{cell(full):>20}{full['time_s'] / bare['time_s']:>8.2f}"
            f"{cell(coll):>20}{coll['time_s'] / bare['time_s']:>8.2f}"
        )
        print(f"{'':<14}bare export peak RSS {bare['peak_rss_mb']:.0f} MB; {full['nodes']} nodes")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--layers" in args:
        i = args.index("--layers")
        depths = [int(a) for a in args[i + 1:] if a.isdigit()]
        model = args[args.index("--model") + 1] if "--model" in args else "llama-3-8b"
        depth_scaling(model, depths or [12, 32, 48, 96])
    else:
        main(args or ["gpt2", "llama-3-8b", "llama-3-70b"])
