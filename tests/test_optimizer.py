"""The optimizer step: per-parameter FLOPs and bytes of the update nodes (passes/costs/optim.py)
equal those of torch.optim's real update ops, recorded from a real step
(irtools.capture.torch.optim_ops) and costed by the same rules; bytes per parameter under
mixed precision; the step's nodes in a training graph."""

from __future__ import annotations

import pytest
import sympy

from irtools.capture.torch.optim_ops import step_ir
from irtools.ir import TensorSpec
from irtools.ir.symbols import sym
from passes.annotate_costs import annotate_costs
from passes.costs import OpCall, lookup
from passes.costs.optim import STATES, UPDATE_OPS
from passes.optimizer import OptimizerSpec

SIZES = (7, 11)
FP32 = {"a_bytes": 4, "w_bytes": 4}


def recorded(optimizer: str, variant: str) -> dict[str, float]:
    """FLOPs and bytes per parameter element of a recorded step (ops on 0-dim counters left out)."""
    ir = annotate_costs(step_ir(optimizer, variant, SIZES))
    assert not any(a.unsupported for _, a in ir.nodes()), [a.op for _, a in ir.nodes() if a.unsupported]
    nodes = [a for _, a in ir.nodes() if not a.args["scalar"]]
    n = sum(SIZES)
    return {c: float(sum(sympy.sympify(getattr(a, c)) for a in nodes).subs({sym(k): v for k, v in FP32.items()})) / n
            for c in ("flops", "bytes_read", "bytes_written")}


def update_node(optimizer: str, variant: str, numel: int, mixed: bool = False) -> dict[str, float]:
    """The costs of one ``irtools.optimizer.<name>_`` node for a parameter of ``numel`` elements."""
    param = TensorSpec((numel,), "float32", "weight")
    grad = TensorSpec((numel,), "float32", "activation")
    state = TensorSpec((numel,), "float32", "optimizer") if mixed else param
    inputs = [param, grad] + ([TensorSpec((numel,), "float32", "optimizer")] if mixed else []) + [state] * STATES[optimizer]
    call = OpCall(f"irtools.optimizer.{optimizer}_", tuple(inputs), tuple([param, *inputs[2:]]),
                  {"variant": variant, "mixed": mixed})
    cost = lookup(call.op).fn(call)
    return {c: float(sympy.sympify(getattr(cost, c)).subs({sym(k): v for k, v in FP32.items()})) / numel
            for c in ("flops", "bytes_read", "bytes_written")}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("variant", ["single", "foreach"])
def test_update_node_equals_recorded_update_ops(optimizer, variant):
    real = recorded(optimizer, variant)
    flops, read, write = UPDATE_OPS[optimizer]
    assert real == {"flops": flops, "bytes_read": 4 * read, "bytes_written": 4 * write}
    assert update_node(optimizer, variant, 13) == real


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_fused_kernel_same_flops_each_tensor_moved_once(optimizer):
    """torch's fused kernel (``_fused_adamw_`` ...): the FLOPs of the single-tensor update ops;
    it reads the parameter, gradient and states once and writes the parameter and states once."""
    fused = recorded(optimizer, "fused")
    tensors = 2 + STATES[optimizer]
    assert fused["flops"] == UPDATE_OPS[optimizer][0]
    assert fused["bytes_read"] == 4 * tensors + (4 * len(SIZES) / sum(SIZES) if optimizer != "sgd" else 0)  # + counters
    assert fused["bytes_written"] == 4 * (tensors - 1)
    node = update_node(optimizer, "fused", 13)
    assert node == {"flops": UPDATE_OPS[optimizer][0], "bytes_read": 4 * tensors, "bytes_written": 4 * (tensors - 1)}


def test_mixed_precision_bytes_per_parameter():
    """16-bit weights and gradients, fp32 master weights and two fp32 moments: 16 bytes for
    Adam (the ZeRO paper's 2 + 2 + 12); the fused step reads the 16-bit gradient, the master
    weights and moments, writes them and the 16-bit weights."""
    spec = OptimizerSpec("adamw", "fused", mixed=True)
    per = {k: float(v.subs({sym("w_bytes"): 2, sym("a_bytes"): 2})) for k, v in spec.bytes_per_param().items()}
    assert per == {"weights": 2, "gradients": 2, "master_weights": 4, "optimizer_states": 8}
    assert sum(per.values()) == 16
    assert OptimizerSpec("sgd", mixed=False).bytes_per_param()["optimizer_states"] == sym("w_bytes")
    node = update_node("adamw", "fused", 10, mixed=True)
    assert node["flops"] == UPDATE_OPS["adamw"][0]
    assert node["bytes_read"] == 4 + 4 + 8  # gradient (fp32 here), master, moments
    assert node["bytes_written"] == 4 + 4 + 8  # weights, master, moments


def test_unknown_optimizer_is_one_line_error():
    from irtools.ir.errors import IrtoolsError

    with pytest.raises(IrtoolsError, match="unknown optimizer 'lion'"):
        OptimizerSpec("lion")
    with pytest.raises(IrtoolsError, match="unknown optimizer variant"):
        OptimizerSpec("adamw", "compiled")


def test_optimizer_phase_of_a_training_graph():
    """One update node per trainable parameter; the phase's FLOPs are FLOPs per parameter x
    parameters; the states are held for the whole step (exact, with 4-byte step counters)."""
    pytest.importorskip("transformers")
    from tests.training_models import analyze

    r = analyze("cnn", optimizer="adamw:single")
    tr = r.training
    info = r.ir.meta.training
    nodes = [n for n, a in r.ir.nodes() if a.phase == "optimizer"]
    assert len(nodes) == len(info.gradients) == 8
    params = r.value(tr.params)
    assert params == 224 + 16 + 1168 + 170
    assert r.value(tr.phases["optimizer"]["flops"]) == UPDATE_OPS["adamw"][0] * params
    assert r.value(tr.memory.totals["optimizer_states"]) == 2 * 4 * params + 4 * len(nodes)
    assert r.value(tr.phases["optimizer"]["bytes_read"]) == 4 * UPDATE_OPS["adamw"][1] * params
