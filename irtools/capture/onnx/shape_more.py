"""Shape rules of the remaining default-domain ONNX ops: random and like-factories, signal
processing (DFT, STFT, windows), image ops (GridSample, RoiAlign, Col2Im, DeformConv,
MaxUnpool), losses, strings, Optional, and the opset 24-28 additions.

Same :class:`Ctx` conventions as ``shapes.py``; data-dependent sizes (Unique, NonMaxSuppression,
Compress with an unknown condition) get fresh symbols named after the op.
"""

from __future__ import annotations

import sympy

from irtools.capture.onnx.shape_env import ONE, Ctx, RuleTable, exprs, ints, with_value
from irtools.capture.onnx.shape_rules import conv_spatial
from irtools.capture.onnx.tensors import TInfo, dtype_name, integer

RULES = RuleTable()
rule = RULES.rule


def dtype_attr(c: Ctx, name: str, default: str) -> str:
    code = c.attr(name)
    return dtype_name(code) if code else default


def scalar(c: Ctx, i: int, hint: str = "unk"):
    """The value of a scalar (or 1-element) input, else a fresh symbol."""
    vals = exprs(c.inp(i))
    if vals:
        v = vals[0]
        return sympy.floor(v) if v.is_Number and not v.is_Integer else v
    return c.env.fresh(hint)


# ---- factories ----------------------------------------------------------------------------


@rule("RandomNormal", "RandomUniform")
def _random(c: Ctx):
    return [TInfo(tuple(integer(d) for d in c.attr("shape")), dtype_attr(c, "dtype", "float32"))]


@rule("RandomNormalLike", "RandomUniformLike", "Bernoulli", "EyeLike")
def _like(c: Ctx):
    return [TInfo(c.x.shape, dtype_attr(c, "dtype", c.x.dtype))]


@rule("Multinomial")
def _multinomial(c: Ctx):
    return [TInfo((c.x.shape[0], integer(c.attr("sample_size", 1))), dtype_attr(c, "dtype", "int32"))]


@rule("HannWindow", "HammingWindow", "BlackmanWindow")
def _window_fn(c: Ctx):
    return [TInfo((scalar(c, 0, "window"),), dtype_attr(c, "output_datatype", "float32"))]


@rule("MelWeightMatrix")
def _mel(c: Ctx):
    bins, dft = scalar(c, 0, "mel_bins"), scalar(c, 1, "dft_length")
    return [TInfo((sympy.floor(dft / 2) + 1, bins), dtype_attr(c, "output_datatype", "float32"))]


# ---- same shape / simple -------------------------------------------------------------------


@rule("CumProd", "ReverseSequence", "TensorScatter", "SwiGLU", "com.microsoft.Inverse", "com.microsoft.BiasSoftmax")
def _same(c: Ctx):
    return [TInfo(c.x.shape, c.x.dtype)]


@rule("BitCast")
def _bitcast(c: Ctx):
    return [TInfo(c.x.shape, dtype_name(c.attr("to")))]


@rule("Det")
def _det(c: Ctx):
    return [TInfo(c.x.shape[:-2], c.x.dtype)]


@rule("Compress")
def _compress(c: Ctx):
    cond = c.inp(1).value
    count = integer(sum(1 for v in cond.ravel() if bool(v))) if cond is not None else c.env.fresh("compress")
    axis = c.attr("axis")
    if axis is None:
        return [TInfo((count,), c.x.dtype)]
    shape = list(c.x.shape)
    shape[axis % c.x.rank] = count
    return [TInfo(tuple(shape), c.x.dtype)]


@rule("CenterCropPad")
def _center_crop_pad(c: Ctx):
    sizes = exprs(c.inp(1))
    axes = c.attr("axes") or list(range(c.x.rank))
    shape = list(c.x.shape)
    for j, a in enumerate(axes):
        shape[a % c.x.rank] = sizes[j] if sizes is not None else c.env.fresh()
    return [TInfo(tuple(shape), c.x.dtype)]


