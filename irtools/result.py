"""What one analysis found, as typed data: the annotated IR, its totals, module tree, line
table, coverage and (with a fusion mode / target) kernels and roofline time. Built by
``irtools.pipeline``; serialized once by ``irtools.report``; rendered by ``irtools.export``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sympy

from irtools.ir import ALL_COSTS, IRGraph, numeric
from irtools.ir.errors import UsageError
from irtools.ir.symbols import BYTE_SYMBOLS, evaluate, evaluate_cached, normalize_bindings, sym

#: Example bindings per scenario (the values shown beside each formula).
SCENARIO_BINDINGS = {
    "prefill": {"batch_size": 1, "seq_len": 1024, "decoder_seq_len": 1024},  # the decoder of an encoder-decoder
    "decode": {"batch_size": 1, "seq_len": 1, "cache_len": 1023},
}


@dataclass
class ModuleCost:
    """One module's subtree costs and its children."""

    path: str
    cls: str
    flops: sympy.Expr
    bytes_read: sympy.Expr
    bytes_written: sympy.Expr
    children: list[ModuleCost] = field(default_factory=list)


@dataclass
class AnalysisResult:
    """Everything one analysis found: the annotated IR, its totals, modules and lines."""

    ir: IRGraph
    scenario: str | None
    bindings: dict[str, float]
    totals: dict[str, sympy.Expr]
    modules: ModuleCost
    lines: Any  # passes.lines.LineTable
    unsupported: list[tuple[str, int]]
    coverage: dict[str, Any] = field(default_factory=dict)
    composed: dict[str, sympy.Expr] | None = None  # totals composed with num_layers symbolic
    kernels: Any = None  # passes.fusion.KernelGraph, with a fusion mode
    roofline: Any = None  # passes.roofline.RooflineResult, with a target
    module_documents: list[dict[str, Any]] | None = None  # the seed's module-analysis JSON
    memory: Any = None  # passes.memory result: peak memory and its breakdown
    training: Any = None  # passes.training.TrainingResult (train scenario)

    @property
    def nodes(self) -> list[tuple[str, dict]]:
        return [(n, a) for n, a in self.ir.nodes() if a["kind"] != "free"]

    @property
    def complete(self) -> bool:
        """False when an op has no cost rule: every total is then a lower bound."""
        return not self.unsupported

    @property
    def symbols(self) -> set[str]:
        """Names a binding may set: the dims of the capture, the byte symbols, and any free symbol."""
        names = set(self.ir.dims) | set(BYTE_SYMBOLS) | set(self.ir.meta.config_symbols or {})
        for expr in self.totals.values():
            names |= {s.name for s in expr.free_symbols}
        if "cache_len" in names:
            names.add("kv_len")
        return names

    def value(self, expr, bindings: dict[str, float] | None = None):
        """``expr`` as a number under the result's bindings (updated by ``bindings``)."""
        merged = {**self.bindings, **(bindings or {})}
        try:
            return evaluate_cached(expr, tuple(sorted(merged.items())))
        except TypeError:  # an unhashable binding value
            return evaluate(expr, merged)

    def evaluate(self, **bindings: float) -> dict[str, float | None]:
        """Totals as numbers under the result's bindings updated by ``bindings``."""
        return {k: self.value(v, bindings) for k, v in self.totals.items()}

    def to_dict(self, edges: bool = False) -> dict[str, Any]:
        """The ``irtools.report/1`` dict (docs/report.md); ``edges`` adds the op graph's edges."""
        from irtools.report import build_report

        return build_report(self, edges=edges)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def check_bindings(known: set[str], bindings: dict[str, float]) -> None:
    """Reject bindings of dims the model does not have and non-positive / non-integer sizes."""
    for name, value in bindings.items():
        if name not in known:
            raise UsageError(f"no dimension named {name!r} in this model (known: {', '.join(sorted(known))})")
        if name in BYTE_SYMBOLS:
            if not value > 0:
                raise UsageError(f"{name} must be a positive number of bytes, got {value}")
        elif not float(value).is_integer() or value < 1:
            raise UsageError(f"dimension {name} must be a positive integer, got {value}")


def resolve_bindings(result: AnalysisResult, bindings: dict[str, float] | None) -> dict[str, float]:
    """The scenario's example values (and the capture's byte sizes) updated by ``bindings``;
    a ``kv_len`` binding is turned into ``cache_len = kv_len - seq_len``."""
    ir, scenario = result.ir, result.scenario
    if scenario is None:  # a graph file: prefill sizes, or decode sizes where it has a KV cache
        has_cache = any(sym("cache_len") in e.free_symbols for e in result.totals.values())
        defaults = SCENARIO_BINDINGS["decode" if has_cache else "prefill"]
    else:
        defaults = SCENARIO_BINDINGS.get(scenario, SCENARIO_BINDINGS["prefill"])
    base = {**ir.default_bindings, **(ir.meta.config_symbols or {}), **defaults}
    if scenario == "prefill":
        base.pop("cache_len", None)
    known = result.symbols
    base = {k: v for k, v in base.items() if k in known}
    check_bindings(known, dict(bindings or {}))
    given = dict(bindings or {})
    if "kv_len" in given:  # kv_len is derived: cache_len = kv_len - seq_len
        given.pop("cache_len", None)
        base.pop("cache_len", None)
    out = normalize_bindings({**base, **given})
    if "kv_len" in given:
        check_bindings(known, {"cache_len": out["cache_len"]})
    return out


def total(ir: IRGraph, cost: str) -> sympy.Expr:
    """The sum of one cost over every node of ``ir``."""
    return numeric.expand(numeric.total(a[cost] for _, a in ir.nodes()))  # ints summed as ints


def totals(ir: IRGraph) -> dict[str, sympy.Expr]:
    return {c: total(ir, c) for c in ALL_COSTS}
