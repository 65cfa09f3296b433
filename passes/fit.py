"""Fit: does a model's peak memory fit a target, and the largest batch or context that does.

The budget is the target's memory (``memory_size`` in its file, with its datasheet source)
less a reserve fraction (default 10 %: vLLM's default ``gpu_memory_utilization`` of 0.9
leaves the same share for the CUDA context, allocator fragmentation and kernel workspaces,
which the memory pass does not count; docs/conventions.md, "Memory").

Solving uses the symbolic peak of passes.memory, never another run: the peak is a ``Max``
of sums of products of positive sizes, so it never decreases when a dim grows, and the
largest value that fits is found by doubling, then bisection, on the evaluated expression
(exact integer arithmetic where the bindings are integers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from irtools.hardware import Target
from irtools.ir.errors import UsageError
from irtools.ir.symbols import from_kv_len, sym

DEFAULT_RESERVE = 0.10
SOLVE = ("batch_size", "seq_len", "cache_len", "frontier")
#: no dim is searched past this (2**40 tokens or sequences: far beyond any memory)
LIMIT = 1 << 40


@dataclass
class FitCheck:
    """Whether the peak at the report's bindings fits the target, and the headroom left."""

    target: str
    capacity: float
    source: str
    reserve: float
    usable: float
    peak: float | None
    fits: bool | None
    headroom: float | None  # usable - peak (negative: over by that much)


@dataclass
class FitAnswer:
    """The largest value of ``symbol`` whose peak fits, with the peaks on both sides of it."""

    symbol: str
    largest: int | None  # None: not even 1 fits
    peak: float | None  # at ``largest``
    peak_above: float | None  # at ``largest + 1`` (over the budget)
    bindings: dict[str, float] = field(default_factory=dict)  # the other dims
    limited: bool = False  # nothing up to LIMIT exceeds the budget: the dim does not bound memory


@dataclass
class FitResult:
    target: str
    capacity: float
    source: str
    reserve: float
    usable: float
    answers: list[FitAnswer]


def check_reserve(reserve: float) -> float:
    if not 0 <= reserve < 1:
        raise UsageError(f"--reserve must be a fraction in [0, 1), got {reserve}")
    return float(reserve)


def usable(target: Target, reserve: float = DEFAULT_RESERVE) -> float:
    return target.memory_size * (1 - check_reserve(reserve))


def peak_function(peak, names: list[str]):
    """A Python function of ``names`` evaluating ``peak`` (math module: exact on integers)."""
    expr = from_kv_len(sympy.sympify(peak))
    return sympy.lambdify([sym(n) for n in names], expr, modules=["math"])


def _free(expr, bindings) -> list[str]:
    expr = from_kv_len(sympy.sympify(expr))
    return sorted(s.name for s in expr.free_symbols if s.name not in bindings)


def check_fit(peak, target: Target, bindings: dict[str, float], reserve: float = DEFAULT_RESERVE) -> FitCheck:
    """The fit of ``peak`` (a sympy expression) at ``bindings`` on ``target``."""
    budget = usable(target, reserve)
    value = None
    if not _free(peak, bindings):
        names = sorted(bindings)
        value = float(peak_function(peak, names)(*(bindings[n] for n in names)))
    return FitCheck(target.name, target.memory_size, target.sources.get("memory_size", ""), reserve, budget, value,
                    None if value is None else value <= budget, None if value is None else budget - value)


def largest(peak, symbol: str, bindings: dict[str, float], budget: float) -> FitAnswer:
    """The largest positive integer ``symbol`` with ``peak <= budget`` (other dims from ``bindings``)."""
    fixed = {k: v for k, v in bindings.items() if k != symbol}
    if symbol not in {s.name for s in from_kv_len(sympy.sympify(peak)).free_symbols}:
        raise UsageError(f"the peak memory does not depend on {symbol} in this analysis (scenario?)")
    missing = _free(peak, {**fixed, symbol: 1})
    if missing:
        raise UsageError(f"bind {', '.join(missing)} (--dim) to solve for {symbol}")
    names = sorted(fixed) + [symbol]
    fn = peak_function(peak, names)
    args = [fixed[n] for n in names[:-1]]

    def at(x: int) -> float:
        return fn(*args, x)

    if at(1) > budget:
        return FitAnswer(symbol, None, None, float(at(1)), fixed)
    lo, hi = 1, 2
    while at(hi) <= budget:  # doubling: the peak never decreases in a dim
        lo, hi = hi, hi * 2
        if hi > LIMIT:
            return FitAnswer(symbol, LIMIT, float(at(LIMIT)), None, fixed, limited=True)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if at(mid) <= budget else (lo, mid)
    return FitAnswer(symbol, lo, float(at(lo)), float(at(lo + 1)), fixed)


def context_symbol(peak, bindings: dict[str, float]) -> str:
    """``cache_len`` when the peak has a KV cache (decode), else ``seq_len``."""
    names = {s.name for s in from_kv_len(sympy.sympify(peak)).free_symbols}
    return "cache_len" if "cache_len" in names else "seq_len"


def solve(peak, target: Target, bindings: dict[str, float], what: str = "batch_size",
          reserve: float = DEFAULT_RESERVE, batches: list[int] | None = None) -> FitResult:
    """The largest ``what`` (a SOLVE entry) that fits; ``frontier``: for each batch size
    (powers of two up to the largest batch that fits), the largest context."""
    if what not in SOLVE:
        raise UsageError(f"--solve must be one of {', '.join(SOLVE)}, got {what!r}")
    budget = usable(target, reserve)
    if what != "frontier":
        answers = [largest(peak, what, bindings, budget)]
    else:
        ctx = context_symbol(peak, bindings)
        top = largest(peak, "batch_size", bindings, budget).largest or 0
        batches = batches or [b for b in (2 ** k for k in range(41)) if b <= top]
        answers = [largest(peak, ctx, {**bindings, "batch_size": b}, budget) for b in batches]
    return FitResult(target.name, target.memory_size, target.sources.get("memory_size", ""), reserve, budget, answers)


def fit_dict(fit: FitResult, result) -> dict:
    """A plain dict of ``fit`` for JSON output (``result``: the analysis it was solved on)."""
    m = result.memory
    answers = []
    for a in fit.answers:
        entry = {"symbol": a.symbol, "largest": a.largest, "peak": a.peak, "peak_above": a.peak_above,
                 "bindings": a.bindings, "no_limit": a.limited}
        if a.largest is not None and a.symbol in ("cache_len", "seq_len") and "cache_len" in {a.symbol, *a.bindings}:
            both = {**a.bindings, a.symbol: a.largest}
            entry["context"] = both.get("cache_len", 0) + both.get("seq_len", 0)
        answers.append(entry)
    return {"model": result.ir.name, "scenario": result.scenario, "mode": m.mode, "kv_cache": m.kv_cache,
            "peak": str(m.peak), "target": fit.target, "capacity": fit.capacity, "capacity_source": fit.source,
            "reserve": fit.reserve, "usable": fit.usable, "answers": answers}


__all__ = ["DEFAULT_RESERVE", "SOLVE", "FitAnswer", "FitCheck", "FitResult", "check_fit", "context_symbol", "fit_dict",
           "largest",
           "solve", "usable"]
