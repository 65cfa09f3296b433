"""Cost rules of the collective nodes the sharding passes insert (``passes/parallel``).

A collective's *local* work: the bytes it reads from and writes to the device's memory (its
input and output buffers) and, for reductions, the additions of a ring: each device adds
(n−1)/n of the tensor's elements (n = ``args["size"]``, the group's size, a number or a degree
symbol). The time on the wire is not a memory cost: ``passes/collectives.py`` prices it on
the target's interconnect.
"""

from __future__ import annotations

import sympy

from passes.costs.registry import Cost, OpCall, RuleSet, read_all, write_all

RULES = RuleSet()

#: the op names ``passes.parallel.shard`` gives collective nodes
COLLECTIVE_OPS = ("collective.all_reduce", "collective.reduce_scatter", "collective.all_gather",
                  "collective.all_to_all", "collective.send", "collective.recv")


@RULES.rule("collective.all_reduce", "collective.reduce_scatter", kind="collective")
def reducing(call: OpCall) -> Cost:
    """Ring reduction: (n−1)/n of the (full) input's elements added on each device."""
    n = sympy.sympify(call.arg("size", 1))
    full = call.tensors_in[0]
    return Cost(full.numel * (n - 1) / n, read_all(call), write_all(call))


@RULES.rule("collective.all_gather", "collective.all_to_all", "collective.send", "collective.recv", kind="collective")
def moving(call: OpCall) -> Cost:
    """Data movement only: the local buffers are read and written."""
    return Cost(sympy.Integer(0), read_all(call), write_all(call))
