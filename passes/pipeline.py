"""The analysis pipeline, in order. Each pass reads and writes named IR attributes.

    capture (irtools.capture)          nodes: op, inputs, outputs, args, scope, source
    annotate_costs                     nodes: kind, flops, bytes_read, bytes_written, ...
    generalize (optional)              nodes: the same costs in config symbols, where verified
    build_hierarchy                    ir.meta["modules"]: module tree with subtree sums
    build_lines                        ir.meta["lines"]: the line table of one module
    then, on request: passes.compose (templates, num_layers), passes.fusion (kernels),
    passes.roofline (time on a target)
"""

from __future__ import annotations

from collections.abc import Callable

from passes.annotate_costs import annotate_costs
from passes.hierarchy import build_hierarchy
from passes.lines import build_lines


def run(ir, line_module: str = "", generalize: Callable | None = None):
    """Run every pass over ``ir`` (in place) and return it.

    ``generalize(ir)``, when given, rewrites verified node costs in config symbols
    (``passes.generalize``) before they are aggregated."""
    annotate_costs(ir)
    if generalize is not None:
        generalize(ir)
    build_hierarchy(ir)
    build_lines(ir, line_module)
    return ir
