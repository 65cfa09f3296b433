"""Cost rules of ATen backward ops (training graphs, core ATen after decompositions).

Conventions (docs/conventions.md): bytes are those of every tensor read and written. FLOPs:
attention backward counts the five matmuls FlopCounterMode counts (recomputed scores, dV, dP,
dQ, dK) plus 4 per score for the softmax derivative; a normalisation backward 8 flops per
element for grad_input, 2 for grad_weight (x̂·dy accumulated) and 1 for grad_bias, per
``output_mask``; a pool or pad backward one add per gradient element it scatters (an
average pool adds into each window element, a resampling repeats its forward flops); a
pointwise derivative the flops of :data:`POINTWISE_BACKWARD_FLOPS` per element. The
convolution backward is in ``aten_conv``.
"""

from __future__ import annotations

import sympy

from passes.costs.aten_pool import INTERPOLATION_FLOPS, adaptive_window_sum, spatial_dims, window
from passes.costs.registry import ZERO, Cost, OpCall, RuleSet, aten_ops, copy, read_all, write_all

RULES = RuleSet()
cost_rule = RULES.rule
register_handle = RULES.handle


_ops = aten_ops


def _per_grad(flops: int):
    """``flops`` per element of the incoming gradient (the first input)."""

    def rule(call: OpCall) -> Cost:
        return Cost(flops * call.tensors_in[0].numel, read_all(call), write_all(call))

    return rule


# ---- attention ----------------------------------------------------------------------------


def sdpa_backward_flops(q: tuple, k: tuple, v: tuple) -> tuple[sympy.Expr, sympy.Expr]:
    """(matmul flops, total flops) of attention's backward on (batch, heads, seq, dim) shapes."""
    *batch, sq, dq = q
    sk, dv = k[-2], v[-1]
    scores = sympy.Mul(*batch) * sq * sk
    mm = 2 * scores * (3 * dq + 2 * dv)
    return mm, mm + 4 * scores


@cost_rule(
    *_ops("_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
          "_scaled_dot_product_cudnn_attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
          "_flash_attention_backward", "_efficient_attention_backward"),
    kind="attention",
)
def sdpa_backward(call: OpCall) -> Cost:
    """Inputs (grad_out, q, k, v, ...); the raw flash/efficient kernels lay them out (b, s, h, d)."""
    q, k, v = (t.shape for t in call.tensors_in[1:4])
    if call.op.startswith(("aten._flash_attention_backward", "aten._efficient_attention_backward")):
        q, k, v = ((s[0], s[2], s[1], s[3]) for s in (q, k, v))
    mm, total = sdpa_backward_flops(q, k, v)
    return Cost(total, read_all(call), write_all(call), matmul_flops=mm)


# ---- normalisation ----------------------------------------------------------------------------

NORM_BACKWARD_FLOPS = (8, 2, 1)  # grad_input, grad_weight, grad_bias per input element


@cost_rule(
    *_ops("native_layer_norm_backward", "native_group_norm_backward", "native_batch_norm_backward",
          "batch_norm_backward", "cudnn_batch_norm_backward", "_fused_rms_norm_backward"),
    kind="norm",
)
def norm_backward(call: OpCall) -> Cost:
    """Inputs (grad_out, input, ...): per element 8 flops for grad_input, 2 for grad_weight, 1
    for grad_bias, each when ``output_mask`` asks for it."""
    n = call.tensors_in[1].numel
    mask = list(call.arg("output_mask", [True, True, True]))
    per = sum(f for f, m in zip(NORM_BACKWARD_FLOPS, mask) if m)
    return Cost(per * n, read_all(call), write_all(call))


@cost_rule(
    *_ops("embedding_dense_backward", "_embedding_bag_backward", "_embedding_bag_dense_backward",
          "_embedding_bag_per_sample_weights_backward"),
    kind="scatter",
)
def embedding_backward(call: OpCall) -> Cost:
    """Scatter-add the gradient rows into a zeroed table: one add per gradient element."""
    return Cost(call.tensors_in[0].numel, read_all(call), write_all(call))


# ---- pools, resampling, padding ------------------------------------------------------------

register_handle(
    _ops("max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward", "adaptive_max_pool2d_backward",
         "adaptive_max_pool3d_backward", "fractional_max_pool2d_backward", "fractional_max_pool3d_backward"),
    "pool",
    _per_grad(1),
)


@cost_rule("aten.avg_pool2d_backward", "aten.avg_pool3d_backward", kind="pool")
def avg_pool_backward(call: OpCall) -> Cost:
    """Each gradient element is added into every element of its window."""
    return Cost(call.tensors_in[0].numel * window(call), read_all(call), write_all(call))


@cost_rule("aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward", kind="pool")
def adaptive_avg_pool_backward(call: OpCall) -> Cost:
    """(grad_out, self): the forward's window sum, each element now written once per window."""
    grad, x = call.tensors_in[:2]
    d = spatial_dims(call.op)
    planes = grad.numel / sympy.Mul(*grad.shape[-d:])
    adds = planes * sympy.Mul(*(adaptive_window_sum(i, o) for i, o in zip(x.shape[-d:], grad.shape[-d:])))
    return Cost(adds, read_all(call), write_all(call))


