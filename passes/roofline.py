"""Roofline pass: kernels of a :class:`~passes.fusion.KernelGraph` -> time on a target.

Per kernel: ``time = Max(flops / (peak[dtype]·η_c), bytes / (BW·η_m)) + launch_overhead``,
a sympy expression in the standard symbols, so one estimate answers every shape and a
sweep is one vectorized evaluation. The peak's dtype comes from the activation precision
``a_bytes`` (weights may be narrower: int4 weights with bf16 activations compute in bf16):
4 -> fp32, 2 -> bf16, 1 -> fp8, 0.5 -> fp4 (a target without that dtype falls back to the
next wider one). GEMM-class kernels (``matmul_flops`` > 0) use the matrix peak; others run
on vector units and use the fp32 (fp64 for 8-byte activations) peak. When ``a_bytes`` is
not bound the peak is a ``Piecewise`` in ``a_bytes``. Kernels run one after another: the
model's time is the sum of its kernels'. A CPU target may add a first-touch term for
outputs large enough to be freshly mapped by the allocator (``first_touch_*`` figures).

Two optional target tables refine this where a target has them (``irtools calibrate``
measures both on a CPU): ``gemm_efficiency`` scales the peak of a GEMM kernel by the
fraction attained at its smallest dimension min(M, N, K) (skinny decode GEMMs run far below
the square-GEMM peak), and ``bandwidth_curve`` gives the bandwidth attained by a kernel
moving that many bytes (cache-resident working sets stream faster than DRAM). Both are
interpolated linearly between their points and clamped at the ends, as sympy Piecewise
expressions, so times stay symbolic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy

from irtools.hardware import Target, load_target
from irtools.ir.symbols import as_expr, from_kv_len, normalize_bindings, sym
from passes.fusion import Kernel, KernelGraph

DTYPE_OF_BYTES = ((0.5, "fp4"), (1, "fp8"), (2, "bf16"), (4, "fp32"), (8, "fp64"))
A_BYTES = sym("a_bytes")


def compute_dtype(a_bytes: float, matmul: bool = True) -> str:
    """The peak a kernel runs at for activations of ``a_bytes`` bytes per element."""
    if not matmul:
        return "fp64" if a_bytes >= 8 else "fp32"
    for size, dtype in DTYPE_OF_BYTES:
        if a_bytes <= size:
            return dtype
    return "fp64"


def peak_expr(target: Target, bindings: Mapping[str, float], matmul: bool = True) -> sympy.Expr:
    """The dense peak (FLOP/s) for a kernel: a number, or a Piecewise in ``a_bytes`` when unbound."""
    if "a_bytes" in bindings:
        return sympy.Float(target.peak(compute_dtype(float(bindings["a_bytes"]), matmul)))
    if not matmul:
        return sympy.Piecewise((target.peak("fp32"), A_BYTES <= 4), (target.peak("fp64"), True))
    pieces = [(target.peak(d), A_BYTES <= s) for s, d in DTYPE_OF_BYTES[:-1]]
    return sympy.Piecewise(*pieces, (target.peak("fp64"), True))


@dataclass
class KernelTime:
    """Roofline time of one kernel: symbolic terms and their values at the bindings."""

    kernel: Kernel
    compute: sympy.Expr  # flops / (peak·η_c)
    memory: sympy.Expr  # bytes / (BW·η_m)
    time: sympy.Expr  # Max(compute, memory) + launch overhead
    dtype: str | None  # peak dtype at the bindings (None when a_bytes is unbound)
    peak: float | None
    values: dict[str, float | None] = field(default_factory=dict)  # flops, bytes, compute, memory, time

    @property
    def bound(self) -> str | None:
        c, m = self.values.get("compute"), self.values.get("memory")
        if c is None or m is None:
            return None
        return "compute" if c >= m else "memory"

    @property
    def attainable_flops(self) -> float | None:
        """Roofline attainable FLOP/s: min(peak·η_c, intensity·BW·η_m) at the bindings."""
        f, c, m = (self.values.get(k) for k in ("flops", "compute", "memory"))
        if None in (f, c, m) or f == 0:
            return None
        return f / max(c, m)


@dataclass
class Rollup:
    """Time summed over the kernels of one module or one source line."""

    key: str
    label: str
    time: sympy.Expr
    value: float | None
    kernels: int


@dataclass
class RooflineResult:
    """Times of every kernel of a kernel graph on one target at some bindings."""

    kernel_graph: KernelGraph
    target: Target
    bindings: dict[str, float]
    kernels: list[KernelTime]
    time: sympy.Expr
    value: float | None
    modules: list[Rollup]
    lines: list[Rollup]

    @property
    def mode(self) -> str:
        return self.kernel_graph.mode


def evaluate_all(exprs: list, bindings: Mapping[str, float]) -> list[float | None]:
    """Values of many expressions at once (one ``lambdify``); None where symbols stay free."""
    bound = {sym(k): v for k, v in bindings.items()}
    exprs = [from_kv_len(as_expr(e)) for e in exprs]
    ok = [i for i, e in enumerate(exprs) if e.free_symbols <= set(bound)]
    out: list[float | None] = [None] * len(exprs)
    if ok:
        names = sorted(set().union(*(exprs[i].free_symbols for i in ok)), key=str)
        fn = sympy.lambdify(names, [exprs[i] for i in ok], "numpy")
        for i, v in zip(ok, fn(*(bound[s] for s in names))):
            out[i] = finite_float(v)
    return out


def finite_float(v) -> float | None:
    """``float(v)``, or None where it is not a finite float (an integer past 1e308, inf, nan):
    a report never carries a number that is not one (issue 18)."""
    try:
        out = float(v)
    except (OverflowError, TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def interpolate(points, x) -> sympy.Expr:
    """Piecewise-linear interpolation of ``[(x, y), ...]`` (x ascending) at ``x``, clamped at the ends."""
    points = [(sympy.Float(a), sympy.Float(b)) for a, b in points]
    x = as_expr(x)
    if x.is_number:
        xv = float(x)
        if xv <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if xv <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return points[-1][1]
    pieces = [(points[0][1], x <= points[0][0])]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        pieces.append((y0 + (y1 - y0) * (x - x0) / (x1 - x0), x <= x1))
    pieces.append((points[-1][1], True))
    return sympy.Piecewise(*pieces)


def gemm_dims(kernel_graph: KernelGraph, kernel: Kernel) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr] | None:
    """(M, N, K) of a kernel's GEMM (its anchor ``matmul`` node; batch dims left out), or None.

    M and N are the output's last two dims (M = 1 for a vector output); K comes from the
    node's matmul FLOPs, 2·batch·M·N·K."""
    if kernel.matmul_flops == 0 or not kernel.anchor or kernel.anchor not in kernel_graph.ir.graph:
        return None
    attrs = kernel_graph.ir.graph.nodes[kernel.anchor]
    if attrs.get("kind") != "matmul":
        return None
    out = next((o for o in attrs.get("outputs", []) if o is not None), None)
    mm = attrs.get("matmul_flops", 0)
    if out is None or not out.shape or mm == 0:
        return None
    m = out.shape[-2] if len(out.shape) >= 2 else sympy.Integer(1)
    n = out.shape[-1]
    k = sympy.factor(sympy.cancel(sympy.sympify(mm) / (2 * out.numel)))
    return sympy.sympify(m), sympy.sympify(n), k


