"""How fast a roofline sweep evaluates: points per second on one core.

Captures the seed's GPT2Attention (decode scenario), builds its flash-mode kernels, and
evaluates the symbolic total time over a grid of batch_size × seq_len × cache_len
(10⁶ points) for one target and then for every packaged target. Compile (lambdify) time
is printed apart from evaluation time. Usage: ``python benchmarks/sweep_speed.py [--points N]``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy's elementwise ops are single-threaded anyway

import numpy as np  # noqa: E402

from irtools import analyze  # noqa: E402
from irtools.hardware import list_targets  # noqa: E402
from irtools.ir.symbols import sym  # noqa: E402
from passes.fusion import build_kernels  # noqa: E402
from passes.roofline import compile_expr, estimate, grid_product, sweep, time_expr  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--mode", default="flash")
    args = parser.parse_args()
    side = round(args.points ** (1 / 3))
    grid = grid_product(batch_size=np.arange(1, side + 1), seq_len=np.arange(1, side + 1), cache_len=np.linspace(0, 8192, side).round())
    n = len(grid["batch_size"])
    result = analyze("gpt2-attention", "decode")
    kg = build_kernels(result.ir, args.mode)
    bindings = {"a_bytes": 2, "w_bytes": 2, "kv_bytes": 2}
    base = estimate(kg, "h100-sxm", bindings)

    expr = time_expr(kg, "h100-sxm", bindings)
    names = sorted(str(s) for s in expr.free_symbols)
    t0 = time.perf_counter()
    fn = compile_expr(expr, names)
    compile_s = time.perf_counter() - t0
    args_ = [grid[k] for k in names]
    fn(*args_)
    reps, t0 = 5, time.perf_counter()
    for _ in range(reps):
        fn(*args_)
    eval_s = (time.perf_counter() - t0) / reps
    print(f"model GPT2Attention decode, mode {args.mode}: {len(kg)} kernels, symbols {', '.join(names)}")
    print(f"one target (h100-sxm): {n:,} points, compile {compile_s * 1e3:.1f} ms, evaluate {eval_s * 1e3:.1f} ms "
          f"-> {n / eval_s / 1e6:.2f} M points/s (evaluation), {n / (eval_s + compile_s) / 1e6:.2f} M points/s (with compile)")

    targets = list_targets(include_user=False)
    t0 = time.perf_counter()
    out = sweep(base, grid, targets)
    total_s = time.perf_counter() - t0
    print(f"all {len(targets)} targets via sweep(): {n * len(targets):,} points in {total_s:.2f} s "
          f"-> {n * len(targets) / total_s / 1e6:.2f} M points/s (compile included)")
    want = {"batch_size": 8, "seq_len": 1, "cache_len": 4096}
    i = int(np.argmin(sum(np.abs(grid[k] - v) for k, v in want.items())))
    point = {k: int(v[i]) for k, v in grid.items()}
    for name in targets:
        print(f"  {name:16s} bf16 decode time at {point}: {out[name][i] * 1e6:9.2f} us")
    assert sym("cache_len") in expr.free_symbols


if __name__ == "__main__":
    main()
