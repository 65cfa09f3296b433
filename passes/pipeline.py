"""The analysis pipeline, in order. Each pass reads and writes named IR attributes."""

from __future__ import annotations

from collections.abc import Callable

from passes.annotate_costs import annotate_costs
from passes.hierarchy import build_hierarchy
from passes.lines import build_lines

#: capture -> costs per node -> (config-symbolic formulas) -> module tree -> line table
PIPELINE = (annotate_costs, "generalize (optional)", build_hierarchy, build_lines)


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
