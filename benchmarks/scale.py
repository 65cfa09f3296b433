"""Time and peak memory of irtools on whole HF models (meta device), beside a bare export.

For each model: a bare ``torch.export`` of the meta-device model, irtools' full capture +
analysis, and the block-collapsed analysis (two layers traced, verified identical, repeated
``num_layers`` times). Each measurement runs in a fresh subprocess so peak RSS is its own.
Usage: python benchmarks/scale.py [gpt2 llama-3-8b llama-3-70b]
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
    main(sys.argv[1:] or ["gpt2", "llama-3-8b", "llama-3-70b"])