@rule("OneHot")
def _one_hot(c: Ctx):
    idx, values = c.x, c.inp(2)
    rank = idx.rank + 1
    axis = c.attr("axis", -1) % rank
    shape = list(idx.shape)
    shape.insert(axis, scalar(c, 1, "depth"))
    return [TInfo(tuple(shape), values.dtype)]


@rule("Unique")
def _unique(c: Ctx):
    n = c.env.fresh("unique")
    axis = c.attr("axis")
    if axis is None:
        return [TInfo((n,), c.x.dtype), TInfo((n,), "int64"), TInfo((sympy.Mul(*c.x.shape),), "int64"), TInfo((n,), "int64")]
    axis %= c.x.rank
    shape = list(c.x.shape)
    shape[axis] = n
    return [TInfo(tuple(shape), c.x.dtype), TInfo((n,), "int64"), TInfo((c.x.shape[axis],), "int64"), TInfo((n,), "int64")]


@rule("NonMaxSuppression")
def _nms(c: Ctx):
    return [TInfo((c.env.fresh("nms"), integer(3)), "int64")]


# ---- signal processing ----------------------------------------------------------------------


def _bins(n, onesided):
    return sympy.floor(n / 2) + 1 if onesided else n


@rule("DFT")
def _dft(c: Ctx):
    x = c.x
    if c.opset >= 20:
        axis = ints(c.inp(2))
        axis = axis[0] if axis else -2
    else:
        axis = c.attr("axis", 1)
    axis %= x.rank
    n = scalar(c, 1, "dft_length") if c.inp(1) is not None else x.shape[axis]
    shape = list(x.shape)
    shape[axis] = _bins(n, c.attr("onesided", 0))
    shape[-1] = integer(2)
    return [TInfo(tuple(shape), x.dtype)]


@rule("STFT")
def _stft(c: Ctx):
    x = c.x
    step = scalar(c, 1, "frame_step")
    if c.inp(3) is not None:
        length = scalar(c, 3, "frame_length")
    elif c.inp(2) is not None:
        length = c.inp(2).shape[0]
    else:
        length = c.env.fresh("frame_length")
    frames = sympy.floor((x.shape[1] - length) / step) + 1
    return [TInfo((x.shape[0], frames, _bins(length, c.attr("onesided", 1)), integer(2)), x.dtype)]


# ---- image ops ------------------------------------------------------------------------------


@rule("GridSample", "com.microsoft.GridSample")
def _grid_sample(c: Ctx):
    grid = c.inp(1)
    return [TInfo(c.x.shape[:2] + tuple(grid.shape[1:-1]), c.x.dtype)]


@rule("AffineGrid")
def _affine_grid(c: Ctx):
    theta, size = c.x, exprs(c.inp(1))
    r = theta.shape[1]
    spatial = tuple(size[2:]) if size is not None else c.fresh_shape(int(c.inp(1).shape[0]) - 2)
    return [TInfo((theta.shape[0],) + spatial + (r,), theta.dtype)]


@rule("RoiAlign")
def _roi_align(c: Ctx):
    rois = c.inp(1)
    return [TInfo((rois.shape[0], c.x.shape[1], integer(c.attr("output_height", 1)), integer(c.attr("output_width", 1))),
                  c.x.dtype)]


@rule("MaxRoiPool")
def _max_roi_pool(c: Ctx):
    ph, pw = c.attr("pooled_shape")
    return [TInfo((c.inp(1).shape[0], c.x.shape[1], integer(ph), integer(pw)), c.x.dtype)]


@rule("Col2Im")
def _col2im(c: Ctx):
    image, block = exprs(c.inp(1)), exprs(c.inp(2))
    n_sp = int(c.inp(1).shape[0])
    spatial = tuple(image) if image is not None else c.fresh_shape(n_sp)
    channels = c.x.shape[1] / sympy.Mul(*block) if block is not None else c.env.fresh()
    return [TInfo((c.x.shape[0], channels) + spatial, c.x.dtype)]


@rule("DeformConv")
def _deform_conv(c: Ctx):
    w = c.inp(1)
    kernel = c.attr("kernel_shape") or list(w.shape[2:])
    return [TInfo((c.x.shape[0], w.shape[0]) + conv_spatial(c, kernel), c.x.dtype)]


