"""Cost rules of ATen ops over spatial grids: pooling, resampling, padding, grid sampling, im2col.

Conventions (docs/conventions.md), as the ONNX pool rules: a pool does one flop (a compare or
an add) per element of each window it reads — adaptive windows summed exactly for concrete
sizes (a symbolic size is taken as divisible: each input element read once).
Interpolation costs one 3-flop lerp ``a + t·(b − a)`` per blend: linear 1, bilinear 3,
trilinear 7 lerps per output element; bicubic 5 four-tap cubics of 7 flops; nearest is a
gather. Padding and pixel shuffles are copies.
"""

from __future__ import annotations

import re

import sympy

from passes.costs.registry import Cost, OpCall, RuleSet, aten_ops, copy, read_all, write_all

RULES = RuleSet()
cost_rule = RULES.rule
register_handle = RULES.handle


_ops = aten_ops


def spatial_dims(op: str) -> int:
    """``aten.max_pool2d_with_indices`` -> 2."""
    found = re.search(r"(\d)d", op)
    return int(found.group(1)) if found else 2


def window(call: OpCall, name: str = "kernel_size") -> sympy.Expr:
    """Elements per window: the product of ``kernel_size`` (one value stands for every dim)."""
    k = call.arg(name)
    d = spatial_dims(call.op)
    if isinstance(k, list | tuple):
        k = list(k) * d if len(k) == 1 else list(k)
        return sympy.Mul(*k)
    return sympy.sympify(k) ** d


def pool(call: OpCall) -> Cost:
    """One compare (max) or add (average) per window element per output element."""
    return Cost(call.out.numel * window(call), read_all(call), write_all(call))


RULES.rule(
    "aten.max_pool1d", "aten.max_pool2d", "aten.max_pool3d", "aten.max_pool1d_with_indices",
    "aten.max_pool2d_with_indices", "aten.max_pool3d_with_indices", "aten.fractional_max_pool2d",
    "aten.fractional_max_pool3d", "aten.quantized_max_pool2d", "aten.mkldnn_max_pool2d",
    "aten.avg_pool1d", "aten.avg_pool2d", "aten.avg_pool3d",
    kind="pool",
)(pool)


def adaptive_window_sum(n_in, n_out) -> sympy.Expr:
    """Σ over the output positions of the adaptive window length along one dim: window i spans
    [⌊i·I/O⌋, ⌈(i+1)·I/O⌉). Symbolic sizes are taken as divisible (the sum is then I)."""
    n_in, n_out = sympy.sympify(n_in), sympy.sympify(n_out)
    if not (n_in.is_Integer and n_out.is_Integer) or n_out == 0:
        return n_in
    i_, o_ = int(n_in), int(n_out)
    return sympy.Integer(sum(-((-(k + 1) * i_) // o_) - (k * i_) // o_ for k in range(o_)))


@cost_rule(
    "aten.adaptive_avg_pool1d", "aten.adaptive_avg_pool2d", "aten.adaptive_avg_pool3d",
    "aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.mkldnn_adaptive_avg_pool2d",
    "aten.adaptive_max_pool1d", "aten.adaptive_max_pool2d", "aten.adaptive_max_pool3d",
    kind="pool",
)
def adaptive_pool(call: OpCall) -> Cost:
    """One flop per element of every adaptive window (each input element once when divisible)."""
    x, out = call.tensors_in[0], call.out
    d = spatial_dims(call.op)
    planes = out.numel / sympy.Mul(*out.shape[-d:])
    reads = planes * sympy.Mul(*(adaptive_window_sum(i, o) for i, o in zip(x.shape[-d:], out.shape[-d:])))
    return Cost(reads, read_all(call), write_all(call))


# ---- resampling -----------------------------------------------------------------------

LERP = 3
#: flops per output element of each interpolation (see the module docstring)
INTERPOLATION_FLOPS = {
    "linear1d": 1 * LERP,
    "bilinear2d": 3 * LERP,
    "trilinear3d": 7 * LERP,
    "bicubic2d": 5 * 7,
}


def _interpolate(flops_per_output: int):
    def rule(call: OpCall) -> Cost:
        return Cost(flops_per_output * call.out.numel, read_all(call), write_all(call))

    return rule


for _mode, _flops in INTERPOLATION_FLOPS.items():
    _aa = (f"_upsample_{_mode}_aa",) if _mode.endswith("2d") else ()  # antialiased: costed as the plain mode
    register_handle(_ops(f"upsample_{_mode}", *_aa), "elementwise", _interpolate(_flops))
register_handle(
    _ops("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
         "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "im2col", "max_unpool2d", "max_unpool3d"),
    "gather",
    copy,
)

#: grid sampling: interpolation flops per output element by ``interpolation_mode``
GRID_SAMPLE_FLOPS = {0: INTERPOLATION_FLOPS["bilinear2d"], 1: 0, 2: INTERPOLATION_FLOPS["bicubic2d"]}


@cost_rule("aten.grid_sampler_2d", "aten.grid_sampler", "aten.cudnn_grid_sampler", "aten.grid_sampler_3d", kind="gather")
def grid_sampler(call: OpCall) -> Cost:
    """Interpolation per output element (3-D: trilinear), plus 2 flops per grid coordinate to
    map it from [-1, 1] to pixels."""
    x, grid = call.tensors_in[:2]
    mode = int(call.arg("interpolation_mode", 0) or 0)
    if len(x.shape) == 5:
        per_out = INTERPOLATION_FLOPS["trilinear3d"] if mode == 0 else 0
    else:
        per_out = GRID_SAMPLE_FLOPS.get(mode, GRID_SAMPLE_FLOPS[0])
    return Cost(per_out * call.out.numel + 2 * grid.numel, read_all(call), write_all(call))


@cost_rule("aten.affine_grid_generator", kind="matmul")
def affine_grid(call: OpCall) -> Cost:
    """Each output coordinate is a dot product of a theta row with the homogeneous base point
    (3 terms in 2-D, 4 in 3-D): the bmm torch runs, 2 · terms flops per output element."""
    terms = call.out.shape[-1] + 1
    mm = 2 * terms * call.out.numel
    return Cost(mm, read_all(call), write_all(call), matmul_flops=mm)


@cost_rule("aten.col2im", kind="scatter")
def col2im(call: OpCall) -> Cost:
    """Overlapping patches are summed back into the image: one add per column element."""
    return Cost(call.tensors_in[0].numel, read_all(call), write_all(call))


# ---- padding and shuffles: copies --------------------------------------------------------

register_handle(
    _ops("reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d", "replication_pad2d",
         "replication_pad3d", "_pad_circular", "_pad_enum", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
         "native_channel_shuffle"),
    "copy",
    copy,
)


__all__ = ["INTERPOLATION_FLOPS", "RULES", "adaptive_window_sum", "spatial_dims", "window"]
