"""torch.compile backend: cost every graph dynamo hands over, then run it (or pass it on).

``torch.compile(model, backend="irtools")`` works right after install through the
``torch_dynamo_backends`` entry point. Each compiled graph (graph breaks give several) is
traced to aten ops under dynamo's fake mode (``make_fx``, pre-dispatch, so ``matmul`` and
``linear`` stay whole as in ``torch.export``) and analyzed; the results are kept in a
module-level list: ``reports()`` / ``clear_reports()``.

Dynamic shapes (``dynamic=True``): axes 0 and 1 of the graph's first activation input are
named ``batch_size`` and ``seq_len``; other sizes keep dynamo's names (``s47``).
Costing never breaks compilation: a failure is recorded in the report's ``error``.

    backend = make_backend(inner="inductor")          # cost, then compile with inductor
    torch.compile(model, backend=backend)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch

from irtools.analysis import AnalysisResult, analyze_ir
from irtools.ir.kinds import ALL_COSTS as COSTS
from passes.compiler.fx_pass import annotate_safely, guess_role, ir_from_graph_module, totals_of


@dataclass
class GraphReport:
    """The costs of one compiled graph."""

    index: int
    name: str
    totals: dict[str, sympy.Expr] = field(default_factory=dict)
    result: AnalysisResult | None = None  # the full analysis (modules, lines, nodes)
    aten_graph: torch.fx.GraphModule | None = None
    error: str | None = None

    def evaluate(self, **bindings: float) -> dict[str, float | None]:
        """Totals as numbers (byte-size symbols default to the captured dtypes)."""
        from irtools.ir.symbols import evaluate

        base = dict(self.result.bindings) if self.result is not None else {}
        return {k: evaluate(v, {**base, **bindings}) for k, v in self.totals.items()}


_REPORTS: list[GraphReport] = []


def reports() -> list[GraphReport]:
    """Reports of every graph compiled with the backend since the last ``clear_reports()``."""
    return list(_REPORTS)


def clear_reports() -> None:
    _REPORTS.clear()


def _fake_inputs(gm: torch.fx.GraphModule, example_inputs) -> list:
    fakes = []
    for node, real in zip([n for n in gm.graph.nodes if n.op == "placeholder"], example_inputs):
        fake = node.meta.get("example_value")
        fakes.append(fake if fake is not None else real)
    return fakes


def aten_graph(gm: torch.fx.GraphModule, example_inputs) -> torch.fx.GraphModule:
    """Trace a dynamo graph to aten ops on fake inputs, keeping module scopes and stack traces."""
    import torch.fx.traceback as fx_traceback
    from torch.fx.experimental.proxy_tensor import make_fx

    fakes = _fake_inputs(gm, example_inputs)
    fake_mode = next((f.fake_mode for f in fakes if hasattr(f, "fake_mode")), None)
    if fake_mode is None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    with fake_mode, fx_traceback.preserve_node_meta():
        traced = make_fx(torch.fx.Interpreter(gm).run, tracing_mode="real", pre_dispatch=True)(*fakes)
    source = {n.name: n for n in gm.graph.nodes}
    for node in traced.graph.nodes:
        origin = next((s.name for s in node.meta.get("from_node") or () if s.name in source), None)
        stack = source[origin].meta.get("nn_module_stack") if origin else None
        if stack and "nn_module_stack" not in node.meta:
            node.meta["nn_module_stack"] = stack
    return traced


def cost_graph(gm: torch.fx.GraphModule, example_inputs, index: int = 0) -> GraphReport:
    """Analyze one dynamo graph; never raises (the report carries the error)."""
    report = GraphReport(index, f"graph_{index}")
    try:
        roles = [guess_role(n) for n in gm.graph.nodes if n.op == "placeholder"]
        traced = aten_graph(gm, example_inputs)
        placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
        ir = ir_from_graph_module(traced, report.name, roles=dict(zip([p.name for p in placeholders], roles)))
        report.aten_graph = traced
        try:
            report.result = analyze_ir(ir)
        except Exception as exc:  # noqa: BLE001 - hierarchy/lines are extras; costs still count
            report.error = f"analysis incomplete: {type(exc).__name__}: {exc}"
            annotate_safely(ir)
        report.totals = totals_of(ir)
    except Exception as exc:  # noqa: BLE001 - costing never breaks the user's compile
        report.error = f"{type(exc).__name__}: {exc}"
        report.totals = {c: sympy.Integer(0) for c in COSTS}
    return report


def irtools_backend(gm: torch.fx.GraphModule, example_inputs, inner: str | Any = None, **kwargs):
    """Record a :class:`GraphReport`, then return ``gm.forward`` or ``inner``'s compiled graph."""
    _REPORTS.append(cost_graph(gm, example_inputs, len(_REPORTS)))
    if inner is None:
        return gm.forward
    from torch._dynamo import lookup_backend

    compiler = lookup_backend(inner) if isinstance(inner, str) else inner
    return compiler(gm, example_inputs, **kwargs)


def make_backend(inner: str | Any = None, **kwargs):
    """A backend that costs each graph and then compiles it with ``inner`` (a name or callable)."""
    return functools.partial(irtools_backend, inner=inner, **kwargs)