def gemm_efficiency(target: Target, dims) -> sympy.Expr:
    """Fraction of the peak a GEMM of ``dims`` (M, N, K) attains: the target's table at min(M, N, K), else 1."""
    if not target.gemm_efficiency or dims is None:
        return sympy.Integer(1)
    return interpolate(target.gemm_efficiency, sympy.Min(*dims))


def bandwidth(target: Target, nbytes) -> sympy.Expr:
    """Bandwidth (B/s) a kernel moving ``nbytes`` attains: the target's curve, else its memory bandwidth."""
    if not target.bandwidth_curve:
        return sympy.Float(target.memory_bandwidth)
    return interpolate(target.bandwidth_curve, nbytes)


def kernel_time(kernel: Kernel, target: Target, bindings: Mapping[str, float],
                dims: tuple[sympy.Expr, sympy.Expr, sympy.Expr] | None = None) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
    """(compute term, memory term, time) of one kernel: symbolic roofline expressions.

    ``dims``: the kernel's GEMM (M, N, K) (:func:`gemm_dims`), used with a target's
    ``gemm_efficiency`` table."""
    matmul = kernel.matmul_flops != 0
    peak = peak_expr(target, bindings, matmul)
    eta_gemm = gemm_efficiency(target, dims) if matmul else sympy.Integer(1)
    compute = kernel.flops / (peak * target.eta_c * eta_gemm)
    if target.bandwidth_curve:
        memory = kernel.bytes / (bandwidth(target, kernel.bytes) * sympy.Float(target.eta_m))
    else:
        memory = kernel.bytes / sympy.Float(target.memory_bandwidth * target.eta_m)
    time = sympy.Max(compute, memory) + sympy.Float(target.launch_overhead) + first_touch(kernel, target)
    return compute, memory, time