@rule("MaxUnpool")
def _max_unpool(c: Ctx):
    target = exprs(c.inp(2))
    if target is not None:
        return [TInfo(tuple(target), c.x.dtype)]
    kernel = c.attr("kernel_shape")
    nsp = len(kernel)
    strides = c.attr("strides") or [1] * nsp
    pads = c.attr("pads") or [0] * (2 * nsp)
    spatial = tuple((c.x.shape[2 + i] - 1) * strides[i] + kernel[i] - pads[i] - pads[i + nsp] for i in range(nsp))
    return [TInfo(c.x.shape[:2] + spatial, c.x.dtype)]


# ---- losses ---------------------------------------------------------------------------------


def _reduction(c: Ctx) -> str:
    r = c.attr("reduction", "mean")
    return r.decode() if isinstance(r, bytes) else r


@rule("SoftmaxCrossEntropyLoss")
def _sce_loss(c: Ctx):
    loss = () if _reduction(c) != "none" else c.inp(1).shape
    return [TInfo(loss, c.x.dtype), TInfo(c.x.shape, c.x.dtype)]


@rule("NegativeLogLikelihoodLoss")
def _nll_loss(c: Ctx):
    return [TInfo(() if _reduction(c) != "none" else c.inp(1).shape, c.x.dtype)]


# ---- strings --------------------------------------------------------------------------------


@rule("RegexFullMatch")
def _regex(c: Ctx):
    return [TInfo(c.x.shape, "bool")]


@rule("StringConcat")
def _string_concat(c: Ctx):
    return [TInfo(c.env.broadcast(c.x.shape, c.inp(1).shape), "string")]


@rule("StringNormalizer")
def _string_normalizer(c: Ctx):
    if not c.attr("stopwords"):
        return [TInfo(c.x.shape, "string")]
    return [TInfo(c.x.shape[:-1] + (c.env.fresh("strings"),), "string")]


@rule("StringSplit")
def _string_split(c: Ctx):
    return [TInfo(c.x.shape + (c.env.fresh("substrings"),), "string"), TInfo(c.x.shape, "int64")]


@rule("TfIdfVectorizer")
def _tfidf(c: Ctx):
    width = integer(max(c.attr("ngram_indexes")) + 1)
    return [TInfo(c.x.shape[:-1] + (width,), "float32")]


@rule("ImageDecoder")
def _image_decoder(c: Ctx):
    fmt = c.attr("pixel_format", "RGB")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    channels = ONE if fmt == "Grayscale" else integer(3)
    return [TInfo((c.env.fresh("height"), c.env.fresh("width"), channels), "uint8")]


# ---- optional -------------------------------------------------------------------------------


@rule("Optional", "OptionalGetElement")
def _optional(c: Ctx):
    if not c.ins or c.x is None:
        return None
    return [TInfo(c.x.shape, c.x.dtype, c.x.value)]


@rule("OptionalHasElement")
def _optional_has(c: Ctx):
    present = bool(c.ins) and c.x is not None
    return [with_value((), "bool", None if present else sympy.false)]


# ---- opset 27: state-space and linear attention ---------------------------------------------


@rule("CausalConvWithState", "com.microsoft.CausalConvWithState")
def _causal_conv(c: Ctx):
    x, w, past = c.x, c.inp(1), c.inp(3)
    state = past.shape if past is not None else (x.shape[0], x.shape[1], w.shape[-1] - 1)
    return [TInfo(x.shape, x.dtype), TInfo(tuple(state), x.dtype)]


@rule("LinearAttention", "com.microsoft.LinearAttention")
def _linear_attention(c: Ctx):
    q, k, v = c.ins[:3]
    hq, hkv = integer(c.attr("q_num_heads")), integer(c.attr("kv_num_heads"))
    dk, dv = k.shape[2] / hkv, v.shape[2] / hkv
    b, t = q.shape[:2]
    return [TInfo((b, t, hq * dv), q.dtype), TInfo((b, hkv, dk, dv), q.dtype)]
