"""Search the layouts of a model on N devices: enumerate, evaluate vectorized, keep what fits, rank.

Layouts: ``tp`` dividing every size the tensor-parallel splits divide (heads, KV heads, hidden,
FFN, vocab); ``pp`` up to the layer count; ``dp = N / (tp·pp)``; ``ep`` dividing ``dp`` and the
expert count (mixture-of-experts models); for training also the micro-batch size (``m =
global batch / (dp·b)``), sequence parallelism, ZeRO stage 0-3 and recompute none / selective /
full; for decode the batch per micro-batch (powers of two) with ``pp`` micro-batches in
flight. Every per-device formula is compiled once (``lambdify``) and evaluated on arrays of
all layouts at once; the stage partition is balanced per layout (``pp.balanced``).

A layout is dropped when a role's memory exceeds the target's capacity less the reserve
(``passes.fit``). The rest are ranked: ``throughput`` by tokens/s (ties: less memory),
``latency`` by step time (training), time to first token (prefill) or time per output token
(decode). Each dropped layout keeps its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import sympy

from irtools.ir.errors import UsageError
from passes.collectives import collective_time
from passes.fit import DEFAULT_RESERVE, usable
from passes.parallel import step as steps
from passes.parallel.device import DeviceModel, Layout

OBJECTIVES = ("throughput", "latency")
ARGS = ("tp", "ep", "batch_size")
_S, _N, _STRIDE = sympy.symbols("nbytes n stride", positive=True)


@dataclass
class Evaluation:
    """Per-layout arrays of one evaluation (``values[role][key]``, ``values["step"][key]``)."""

    layouts: list[Layout]
    values: dict

    def __len__(self) -> int:
        return len(self.layouts)

    def __getitem__(self, i: int) -> dict:
        return {role: {k: (float(np.asarray(x)[i]) if not isinstance(x, dict) else
                          {kk: float(np.broadcast_to(vv, (len(self),))[i]) for kk, vv in x.items()})
                       for k, x in part.items()} for role, part in self.values.items()}

    def column(self, role: str, key: str, sub: str | None = None) -> np.ndarray:
        x = self.values[role][key]
        return np.broadcast_to(np.asarray(x[sub] if sub else x, dtype=float), (len(self),))


@lru_cache(maxsize=64)
def _ctime_fn(kind: str, topo, algorithm: str):
    expr = collective_time(kind, _S, _N, topo, _STRIDE, algorithm)
    return sympy.lambdify((_S, _N, _STRIDE), expr, "numpy")


def _compiled(model: DeviceModel, sp: bool) -> dict:
    key = ("compiled", sp)
    if key not in model._values:
        fns = {}
        for name, expr in model.values(sp).items():
            free = sorted(s.name for s in sympy.sympify(expr).free_symbols)
            extra = [f for f in free if f not in ARGS]
            if extra:
                raise UsageError(f"bind {', '.join(extra)} (--dim NAME=VALUE) to plan: the per-device "
                                 f"formulas depend on {', '.join(extra)}")
            fns[name] = sympy.lambdify([sympy.Symbol(a, positive=True, integer=True) for a in ARGS], expr, "numpy")
        model._values[key] = fns
    return model._values[key]


def evaluate_layouts(model: DeviceModel, layouts: list[Layout], overlap: bool | None = None) -> Evaluation:
    """Evaluate every layout (vectorized per sequence-parallel variant)."""
    overlap = model.overlap if overlap is None else overlap
    out_values: dict = {}
    order = []
    for sp in (False, True):
        idx = [i for i, lay in enumerate(layouts) if lay.sp == sp]
        if not idx:
            continue
        order += idx
        sub = [layouts[i] for i in idx]
        lay = {k: np.array([getattr(x, a) for x in sub], dtype=float) for k, a in
               (("tp", "tp"), ("pp", "pp"), ("dp", "dp"), ("ep", "ep"), ("b", "micro_batch"), ("m", "micro_batches"),
                ("zero", "zero"))}
        lay["recompute"] = np.array([steps.RECOMPUTE.index(x.recompute) for x in sub], dtype=float)
        fns = _compiled(model, sp)
        v = {k: np.broadcast_to(np.asarray(f(lay["tp"], lay["ep"], lay["b"]), dtype=float), (len(sub),))
             for k, f in fns.items()}

        def ctime(kind, nbytes, group, lay_, _model=model):
            stride = _model.stride(group, lay_)
            return _ctime_fn(kind, _model.topology, _model.algorithm)(nbytes, lay_[group], stride)

        stages = model.stages(v, lay)
        res = steps.assemble(v, lay, model.scenario, ctime, model.peak, model.target.memory_bandwidth, steps.NUMPY,
                             stages=stages, layers=model.layers, overlap=overlap)
        res["stages"] = {"first": stages[0], "middle": stages[1], "last": stages[2]}
        _merge(out_values, res, len(sub))
    inverse = np.argsort(np.array(order))
    return Evaluation(layouts, _reorder(out_values, inverse))


def evaluate_layout(model: DeviceModel, layout: Layout, overlap: bool | None = None) -> dict:
    """Numbers of one layout (balanced stage partition)."""
    return evaluate_layouts(model, [layout], overlap=overlap)[0]


def _merge(acc: dict, res: dict, n: int) -> None:
    for k, x in res.items():
        if isinstance(x, dict):
            _merge(acc.setdefault(k, {}), x, n)
        else:
            arr = np.broadcast_to(np.asarray(x, dtype=float), (n,))
            acc[k] = np.concatenate([acc[k], arr]) if k in acc else arr.copy()


def _reorder(values: dict, inverse: np.ndarray) -> dict:
    return {k: (_reorder(x, inverse) if isinstance(x, dict) else x[inverse]) for k, x in values.items()}


# ---- enumeration -----------------------------------------------------------------------


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _tp_ok(model: DeviceModel, tp: int) -> bool:
    for size in model.tp.divides:
        s = sympy.sympify(size)
        if s.is_number and int(s) % tp:
            return False
    return True


def enumerate_layouts(model: DeviceModel, devices: int, batch: int = 1, micro_batches: list[int] | None = None,
                      zero=(0, 1, 2, 3), recompute=steps.RECOMPUTE, sp=(False, True)) -> tuple[list[Layout], dict]:
    """Valid layouts of ``devices`` devices, and the (tp, reason) pairs left out by shape."""
    if devices < 1:
        raise UsageError(f"--devices must be a positive integer, got {devices}")
    layers = model.cut.layers or 1
    experts = model.ep.experts if model.ep.layers else None
    out, skipped = [], {}
    for tp in divisors(devices):
        if not _tp_ok(model, tp):
            skipped[f"tp={tp}"] = "does not divide the heads / hidden / FFN / vocab sizes"
            continue
        for pp in divisors(devices // tp):
            if pp > layers:
                skipped[f"pp={pp}"] = f"more stages than the {layers} layers"
                continue
            dp = devices // (tp * pp)
            eps = [e for e in divisors(dp) if experts and experts % e == 0] if experts else [1]
            for ep in eps:
                out += _batch_layouts(model, tp, pp, dp, ep, batch, micro_batches, zero, recompute, sp)
    if not out:
        raise UsageError(f"no layout of {devices} devices fits the model's shapes ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    return out, skipped


def _batch_layouts(model, tp, pp, dp, ep, batch, micro_batches, zero, recompute, sps) -> list[Layout]:
    out = []
    sps = [s for s in sps if tp > 1 or not s]
    if model.scenario == "train":
        if batch % dp:
            return []
        per = batch // dp
        for b in (micro_batches or [x for x in (1, 2, 4, 8, 16, 32) if per % x == 0]):
            if per % b:
                continue
            for z in (zero if dp > 1 else (0,)):
                for rc in recompute:
                    for s in sps:
                        out.append(Layout(tp, pp, dp, ep, b, per // b, s, z, rc))
        return out
    sizes = micro_batches or ([batch] if model.scenario == "prefill" else [2 ** k for k in range(0, 12)])
    for b in sizes:
        for s in (sps if model.scenario == "prefill" else [False]):
            out.append(Layout(tp, pp, dp, ep, b, pp, s, 0, "none"))
    return out


# ---- search ------------------------------------------------------------------------------


@dataclass
class PlanResult:
    """The ranked layouts that fit, and why the others fell out."""

    model: DeviceModel
    devices: int
    objective: str
    budget: float
    evaluation: Evaluation
    ranked: list[int]  # indices into evaluation.layouts, best first
    dropped: dict[int, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def best(self) -> Layout:
        if not self.ranked:
            raise UsageError(f"no layout of {self.devices} devices fits in {self.budget / 1e9:.1f} GB per device")
        return self.evaluation.layouts[self.ranked[0]]

    def score(self, i: int) -> float:
        return float(_scores(self.evaluation, self.objective, self.model.scenario)[i])


def _scores(ev: Evaluation, objective: str, scenario: str) -> np.ndarray:
    """Higher is better."""
    if objective == "throughput":
        return ev.column("step", "tokens_per_s")
    key = "latency" if scenario != "train" else "time"
    return -ev.column("step", key)


def search(model: DeviceModel, devices: int, objective: str = "throughput", batch: int = 1,
           reserve: float = DEFAULT_RESERVE, **choices) -> PlanResult:
    """Every valid layout evaluated; those that fit ranked by ``objective``."""
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r} (one of {', '.join(OBJECTIVES)})")
    layouts, skipped = enumerate_layouts(model, devices, batch, **choices)
    ev = evaluate_layouts(model, layouts)
    budget = usable(model.target, reserve)
    mem = np.maximum.reduce([ev.column(r, "memory", "total") for r in ("first", "last")]
                            + [np.where(np.array([x.pp for x in layouts]) > 2, ev.column("middle", "memory", "total"), 0)])
    fits = mem <= budget
    dropped = {i: f"needs {mem[i] / 1e9:.1f} GB per device > {budget / 1e9:.1f} GB" for i in np.flatnonzero(~fits)}
    score = _scores(ev, objective, model.scenario)
    ok = np.flatnonzero(fits & np.isfinite(score))
    ranked = sorted(ok.tolist(), key=lambda i: (-score[i], mem[i]))
    for rank, i in enumerate(ranked[1:], start=2):
        dropped.setdefault(i, f"rank {rank}: {objective} {abs(score[i]):.4g} vs {abs(score[ranked[0]]):.4g}")
    return PlanResult(model, devices, objective, budget, ev, ranked, {i: r for i, r in dropped.items() if i not in ranked[:1]},
                      skipped)


__all__ = ["OBJECTIVES", "Evaluation", "PlanResult", "divisors", "enumerate_layouts", "evaluate_layout", "evaluate_layouts",
           "search"]
