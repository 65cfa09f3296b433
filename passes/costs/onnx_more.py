"""Cost rules of the remaining default-domain ONNX ops: resampling (Resize, GridSample, RoiAlign),
signal processing (DFT, STFT, windows), detection (NonMaxSuppression), losses, strings and
the opset 24-28 additions (TensorScatter, BitCast, SwiGLU, CausalConvWithState, LinearAttention).

Conventions (docs/conventions.md; each derivation in its rule's docstring):
- interpolation: 2 flops (multiply-add) per tap, ``2^r`` taps linear and ``4^r`` cubic over
  the ``r`` resized axes; nearest moves data only;
- FFT: ``5·n·log2(n)`` per complex transform of length n (FFTW's count), half for real input
  (a onesided output has half the bins);
- IoU: 12 flops per box pair, every pair of a class's boxes compared (an upper bound);
- sorting (Unique): ``n·log2(n)`` compares; determinant: LU, ``2/3·M³`` per matrix;
- losses: log-softmax 3 per score, 2 per target (gather-negate, reduce), +1 with class weights;
- string ops: 1 per string (their bytes are not known statically).
"""

from __future__ import annotations

import sympy

from passes.costs.onnx_ops import onnx_rules
from passes.costs.registry import (
    ALIAS,
    ZERO,
    Cost,
    OpCall,
    RuleSet,
    elementwise,
    per_input_element,
    produce,
    read_all,
    write_all,
)
from passes.costs.torch_ops import ELEMENTWISE_FLOPS

RULES = RuleSet()
onnx_rule = onnx_rules(RULES)


def present(call: OpCall, i: int) -> bool:
    return len(call.inputs) > i and call.inputs[i] is not None


def log2(n) -> sympy.Expr:
    return sympy.log(n, 2)


def _cost(call: OpCall, flops, mm=ZERO) -> Cost:
    return Cost(flops, read_all(call), write_all(call), matmul_flops=mm)


def _differs(a, b) -> bool:
    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) != 0


def taps(mode: str, r: int) -> int:
    if mode in ("linear", "bilinear"):
        return 2**r
    if mode in ("cubic", "bicubic"):
        return 4**r
    return 0  # nearest: a gather


# ---- resampling -----------------------------------------------------------------------------


@onnx_rule("Resize", "Upsample", kind="elementwise")
def resize(call: OpCall) -> Cost:
    """2 per tap per output element, over the axes whose size changes."""
    x = call.inputs[0]
    r = sum(1 for a, b in zip(x.shape, call.out.shape, strict=False) if _differs(a, b))
    return _cost(call, 2 * taps(call.arg("mode", "nearest"), r) * call.out.numel)


@onnx_rule("GridSample", kind="gather")
def grid_sample(call: OpCall) -> Cost:
    """2 per tap per output element (the grid sets every sample point)."""
    r = len(call.out.shape) - 2
    return _cost(call, 2 * taps(call.arg("mode", "linear"), r) * call.out.numel)


@onnx_rule("AffineGrid", kind="elementwise")
def affine_grid(call: OpCall) -> Cost:
    """Each coordinate of each point: a row of theta times (x, y[, z], 1): 2·r flops."""
    return _cost(call, 2 * call.out.shape[-1] * call.out.numel)


@onnx_rule("RoiAlign", kind="pool")
def roi_align(call: OpCall) -> Cost:
    """Per output: sampling_ratio² bilinear samples (4 taps, 8 flops) and their average (+1);
    an adaptive ratio (0) is counted as 2."""
    ratio = call.arg("sampling_ratio", 0) or 2
    return _cost(call, ratio * ratio * 9 * call.out.numel)


@onnx_rule("MaxRoiPool", kind="pool")
def max_roi_pool(call: OpCall) -> Cost:
    """One compare per input element per ROI (an ROI covering the whole image: an upper bound)."""
    x, rois = call.inputs[:2]
    return _cost(call, rois.shape[0] * x.numel / x.shape[0])


