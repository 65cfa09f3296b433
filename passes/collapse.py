"""Collapse pass: launch counts of the kernels of a model whose identical blocks were traced
``traced_layers`` times and stand for ``num_layers`` (``ir.meta.collapse``).

With three blocks traced (b0, b1, b2), the full model's kernels are the traced ones plus
``num_layers - 3`` more copies of the repeating unit: the kernels of the middle block b1,
including those fused across its junction with b0 (its neighbours on both sides are blocks,
as for every middle block of the full model). Those kernels get ``repeat = num_layers - 2``;
every other kernel runs once. Kernel totals, time and the per-module and per-line rollups
then equal a full trace's (tests/test_collapse.py checks every figure).
"""

from __future__ import annotations

import re

from irtools.ir import CollapseInfo, IRGraph
from passes.fusion import KernelGraph

MIDDLE = 1  # the traced block whose neighbours are blocks on both sides


def block_of(ir: IRGraph, node_id: str, stack: str) -> int | None:
    """Index of the stacked block (``stack.<i>``) a node belongs to, or None outside the stack."""
    module = ir.node(node_id).module or ""
    m = re.match(re.escape(stack) + r"\.(\d+)(?:\.|$)", module)
    return int(m.group(1)) if m else None


def repeat_kernels(kernel_graph: KernelGraph, collapse: CollapseInfo) -> KernelGraph:
    """Set each kernel's ``repeat`` (in place) and return the kernel graph."""
    if collapse.traced_layers < 3 or collapse.num_layers <= collapse.traced_layers:
        raise ValueError("kernel repeats need three traced blocks of a deeper stack")
    ir = kernel_graph.ir
    for kernel in kernel_graph.kernels:
        blocks = {block_of(ir, n, collapse.stack) for n in kernel.nodes}
        if MIDDLE in blocks and blocks <= {MIDDLE - 1, MIDDLE}:
            kernel.repeat = collapse.num_layers - collapse.traced_layers + 1
    return kernel_graph
