"""The Python API: thin calls into ``irtools.pipeline``.

>>> result = irtools.analyze()                       # the seed's GPT2Attention, prefill
>>> result.evaluate(batch_size=1, seq_len=1024)["flops"]
"""

from __future__ import annotations

from irtools.ir import IRGraph
from irtools.ir.symbols import sym
from irtools.pipeline import Options, config_generalizer, run, run_ir, run_module
from irtools.result import AnalysisResult, ModuleCost, check_bindings


def analyze(
    model: str | None = None,
    scenario: str = "prefill",
    bindings: dict[str, float] | None = None,
    line_module: str = "",
    symbolic_config: bool = False,
    collapse_layers: bool = True,
    progress=None,
    *,
    target=None,
    mode: str | None = None,
) -> AnalysisResult:
    """Analyze a preset, a ``package.module:Class`` spec, a config.json, or an ``.onnx`` file.

    ``symbolic_config`` writes costs in config symbols (hidden_size, num_heads, ...);
    ``collapse_layers`` (the default) traces three blocks of a layer stack, checks they cost
    the same, and repeats them ``num_layers`` times (``False`` traces every block); ``target`` / ``mode`` add fused kernels and roofline time;
    ``progress(done, total)`` is called while an ONNX graph is read."""
    return run(Options(model, scenario, dict(bindings or {}), line_module, symbolic_config, collapse_layers,
                       target, mode, progress=progress))


def analyze_module(
    module, args=(), kwargs=None, dims=None, *, scenario=None, bindings=None, name=None, line_module="", generalize=None,
    target=None, mode=None,
) -> AnalysisResult:
    """Capture a torch module with torch.export and analyze it."""
    options = Options(scenario=scenario, bindings=dict(bindings or {}), line_module=line_module, target=target, mode=mode)
    return run_module(module, args, kwargs, dims, options, name=name, generalize=generalize)


def analyze_ir(ir: IRGraph, scenario: str | None = None, bindings: dict[str, float] | None = None,
               line_module: str = "", generalize=None, *, target=None, mode=None) -> AnalysisResult:
    """Run the pass pipeline over a captured IR and collect the results."""
    options = Options(scenario=scenario, bindings=dict(bindings or {}), line_module=line_module, target=target, mode=mode)
    return run_ir(ir, options, generalize=generalize)


__all__ = [
    "AnalysisResult", "ModuleCost", "analyze", "analyze_ir", "analyze_module", "check_bindings", "config_generalizer",
    "sym",
]
