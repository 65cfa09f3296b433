"""The one orchestrator: an :class:`Options` in, an :class:`~irtools.result.AnalysisResult` out.

The order, each step a pass with one job (docs/architecture.md follows one node through it):

    capture     irtools.capture.torch.export (joint.py: train) / irtools.capture.onnx.frontend -> a bare IR
    windows     passes.sliding_window      cache lengths of sliding-window layers capped
    train prep  passes.training            recompute regions, optimizer-step nodes (train)
    costs       passes.annotate_costs      node kind, flops, bytes_read, bytes_written (kv_cache model)
    generalize  passes.generalize          the same costs in config symbols (--symbolic-config)
    hierarchy   passes.hierarchy           the module tree with subtree sums
    lines       passes.lines               the per-line table of one module's forward
    compose     passes.compose             templates; num_layers × a collapsed block
    fusion      passes.fusion, collapse    kernels (with a mode or a target), repeats of a collapsed stack
    roofline    passes.roofline            time per kernel, module, line and model (with a target)
    memory      passes.memory, fit         peak memory from tensor lifetimes; the fit on a target
    training    passes.training            phases, step time, tokens/s, MFU (train)

The API (``irtools.analyze``), the CLI and every compiler adapter call :func:`run`,
:func:`run_module` or :func:`run_ir`; nothing else runs passes in sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from irtools.ir import ALL_COSTS, COSTS, CollapseInfo, IRGraph
from irtools.ir.errors import UsageError
from irtools.ir.gcpause import gc_paused
from irtools.result import AnalysisResult, ModuleCost, resolve_bindings, totals
from passes.annotate_costs import annotate_costs, coverage
from passes.hierarchy import build_hierarchy, layer_stacks
from passes.lines import build_lines

DEFAULT_TARGET = "h100-sxm"
DEFAULT_MODE = "fused"
TRACED_LAYERS = 3  # the first, a middle and the last block (see passes/collapse.py)


@dataclass
class Options:
    """Everything that decides an analysis."""

    model: str | None = None  # preset, config.json, .onnx file or package.module:Class
    scenario: str = "prefill"
    bindings: dict[str, float] = field(default_factory=dict)
    line_module: str = ""  # module path whose forward gets the line table
    symbolic_config: bool = False
    collapse_layers: bool = True  # trace three blocks of a verified-identical stack, repeat them
    target: Any = None  # a target name, TOML path or irtools.hardware.Target
    mode: str | None = None  # eager | fused | flash
    kv_cache: str | None = None  # copy | static; default: static in fused/flash modes, else copy
    all_logits: bool = False  # a causal LM's head on every position (default: the last, as generation)
    module_documents: bool = False  # also build the seed's module-analysis documents
    memory_reserve: float = 0.10  # share of the target's memory kept free (passes/fit.py)
    optimizer: str = "adamw"  # train: sgd | adam | adamw[:single|:foreach|:fused] (passes/optimizer.py)
    recompute: str = "none"  # train: none | selective | full (passes/recompute.py)
    micro_batches: int = 1  # train: forward+backward passes accumulated per optimizer step
    progress: Callable[[int, int], None] | None = None  # (done, total) while an ONNX graph is read

    @property
    def wants_kernels(self) -> bool:
        return self.target is not None or self.mode is not None

    @property
    def kv_cache_model(self) -> str:
        """``copy`` keeps the literal graph (eager HF code); fused and flash deployments write in place."""
        if self.kv_cache is not None:
            return self.kv_cache
        return "static" if self.wants_kernels and (self.mode or DEFAULT_MODE) != "eager" else "copy"


def run(options: Options) -> AnalysisResult:
    """Capture the model named by ``options.model`` and run every pass."""
    model = options.model or ""
    if model.endswith(".onnx"):  # the ONNX path never imports torch (recipes do): docs/architecture.md
        from irtools.capture.onnx.frontend import capture_onnx

        ir = capture_onnx(model, progress=options.progress, bind=options.bindings)  # all dims bound: concrete path
        return run_ir(ir, options, scenario=None)
    from irtools.recipes.presets import DEFAULT_PRESET, recipe_for

    model = model or DEFAULT_PRESET
    recipe = recipe_for(model, options.scenario, options.all_logits)
    if options.collapse_layers:
        result = _run_collapsed(recipe, options)
        if result is not None:
            return result
    generalize = config_generalizer(recipe) if options.symbolic_config else None
    return run_ir(capture_recipe(recipe), options, generalize=generalize)


def capture_recipe(recipe, name: str | None = None) -> IRGraph:
    """Capture a recipe's module; its graph facts (logits, sliding windows) go into ``ir.meta``
    and windowed layers get their cache length capped (passes.sliding_window)."""
    from irtools.capture.torch.export import capture_module
    from passes.sliding_window import cap_windows

    if getattr(recipe, "loss", None) is not None:  # train: the joint forward+backward graph
        from irtools.capture.torch.joint import capture_joint, loss_wrapper_prefix

        ir = capture_joint(recipe.module, recipe.args, recipe.kwargs, recipe.dims, name=name or recipe.name,
                           model_attr=loss_wrapper_prefix(recipe.module), loss=recipe.loss)
    else:
        ir = capture_module(recipe.module, recipe.args, recipe.kwargs, recipe.dims, name=name or recipe.name)
    ir.meta.logits, ir.meta.sliding_windows = recipe.logits, recipe.sliding_windows
    ir.meta.notes = list(getattr(recipe, "notes", None) or [])
    cap_windows(ir)
    return ir


def run_module(module, args=(), kwargs=None, dims=None, options: Options | None = None, *, name=None,
               generalize=None) -> AnalysisResult:
    """Capture a torch module with torch.export and run every pass."""
    from irtools.capture.torch.export import capture_module

    options = options or Options()
    if options.scenario == "train":  # the joint forward+backward graph of the module and a loss
        from irtools.recipes.train import module_recipe

        return run_ir(capture_recipe(module_recipe(module, args, kwargs, dims, name)), options, generalize=generalize)
    ir = capture_module(module, args, kwargs, dims, name=name)
    return run_ir(ir, options, generalize=generalize)


@gc_paused()  # the passes make many long-lived objects and no cycles (irtools/ir/gcpause.py)
def run_ir(ir: IRGraph, options: Options | None = None, *, scenario: Any = "options", generalize=None) -> AnalysisResult:
    """Run every pass over a captured IR (in place) and collect the result.

    ``generalize(ir)`` (see :func:`config_generalizer`) rewrites verified costs in config symbols."""
    options = options or Options()
    ir.meta.kv_cache = options.kv_cache_model
    _prepare_training(ir, options)
    annotate_costs(ir)
    if generalize is not None:
        generalize(ir)
    build_hierarchy(ir)
    build_lines(ir, options.line_module)
    return _finish(ir, options, options.scenario if scenario == "options" else scenario)


def _finish(ir: IRGraph, options: Options, scenario: str | None, composed_totals=None) -> AnalysisResult:
    """Totals, module tree, coverage, bindings; then composition, kernels and roofline as asked."""
    from passes.compose import composed_costs, module_documents

    ir.meta.scenario = scenario
    cov = coverage(ir)
    result = AnalysisResult(
        ir, scenario, {}, composed_totals or totals(ir), _module_tree(ir.meta.modules), ir.meta.lines,
        [(u["op"], u["count"]) for u in cov["unsupported"]], coverage=cov,
    )
    result.bindings = resolve_bindings(result, options.bindings)
    if ir.meta.generalized is not None or ir.meta.collapse is not None:
        result.composed = composed_costs(ir)
    if options.module_documents:
        result.module_documents = module_documents(ir)
    if options.wants_kernels:
        _kernels(result, options)
    if ir.meta.training is not None:
        _training(result, options)
    else:
        _memory(result, options)
    return result


def _prepare_training(ir: IRGraph, options: Options) -> None:
    """A joint training graph: recompute regions and optimizer nodes, before the costs."""
    if ir.meta.training is None or ir.meta.training.prepared is not None:
        return
    from passes.training import TrainingOptions, prepare_training

    w_bytes = options.bindings.get("w_bytes", ir.default_bindings.get("w_bytes", 4))
    train = TrainingOptions(options.optimizer, options.recompute, options.micro_batches)
    ir.meta.training.prepared = prepare_training(ir, train, w_bytes)


def _training(result: AnalysisResult, options: Options) -> None:
    """The training step: phases, memory, time and MFU (passes/training.py); with a target, the fit."""
    from passes.fit import check_fit
    from passes.training import TrainingOptions, summarize_training

    train = TrainingOptions(options.optimizer, options.recompute, options.micro_batches)
    result.training = summarize_training(result, result.ir.meta.training.prepared, train)
    if result.roofline is not None:
        result.training.fit = check_fit(result.training.memory.peak, result.roofline.target, result.bindings,
                                        options.memory_reserve)


def _memory(result: AnalysisResult, options: Options) -> None:
    """Peak memory from tensor lifetimes (kernel-level with a mode); with a target, the fit."""
    from passes.fit import check_fit
    from passes.memory import analyze_memory

    result.memory = analyze_memory(result.ir, result.kernels, result.bindings)
    if result.roofline is not None:
        result.memory.fit = check_fit(result.memory.peak, result.roofline.target, result.bindings,
                                      options.memory_reserve)


def _kernels(result: AnalysisResult, options: Options) -> None:
    result.kernels, result.roofline = kernels_on(result, options.target or DEFAULT_TARGET, options.mode or DEFAULT_MODE)


def kernels_on(result: AnalysisResult, target, mode: str):
    """(fusion, roofline, collapse) steps: the KernelGraph of ``result`` in ``mode`` and its
    RooflineResult on ``target`` at the result's bindings."""
    from irtools.hardware import load_target
    from passes.collapse import repeat_kernels
    from passes.fusion import build_kernels
    from passes.roofline import estimate

    target = load_target(target)
    kernels = build_kernels(result.ir, mode, target=target)
    if result.ir.meta.collapse is not None:
        repeat_kernels(kernels, result.ir.meta.collapse)
    return kernels, estimate(kernels, target, result.bindings)