def first_touch(kernel: Kernel, target: Target) -> sympy.Expr:
    """CPU targets: the cost of faulting in freshly mapped pages for a large output."""
    if not target.first_touch_bandwidth or kernel.bytes_written == 0:
        return sympy.Integer(0)
    cost = kernel.bytes_written / sympy.Float(target.first_touch_bandwidth)
    return sympy.Piecewise((cost, kernel.bytes_written >= (target.first_touch_threshold or 0)), (0, True))


def _dims(kernel_graph: KernelGraph, kernel: Kernel, target: Target):
    return gemm_dims(kernel_graph, kernel) if target.gemm_efficiency else None


def time_expr(kernel_graph: KernelGraph, target: Target | str, bindings: Mapping[str, float] | None = None) -> sympy.Expr:
    """The model's total time on ``target`` (sum over kernels), symbolic in unbound symbols."""
    target = load_target(target)
    bindings = normalize_bindings(bindings)
    total = sympy.Add(*(k.repeat * kernel_time(k, target, bindings, _dims(kernel_graph, k, target))[2]
                        for k in kernel_graph.kernels))
    return total.subs({sym(k): v for k, v in bindings.items()}) if bindings else total


def _rollups(items: list[tuple[list[tuple[str, str]], KernelTime]]) -> list[Rollup]:
    acc: dict[str, list] = {}
    for keys, kt in items:
        for key, label in keys:
            entry = acc.setdefault(key, [label, [], [], 0])
            entry[1].append(kt.kernel.repeat * kt.time)
            value = kt.values.get("time")
            entry[2].append(None if value is None else kt.kernel.repeat * value)
            entry[3] += kt.kernel.repeat
    out = []
    for key, (label, times, values, launches) in acc.items():
        value = None if any(v is None for v in values) else finite_float(sum(values))
        out.append(Rollup(key, label, sympy.Add(*times), value, launches))
    return out


def estimate(kernel_graph: KernelGraph, target: Target | str, bindings: Mapping[str, float] | None = None) -> RooflineResult:
    """Roofline time of every kernel, and totals per model, per module and per source line."""
    target = load_target(target)
    bindings = normalize_bindings(bindings)
    kts, exprs = [], []
    for k in kernel_graph.kernels:
        compute, memory, time = kernel_time(k, target, bindings, _dims(kernel_graph, k, target))
        matmul = k.matmul_flops != 0
        dtype = compute_dtype(float(bindings["a_bytes"]), matmul) if "a_bytes" in bindings else None
        kts.append(KernelTime(k, compute, memory, time, dtype, target.peak(dtype) if dtype else None))
        exprs += [k.flops, k.bytes, compute, memory, time]
    values = evaluate_all(exprs, bindings)
    for i, kt in enumerate(kts):
        kt.values = dict(zip(("flops", "bytes", "compute", "memory", "time"), values[5 * i : 5 * i + 5]))
    total = sympy.Add(*(kt.kernel.repeat * kt.time for kt in kts))
    vals = [kt.values["time"] for kt in kts]
    total_value = None if any(v is None for v in vals) else finite_float(sum(kt.kernel.repeat * v for kt, v in zip(kts, vals)))
    by_module = []
    for kt in kts:
        chain = [(s.path, s.cls) for s in kt.kernel.scope] or [("", "")]
        by_module.append((chain, kt))
    by_line = []
    for kt in kts:
        src = kt.kernel.source
        key = f"{src.file}:{src.line}" if src else "<unknown>"
        by_line.append(([(key, src.code if src else "")], kt))
    return RooflineResult(kernel_graph, target, bindings, kts, total, total_value, _rollups(by_module), _rollups(by_line))


