"""Cost rules of the ONNX recurrent ops: RNN, GRU, LSTM (and com.microsoft.DynamicQuantizeLSTM).

Costed per time step, per direction, per batch row, times the sequence length (docs/conventions.md):

- gate matmuls ``2·(input + hidden)·(gates·hidden)`` (X·Wᵀ and H·Rᵀ; gates 1, 3, 4);
- ``gates·hidden`` adds joining the two products, ``2·gates·hidden`` more with the bias B;
- elementwise, with f, g, h the activations (Sigmoid 4 as ``aten.sigmoid``, Tanh and Relu 1):
  RNN ``f·H``; GRU ``2f·H`` (z, r) ``+ H`` (r⊙·) ``+ g·H`` ``+ 4H`` ((1−z)⊙h̃ + z⊙h);
  LSTM ``3f·H`` (i, f, o) ``+ g·H`` ``+ 3H`` (f⊙c + i⊙g) ``+ h·H`` ``+ H`` (o⊙·), and ``6H``
  for peepholes P — defaults give 14H (GRU) and 18H (LSTM).

Every input is read once and every output written once (weights stay on chip across steps).
"""

from __future__ import annotations

import sympy

from passes.costs.onnx_ops import MS, onnx_rules
from passes.costs.registry import Cost, OpCall, RuleSet, read_all, write_all
from passes.costs.torch_ops import ELEMENTWISE_FLOPS

RULES = RuleSet()
onnx_rule = onnx_rules(RULES)

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4, "DynamicQuantizeLSTM": 4}
DEFAULT_ACTIVATIONS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}
ACTIVATION_FLOPS = {
    "Sigmoid": ELEMENTWISE_FLOPS["sigmoid"], "Tanh": ELEMENTWISE_FLOPS["tanh"], "Relu": 1, "LeakyRelu": 1,
    "ThresholdedRelu": 1, "Elu": 1, "Affine": 2, "ScaledTanh": 3, "HardSigmoid": 3, "Softsign": 2, "Softplus": 2,
}


def _present(call: OpCall, i: int) -> bool:
    return len(call.inputs) > i and call.inputs[i] is not None


def cell_elementwise(op: str, hidden, acts: tuple[str, ...], peephole: bool) -> sympy.Expr:
    """Elementwise flops of one cell step for one batch row (gate activations and state update)."""
    f, g, h = (ACTIVATION_FLOPS.get(a, 1) for a in (acts + ("Tanh", "Tanh", "Tanh"))[:3])
    if op == "RNN":
        return f * hidden
    if op == "GRU":
        return (2 * f + 1 + g + 4) * hidden
    return (3 * f + g + 3 + h + 1 + (6 if peephole else 0)) * hidden


def rnn_step(op: str, inp, hidden, bias: bool, peephole: bool, acts: tuple[str, ...]) -> tuple[sympy.Expr, sympy.Expr]:
    """(matmul flops, total flops) of one step, one direction, one batch row."""
    gh = GATES[op] * hidden
    mm = 2 * (inp + hidden) * gh
    return mm, mm + gh + (2 * gh if bias else 0) + cell_elementwise(op, hidden, acts, peephole)


@onnx_rule("RNN", "GRU", "LSTM", MS + "DynamicQuantizeLSTM", kind="matmul")
def rnn(call: OpCall) -> Cost:
    op = call.op.rsplit(".", 1)[-1]
    base = "LSTM" if op == "DynamicQuantizeLSTM" else op
    x, w = call.inputs[:2]
    layout = call.arg("layout", 0)
    seq, batch = (x.shape[1], x.shape[0]) if layout else (x.shape[0], x.shape[1])
    inp = x.shape[2]
    dirs = int(w.shape[0]) if sympy.sympify(w.shape[0]).is_Integer else 1
    hidden = sympy.Integer(call.arg("hidden_size")) if call.arg("hidden_size") else call.inputs[2].shape[-1]
    acts = tuple(call.arg("activations") or DEFAULT_ACTIVATIONS[base] * dirs)
    per = len(acts) // dirs if dirs else len(acts)
    mm_total, total = sympy.Integer(0), sympy.Integer(0)
    for d in range(dirs):
        mm, flops = rnn_step(base, inp, hidden, _present(call, 3), base == "LSTM" and _present(call, 7),
                             acts[d * per:(d + 1) * per])
        mm_total, total = mm_total + mm, total + flops
    return Cost(seq * batch * total, read_all(call), write_all(call), matmul_flops=seq * batch * mm_total)
