"""The Python API: capture a model, run the pass pipeline, and hold the results.

>>> result = irtools.analyze()                       # the seed's GPT2Attention, prefill
>>> result.evaluate(batch_size=1, seq_len=1024)["flops"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sympy

from irtools.ir import IRGraph
from irtools.symbols import BYTE_SYMBOLS, evaluate, evaluate_cached, sym
from passes import pipeline
from passes.lines import LineTable

COSTS = ("flops", "bytes_read", "bytes_written")
SCENARIO_BINDINGS = {
    "prefill": {"batch_size": 1, "seq_len": 1024},
    "decode": {"batch_size": 1, "seq_len": 1, "cache_len": 1023},
}


@dataclass
class ModuleCost:
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
    lines: LineTable
    unsupported: list[tuple[str, int]]

    @property
    def nodes(self) -> list[tuple[str, dict]]:
        return [(n, a) for n, a in self.ir.nodes() if a["kind"] != "free"]

    @property
    def symbols(self) -> set[str]:
        """Names a binding may set: the dims of the capture, the byte symbols, and any free symbol."""
        names = set(self.ir.dims) | set(BYTE_SYMBOLS) | set(self.ir.meta.get("config_symbols", {}))
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

    def to_dict(self) -> dict[str, Any]:
        from irtools.report import build_report

        return build_report(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _module_tree(tree, path="") -> ModuleCost:
    data = tree.nodes[path]
    return ModuleCost(
        path, data["cls"], data["flops"], data["bytes_read"], data["bytes_written"],
        [_module_tree(tree, child) for child in tree.successors(path)],
    )


def check_bindings(known: set[str], bindings: dict[str, float]) -> None:
    """Reject bindings of dims the model does not have and non-positive / non-integer sizes."""
    for name, value in bindings.items():
        if name not in known:
            raise ValueError(f"no dimension named {name!r} in this model (known: {', '.join(sorted(known))})")
        if name in BYTE_SYMBOLS:
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of bytes, got {value}")
        elif not float(value).is_integer() or value < 1:
            raise ValueError(f"dimension {name} must be a positive integer, got {value}")


def analyze_ir(
    ir: IRGraph,
    scenario: str | None = None,
    bindings: dict[str, float] | None = None,
    line_module: str = "",
    generalize=None,
) -> AnalysisResult:
    """Run the pass pipeline over a captured IR and collect the results.

    ``generalize(ir)`` (see :func:`config_generalizer`) rewrites costs in config symbols."""
    pipeline.run(ir, line_module, generalize)
    return _collect(ir, scenario, bindings)


def _collect(ir: IRGraph, scenario: str | None, bindings: dict[str, float] | None) -> AnalysisResult:
    """Totals, module tree, unsupported ops and bindings of an IR the pipeline has run on."""
    totals = {c: sympy.expand(sympy.Add(*(a[c] for _, a in ir.nodes()))) for c in COSTS}
    counts: dict[str, int] = {}
    for _, a in ir.nodes():
        if a["unsupported"]:
            counts[a["op"]] = counts.get(a["op"], 0) + 1
    if scenario is None:  # a graph file: prefill sizes, or decode sizes where it has a KV cache
        has_cache = any(sym("cache_len") in e.free_symbols for e in totals.values())
        defaults = SCENARIO_BINDINGS["decode" if has_cache else "prefill"]
    else:
        defaults = SCENARIO_BINDINGS[scenario]
    base = {**ir.default_bindings, **ir.meta.get("config_symbols", {}), **defaults}
    if scenario == "prefill":
        base.pop("cache_len", None)
    result = AnalysisResult(
        ir, scenario, {}, totals, _module_tree(ir.meta["modules"]), ir.meta["lines"], sorted(counts.items())
    )
    known = result.symbols
    base = {k: v for k, v in base.items() if k in known}
    check_bindings(known, dict(bindings or {}))
    result.bindings = {**base, **(bindings or {})}
    if "kv_len" in result.bindings:  # kv_len is derived: cache_len = kv_len - seq_len
        kv = result.bindings.pop("kv_len")
        result.bindings["cache_len"] = kv - result.bindings.get("seq_len", 0)
        check_bindings(known, {"cache_len": result.bindings["cache_len"]})
    return result


def analyze_module(
    module, args=(), kwargs=None, dims=None, *, scenario=None, bindings=None, name=None, line_module="", generalize=None
):
    """Capture a torch module with torch.export and analyze it."""
    from irtools.capture import capture_module

    ir = capture_module(module, args, kwargs, dims, name=name)
    return analyze_ir(ir, scenario, bindings, line_module, generalize)


def config_generalizer(recipe):
    """The generalize step for a recipe that can be rebuilt at other configs."""
    from irtools.capture import capture_module
    from passes.generalize import generalize

    if recipe.rebuild is None or recipe.space is None:
        raise ValueError(f"{recipe.name}: no config symbols are known for this model (--symbolic-config)")

    def capture_at(free_values):
        probe = recipe.rebuild(recipe.space.fields(free_values))
        return capture_module(probe.module, probe.args, probe.kwargs, probe.dims, name=probe.name)

    def run(ir):
        ir.meta["generalized"] = generalize(ir, capture_at, recipe.space, recipe.space.values(recipe.config))

    return run


TRACED_LAYERS = 2


def _analyze_collapsed(recipe, scenario, bindings, line_module, symbolic_config) -> AnalysisResult | None:
    """Analyze a two-block version of the model; None where that cannot stand for it."""
    import networkx as nx

    from irtools.capture import capture_module
    from passes.compose import composed_costs
    from passes.hierarchy import layer_stacks
    from passes.lines import build_lines

    space = recipe.space
    if recipe.rebuild is None or space is None or not space.layers_field:
        return None
    layers = space.values(recipe.config).get("num_layers", 0)
    if layers <= TRACED_LAYERS:
        return None
    small = recipe.rebuild({space.layers_field: TRACED_LAYERS})
    ir = capture_module(small.module, small.args, small.kwargs, small.dims, name=recipe.name)
    ir.meta["collapsed_layers"] = TRACED_LAYERS
    generalize = config_generalizer(small) if symbolic_config else None
    pipeline.run(ir, line_module, generalize)
    tree = ir.meta["modules"]
    stacks = layer_stacks(tree)
    if len(stacks) != 1 or any(
        tree.nodes[stacks[0][0]][c] != tree.nodes[p][c] for p in stacks[0][1:] for c in COSTS
    ):
        return None  # blocks differ (or no single stack): trace the whole model instead
    ir.meta.setdefault("config_symbols", {})
    ir.meta["config_symbols"] = {**ir.meta["config_symbols"], "num_layers": layers}
    stack = stacks[0][0].rsplit(".", 1)[0]
    ir.meta["collapse_info"] = {"traced_layers": TRACED_LAYERS, "num_layers": layers, "stack": stack}
    parent = next(iter(tree.predecessors(stacks[0][0])))
    for path in [*nx.ancestors(tree, parent), parent]:  # costs above the stack: num_layers blocks
        tree.nodes[path].update(composed_costs(ir, path))
    build_lines(ir, line_module)
    result = _collect(ir, scenario, bindings)
    result.totals = {c: tree.nodes[""][c] for c in COSTS}
    return result


def analyze(
    model: str | None = None,
    scenario: str = "prefill",
    bindings: dict[str, float] | None = None,
    line_module: str = "",
    symbolic_config: bool = False,
    collapse_layers: bool = False,
    progress=None,
) -> AnalysisResult:
    """Analyze a preset, a ``package.module:Class`` spec, a config.json, or an ``.onnx`` file.

    ``symbolic_config`` writes costs in config symbols (hidden_size, num_heads, ...);
    ``collapse_layers`` traces two blocks, checks they cost the same, and repeats them
    ``num_layers`` times (much faster on deep models; falls back to a full trace);
    ``progress(done, total)`` is called while an ONNX graph is read."""
    from irtools.presets import DEFAULT_PRESET, recipe_for

    model = model or DEFAULT_PRESET
    if model.endswith(".onnx"):
        from irtools.capture.onnx_frontend import capture_onnx

        ir = capture_onnx(model, progress=progress)
        return analyze_ir(ir, None, bindings, line_module)
    recipe = recipe_for(model, scenario)
    if collapse_layers:
        result = _analyze_collapsed(recipe, scenario, bindings, line_module, symbolic_config)
        if result is not None:
            return result
    return analyze_module(
        recipe.module, recipe.args, recipe.kwargs, recipe.dims,
        scenario=scenario, bindings=bindings, name=recipe.name, line_module=line_module,
        generalize=config_generalizer(recipe) if symbolic_config else None,
    )


__all__ = ["AnalysisResult", "ModuleCost", "analyze", "analyze_ir", "analyze_module", "check_bindings", "sym"]