def _sum(values: Iterable[float | None]) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else finite_float(sum(values))


# ---- vectorized sweep --------------------------------------------------------------------


def grid_product(**axes: Iterable[float]) -> dict[str, np.ndarray]:
    """The cartesian product of named axes as flat arrays (a grid for :func:`sweep`)."""
    names = list(axes)
    mesh = np.meshgrid(*(np.asarray(list(axes[n]), dtype=float) for n in names), indexing="ij")
    return {n: m.ravel() for n, m in zip(names, mesh)}


def compile_expr(expr, names: list[str]):
    """A numpy function of ``names`` (in that order) evaluating ``expr`` elementwise."""
    expr = from_kv_len(as_expr(expr))
    return sympy.lambdify([sym(n) for n in names], expr, "numpy", cse=True)


def sweep(expr_or_result, grid: Mapping[str, np.ndarray], targets: Iterable[Target | str] | None = None) -> dict[str, np.ndarray]:
    """Evaluate time (or any expression) over a grid of bindings, per target, vectorized.

    ``expr_or_result`` is a sympy expression (or string), a :class:`RooflineResult` (its
    bindings fill symbols the grid leaves out; ``targets`` default to its own) or a
    :class:`KernelGraph` (then ``targets`` are required). ``grid`` maps symbol names to
    arrays that broadcast together (see :func:`grid_product`). Returns ``{target name:
    times}``, or ``{"value": values}`` for a plain expression."""
    grid = normalize_bindings({k: np.asarray(v, dtype=float) for k, v in grid.items()})
    if isinstance(expr_or_result, RooflineResult | KernelGraph):
        if isinstance(expr_or_result, RooflineResult):
            kg, fixed = expr_or_result.kernel_graph, dict(expr_or_result.bindings)
            targets = list(targets) if targets is not None else [expr_or_result.target]
        else:
            kg, fixed = expr_or_result, {}
            if targets is None:
                raise ValueError("sweep over a kernel graph needs targets")
        fixed = {k: v for k, v in fixed.items() if k not in grid}
        exprs = {}
        for t in targets:
            t = load_target(t)
            exprs[t.name] = time_expr(kg, t, fixed)
        return {name: _evaluate(e, grid, fixed) for name, e in exprs.items()}
    return {"value": _evaluate(expr_or_result, grid, {})}


def _evaluate(expr, grid: Mapping[str, np.ndarray], fixed: Mapping[str, float]) -> np.ndarray:
    expr = from_kv_len(as_expr(expr))
    names = sorted(str(s) for s in expr.free_symbols)
    missing = [n for n in names if n not in grid and n not in fixed]
    if missing:
        raise ValueError(f"sweep: no value for {', '.join(missing)} (give them in the grid or the bindings)")
    fn = compile_expr(expr, names)
    args = [grid[n] if n in grid else fixed[n] for n in names]
    shape = np.broadcast_shapes(*(np.shape(v) for v in grid.values())) if grid else ()
    return np.broadcast_to(np.asarray(fn(*args), dtype=float), shape)


__all__ = [
    "KernelTime",
    "bandwidth",
    "gemm_dims",
    "gemm_efficiency",
    "interpolate",
    "RooflineResult",
    "compute_dtype",
    "estimate",
    "evaluate_all",
    "grid_product",
    "kernel_time",
    "peak_expr",
    "sweep",
    "time_expr",
]