def _module_tree(tree, path: str = "") -> ModuleCost:
    data = tree.nodes[path]
    return ModuleCost(path, data["cls"], data["flops"], data["bytes_read"], data["bytes_written"],
                      [_module_tree(tree, child) for child in tree.successors(path)])


def config_generalizer(recipe):
    """The generalize step for a recipe that can be rebuilt at other configs."""
    from passes.generalize import generalize

    if recipe.rebuild is None or recipe.space is None:
        raise UsageError(f"{recipe.name}: no config symbols are known for this model (--symbolic-config)")

    def capture_at(free_values):
        probe = recipe.rebuild(recipe.space.fields(free_values))
        return capture_recipe(probe)

    def run_generalize(ir):
        ir.meta.generalized = generalize(ir, capture_at, recipe.space, recipe.space.values(recipe.config))

    return run_generalize


def _run_collapsed(recipe, options: Options) -> AnalysisResult | None:
    """Analyze a three-block version of the model; None where that cannot stand for it."""
    from passes.compose import composed_costs

    space = recipe.space
    if recipe.rebuild is None or space is None or not space.layers_field:
        return None
    layers = space.values(recipe.config).get("num_layers", 0)
    if layers <= TRACED_LAYERS:
        return None
    small = recipe.rebuild({space.layers_field: TRACED_LAYERS})
    ir = capture_recipe(small, name=recipe.name)
    ir.meta.kv_cache = options.kv_cache_model
    _prepare_training(ir, options)
    annotate_costs(ir)
    if options.symbolic_config:
        config_generalizer(small)(ir)
    ir.meta.collapse = CollapseInfo(TRACED_LAYERS, layers, "")
    build_hierarchy(ir)
    tree = ir.meta.modules
    stacks = layer_stacks(tree)
    if len(stacks) != 1 or any(
        tree.nodes[stacks[0][0]][c] != tree.nodes[p][c] for p in stacks[0][1:] for c in COSTS
    ):
        return None  # blocks differ (or no single stack): trace the whole model instead
    ir.meta.config_symbols = {**(ir.meta.config_symbols or {}), "num_layers": layers}
    ir.meta.collapse.stack = stacks[0][0].rsplit(".", 1)[0]
    parent = next(iter(tree.predecessors(stacks[0][0])))
    for path in [*nx.ancestors(tree, parent), parent]:  # costs above the stack: num_layers blocks
        tree.nodes[path].update(composed_costs(ir, path))
    build_lines(ir, options.line_module)
    return _finish(ir, options, options.scenario, composed_totals={c: tree.nodes[""][c] for c in ALL_COSTS})
