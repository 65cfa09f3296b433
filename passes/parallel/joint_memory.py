"""Per-device training memory from the sharded joint graph (docs/parallel.md, "Training memory").

:func:`joint_memory` shards an annotated joint training graph (``passes.parallel.joint_shard``)
and runs ``passes.train_memory.training_memory`` on one rank's copy, once with one micro-batch
and once with gradient accumulation (gradients held for the whole step). Each step that can be
the peak (the memory pass's candidates) is kept as four sums, formulas in ``tp`` and the free
dims: ``weights`` (parameters), ``gradients``, ``optimizer`` (master weights and states) and
``rest`` (activations, the batch, buffers, the optimizer's workspace), so that
``passes.parallel.step`` can divide the first three by ``dp`` under ZeRO before taking the
maximum over the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from irtools.ir import IRGraph
from passes.parallel.joint_shard import JointPlan, joint_tensor_parallel, shard_joint

GROUPS = {"weights": ("parameters",), "gradients": ("gradients",),
          "optimizer": ("master_weights", "optimizer_states")}
KEYS = ("weights", "gradients", "optimizer", "rest")


@dataclass
class JointMemory:
    """Candidate peaks of one rank's training step: ``steps[accumulate]`` lists ``{key: bytes}``."""

    plan: JointPlan
    sharded: IRGraph
    steps: dict[int, list[dict[str, sympy.Expr]]] = field(default_factory=dict)
    totals: dict[str, sympy.Expr] = field(default_factory=dict)  # whole categories of the step (train_memory)

    def values(self, prefix: str = "joint") -> dict[str, sympy.Expr]:
        """Flat keys for the per-device model: ``<prefix>.<accumulate>.<i>.<key>``."""
        out = {f"{prefix}.{m}.{i}.{k}": e for m, cands in self.steps.items() for i, c in enumerate(cands)
               for k, e in c.items()}
        for k, cats in GROUPS.items():
            out[f"{prefix}.totals.{k}"] = sympy.Add(*(self.totals.get(c, 0) for c in cats))
        return out


def _grouped(breakdown: dict[str, sympy.Expr]) -> dict[str, sympy.Expr]:
    out = {k: sympy.Add(*(breakdown.get(c, 0) for c in cats)) for k, cats in GROUPS.items()}
    held = {c for cats in GROUPS.values() for c in cats}
    out["rest"] = sympy.Add(*(v for c, v in breakdown.items() if c not in held))
    return out


def joint_memory(joint: IRGraph) -> JointMemory:
    """The per-device training memory of an annotated joint graph with its optimizer nodes."""
    from passes.train_memory import training_memory

    prepared = joint.meta.training.prepared
    plan = joint_tensor_parallel(joint)
    sharded = shard_joint(joint, plan)
    out = JointMemory(plan, sharded)
    for m in (1, 2):
        mem = training_memory(sharded, None, prepared.optimizer if prepared else None, m)
        out.steps[int(m > 1)] = [_grouped(mem.breakdown(i)) for i in mem.candidates]
        if m == 1:
            out.totals = dict(mem.totals)
    return out


__all__ = ["JointMemory", "KEYS", "joint_memory"]
