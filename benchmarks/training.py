"""Training-step analysis: time to analyze, and what it predicts.

1. Time to analyze a training step (AdamW, forward + backward + optimizer, memory, roofline on
   h100-sxm) of GPT-2 small and of Llama-3-8B (collapsed: three blocks traced, 32 counted), cold,
   in a fresh process each, against FlopCounterMode + MemTracker running one real step of GPT-2
   small (random weights, fp32) on this CPU.
2. The predicted step time, tokens/s and MFU of Llama-3-8B on h100-sxm at batch 8 x 4096,
   16-bit mixed precision (bf16 weights and activations, fp32 master weights and AdamW states),
   flash mode, without and with full recomputation.

Run: ``python benchmarks/training.py`` (each figure is one run on this machine; noisy).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPT2_REAL = {"batch_size": 1, "seq_len": 1024}
LLAMA = {"batch_size": 8, "seq_len": 4096, "a_bytes": 2, "w_bytes": 2}

ANALYZE = """
import json, sys, time
t = time.perf_counter()
import irtools
from irtools.pipeline import Options, run
model, recompute, bindings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
r = run(Options(model=model, scenario="train", target="h100-sxm", mode="flash", recompute=recompute, bindings=bindings))
tr = r.training
out = {"seconds": time.perf_counter() - t, "collapsed": r.ir.meta.collapse is not None,
       "step_flops": r.value(tr.step_flops), "model_flops": r.value(tr.model_flops),
       "peak_bytes": r.value(tr.memory.peak), "step_s": r.value(tr.time["step"]),
       "tokens_per_s": r.value(tr.tokens_per_s), "mfu": r.value(tr.mfu), "hfu": r.value(tr.hfu),
       "phases_s": {k: r.value(v) for k, v in tr.time.items()}}
print(json.dumps(out))
"""

REAL = """
import json, sys, time
import torch
t0 = time.perf_counter()
from torch.distributed._tools.mem_tracker import MemTracker
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPT2Config, GPT2LMHeadModel
b, s = int(sys.argv[1]), int(sys.argv[2])
model = GPT2LMHeadModel(GPT2Config()).train()
opt = torch.optim.AdamW(model.parameters())
ids = torch.randint(0, 50257, (b, s))
t1 = time.perf_counter()
tracker = MemTracker()
tracker.track_external(model, opt, ids)
with tracker, FlopCounterMode(display=False) as counter:
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad()
t2 = time.perf_counter()
peak = next(iter(tracker.get_tracker_snapshot("peak").values()))["Total"]
print(json.dumps({"seconds": t2 - t0, "step_seconds": t2 - t1, "flops": counter.get_total_flops(), "peak_bytes": peak}))
"""


def _run(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    real = _run(REAL, str(GPT2_REAL["batch_size"]), str(GPT2_REAL["seq_len"]))
    gpt2 = _run(ANALYZE, "gpt2", "none", json.dumps(GPT2_REAL))
    llama = _run(ANALYZE, "llama-3-8b", "none", json.dumps(LLAMA))
    llama_full = _run(ANALYZE, "llama-3-8b", "full", json.dumps(LLAMA))
    print("1. time to analyze a training step (cold process each)")
    print(f"   GPT-2 small, irtools (collapsed={gpt2['collapsed']}): {gpt2['seconds']:.1f} s "
          f"(FLOPs {gpt2['step_flops']:.4g} per step, peak {gpt2['peak_bytes'] / 1e9:.2f} GB at b=1, s=1024)")
    print(f"   GPT-2 small, one real step under FlopCounterMode + MemTracker: {real['seconds']:.1f} s "
          f"(the step {real['step_seconds']:.1f} s; FLOPs {real['flops']:.4g}, peak {real['peak_bytes'] / 1e9:.2f} GB)")
    print(f"   Llama-3-8B, irtools (collapsed={llama['collapsed']}): {llama['seconds']:.1f} s")
    print("2. Llama-3-8B on h100-sxm, batch 8 x 4096, bf16 mixed precision, AdamW, flash mode")
    for name, r in (("no recompute", llama), ("full recompute", llama_full)):
        print(f"   {name}: step {r['step_s']:.3f} s, {r['tokens_per_s']:,.0f} tokens/s, MFU {r['mfu']:.1%} "
              f"(HFU {r['hfu']:.1%}), peak memory {r['peak_bytes'] / 1e9:.0f} GB, "
              f"model FLOPs {r['model_flops'] / 1e15:.3f} PFLOP")
    print(json.dumps({"real_gpt2": real, "gpt2": gpt2, "llama": llama, "llama_full": llama_full}, indent=1))


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(benchmark wall time {time.perf_counter() - start:.0f} s)")
