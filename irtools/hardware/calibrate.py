"""Calibration: measure this CPU and write it as a target file (``cpu-local``).

Measures, with torch on the current thread settings: GEMM throughput (``torch.mm`` on
square matrices of several sizes, fp32 and bf16; the best size gives the dense peak), a
STREAM-like copy bandwidth (``dst.copy_(src)`` on a buffer far larger than the caches;
bytes = read + write), the per-op dispatch overhead (a tiny ``torch.add``) and, where the
allocator maps large outputs afresh, the cost of first touching their pages. Two optional
tables refine the roofline (passes/roofline.py): ``gemm_efficiency``, the fraction of the
peak a skinny ``torch.mm`` (m × 1024 @ 1024 × 1024, m = 1 ... 1024) attains as a function of
its smallest dimension, and ``bandwidth_curve``, the copy bandwidth attained per bytes moved
(from cache-resident to DRAM-sized buffers). Every figure's source names how it was
measured; all come from these micro-benchmarks, never from model runs. eta_c and eta_m stay
1.0: the measured figures already are what this machine attains.

``device="cuda"`` runs the same micro-benchmarks on the current GPU (synchronizing after
each timed call; no first-touch term: the caching allocator reuses memory).
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from irtools.files import check_output
from irtools.hardware import Target, TargetError, save_target, user_dir

GEMM_SIZES = (256, 512, 1024)
#: smallest dimension m of the skinny GEMMs (m × SKINNY_NK @ SKINNY_NK × SKINNY_NK) for gemm_efficiency
SKINNY_MS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SKINNY_NK = 1024
#: bytes moved (read + write) by the copies of bandwidth_curve
CURVE_BYTES = tuple(2**p for p in (16, 18, 20, 22, 24, 26, 28))
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


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], budget_s: float = 0.5, min_reps: int = 3, device: str = "cpu") -> float:
    """Best wall time of ``fn`` over repeats filling ``budget_s`` (after one warm-up call);
    on CUDA each call is synchronized and timed with CUDA events."""
    fn()
    _sync(device)
    best, start, reps = float("inf"), time.perf_counter(), 0
    while reps < min_reps or time.perf_counter() - start < budget_s:
        if device == "cuda":
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            fn()
            t1.record()
            t1.synchronize()
            best = min(best, t0.elapsed_time(t1) * 1e-3)
        else:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        reps += 1
    return best


def gemm_flops(n: int, dtype: torch.dtype, budget_s: float = 0.5, device: str = "cpu", m: int | None = None,
               cold_bytes: int = 0) -> float:
    """FLOP/s of an m×n @ n×n ``torch.mm`` (2·m·n² flops; m = n by default).

    ``cold_bytes``: cycle through enough distinct n×n right-hand matrices to fill that many
    bytes, so each call reads its weight from memory rather than from the caches (as a
    model's layers do: each weight is read once per forward)."""
    m = n if m is None else m
    a = torch.randn(m, n).to(device, dtype)
    count = max(1, cold_bytes // (n * n * torch.empty((), dtype=dtype).element_size()))
    bs = [torch.randn(n, n).to(device, dtype) for _ in range(count)]
    it = iter(range(0))

    def call():
        nonlocal it
        i = next(it, None)
        if i is None:
            it = iter(range(1, count))
            i = 0
        torch.mm(a, bs[i])

    return 2 * m * n * n / best_time(call, budget_s, device=device)


def gemm_efficiency(peak: float, ms=SKINNY_MS, nk: int = SKINNY_NK, budget_s: float = 0.1,
                    device: str = "cpu", step: Callable[[str], None] | None = None, rounds: int = 3,
                    cold_bytes: int = COPY_BYTES) -> list[tuple[float, float]]:
    """[(m, attained / peak)] of fp32 ``torch.mm`` of m × nk @ nk × nk, capped at 1, the
    nk × nk weights cycled through ``cold_bytes`` of distinct matrices (read from memory).

    The sizes are swept ``rounds`` times and each keeps its best rate, so a burst of load
    from another process during one size does not bend the curve; the curve is then made
    non-decreasing in m (a running maximum): a larger smallest dimension only adds operand
    reuse, so a dip can only be interference (best times are never too fast)."""
    best = dict.fromkeys(ms, 0.0)
    for r in range(rounds):
        for m in ms:
            best[m] = max(best[m], gemm_flops(nk, torch.float32, budget_s / rounds, device, m=m, cold_bytes=cold_bytes))
            if step and r == rounds - 1:
                step(f"gemm m={m}")
    out, running = [], 0.0
    for m in ms:
        running = max(running, min(1.0, best[m] / peak))
        out.append((float(m), running))
    return out


def copy_bandwidth(nbytes: int = COPY_BYTES, budget_s: float = 1.0, device: str = "cpu") -> float:
    """Bytes/s of a copy of ``nbytes`` (read + write: 2·nbytes moved)."""
    src = torch.ones(max(1, nbytes // 4), device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / best_time(lambda: dst.copy_(src), budget_s, device=device)


def bandwidth_curve(sizes=CURVE_BYTES, budget_s: float = 0.1, device: str = "cpu",
                    step: Callable[[str], None] | None = None, rounds: int = 3) -> list[tuple[float, float]]:
    """[(bytes moved, B/s)] of fp32 copies moving ``sizes`` bytes (half read, half written),
    best of ``rounds`` sweeps over the sizes."""
    best = dict.fromkeys(sizes, 0.0)
    for r in range(rounds):
        for moved in sizes:
            best[moved] = max(best[moved], copy_bandwidth(moved // 2, budget_s / rounds, device))
            if step and r == rounds - 1:
                step(f"copy {moved >> 10} KiB")
    return [(float(m), best[m]) for m in sizes]


def first_touch(sizes_mib=(8, 16, 32, 48, 64, 128), budget_s: float = 0.15, attempts: int = 3) -> tuple[float | None, float | None]:
    """(bytes/s, threshold bytes) of faulting in the fresh pages of a large new output.

    Compares an allocating copy (``clone``) with a copy into a reused buffer at growing
    sizes; the threshold is the smallest size from which every larger size shows the clone
    taking over 1.5 times as long (the allocator mmaps blocks that large; glibc's dynamic
    threshold tops out at 32 MiB), and the extra time per output byte over those sizes (the
    best) gives the bandwidth. At least the two largest sizes must show it; the sweep is
    retried up to ``attempts`` times, since load from other processes can hide the effect.
    (None, None) when no sweep shows it."""
    for _ in range(attempts):
        flags, rates = [], []
        for mib in sizes_mib:
            n = mib * 2**20
            src = torch.ones(n // 4)
            dst = torch.empty_like(src)
            t_copy = best_time(lambda d=dst, s=src: d.copy_(s), budget_s)
            t_clone = best_time(lambda s=src: s.clone(), budget_s)
            flags.append(t_clone > 1.5 * t_copy)
            rates.append(n / (t_clone - t_copy) if t_clone > t_copy else 0.0)
            del src, dst
        start = len(flags)
        while start > 0 and flags[start - 1]:
            start -= 1
        if len(flags) - start >= 2:
            return max(rates[start:]), float(sizes_mib[start] * 2**20)
    return None, None


def dispatch_overhead(reps: int = 2000, device: str = "cpu") -> float:
    """Seconds per tiny op (``torch.add`` of 8 floats): the per-kernel launch cost
    (on CUDA: back-to-back launches, synchronized once per batch)."""
    x, y = torch.ones(8, device=device), torch.ones(8, device=device)
    for _ in range(100):
        torch.add(x, y)
    _sync(device)
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.add(x, y)
        _sync(device)
        samples.append((time.perf_counter() - t0) / reps)
    return sorted(samples)[len(samples) // 2]


def calibrate(progress: bool = True, path: str | Path | None = None, name: str = "cpu-local", budget_s: float = 0.5,
              device: str = "cpu", tables: bool = True, curve: bool = False, force: bool = False) -> Target:
    """Measure this machine (or, with ``device="cuda"``, the current GPU) and write ``<name>.toml``
    (default: the user target dir). ``tables``: also measure ``gemm_efficiency``; ``curve``: also
    ``bandwidth_curve`` (off by default: a lone copy loop keeps its buffers warmer than a model's
    chain of kernels does, see docs/validation/cpu-accuracy.md). An existing file needs ``force``
    (checked before measuring; written through a temporary file and a rename)."""
    out = Path(path) if path is not None else user_dir() / f"{name}.toml"
    check_output(out, force, TargetError)
    steps = len(GEMM_SIZES) * len(GEMM_DTYPES) + 3 + (len(SKINNY_MS) if tables else 0) + (len(CURVE_BYTES) if curve else 0)
    bar = Progress(steps, progress)
    if device == "cuda":
        where = torch.cuda.get_device_name()
        stamp = f"{platform.node()} {where}, torch {torch.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    else:
        where = platform.processor() or platform.machine()
        stamp = f"{platform.node()} {where}, torch {torch.__version__}, " \
                f"{torch.get_num_threads()} threads, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    peaks, sources = {}, {}
    for dname, dtype in GEMM_DTYPES.items():
        rates = {}
        for n in GEMM_SIZES:
            rates[n] = gemm_flops(n, dtype, budget_s, device)
            bar.step(f"gemm {dname} {n}")
        best = max(rates, key=rates.get)
        peaks[dname] = rates[best]
        detail = ", ".join(f"{n}: {r / 1e9:.1f}" for n, r in rates.items())
        sources[f"peak_flops.{dname}"] = f"measured by irtools calibrate: dense torch.mm {dname}, best of sizes (GFLOP/s {detail}) on {stamp}"
    bw = copy_bandwidth(COPY_BYTES, budget_s=2 * budget_s, device=device)
    bar.step("copy bandwidth")
    sources["memory_bandwidth"] = f"measured by irtools calibrate: copy_ of {COPY_BYTES >> 20} MiB fp32, read+write bytes, best time, on {stamp}"
    extra: dict = {}
    if tables:
        extra["gemm_efficiency"] = tuple(gemm_efficiency(peaks["fp32"], SKINNY_MS, SKINNY_NK, budget_s=0.5 * budget_s, device=device, step=bar.step,
                                                                cold_bytes=COPY_BYTES))
        sources["gemm_efficiency"] = (f"measured by irtools calibrate on {stamp}: fp32 torch.mm of m x {SKINNY_NK} @ {SKINNY_NK} x "
                                      f"{SKINNY_NK} (weights cycled through {COPY_BYTES >> 20} MiB: read from memory), best time of 3 sweeps, attained FLOP/s / peak_flops.fp32 at m = smallest dimension, "
                                      "running maximum over m")
    if curve:
        extra["bandwidth_curve"] = tuple(bandwidth_curve(CURVE_BYTES, budget_s=0.2 * budget_s, device=device, step=bar.step))
        sources["bandwidth_curve"] = (f"measured by irtools calibrate on {stamp}: fp32 copy_ into a reused buffer, bytes moved "
                                      "(read + write) per best time, buffers reused (warm caches)")
    if device == "cpu":
        ft_bw, ft_threshold = first_touch(budget_s=0.3 * budget_s)
        if ft_bw:
            extra.update(first_touch_bandwidth=ft_bw, first_touch_threshold=ft_threshold)
            note = f"measured by irtools calibrate: clone vs copy_ into a reused buffer at 8-128 MiB fp32, on {stamp}"
            sources["first_touch_bandwidth"] = note + " (output bytes per extra second)"
            sources["first_touch_threshold"] = note + " (smallest size from which clone takes over 1.5 times as long)"
    bar.step("first-touch cost")
    overhead = dispatch_overhead(device=device)
    bar.step("dispatch overhead")
    sources["launch_overhead"] = f"measured by irtools calibrate: median seconds per torch.add of 8 floats, on {stamp}"
    if device == "cuda":
        mem = float(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
        sources["memory_size"] = "torch.cuda.get_device_properties().total_memory"
        sources["gemm_epilogue_fusion"] = "Inductor's CUDA backend fuses GEMM epilogues (Triton templates)"
    else:
        mem = _memory_size()
        sources["memory_size"] = "os.sysconf(SC_PAGE_SIZE * SC_PHYS_PAGES) of this machine"
        sources["gemm_epilogue_fusion"] = "Inductor's CPU backend calls extern GEMMs (mkldnn/BLAS) and fuses bias only"
    for key in ("eta_c", "eta_m"):
        sources[key] = "1.0: the measured figures are attained throughputs"
    threads = "" if device == "cuda" else f", {torch.get_num_threads()} threads"
    target = Target(
        name=name,
        description=f"this {'GPU' if device == 'cuda' else 'CPU'} ({where}{threads}), calibrated",
        peak_flops=peaks,
        memory_bandwidth=bw,
        memory_size=mem,
        launch_overhead=overhead,
        gemm_epilogue_fusion=device == "cuda",
        sources=sources,
        **extra,
    )
    save_target(target, out, force=force)
    return Target(**{**target.__dict__, "path": str(out)})


def _memory_size() -> float:
    try:
        import os

        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8e9


__all__ = ["Progress", "bandwidth_curve", "calibrate", "copy_bandwidth", "dispatch_overhead", "first_touch", "gemm_efficiency", "gemm_flops"]
