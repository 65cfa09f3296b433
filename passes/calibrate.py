"""Calibration: measure this CPU and write it as a target file (``cpu-local``).

Measures, with torch on the current thread settings: GEMM throughput (``torch.mm`` on
square matrices of several sizes, fp32 and bf16; the best size gives the dense peak), a
STREAM-like copy bandwidth (``dst.copy_(src)`` on a buffer far larger than the caches;
bytes = read + write), the per-op dispatch overhead (a tiny ``torch.add``) and, where the
allocator maps large outputs afresh, the cost of first touching their pages. Every
figure's source names how it was measured. Efficiencies stay 1.0: the measured figures
already are what this machine attains.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from irtools.hardware import Target, save_target, user_dir

GEMM_SIZES = (256, 512, 1024)
GEMM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
COPY_BYTES = 128 * 2**20


class Progress:
    """A one-line text progress bar on stderr."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30):
        self.total, self.done, self.enabled, self.width = total, 0, enabled, width

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        sys.stderr.write(f"\rcalibrate [{bar}] {self.done}/{self.total} {label:<28}")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def best_time(fn: Callable[[], object], budget_s: float = 0.5, min_reps: int = 3) -> float:
    """Best wall time of ``fn`` over repeats filling ``budget_s`` (after one warm-up call)."""
    fn()
    best, start, reps = float("inf"), time.perf_counter(), 0
    while reps < min_reps or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best


def gemm_flops(n: int, dtype: torch.dtype, budget_s: float = 0.5) -> float:
    """FLOP/s of an n×n×n ``torch.mm`` (2·n³ flops)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n**3 / best_time(lambda: torch.mm(a, b), budget_s)


def copy_bandwidth(nbytes: int = COPY_BYTES, budget_s: float = 1.0) -> float:
    """Bytes/s of a large copy (read + write)."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    return 2 * nbytes / best_time(lambda: dst.copy_(src), budget_s)


def first_touch(sizes_mib=(8, 16, 32, 48, 64, 128), budget_s: float = 0.15) -> tuple[float | None, float | None]:
    """(bytes/s, threshold bytes) of faulting in the fresh pages of a large new output.

    Compares an allocating copy (``clone``) with a copy into a reused buffer at growing
    sizes; the first size where the clone takes over twice as long is the threshold (the
    allocator mmaps blocks that large), and the extra time per output byte at the largest
    size gives the bandwidth. (None, None) when no size shows the effect."""
    threshold = None
    extra = 0.0
    for mib in sizes_mib:
        n = mib * 2**20
        src = torch.ones(n // 4)
        dst = torch.empty_like(src)
        t_copy = best_time(lambda d=dst, s=src: d.copy_(s), budget_s)
        t_clone = best_time(lambda s=src: s.clone(), budget_s)
        if t_clone > 2 * t_copy:
            threshold = threshold or n
            extra = max(extra, n / (t_clone - t_copy))
        elif threshold is not None:
            return None, None  # not monotonic: no clear allocator effect
    return (extra, float(threshold)) if threshold else (None, None)


def dispatch_overhead(reps: int = 2000) -> float:
    """Seconds per tiny op (``torch.add`` of 8 floats): the per-kernel launch cost on CPU."""
    x, y = torch.ones(8), torch.ones(8)
    for _ in range(100):
        torch.add(x, y)
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.add(x, y)
        samples.append((time.perf_counter() - t0) / reps)
    return sorted(samples)[len(samples) // 2]


def calibrate(progress: bool = True, path: str | Path | None = None, name: str = "cpu-local", budget_s: float = 0.5) -> Target:
    """Measure this machine and write ``<name>.toml`` (default: the user target dir)."""
    steps = len(GEMM_SIZES) * len(GEMM_DTYPES) + 3
    bar = Progress(steps, progress)
    stamp = f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, " \
            f"{torch.get_num_threads()} threads, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    peaks, sources = {}, {}
    for dname, dtype in GEMM_DTYPES.items():
        rates = {}
        for n in GEMM_SIZES:
            rates[n] = gemm_flops(n, dtype, budget_s)
            bar.step(f"gemm {dname} {n}")
        best = max(rates, key=rates.get)
        peaks[dname] = rates[best]
        detail = ", ".join(f"{n}: {r / 1e9:.1f}" for n, r in rates.items())
        sources[f"peak_flops.{dname}"] = f"measured by irtools calibrate: dense torch.mm {dname}, best of sizes (GFLOP/s {detail}) on {stamp}"
    bw = copy_bandwidth(budget_s=2 * budget_s)
    bar.step("copy bandwidth")
    sources["memory_bandwidth"] = f"measured by irtools calibrate: copy_ of {COPY_BYTES >> 20} MiB fp32, read+write bytes, best time, on {stamp}"
    ft_bw, ft_threshold = first_touch(budget_s=0.3 * budget_s)
    bar.step("first-touch cost")
    extra = {}
    if ft_bw:
        extra = {"first_touch_bandwidth": ft_bw, "first_touch_threshold": ft_threshold}
        note = f"measured by irtools calibrate: clone vs copy_ into a reused buffer at 8-128 MiB fp32, on {stamp}"
        sources["first_touch_bandwidth"] = note + " (output bytes per extra second)"
        sources["first_touch_threshold"] = note + " (first size where clone takes over twice as long)"
    overhead = dispatch_overhead()
    bar.step("dispatch overhead")
    sources["launch_overhead"] = f"measured by irtools calibrate: median seconds per torch.add of 8 floats, on {stamp}"
    mem = _memory_size()
    sources["memory_size"] = "os.sysconf(SC_PAGE_SIZE * SC_PHYS_PAGES) of this machine"
    for key in ("eta_c", "eta_m"):
        sources[key] = "1.0: the measured figures are attained throughputs"
    sources["gemm_epilogue_fusion"] = "Inductor's CPU backend calls extern GEMMs (mkldnn/BLAS) and fuses bias only"
    target = Target(
        name=name,
        description=f"this CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), calibrated",
        peak_flops=peaks,
        memory_bandwidth=bw,
        memory_size=mem,
        launch_overhead=overhead,
        gemm_epilogue_fusion=False,
        sources=sources,
        **extra,
    )
    out = Path(path) if path is not None else user_dir() / f"{name}.toml"
    save_target(target, out)
    return Target(**{**target.__dict__, "path": str(out)})


def _memory_size() -> float:
    try:
        import os

        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8e9


__all__ = ["Progress", "calibrate", "copy_bandwidth", "dispatch_overhead", "first_touch", "gemm_flops"]
