"""Cost rules of ATen recurrent layers: ``lstm``, ``gru``, ``rnn_tanh``/``rnn_relu`` and their cells.

Every step multiplies each token of the batch by every weight matrix once (input-hidden,
hidden-hidden and an LSTM's projection), so the matmul part is 2 · tokens · Σ weight
elements over the 2-D parameters — layers and directions included, since each has its
own matrices (docs/conventions.md: 2·M·N·K). Beside it, per token and hidden unit of each
layer and direction: the bias adds, and the gate arithmetic of :data:`GATE_FLOPS`.
"""

from __future__ import annotations

import sympy

from passes.costs.registry import Cost, OpCall, RuleSet, read_all, write_all

RULES = RuleSet()
cost_rule = RULES.rule

#: (gates, flops per hidden unit per token) — LSTM: 3 sigmoids (4 each), 2 tanh, c = f·c + i·g
#: (3), h = o·tanh(c) (1); GRU: 2 sigmoids, r·h_n and its add, tanh, h = (1 − z)·n + z·h (4);
#: vanilla RNN: the add of the two products and the activation
GATE_FLOPS = {"lstm": (4, 18), "gru": (3, 15), "rnn": (1, 2)}


def _family(op: str) -> str:
    name = op.split(".")[1]
    return "lstm" if name.startswith("lstm") else "gru" if name.startswith("gru") else "rnn"


@cost_rule(
    *(f"aten.{n}" for n in ("lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell",
                            "rnn_relu_cell")),
    kind="matmul",
)
def recurrent(call: OpCall) -> Cost:
    """Inputs: input (or a packed sequence's data and batch sizes), hx (two tensors for an LSTM),
    then the parameters; tokens = input elements / features."""
    family = _family(call.op)
    x, *rest = call.tensors_in
    if rest and len(rest[0].shape) == 1 and not rest[0].dtype.startswith(("float", "bfloat", "complex")):
        rest = rest[1:]  # a packed sequence's batch sizes
    params = rest[2 if family == "lstm" else 1:]
    weights = [t for t in params if len(t.shape) == 2]
    biases = [t for t in params if len(t.shape) == 1]
    tokens = x.numel / x.shape[-1]
    mm = 2 * tokens * sympy.Add(*(w.numel for w in weights))
    gates, per_unit = GATE_FLOPS[family]
    if call.op.split(".")[1].endswith("_cell"):
        layer_dirs = 1
    else:
        layer_dirs = int(call.arg("num_layers", 1)) * (2 if call.arg("bidirectional", False) else 1)
    hidden = weights[0].shape[0] / gates if weights else sympy.Integer(0)
    pointwise = tokens * (sympy.Add(*(b.numel for b in biases)) + per_unit * hidden * layer_dirs)
    return Cost(mm + pointwise, read_all(call), write_all(call), matmul_flops=mm)


__all__ = ["GATE_FLOPS", "RULES"]