@onnx_rule("MaxUnpool", kind="scatter")
def max_unpool(call: OpCall) -> Cost:
    return _cost(call, ZERO)


@onnx_rule("Col2Im", kind="scatter")
def col2im(call: OpCall) -> Cost:
    """Overlapping blocks summed into the image: one add per column element."""
    return _cost(call, call.inputs[0].numel)


@onnx_rule("DeformConv", kind="conv")
def deform_conv(call: OpCall) -> Cost:
    """The convolution (2 · output · (C_in/groups) · kernel), + the bilinear sampling of each
    input value it reads (8 per sample, +1 for the mask), + the bias."""
    x, w = call.inputs[:2]
    out = call.out
    kernel = sympy.Mul(*w.shape[2:])
    mm = 2 * out.numel * sympy.Mul(*w.shape[1:])
    spatial_out = sympy.Mul(*out.shape[2:])
    samples = x.shape[0] * x.shape[1] * kernel * spatial_out
    extra = samples * (9 if present(call, 4) else 8) + (out.numel if present(call, 3) else 0)
    return _cost(call, mm + extra, mm)


# ---- signal processing ----------------------------------------------------------------------


def _fft(out, axis, n, real_input: bool) -> sympy.Expr:
    """5·n·log2(n) per complex transform (2.5·n·log2(n) for real input); one transform per
    position of the output outside the transformed axis."""
    transforms = out.numel / (out.shape[-1] * out.shape[axis])
    per = sympy.Rational(5, 2) if real_input else 5
    return transforms * per * n * log2(n)


@onnx_rule("DFT", kind="reduction")
def dft(call: OpCall) -> Cost:
    """The transform length is the output axis (onesided: 2·(bins − 1))."""
    x, out = call.inputs[0], call.out
    axes = [i for i in range(len(x.shape) - 1) if _differs(x.shape[i], out.shape[i])]
    axis = axes[0] if axes else call.arg("axis", -2) % len(x.shape)
    n = 2 * (out.shape[axis] - 1) if call.arg("onesided", 0) else out.shape[axis]
    return _cost(call, _fft(out, axis, n, x.shape[-1] == 1))


@onnx_rule("STFT", kind="reduction")
def stft(call: OpCall) -> Cost:
    """One DFT of frame_length per frame, + a multiply per windowed sample."""
    x, out = call.inputs[0], call.out
    batch, frames, bins = out.shape[:3]
    n = 2 * (bins - 1) if call.arg("onesided", 1) else bins
    window = batch * frames * n if present(call, 2) else ZERO
    return _cost(call, _fft(out, 2, n, x.shape[-1] == 1) + window)


@onnx_rule("HannWindow", "HammingWindow", "BlackmanWindow", kind="factory")
def window_function(call: OpCall) -> Cost:
    """a − b·cos(2πn/N) (3 per element); Blackman adds a second cosine term (6)."""
    per = 6 if call.op == "BlackmanWindow" else 3
    return Cost(per * call.out.numel, ZERO, write_all(call))


onnx_rule("MelWeightMatrix", kind="factory")(produce)
onnx_rule("OneHot", kind="elementwise")(elementwise(1))  # one compare of index and position per output


# ---- detection, sorting, linear algebra -----------------------------------------------------


@onnx_rule("NonMaxSuppression", kind="reduction")
def non_max_suppression(call: OpCall) -> Cost:
    """12 flops per IoU, every pair of boxes of each (batch, class)."""
    scores = call.inputs[1]
    b, classes, boxes = scores.shape
    return _cost(call, 12 * b * classes * boxes * (boxes - 1) / 2)


@onnx_rule("Unique", kind="reduction")
def unique(call: OpCall) -> Cost:
    n = call.inputs[0].numel
    return _cost(call, n * log2(n))


onnx_rule("CumProd", kind="reduction")(per_input_element(1))


