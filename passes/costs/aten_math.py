"""Cost rules of ATen math beyond ``torch_ops``: more elementwise functions and their in-place
forms, searches and order statistics, distances, losses and FFTs.

Conventions (docs/conventions.md): elementwise 1 flop per output element (a transcendental
such as ``asin`` or ``cosh`` counts 1, as ``sin`` and ``tanh`` do) except the compound forms
below; a reduction or search 1 flop per element read; a distance 3 flops per coordinate pair
(difference, magnitude, accumulate); a loss the flops of its elementwise formula per input
element; an FFT of N points 5·N·log2(N) flops complex-to-complex and half that for a
real-side transform (the Cooley–Tukey count).
"""

from __future__ import annotations

import sympy

from passes.costs.registry import (
    ZERO,
    Cost,
    OpCall,
    RuleSet,
    aten_ops,
    elementwise,
    per_input_element,
    read_all,
    write_all,
)

RULES = RuleSet()
cost_rule = RULES.rule
register_handle = RULES.handle


_ops = aten_ops


# ---- elementwise ----------------------------------------------------------------------

UNARY_EXTRA = (
    "asin", "acos", "atan", "sinh", "cosh", "tan", "asinh", "acosh", "atanh", "arcsin", "arccos", "arctan",
    "arcsinh", "arccosh", "arctanh", "log10", "erfc", "erfinv", "lgamma", "digamma", "polygamma", "mvlgamma",
    "i0", "sgn", "frac", "logit", "sinc", "deg2rad", "rad2deg", "signbit", "isfinite", "isneginf", "isposinf",
    "isreal", "conj_physical", "angle", "fix", "negative", "absolute", "relu6", "hardshrink", "softshrink", "celu",
    "selu", "threshold", "rrelu", "rrelu_with_noise", "prelu", "_prelu_kernel", "special_erfcx",
)
BINARY_EXTRA = (
    "xlogy", "float_power", "fmax", "fmin", "heaviside", "igamma", "igammac", "nextafter", "ldexp", "logaddexp",
    "logaddexp2", "gcd", "lcm", "arctan2", "subtract", "multiply", "divide", "not_equal", "greater",
    "greater_equal", "less", "less_equal", "polar", "complex", "isclose", "index_fill",
)
#: In-place forms of the elementwise ops here and in ``torch_ops`` that have no rule yet.
INPLACE = (
    "abs_", "absolute_", "acos_", "acosh_", "addcdiv_", "addcmul_", "arccos_", "arccosh_", "arcsin_", "arcsinh_",
    "arctan2_", "arctan_", "arctanh_", "asin_", "asinh_", "atan2_", "atan_", "atanh_", "bitwise_and_",
    "bitwise_left_shift_", "bitwise_not_", "bitwise_or_", "bitwise_right_shift_", "bitwise_xor_", "ceil_", "celu_",
    "clamp_", "clamp_max_", "clamp_min_", "clip_", "conj_physical_", "copysign_", "cos_", "cosh_", "deg2rad_",
    "digamma_", "divide_", "elu_", "eq_", "erfc_", "erfinv_", "exp2_", "expm1_", "fix_", "float_power_", "floor_",
    "floor_divide_", "fmod_", "frac_", "gcd_", "ge_", "greater_", "greater_equal_", "gt_", "hardsigmoid_",
    "hardswish_", "hardtanh_", "heaviside_", "hypot_", "i0_", "igamma_", "igammac_", "index_fill_", "lcm_", "ldexp_",
    "le_", "leaky_relu_", "lerp_", "less_", "less_equal_", "lgamma_", "log10_", "log1p_", "log2_", "logical_and_",
    "logical_not_", "logical_or_", "logical_xor_", "logit_", "lt_", "mish_", "multiply_", "mvlgamma_",
    "nan_to_num_", "ne_", "neg_", "negative_", "nextafter_", "not_equal_", "rad2deg_", "reciprocal_", "remainder_",
    "round_", "rrelu_", "rrelu_with_noise_", "selu_", "sgn_", "sign_", "sin_", "sinc_", "sinh_", "square_",
    "subtract_", "tan_", "threshold_", "true_divide_", "trunc_", "xlogy_", "relu6_",
)
register_handle(_ops(*UNARY_EXTRA, *BINARY_EXTRA, *INPLACE), "elementwise", elementwise(1))
# log σ(x) = -softplus(-x): neg, exp, add, log (and the buffer the forward saves)
register_handle(_ops("log_sigmoid", "log_sigmoid_forward"), "elementwise", per_input_element(4))


@cost_rule("aten.glu", kind="elementwise")
def glu(call: OpCall) -> Cost:
    """a · σ(b) over the two halves: sigmoid (4) and a product per output element."""
    return Cost(5 * call.out.numel, read_all(call), write_all(call))


