"""`irtools plan` at scale, and its training predictions beside Megatron-LM's published figures.

1. Llama-3-70B decode on 8 x h100-sxm (objective throughput): the chosen layout, its serving
   figures, and the wall time of the plan (capture, search).
2. A GPT-3-175B-shaped model (GPT-2 architecture: 96 layers, hidden 12288, 96 heads, vocab 51200,
   sequence 2048) on 1024 x a100-sxm-80gb, training at a global batch of 1536 sequences.
3. Megatron-LM, Narayanan et al. 2021 (SC'21), Table 1 and section 5.1: per-GPU TFLOP/s of
   GPT models on A100s. For each configuration: the layout irtools chooses and its predicted
   TFLOP/s (model FLOPs / step / GPU), and irtools' prediction for Megatron's own layout
   (tp and pp of the table, micro-batch 1, full recompute, data parallel over the rest)
   counted with the paper's formula F = 96·B·s·l·h²·(1 + s/6h + V/16lh), which includes the
   recomputed forward — the figure the paper publishes — with the error.

Usage: ``python benchmarks/parallel.py [--quick]`` (``--quick``: the 175B row only in part 3).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from irtools.plan import PlanOptions, device_model_for, render_table, run_plan
from passes.parallel.device import Layout
from passes.parallel.plan import evaluate_layout, search

#: Narayanan et al. 2021: (name, layers, hidden, heads, tp, pp, GPUs, batch, published TFLOP/s per GPU)
MEGATRON = [
    ("GPT-3 175B (sec. 5.1)", 96, 12288, 96, 8, 8, 1024, 1536, 140),
    ("18.4B (Table 1)", 40, 6144, 48, 8, 1, 256, 1024, 135),
    ("76.1B (Table 1)", 60, 10240, 80, 8, 4, 1024, 1792, 140),
    ("145.6B (Table 1)", 80, 12288, 96, 8, 8, 1536, 2304, 148),
]
SEQ, VOCAB = 2048, 51200


def gpt_config(folder: Path, layers: int, hidden: int, heads: int) -> str:
    path = folder / f"gpt-{layers}x{hidden}.json"
    path.write_text(json.dumps({"model_type": "gpt2", "n_layer": layers, "n_embd": hidden, "n_head": heads,
                                "n_inner": 4 * hidden, "vocab_size": VOCAB, "n_positions": SEQ,
                                "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0}))
    return str(path)


def megatron_flops(batch: int, layers: int, hidden: int) -> float:
    return 96 * batch * SEQ * layers * hidden**2 * (1 + SEQ / (6 * hidden) + VOCAB / (16 * layers * hidden))


def part1() -> None:
    print("== 1. llama-3-70b, decode, 8 x h100-sxm, objective throughput")
    report = run_plan(PlanOptions("llama-3-70b", "h100-sxm", 8, "decode", "throughput"))
    print(render_table(report))
    w = report["wall_s"]
    print(f"wall time: capture {w['capture']:.1f} s, search {w['search']:.2f} s "
          f"({report['evaluated']} layouts), total with serving curves {w['total']:.1f} s\n")


def part2_3(folder: Path, quick: bool) -> None:
    rows = []
    for k, (name, layers, hidden, heads, tp, pp, gpus, batch, published) in enumerate(MEGATRON):
        if quick and k:
            break
        options = PlanOptions(gpt_config(folder, layers, hidden, heads), "a100-sxm-80gb", gpus, "train", "throughput",
                              batch=batch, seq_len=SEQ)
        start = time.perf_counter()
        model = device_model_for(options)
        captured = time.perf_counter()
        result = search(model, gpus, "throughput", batch=batch)
        searched = time.perf_counter()
        if k == 0:
            print(f"== 2. {name}: plan on {gpus} x a100-sxm-80gb, train, batch {batch} x {SEQ}")
            print(f"{len(result.evaluation)} layouts, {len(result.ranked)} fit; wall time: capture {captured - start:.1f} s, "
                  f"search {searched - captured:.2f} s")
            for i in result.ranked[:5]:
                v = result.evaluation[i]["step"]
                print(f"  {result.evaluation.layouts[i].label():40s} {v['tflops_per_device']:7.1f} TFLOP/s/GPU  "
                      f"MFU {v['mfu']:.1%}  step {v['time']:.2f} s  {v['memory'] / 1e9:.1f} GB")
            print()
        best = result.best()
        chosen = result.evaluation[result.ranked[0]]["step"]["tflops_per_device"]
        theirs = Layout(tp=tp, pp=pp, dp=gpus // (tp * pp), micro_batch=1, micro_batches=batch // (gpus // (tp * pp)),
                        recompute="full")
        step = evaluate_layout(model, theirs)["step"]["time"]
        predicted = megatron_flops(batch, layers, hidden) / step / gpus / 1e12
        rows.append((name, gpus, batch, best.label(), chosen, theirs.label(), predicted, published))
    print("== 3. per-GPU TFLOP/s against Megatron-LM (Narayanan et al. 2021)")
    print(f"{'config':24s} {'GPUs':>5} {'batch':>5}  {'irtools layout':34s} {'TFLOP/s':>8}  "
          f"{'Megatron layout':34s} {'predicted':>9} {'published':>9} {'error':>7}")
    for name, gpus, batch, mine, chosen, theirs, predicted, published in rows:
        print(f"{name:24s} {gpus:5d} {batch:5d}  {mine:34s} {chosen:8.1f}  {theirs:34s} {predicted:9.1f} "
              f"{published:9.0f} {(predicted - published) / published:+7.1%}")
    print("\n(roofline at the datasheet's dense peak, eta = 1: no GEMM-efficiency or kernel-overhead calibration "
          "for the A100 target, so predictions are upper bounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="part 3 for the 175B row only")
    parser.add_argument("--skip-decode", action="store_true")
    args = parser.parse_args()
    if not args.skip_decode:
        part1()
    with tempfile.TemporaryDirectory() as tmp:
        part2_3(Path(tmp), args.quick)


if __name__ == "__main__":
    main()
