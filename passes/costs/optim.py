"""Cost rules of optimizer steps: torch.optim's fused kernels and the per-parameter update
nodes ``passes.optimizer`` adds to a training graph (``irtools.optimizer.<name>_``, in place).

Per parameter element, :data:`UPDATE_OPS` holds the FLOPs and the elements read and written by
the ATen ops of torch.optim's single-tensor (and, the same ops on lists, foreach) step under
irtools' own elementwise rules (docs/conventions.md: 1 FLOP per element of ``mul_``, ``lerp_``,
``addcmul_``, ``sqrt`` ...): SGD with momentum ``buf.mul_(m).add_(g)``, ``p.add_(buf, -lr)``;
Adam ``lerp_``, ``mul_``, ``addcmul_``, ``sqrt``, ``div``, ``add_``, ``addcdiv_``; AdamW adds the
decoupled decay ``p.mul_(1 - lr·wd)``. ``tests/test_optimizer.py`` checks them against a recorded
step (``irtools.capture.torch.optim_ops``). Ops on 0-dim step counters are left out.

A fused kernel (``_fused_adamw_``, or variant ``fused`` of an update node) does the same FLOPs
and moves each tensor once: it reads the parameter, its gradient and its states and writes
the parameter and states. The single-tensor and foreach steps move what their ops move.
"""

from __future__ import annotations

import sympy

from irtools.ir.kinds import op_packet
from irtools.ir.numeric import total
from passes.costs.registry import Cost, OpCall, RuleSet, read_all, write_all

RULES = RuleSet()
cost_rule = RULES.rule

#: optimizer -> (FLOPs, elements read, elements written) per parameter element of its update ops
UPDATE_OPS = {"sgd": (3, 5, 3), "adam": (7, 12, 7), "adamw": (8, 13, 8)}
#: state tensors the size of the parameter (momentum buffer; first and second moments)
STATES = {"sgd": 1, "adam": 2, "adamw": 2}
#: optimizers that keep a 0-dim fp32 step counter per parameter
STEP_COUNTER = {"sgd": False, "adam": True, "adamw": True}
#: tensor lists a fused kernel takes before its step counters: params, grads, states
FUSED_LISTS = {"aten._fused_sgd_": ("sgd", 3), "aten._fused_adam_": ("adam", 4), "aten._fused_adamw_": ("adamw", 4)}
VARIANTS = ("single", "foreach", "fused")


def _per_element(call: OpCall) -> list:
    return [t for t in call.tensors_in if t.shape]


@cost_rule(*FUSED_LISTS, kind="elementwise")
def fused_step(call: OpCall) -> Cost:
    """torch.optim's fused kernel: :data:`UPDATE_OPS` FLOPs per parameter element; every list
    read once, the parameters and states written once (in place when the op returns nothing)."""
    name, lists = FUSED_LISTS[op_packet(call.op)]
    tensors = _per_element(call)
    per_list = len(tensors) // lists
    params = tensors[:per_list]
    numel = total(t.numel for t in params)
    if call.tensors_out:
        written = write_all(call)
    else:
        written = total(t.nbytes for t in tensors[:per_list] + tensors[2 * per_list:lists * per_list])
    return Cost(UPDATE_OPS[name][0] * numel, read_all(call), written)


def _optimizer_step(call: OpCall) -> Cost:
    """One parameter's update node. Inputs: the parameter (16-bit copy: mixed precision only
    writes it), its gradient, the fp32 master weights (mixed precision), the states."""
    name = call.op.rsplit(".", 1)[1].rstrip("_")
    flops, read, write = UPDATE_OPS[name]
    mixed = bool(call.arg("mixed", False))
    grad = call.inputs[1]
    work = call.inputs[2] if mixed else call.inputs[0]  # the tensor the update ops run on
    numel = work.numel
    if call.arg("variant", "fused") == "fused":
        if mixed:  # the 16-bit parameter is written, never read
            read_bytes = total(t.nbytes for t in call.tensors_in[1:])
        else:
            read_bytes = read_all(call)
        return Cost(flops * numel, read_bytes, write_all(call))
    size = work.itemsize
    read_bytes, write_bytes = read * numel * size, write * numel * size
    if mixed:  # the 16-bit gradient upcast into a working copy; the 16-bit parameter copied out
        read_bytes += grad.nbytes + numel * size
        write_bytes += numel * size + call.inputs[0].nbytes
    return Cost(flops * numel, sympy.expand(read_bytes), sympy.expand(write_bytes))


RULES.handle(tuple(f"irtools.optimizer.{name}_" for name in UPDATE_OPS), "elementwise", _optimizer_step)