# ---- reductions, searches, order statistics ---------------------------------------------

register_handle(
    _ops("nansum", "nanmean", "aminmax", "median", "nanmedian", "kthvalue", "mode", "cummax", "cummin",
         "logcumsumexp", "msort", "histc", "histogram", "bincount", "nonzero", "nonzero_static", "argwhere",
         "unique_consecutive", "_unique", "_unique2", "unique_dim", "isin", "frobenius_norm", "nuclear_norm",
         "linalg_norm", "renorm", "allclose", "equal", "trace", "sum_to_size", "special_logsumexp"),
    "reduction",
    per_input_element(1),
)


@cost_rule("aten.searchsorted", "aten.bucketize", kind="reduction")
def search(call: OpCall) -> Cost:
    """A binary search per query: ⌈log2(boundaries)⌉ compares each (a scalar query is one)."""
    tensors = call.tensors_in
    if len(tensors) == 1:
        boundaries, queries = tensors[0], sympy.Integer(1)
    elif call.op.startswith("aten.bucketize"):  # bucketize(self, boundaries)
        boundaries, queries = tensors[1], tensors[0].numel
    else:  # searchsorted(sorted_sequence, self[, sorter])
        boundaries, queries = tensors[0], tensors[1].numel
    n = sympy.sympify(boundaries.shape[-1] if boundaries.shape else 1)
    steps = sympy.Integer(1) if n == 1 else sympy.ceiling(sympy.log(n, 2))
    return Cost(queries * steps, read_all(call), write_all(call))


# ---- distances --------------------------------------------------------------------------


@cost_rule("aten._cdist_forward", "aten.cdist", "aten._euclidean_dist", kind="reduction")
def cdist(call: OpCall) -> Cost:
    """x1 (…, P, M) against x2 (…, R, M): 3 flops per coordinate of every pair, and a root per pair."""
    x1, x2 = call.tensors_in[:2]
    pairs = call.out.numel
    return Cost(3 * pairs * x1.shape[-1] + pairs, read_all(call), write_all(call))


@cost_rule("aten._pdist_forward", "aten.pdist", kind="reduction")
def pdist(call: OpCall) -> Cost:
    """N(N−1)/2 pairs of rows of (N, M): 3 flops per coordinate and a root per pair."""
    x = call.tensors_in[0]
    pairs = call.out.numel
    return Cost(3 * pairs * x.shape[-1] + pairs, read_all(call), write_all(call))


@cost_rule("aten.pairwise_distance", kind="reduction")
def pairwise_distance(call: OpCall) -> Cost:
    """Row-wise distance: 3 flops per element of the broadcast inputs (diff incl. eps, magnitude, add)."""
    n = call.out.numel * _last_dim(call)
    return Cost(3 * n + call.out.numel, read_all(call), write_all(call))


@cost_rule("aten.cosine_similarity", kind="reduction")
def cosine_similarity(call: OpCall) -> Cost:
    """x·y, |x|², |y|² accumulated (6 flops per element of the broadcast pair), then 4 per output."""
    n = call.out.numel * _last_dim(call)
    return Cost(6 * n + 4 * call.out.numel, read_all(call), write_all(call))


def _last_dim(call: OpCall) -> sympy.Expr:
    """The size of the reduced dim: the larger of the two inputs' numel over the output's."""
    a, b = call.tensors_in[:2]
    big = a if len(a.shape) >= len(b.shape) else b
    return big.numel / call.out.numel if call.out.numel != 0 else ZERO


# ---- losses -------------------------------------------------------------------------------

#: flops per element of the prediction (the elementwise formula, then one add to reduce)
LOSS_FLOPS = {
    "mse_loss": 3,  # diff, square, add
    "l1_loss": 3,  # diff, abs, add
    "smooth_l1_loss": 5,  # diff, abs, compare, square-or-shift, add
    "huber_loss": 5,
    "soft_margin_loss": 5,  # -y·x, exp, +1, log, add
    "kl_div": 4,  # log target, diff, mul, add
    "binary_cross_entropy": 7,  # 2 logs, 2 muls, 1-y, add, add
    "binary_cross_entropy_with_logits": 9,  # log-sigmoid (4) + bce terms
    "poisson_nll_loss": 4,
    "hinge_embedding_loss": 4,
    "margin_ranking_loss": 4,
    "multilabel_margin_loss": 4,
    "multi_margin_loss": 4,
    "cosine_embedding_loss": 8,
    "triplet_margin_loss": 7,
}
for _name, _flops in LOSS_FLOPS.items():
    register_handle(_ops(_name), "reduction", per_input_element(_flops))


