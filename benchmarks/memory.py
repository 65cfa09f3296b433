"""Peak memory: irtools' symbolic peak against MemTracker, and ``irtools fit`` on large models.

1. Three models larger than the tests' (GPT-2- and Llama-style, eager attention, fp32, and a
   CNN) on CPU: one symbolic analysis, then the peak evaluated at 20 (batch, seq) points,
   against one ``torch.distributed._tools.mem_tracker.MemTracker`` run (real tensors, no grad)
   per point. Prints the error per point (max and mean |error|) and the two times.
2. ``irtools fit`` (the same solve, through the API) for llama-3-8b and llama-3-70b, 16-bit,
   decode at context 8192 in flash mode with a static KV cache: the largest batch on
   h100-sxm, a100-sxm-80gb and h200, and the largest context at batch 1.

Usage: python benchmarks/memory.py [--skip-fit] [--skip-tracker]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from torch import nn

BATCHES = (1, 2, 4, 8)
SEQS = (32, 64, 128, 256, 512)
GPT2 = {"model_type": "gpt2", "n_layer": 4, "n_embd": 256, "n_head": 8, "vocab_size": 2000, "n_positions": 1024}
LLAMA = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 8,
         "num_key_value_heads": 2, "intermediate_size": 688, "vocab_size": 2000}


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for width in (32, 64, 128, 256):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(256, 100)

    def forward(self, x):
        x = self.features(x)
        return self.head(x.mean((2, 3)))


def tracked(model, make) -> int:
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(model)
    with torch.no_grad(), tracker:
        model(**make())
    return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


def versus_tracker() -> None:
    from transformers import AutoModelForCausalLM

    from irtools import analyze_module
    from irtools.recipes import hf
    from passes.memory import memory

    print("irtools (eager mode, Python lifetimes) vs MemTracker, CPU, fp32, no grad; 20 points per model")
    print(f"{'model':<8}{'max |err|':>10}{'mean |err|':>12}{'analysis':>10}{'20 tracker runs':>17}"
          f"{'graph lifetimes: err range':>30}")
    for name in ("gpt2", "llama", "cnn"):
        torch.manual_seed(0)
        if name == "cnn":
            model, sides = CNN().eval(), (32, 64, 96, 128, 160)
            t = time.perf_counter()
            result = analyze_module(model, (torch.randn(2, 3, 32, 32),), dims={"x": {0: "batch_size", 2: "height", 3: "width"}})
            analysis = time.perf_counter() - t
            points = [(b, s, {"x": torch.randn(b, 3, s, s)}, {"batch_size": b, "height": s, "width": s})
                      for b in BATCHES for s in sides]
        else:
            model = AutoModelForCausalLM.from_config(hf.make_config(GPT2 if name == "gpt2" else LLAMA, attn="eager")).eval()
            t = time.perf_counter()
            result = analyze_module(model, (), {"input_ids": torch.zeros(3, 5, dtype=torch.long), "use_cache": False},
                                    {"input_ids": {0: "batch_size", 1: "seq_len"}})
            analysis = time.perf_counter() - t
            points = [(b, s, {"input_ids": torch.randint(0, 2000, (b, s)), "use_cache": False},
                       {"batch_size": b, "seq_len": s}) for b in BATCHES for s in SEQS]
        graph = memory(result.ir, python_refs=False)  # freed at the last use, as a compiled graph does
        errors, graph_errors, tracker_time = [], [], 0.0
        for b, s, inputs, binds in points:
            t = time.perf_counter()
            measured = tracked(model, lambda inputs=inputs: {k: v.clone() if isinstance(v, torch.Tensor) else v
                                                             for k, v in inputs.items()})
            tracker_time += time.perf_counter() - t
            t = time.perf_counter()
            predicted = result.value(result.memory.peak, binds)
            analysis += time.perf_counter() - t
            errors.append(predicted / measured - 1)
            graph_errors.append(result.value(graph.peak, binds) / measured - 1)
            print(f"  {name} b={b} s={s}: irtools {predicted / 2**20:9.2f} MiB  MemTracker {measured / 2**20:9.2f} MiB"
                  f"  {errors[-1]:+.3%}", file=sys.stderr)
        print(f"{name:<8}{max(map(abs, errors)):>10.3%}{statistics.mean(map(abs, errors)):>12.3%}"
              f"{analysis:>9.2f}s{tracker_time:>16.2f}s{min(graph_errors):>+17.1%} .. {max(graph_errors):+.1%}")


def fits() -> None:
    from irtools import analyze
    from irtools.hardware import load_target
    from passes.fit import solve

    print("\nirtools fit: decode at context 8192 (cache_len 8191 + 1 new token), 16-bit activations and KV cache,"
          " flash, static KV cache, 10% reserved; contexts are memory-only (the models' max_positions is 8192)")
    print(f"{'model':<13}{'weights':>13}{'target':>15}{'largest batch':>15}{'context at batch 1':>20}{'analysis':>10}")
    for model in ("llama-3-8b", "llama-3-70b"):
        t = time.perf_counter()
        result = analyze(model, "decode", {"a_bytes": 2, "kv_bytes": 2, "cache_len": 8191, "seq_len": 1},
                         target="h100-sxm", mode="flash")
        elapsed = time.perf_counter() - t
        for w_bytes in (2, 1):
            binds = {**result.bindings, "w_bytes": w_bytes}
            weights = result.value(result.memory.held["weights"], binds)
            for name in ("h100-sxm", "a100-sxm-80gb", "h200"):
                target = load_target(name)
                batch = solve(result.memory.peak, target, binds, "batch_size").answers[0]
                ctx = solve(result.memory.peak, target, {**binds, "batch_size": 1}, "cache_len").answers[0]
                b = batch.largest if batch.largest is not None else 0
                c = ctx.largest + 1 if ctx.largest is not None else 0
                print(f"{model:<13}{weights / 1e9:>9.2f} GB{name:>15}{b:>15}{c:>20}{elapsed:>9.1f}s")


if __name__ == "__main__":
    if "--skip-tracker" not in sys.argv:
        versus_tracker()
    if "--skip-fit" not in sys.argv:
        fits()
