"""Cost rules of ATen convolutions: forward (plain and transposed) and ``convolution_backward``.

The matmul-class part follows ``torch.utils.flop_counter`` exactly (docs/conventions.md): a
convolution is 2 · batch · C_out · (C_in/groups) · kernel elements per point of the output
grid — of the *input* grid for a transposed one; a bias adds one flop per output element to
``flops`` but not to ``matmul_flops``.
"""

from __future__ import annotations

import sympy

from passes.costs.registry import ZERO, Cost, OpCall, RuleSet, read_all, write_all

RULES = RuleSet()
cost_rule = RULES.rule


def conv_flops(x_shape: tuple, w_shape: tuple, out_shape: tuple, transposed: bool = False) -> sympy.Expr:
    """2 · batch · w[0] · w[1] · kernel · grid, the grid being the output's (or the input's
    when ``transposed``) spatial size — FlopCounterMode's ``conv_flop_count``."""
    grid = (x_shape if transposed else out_shape)[2:]
    return 2 * x_shape[0] * sympy.Mul(*w_shape) * sympy.Mul(*grid)


def _forward(call: OpCall, transposed: bool) -> Cost:
    x, w = call.tensors_in[:2]
    out = call.out
    x_shape, out_shape = x.shape, out.shape
    if len(x_shape) == len(w.shape) - 1:  # an unbatched input (conv1d/2d/3d accept one)
        x_shape, out_shape = (1, *x_shape), (1, *out_shape)
    mm = conv_flops(x_shape, w.shape, out_shape, transposed)
    bias = out.numel if len(call.tensors_in) > 2 else ZERO
    return Cost(mm + bias, read_all(call), write_all(call), matmul_flops=mm)


@cost_rule(
    "aten.convolution", "aten._convolution", "aten.conv1d", "aten.conv2d", "aten.conv3d",
    "aten.cudnn_convolution", "aten._slow_conv2d_forward", "aten.convolution_overrideable",
    "aten.mkldnn_convolution", "aten._convolution_mode", "aten.conv_tbc",
    kind="conv",
)
def convolution(call: OpCall) -> Cost:
    """Plain convolution; ``aten.convolution`` with ``transposed=True`` counts as a transposed one."""
    if call.op.startswith("aten.conv_tbc"):  # time-batch-channel layout: (T, B, C) x (K, C_in, C_out)
        x, w = call.tensors_in[:2]
        mm = 2 * call.out.numel * w.shape[0] * w.shape[1]
        return Cost(mm + call.out.numel, read_all(call), write_all(call), matmul_flops=mm)
    return _forward(call, bool(call.arg("transposed", False)))


@cost_rule(
    "aten.conv_transpose1d", "aten.conv_transpose2d", "aten.conv_transpose3d", "aten.cudnn_convolution_transpose",
    kind="conv",
)
def conv_transpose(call: OpCall) -> Cost:
    """Transposed convolution: weight (C_in, C_out/groups, k...), one kernel per input point."""
    return _forward(call, True)


def _swap01(shape: tuple) -> tuple:
    return (shape[1], shape[0], *shape[2:])


@cost_rule("aten.convolution_backward", kind="conv")
def convolution_backward(call: OpCall) -> Cost:
    """grad_input (a transposed convolution of grad_out with the weight) and grad_weight (a
    convolution of the input with grad_out), each counted as FlopCounterMode counts it, for the
    gradients ``output_mask`` asks for; grad_bias adds one flop per grad_out element."""
    grad_out, x, w = call.tensors_in[:3]
    transposed = bool(call.arg("transposed", False))
    mask = list(call.arg("output_mask", [True, True, True]))
    mm = ZERO
    if mask[0]:
        mm += conv_flops(grad_out.shape, w.shape, x.shape, not transposed)
    if mask[1]:
        if transposed:
            mm += conv_flops(_swap01(grad_out.shape), _swap01(x.shape), _swap01(w.shape))
        else:
            mm += conv_flops(_swap01(x.shape), _swap01(grad_out.shape), _swap01(w.shape))
    bias = grad_out.numel if len(mask) > 2 and mask[2] else ZERO
    return Cost(mm + bias, read_all(call), write_all(call), matmul_flops=mm)


__all__ = ["RULES", "conv_flops"]