@cost_rule("aten.cross_entropy_loss", kind="reduction")
def cross_entropy(call: OpCall) -> Cost:
    """log_softmax (3 per logit) and the negative log-likelihood pick (1 per target)."""
    logits, target = call.tensors_in[:2]
    return Cost(3 * logits.numel + target.numel, read_all(call), write_all(call))


@cost_rule("aten.nll_loss", "aten.nll_loss_forward", "aten.nll_loss2d", "aten.nll_loss2d_forward", "aten.nll_loss_nd",
           kind="reduction")
def nll_loss(call: OpCall) -> Cost:
    """Pick the target's log-probability and accumulate: 1 flop per target (2 with class weights)."""
    target = call.tensors_in[1]
    per = 2 if len(call.tensors_in) > 2 else 1
    return Cost(per * target.numel, read_all(call), write_all(call))


# ---- FFT --------------------------------------------------------------------------------

def fft_flops(points: sympy.Expr, batch: sympy.Expr, real: bool) -> sympy.Expr:
    """5·N·log2(N) per complex transform of N points; half that when one side is real."""
    per = 5 * points * sympy.log(points, 2) if points != 1 else sympy.Integer(0)
    if real:
        per = per / 2
    return batch * per


def _dims(arg, ndim: int, default: tuple[int, ...]) -> list[int]:
    if arg is None:
        dims = list(default) if default else list(range(ndim))
    elif isinstance(arg, int):
        dims = [arg]
    else:
        dims = list(arg)
    return [d % ndim for d in dims]


def _fft_cost(call: OpCall, side, dims: list[int], real: bool, sizes=None) -> Cost:
    shape = side.shape
    points = sympy.Mul(*(sizes or [shape[d] for d in dims]))
    batch = side.numel / sympy.Mul(*(shape[d] for d in dims))
    return Cost(fft_flops(points, batch, real), read_all(call), write_all(call))


@cost_rule("aten._fft_r2c", "aten._fft_c2r", "aten._fft_c2c", kind="reduction")
def fft_core(call: OpCall) -> Cost:
    """Core FFTs: the real side (r2c's input, c2r's output) or the complex tensor sets N."""
    x = call.tensors_in[0]
    if call.op.startswith("aten._fft_c2c"):
        return _fft_cost(call, x, _dims(call.arg("dim"), len(x.shape), ()), real=False)
    side = x if call.op.startswith("aten._fft_r2c") else call.out
    return _fft_cost(call, side, _dims(call.arg("dim"), len(side.shape), ()), real=True)


FFT_DEFAULT_DIMS = {"": (-1,), "2": (-2, -1), "n": ()}


@cost_rule(
    *_ops("fft_fft", "fft_ifft", "fft_rfft", "fft_irfft", "fft_hfft", "fft_ihfft", "fft_fft2", "fft_ifft2",
          "fft_rfft2", "fft_irfft2", "fft_hfft2", "fft_ihfft2", "fft_fftn", "fft_ifftn", "fft_rfftn",
          "fft_irfftn", "fft_hfftn", "fft_ihfftn"),
    kind="reduction",
)
def fft(call: OpCall) -> Cost:
    """torch.fft functions: N from ``n``/``s`` when given, else from the real or complex full side."""
    name = call.op.split(".")[1]
    suffix = name[-1] if name[-1] in "2n" else ""
    x = call.tensors_in[0]
    real_in = "rfft" in name and "irfft" not in name or "ihfft" in name
    real_out = "irfft" in name or ("hfft" in name and "ihfft" not in name)
    side = x if real_in else call.out
    dims = _dims(call.arg("dim"), len(side.shape), FFT_DEFAULT_DIMS[suffix])
    given = call.arg("s") if suffix else call.arg("n")
    sizes = None
    if given is not None:
        sizes = [given] if not isinstance(given, list | tuple) else list(given)
    return _fft_cost(call, side, dims, real=real_in or real_out, sizes=sizes)


@cost_rule("aten.stft", kind="reduction")
def stft(call: OpCall) -> Cost:
    """One real FFT of ``n_fft`` points per frame, after windowing (1 flop per sample)."""
    n_fft = sympy.sympify(call.arg("n_fft"))
    frames_bins = call.out.numel / (2 if call.out.dtype not in ("complex64", "complex128", "complex32") else 1)
    n_freq = call.out.shape[-2] if call.out.dtype.startswith("complex") else call.out.shape[-3]
    frames = frames_bins / n_freq
    return Cost(fft_flops(n_fft, frames, real=True) + frames * n_fft, read_all(call), write_all(call))


__all__ = ["INPLACE", "LOSS_FLOPS", "RULES", "fft_flops"]
