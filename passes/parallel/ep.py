"""Expert parallelism for mixture-of-experts layers: experts spread over ``ep`` ranks.

The expert matmuls are the grouped-matmul nodes of a captured MoE layer
(``irtools.routed_mm``, ``transformers.grouped_mm_fallback``: weight ``(E, K, N)``). With
``ep`` ranks each holding ``E/ep`` experts, each rank runs ``1/ep`` of the routed rows under
uniform routing (docs/conventions.md, mixture of experts), so the expert kernels' FLOPs, bytes
and time and the expert weights are divided by ``ep``. The routed tokens move twice per layer
and direction: an all-to-all **dispatch** of the rows entering the first expert matmul and
an all-to-all **combine** of the rows leaving the last (NCCL size: the whole ``rows × hidden``
tensor); backward repeats both. Experts are not split by tensor parallelism here (expert
tensor-parallel degree 1): with ``tp > 1`` the expert part is replicated over the TP group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irtools.ir import IRGraph
from irtools.ir.kinds import op_packet
from irtools.ir.symbols import sym
from passes.collectives import Collective

EP = sym("ep")
EXPERT_OPS = {"irtools.routed_mm", "transformers.grouped_mm_fallback"}


@dataclass
class EPPlan:
    """The expert matmul nodes, grouped by MoE layer (module), and their all-to-alls."""

    layers: dict[str, list[str]] = field(default_factory=dict)  # expert module -> its grouped-matmul nodes
    experts: int | None = None
    params: set[str] = field(default_factory=set)  # the expert weight parameters (value ids)

    @property
    def nodes(self) -> set[str]:
        return {n for ns in self.layers.values() for n in ns}


def expert_parallel(ir: IRGraph) -> EPPlan:
    """Find the expert layers of an annotated IR (empty for a dense model)."""
    plan = EPPlan()
    for n, a in ir.nodes():
        if _name(a.op) in EXPERT_OPS and len(a.inputs) > 1 and a.inputs[1] is not None:
            plan.layers.setdefault(a.module or "", []).append(n)
            plan.experts = int(a.inputs[1].shape[0]) if a.inputs[1].shape[0].is_number else plan.experts
            param = _param(ir, a.input_values[1])
            if param is not None:
                plan.params.add(param)
    return plan


def _name(op: str) -> str:
    return op_packet(op).removesuffix(".default")


def _param(ir: IRGraph, value: str | None) -> str | None:
    """The parameter a weight input views (through transposes and casts)."""
    for _ in range(8):
        val = ir.values.get(value) if value is not None else None
        if val is None:
            return None
        if val.producer is None:
            return value
        value = next((v for v in ir.node(val.producer).input_values if v is not None), None)
    return None


def ep_collectives(ir: IRGraph, plan: EPPlan) -> list[Collective]:
    """Dispatch and combine all-to-alls of every expert layer, forward and backward."""
    out = []
    for module, nodes in plan.layers.items():
        first, last = ir.node(nodes[0]), ir.node(nodes[-1])
        dispatch, combine = first.inputs[0].nbytes, last.outputs[0].nbytes
        for phase in ("forward", "backward"):
            out.append(Collective("all_to_all", "ep", dispatch, phase, f"dispatch__{module}__{phase}", module,
                                  "routed tokens to their experts"))
            out.append(Collective("all_to_all", "ep", combine, phase, f"combine__{module}__{phase}", module,
                                  "expert outputs back to their tokens"))
    return out


__all__ = ["EP", "EPPlan", "ep_collectives", "expert_parallel"]
