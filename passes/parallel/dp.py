"""Data parallelism and ZeRO (Rajbhandari et al. 2020) / FSDP: memory and collectives per device.

Per parameter a mixed-precision Adam step holds ``w`` bytes of weights, ``g`` of gradients and
``k`` of optimizer state (fp32 master weights + two moments): 2 + 2 + 12 in the ZeRO paper
(``passes.optimizer.OptimizerSpec(mixed=True)`` gives the same 2 + 2 + 4 + 8). Over ``dp``
data-parallel ranks, for the ``Ψ`` parameters a device holds:

| stage | weights | gradients | optimizer | collectives |
|---|---|---|---|---|
| 0 (DDP) | wΨ | gΨ | kΨ | gradient all-reduce, once per step |
| 1 | wΨ | gΨ | kΨ/dp | gradient reduce-scatter + parameter all-gather, once per step |
| 2 | wΨ | gΨ/dp | kΨ/dp | gradient reduce-scatter per micro-batch + parameter all-gather per step |
| 3 (FSDP) | wΨ/dp | gΨ/dp | kΨ/dp | parameter all-gather in forward and in backward + gradient reduce-scatter, per micro-batch |

so stage 1 holds ``2Ψ + 2Ψ + 12Ψ/dp`` (the paper's ``P_os``), stage 2 ``2Ψ + 14Ψ/dp`` and stage 3
``16Ψ/dp``; the bytes on the wire are the same 2Ψ for stages 0-2 per step and 3Ψ for stage 3
(the paper's 1.5×). ZeRO-3 also keeps the gathered parameters of the layer in use; that
transient is left out.
"""

from __future__ import annotations

import sympy

from irtools.ir.symbols import sym
from passes.collectives import Collective

DP = sym("dp")
STAGES = (0, 1, 2, 3)
#: bytes per parameter of mixed-precision Adam (ZeRO paper, section 3.1): fp16 weights and
#: gradients, fp32 master weights, momentum and variance
MIXED_ADAM = {"weights": 2, "gradients": 2, "optimizer": 12}
#: bytes an Adam update moves per parameter (reads fp32 master, m, v and the gradient; writes
#: master, m, v and the 16-bit weights): what the optimizer step's memory-bound time is made of
ADAM_STEP_BYTES = {"read": 4 + 4 + 4 + 2, "write": 4 + 4 + 4 + 2}


def zero_memory(psi, dp, stage: int, w=2, g=2, k=12) -> dict[str, sympy.Expr]:
    """Bytes of weights, gradients and optimizer state one device holds for ``psi`` parameters."""
    if stage not in STAGES:
        raise ValueError(f"ZeRO stage must be one of {STAGES}, got {stage!r}")
    psi = sympy.sympify(psi)
    return {
        "weights": w * psi / (dp if stage >= 3 else 1),
        "gradients": g * psi / (dp if stage >= 2 else 1),
        "optimizer": k * psi / (dp if stage >= 1 else 1),
    }


def zero_collectives(psi, stage: int, w=2, g=2) -> list[Collective]:
    """The data-parallel collectives of one device holding ``psi`` parameters (``count`` per
    micro-batch for phases forward/backward, per step for phase ``step``)."""
    if stage not in STAGES:
        raise ValueError(f"ZeRO stage must be one of {STAGES}, got {stage!r}")
    psi = sympy.sympify(psi)
    grads, params = g * psi, w * psi
    if stage == 0:
        return [Collective("all_reduce", "dp", grads, "step", "dp_grads", why="gradient all-reduce")]
    if stage == 1:
        return [Collective("reduce_scatter", "dp", grads, "step", "dp_grads", why="gradient reduce-scatter"),
                Collective("all_gather", "dp", params, "step", "dp_params", why="updated parameter all-gather")]
    if stage == 2:
        return [Collective("reduce_scatter", "dp", grads, "backward", "dp_grads", why="gradient reduce-scatter"),
                Collective("all_gather", "dp", params, "step", "dp_params", why="updated parameter all-gather")]
    return [Collective("all_gather", "dp", params, "forward", "fsdp_fwd", why="parameter all-gather (forward)"),
            Collective("all_gather", "dp", params, "backward", "fsdp_bwd", why="parameter all-gather (backward)"),
            Collective("reduce_scatter", "dp", grads, "backward", "dp_grads", why="gradient reduce-scatter")]


def wire_bytes_per_step(psi, stage: int, micro_batches=1, w=2, g=2) -> sympy.Expr:
    """NCCL-size bytes of a step's data-parallel collectives (all-reduce counted as RS + AG)."""
    total = sympy.Integer(0)
    for c in zero_collectives(psi, stage, w, g):
        times = 1 if c.phase == "step" else micro_batches
        total += times * c.nbytes * (2 if c.kind == "all_reduce" else 1)
    return total


__all__ = ["ADAM_STEP_BYTES", "DP", "MIXED_ADAM", "STAGES", "wire_bytes_per_step", "zero_collectives", "zero_memory"]
