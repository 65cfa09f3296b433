"""Deployment question at scale (issue 12): one decode step of a whole model on a target, with
the default (layer-collapsed) analysis and with a full trace, each timed against a bare
``torch.export`` of the full model in the same run. Each measurement runs in a fresh process.

Usage: python benchmarks/scale_decode.py [llama-2-7b llama-3-70b]
(``llama-2-7b`` is a Llama-2-7B-shaped config.json written by this script: hidden 4096, 32
layers, 32 heads, intermediate 11008, vocab 32000.) Targets: ratio ≤ 0.3× collapsed, ≤ 1.5× full.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

LLAMA2_7B = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
BINDINGS = {"batch_size": 1, "seq_len": 1, "cache_len": 2048, "w_bytes": 2, "a_bytes": 2, "kv_bytes": 2}

CHILD = r"""
import json, sys, time
import torch
from irtools.recipes import hf
from irtools.capture.torch.export import bind_inputs, dynamic_spec, nest_var_keyword
model, mode, bindings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
t = time.perf_counter()
if mode == "bare":  # the same model building as irtools does, then a plain export of the decode step
    r = hf.hf_recipe(model, "decode")
    inputs = bind_inputs(r.module, r.args, r.kwargs)
    dyn = nest_var_keyword(r.module, {k: dynamic_spec(v, k, r.dims) for k, v in inputs.items()})
    torch.export.export(r.module, (), inputs, dynamic_shapes=dyn, strict=False)
    extra = {}
else:
    import irtools
    res = irtools.analyze(model, "decode", bindings, collapse_layers=(mode == "collapsed"),
                          target="a100-sxm-80gb", mode="flash")
    report = res.to_dict()
    extra = {"time_s_model": report["time_s"]["value"], "bytes": report["kernel_totals"]["bytes"]["value"],
             "launches": report["kernel_totals"]["count"], "flops": report["totals"]["flops"]["value"]}
print(json.dumps({"wall_s": time.perf_counter() - t, **extra}))
"""


def measure(model: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, model, mode, json.dumps(BINDINGS)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{model} {mode} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(models: list[str]) -> None:
    folder = Path(tempfile.mkdtemp())
    (folder / "config.json").write_text(json.dumps(LLAMA2_7B))
    names = {"llama-2-7b": str(folder / "config.json")}
    print("decode step at cache_len 2048, batch 1, 16-bit, a100-sxm-80gb, flash mode")
    print(f"{'model':<12} {'bare export':>12} {'collapsed':>16} {'full trace':>16}   model time   bytes    launches")
    for model in models:
        path = names.get(model, model)
        bare, col, full = measure(path, "bare"), measure(path, "collapsed"), measure(path, "full")
        assert col["launches"] == full["launches"] and abs(col["time_s_model"] / full["time_s_model"] - 1) < 1e-9
        print(f"{model:<12} {bare['wall_s']:10.2f} s {col['wall_s']:7.2f} s {col['wall_s'] / bare['wall_s']:5.2f}× "
              f"{full['wall_s']:7.2f} s {full['wall_s'] / bare['wall_s']:5.2f}×   {col['time_s_model'] * 1e3:7.2f} ms "
              f"{col['bytes'] / 1e9:6.2f} GB {col['launches']:6d}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["llama-2-7b", "llama-3-70b"])