@onnx_rule("Det", kind="reduction")
def det(call: OpCall) -> Cost:
    x = call.inputs[0]
    m = x.shape[-1]
    return _cost(call, sympy.Rational(2, 3) * m**3 * sympy.Mul(*x.shape[:-2]))


# ---- losses ---------------------------------------------------------------------------------


@onnx_rule("SoftmaxCrossEntropyLoss", kind="softmax")
def softmax_cross_entropy(call: OpCall) -> Cost:
    scores, labels = call.inputs[:2]
    return _cost(call, 3 * scores.numel + (3 if present(call, 2) else 2) * labels.numel)


@onnx_rule("NegativeLogLikelihoodLoss", kind="reduction")
def nll_loss(call: OpCall) -> Cost:
    return _cost(call, (3 if present(call, 2) else 2) * call.inputs[1].numel)


# ---- opset 24-28 ----------------------------------------------------------------------------


@onnx_rule("BitCast", kind="free")
def bitcast(call: OpCall) -> Cost:
    """A reinterpretation of the same bytes: an alias."""
    return ALIAS


@onnx_rule("TensorScatter", kind="scatter")
def tensor_scatter(call: OpCall) -> Cost:
    """An in-place cache update: read the update (and write indices), write that many elements."""
    past, update = call.inputs[:2]
    idx = call.inputs[2].nbytes if present(call, 2) else ZERO
    return Cost(ZERO, update.nbytes + idx, update.numel * past.itemsize)


onnx_rule("SwiGLU", kind="elementwise")(elementwise(ELEMENTWISE_FLOPS["silu"] + 1))


@onnx_rule("CausalConvWithState", kind="conv")
def causal_conv_with_state(call: OpCall) -> Cost:
    """Depthwise causal conv: 2·k per output, + bias, + SiLU (5) when fused."""
    x, w = call.inputs[:2]
    out = call.out.numel
    mm = 2 * out * w.shape[-1]
    act = call.arg("activation", "none")
    extra = (out if present(call, 2) else 0) + (ELEMENTWISE_FLOPS["silu"] * out if act in ("silu", "swish") else 0)
    return _cost(call, mm + extra, mm)


LINEAR_UPDATE = {"linear": (2, 0), "gated": (3, 0), "delta": (4, 2), "gated_delta": (5, 2)}


@onnx_rule("LinearAttention", kind="attention")
def linear_attention(call: OpCall) -> Cost:
    """Per token: each K/V head updates its dk×dv state — k⊗v (2·dk·dv), a decay multiply
    (gated: +dk·dv), the delta rule's Sᵀk and (v − ·)·β (+2·dk·dv + 2·dv) — and each query
    head reads it, qᵀS (2·dk·dv) and the scale (dv)."""
    q, k, v = call.inputs[:3]
    hq, hkv = sympy.Integer(call.arg("q_num_heads")), sympy.Integer(call.arg("kv_num_heads"))
    b, t = q.shape[:2]
    dk, dv = k.shape[2] / hkv, v.shape[2] / hkv
    state, vec = LINEAR_UPDATE.get(call.arg("update_rule", "gated_delta"), (5, 2))
    delta_mm = 2 * dk * dv if vec else 0
    mm = b * t * (hkv * (2 * dk * dv + delta_mm) + hq * 2 * dk * dv)
    total = b * t * (hkv * (state * dk * dv + vec * dv) + hq * (2 * dk * dv + dv))
    return _cost(call, total, mm)


# ---- strings, images ------------------------------------------------------------------------

onnx_rule("RegexFullMatch", "StringConcat", "StringNormalizer", "StringSplit", kind="elementwise")(per_input_element(1))
onnx_rule("ImageDecoder", kind="elementwise")(elementwise(1))  # 1 per decoded value: a lower bound


@onnx_rule("TfIdfVectorizer", kind="gather")
def tfidf(call: OpCall) -> Cost:
    """Every n-gram (up to max_gram_length) starting at every input element looked up."""
    return _cost(call, call.arg("max_gram_length", 1) * call.inputs[0].numel)
