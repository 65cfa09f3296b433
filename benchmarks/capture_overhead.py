"""Capture + full analysis of a 12-layer GPT-2 small vs a bare torch.export, in one run.

Prints both times and their ratio (target, issue 17: analysis adds <= 10% on top of
torch.export). Wall time and this process's CPU time are both measured: on a shared machine
the CPU time is the steadier figure. Random weights, built from a config: nothing is downloaded.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.export import Dim
from transformers import GPT2Config, GPT2LMHeadModel

from irtools import analyze_module


def clear_caches() -> None:
    """Drop irtools' per-process caches (parsed stack traces, scopes) and sympy's cache."""
    import sympy.core.cache

    from irtools.capture.torch import fx_nodes

    fx_nodes.parse_frames.cache_clear()
    fx_nodes._scope_of.cache_clear()
    sympy.core.cache.clear_cache()


def main(repeats: int = 7) -> None:
    cfg = GPT2Config()  # GPT-2 small: 12 layers, 768 hidden, 12 heads
    cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (3, 5))
    dims = {"input_ids": {0: "batch_size", 1: "seq_len"}}
    bare, full, bare_cpu, full_cpu = [], [], [], []
    for _ in range(repeats):
        clear_caches()  # both runs start cold, as a fresh process would
        t, c = time.perf_counter(), time.process_time()
        torch.export.export(model, (), {"input_ids": ids, "use_cache": False},
                            dynamic_shapes={"input_ids": {0: Dim.DYNAMIC, 1: Dim.DYNAMIC}, "use_cache": None}, strict=False)
        bare.append(time.perf_counter() - t)
        bare_cpu.append(time.process_time() - c)
        clear_caches()
        t, c = time.perf_counter(), time.process_time()
        result = analyze_module(model, (ids,), {"use_cache": False}, dims)
        full.append(time.perf_counter() - t)
        full_cpu.append(time.process_time() - c)
    print(f"GPT-2 small (12 layers), {len(result.ir)} graph nodes, {repeats} alternating cold runs each")
    for label, pick in (("best", min), ("median", statistics.median)):
        for kind, bs, fs in (("wall", bare, full), ("cpu", bare_cpu, full_cpu)):
            b, f = pick(bs), pick(fs)
            print(f"{label:>6} {kind:>4}: bare torch.export {b:6.3f} s   irtools capture+analysis {f:6.3f} s   "
                  f"ratio {f / b:.3f} ({100 * (f / b - 1):+.1f}%; target <= +10%)")
    print(f"total FLOPs: {result.totals['flops']}")


if __name__ == "__main__":
    main()
