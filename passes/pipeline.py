"""The analysis pipeline, in order. Each pass reads and writes named IR attributes."""

from __future__ import annotations

from passes.annotate_costs import annotate_costs
from passes.hierarchy import build_hierarchy
from passes.lines import build_lines

#: capture -> costs per node -> module tree -> line table of one module
PIPELINE = (annotate_costs, build_hierarchy, build_lines)


def run(ir, line_module: str = ""):
    """Run every pass over ``ir`` (in place) and return it."""
    annotate_costs(ir)
    build_hierarchy(ir)
    build_lines(ir, line_module)
    return ir