for _mode, _flops in INTERPOLATION_FLOPS.items():
    _aa = (f"_upsample_{_mode}_aa_backward",) if _mode.endswith("2d") else ()
    register_handle(_ops(f"upsample_{_mode}_backward", *_aa), "elementwise", _per_grad(_flops))
register_handle(
    _ops("upsample_nearest1d_backward", "upsample_nearest2d_backward", "upsample_nearest3d_backward",
         "_upsample_nearest_exact1d_backward", "_upsample_nearest_exact2d_backward",
         "_upsample_nearest_exact3d_backward", "reflection_pad1d_backward", "reflection_pad2d_backward",
         "reflection_pad3d_backward", "replication_pad1d_backward", "replication_pad2d_backward",
         "replication_pad3d_backward", "unfold_backward"),
    "scatter",
    _per_grad(1),
)


@cost_rule("aten.grid_sampler_2d_backward", "aten.grid_sampler_3d_backward", kind="gather")
def grid_sampler_backward(call: OpCall) -> Cost:
    """Gradients for the input (scattered by the interpolation weights) and for the grid:
    twice the forward's interpolation flops per gradient element."""
    grad = call.tensors_in[0]
    per = INTERPOLATION_FLOPS["trilinear3d" if len(grad.shape) == 5 else "bilinear2d"]
    grid = call.tensors_in[2] if len(call.tensors_in) > 2 else None
    return Cost(2 * per * grad.numel + (4 * grid.numel if grid is not None else ZERO), read_all(call), write_all(call))


register_handle(_ops("select_backward", "slice_backward", "diagonal_backward"), "copy", copy)


# ---- pointwise derivatives and losses ---------------------------------------------------------

#: flops per gradient element: the derivative from the saved input or output, times the gradient
POINTWISE_BACKWARD_FLOPS = {
    "threshold_backward": 1,  # select
    "sigmoid_backward": 3,  # g·y·(1−y)
    "tanh_backward": 3,  # g·(1−y²)
    "silu_backward": 8,  # σ (4), 1 + x·(1−σ) (3), ·g
    "hardswish_backward": 4,
    "hardsigmoid_backward": 2,
    "hardtanh_backward": 2,
    "leaky_relu_backward": 2,
    "elu_backward": 3,
    "softplus_backward": 5,
    "mish_backward": 10,
    "log_sigmoid_backward": 5,
    "rrelu_with_noise_backward": 2,
    "logit_backward": 4,
    "native_dropout_backward": 2,  # mask · scale · g
    "_prelu_kernel_backward": 3,
    "_softmax_backward_data": 4,  # g·y, row sum, g − s, ·y
    "_log_softmax_backward_data": 4,  # exp(y), row sum of g, product, g − ·
    "mse_loss_backward": 3,
    "smooth_l1_loss_backward": 4,
    "huber_loss_backward": 4,
    "soft_margin_loss_backward": 5,
    "binary_cross_entropy_backward": 5,
    "multi_margin_loss_backward": 4,
    "multilabel_margin_loss_backward": 4,
    "_weight_norm_interface_backward": 5,
}
for _name, _flops in POINTWISE_BACKWARD_FLOPS.items():
    register_handle(_ops(_name), "elementwise", _per_grad(_flops))


@cost_rule("aten.gelu_backward", kind="elementwise")
def gelu_backward(call: OpCall) -> Cost:
    """Φ(x) + x·φ(x), times g: 11 flops per element in the erf form, 17 in the tanh form."""
    per = 17 if call.arg("approximate", "none") == "tanh" else 11
    return Cost(per * call.tensors_in[0].numel, read_all(call), write_all(call))


@cost_rule("aten.glu_backward", kind="elementwise")
def glu_backward(call: OpCall) -> Cost:
    """Both halves' gradients from σ(b) (4) and three products: 7 flops per gradient element."""
    return Cost(7 * call.tensors_in[0].numel, read_all(call), write_all(call))


@cost_rule("aten.nll_loss_backward", "aten.nll_loss2d_backward", kind="scatter")
def nll_loss_backward(call: OpCall) -> Cost:
    """Write −g (scaled) at each target's class in a zeroed gradient: 1 flop per target."""
    target = call.tensors_in[2] if len(call.tensors_in) > 2 else call.tensors_in[-1]
    return Cost(target.numel, read_all(call), write_all(call))


@cost_rule("aten._cdist_backward", "aten._pdist_backward", kind="reduction")
def distance_backward(call: OpCall) -> Cost:
    """4 flops per coordinate of every pair (difference, scale by g/dist, accumulate twice)."""
    grad, x1 = call.tensors_in[:2]
    pairs = grad.numel
    return Cost(4 * pairs * x1.shape[-1], read_all(call), write_all(call))


__all__ = ["NORM_BACKWARD_FLOPS", "POINTWISE_BACKWARD_FLOPS", "RULES", "sdpa_backward_flops"]
