"""Optimizer-step pass: one update node per trainable parameter, phase "optimizer".

Each node (op ``irtools.optimizer.<name>``, costed by ``passes/costs/optim.py`` from the update
ops of torch.optim's step) reads the parameter's gradient and states and writes the parameter
and states in place. Its states are new graph inputs, so the memory pass holds them for the
whole step: the momentum buffer (SGD), the first and second moments and a 0-dim fp32 step
counter (Adam, AdamW). The node sits in the parameter's module, so per-module tables and
collapsed layer stacks (``num_layers`` × a block) count it with its block.

Precision (bytes per parameter, :meth:`OptimizerSpec.bytes_per_param`): without mixed
precision the states have the parameter's dtype (``w_bytes``), as torch.optim keeps them;
mixed precision (16-bit ``w_bytes`` compute) keeps fp32 master weights and fp32 states beside
the 16-bit parameters and gradients (Adam: 2 + 2 + 4 + 8 = 16 bytes, as in the ZeRO paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from irtools.ir import IRGraph, Scope, TensorSpec
from irtools.ir.errors import UsageError
from irtools.ir.symbols import sym
from passes.costs.optim import STATES, STEP_COUNTER, UPDATE_OPS, VARIANTS

OPTIMIZERS = tuple(UPDATE_OPS)
STATE_NAMES = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq")}
MASTER_BYTES = 4  # fp32 master weights and states under mixed precision


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer, which implementation, and whether fp32 master weights are kept."""

    name: str = "adamw"
    variant: str = "foreach"  # single | foreach | fused (torch.optim's implementations)
    mixed: bool = False  # 16-bit parameters and gradients, fp32 master weights and states

    def __post_init__(self):
        if self.name not in UPDATE_OPS:
            raise UsageError(f"unknown optimizer {self.name!r} (choose from {', '.join(OPTIMIZERS)})")
        if self.variant not in VARIANTS:
            raise UsageError(f"unknown optimizer variant {self.variant!r} (choose from {', '.join(VARIANTS)})")

    @property
    def state_bytes(self) -> sympy.Expr:
        return sympy.Integer(MASTER_BYTES) if self.mixed else sym("w_bytes")

    def bytes_per_param(self) -> dict[str, sympy.Expr]:
        """Bytes held per parameter element: weights, gradients, master weights, states (the
        4-byte step counters are per parameter tensor, not per element)."""
        w = sym("w_bytes")
        return {
            "weights": w,
            "gradients": sym("a_bytes"),  # the precision the backward computes in
            "master_weights": sympy.Integer(MASTER_BYTES) if self.mixed else sympy.Integer(0),
            "optimizer_states": STATES[self.name] * self.state_bytes,
        }

    def flops_per_param(self) -> int:
        return UPDATE_OPS[self.name][0]

    def describe(self) -> str:
        parts = " + ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.bytes_per_param().items() if v != 0)
        precision = "mixed precision: 16-bit weights and gradients, fp32 master weights and states" if self.mixed \
            else "states in the parameters' dtype"
        return (f"{self.name} ({self.variant}), {precision}; bytes per parameter: {parts}"
                f"{'; plus a 4-byte step counter per parameter tensor' if STEP_COUNTER[self.name] else ''}")


def _state_spec(param: TensorSpec, spec: OptimizerSpec) -> TensorSpec:
    if spec.mixed:
        return TensorSpec(param.shape, "float32", "optimizer")
    return TensorSpec(param.shape, param.dtype, "weight")


def add_optimizer_step(ir: IRGraph, spec: OptimizerSpec) -> list[str]:
    """Append one update node per parameter with a gradient (in gradient order); returns their ids."""
    info = ir.meta.training
    classes = {s.path: s.cls for _, a in ir.nodes() for s in (a.scope or [])}
    added = []
    for param, grad in info.gradients.items():
        pspec, gspec = ir.values[param].spec, ir.values[grad].spec
        if pspec is None or gspec is None:
            continue
        inputs, values = [pspec, gspec], [param, grad]
        if spec.mixed:
            inputs.append(TensorSpec(pspec.shape, "float32", "optimizer"))
            values.append(f"{param}.master")
        for state in STATE_NAMES[spec.name]:
            inputs.append(_state_spec(pspec, spec))
            values.append(f"{param}.{state}")
        if STEP_COUNTER[spec.name]:
            inputs.append(TensorSpec((), "float32", "optimizer"))
            values.append(f"{param}.step")
        written = [pspec] + inputs[2:]  # the parameter, master weights and states, in place
        owner = info.owner(param)
        scope = [Scope("", ir.meta.root_class or "")]
        path = ""
        for part in owner.split(".") if owner else []:
            path = f"{path}.{part}" if path else part
            scope.append(Scope(path, classes.get(path, "")))
        node_id = f"optimizer_{param}"
        ir.add_op(node_id, op=f"irtools.optimizer.{spec.name}_", inputs=inputs, outputs=written,
                  input_values=values, output_values=[None] * len(written), scope=scope,
                  args={"variant": spec.variant, "mixed": spec.mixed}, phase="optimizer")
        added.append(node_id)
    return added

