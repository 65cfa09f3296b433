"""Shape rules of the common ONNX ops: elementwise, casts, shape computation, views and copies.

Registered in :data:`RULES` (see ``inference.py``, which merges every rule table)."""

from __future__ import annotations

import numpy as np
import sympy

from irtools.capture.onnx.limits import check_count, fold
from irtools.capture.onnx.shape_env import (
    _BINARY_VALUE,
    _UNARY_VALUE,
    BOOL_OUT,
    INT64_MAX,
    INT_DTYPES,
    MAX_VALUE_ELEMENTS,
    ONE,
    Ctx,
    RuleTable,
    _concrete,
    _count,
    _numel,
    exprs,
    ints,
    obj_array,
    with_value,
)
from irtools.capture.onnx.tensors import TInfo, dtype_name, integer, tensor_info
from irtools.ir.numeric import as_int

RULES = RuleTable()
rule = RULES.rule


# ---- elementwise ------------------------------------------------------------------------

UNARY_OPS = (
    "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Floor", "Ceil",
    "Round", "Sign", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
    "Acosh", "Atanh", "Not", "IsNaN", "IsInf", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid",
    "HardSwish", "Softplus", "Softsign", "ThresholdedRelu", "Mish", "Gelu", "Identity", "Clip",
    "Softmax", "LogSoftmax", "Hardmax", "LRN", "BatchNormalization", "InstanceNormalization",
    "LpNormalization", "MeanVarianceNormalization", "CumSum", "Trilu", "Shrink", "BitwiseNot",
    "com.microsoft.FastGelu", "com.microsoft.Gelu", "com.microsoft.QuickGelu", "com.microsoft.BiasGelu",
    "com.microsoft.BiasAdd", "com.microsoft.RotaryEmbedding", "RotaryEmbedding", "Swish",
    "com.microsoft.GroupNorm", "GroupNormalization",
)
BINARY_OPS = (
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Min", "Max", "Sum", "Mean", "Equal", "Less",
    "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "PRelu", "Where",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor",
)


@rule(*UNARY_OPS)
def _unary(c: Ctx):
    x = c.x
    dtype = "bool" if c.op in BOOL_OUT else x.dtype
    fn = _UNARY_VALUE.get(c.op)
    value = None
    if fn is not None and x.value is not None:
        value = np.frompyfunc(fn, 1, 1)(x.value)
    outs = [with_value(x.shape, dtype, value)]
    if c.op == "BatchNormalization" and c.n_out > 1:  # training outputs: running stats
        outs += [TInfo((x.shape[1],), x.dtype)] * (c.n_out - 1)
    if c.op.endswith("BiasGelu") or c.op.endswith("BiasAdd"):
        outs = [TInfo(c.env.broadcast(*(i.shape for i in c.ins if i is not None)), x.dtype)]
    return outs


@rule(*BINARY_OPS)
def _binary(c: Ctx):
    present = [i for i in c.ins if i is not None]
    shape = c.env.broadcast(*(i.shape for i in present))
    dtype = "bool" if c.op in BOOL_OUT else (present[1].dtype if c.op == "Where" else present[0].dtype)
    value = None
    if all(i.value is not None for i in present):
        value = _binary_value(c.op, [i.value for i in present], dtype)
    return [with_value(shape, dtype, value)]


def _binary_value(op, vals, dtype):
    if op == "Where":
        cond, a, b = np.broadcast_arrays(*vals)
        if not all(v in (True, False) or isinstance(v, sympy.logic.boolalg.BooleanAtom) for v in cond.ravel()):
            return None
        return obj_array([x if bool(cv) else y for cv, x, y in zip(cond.ravel(), a.ravel(), b.ravel())]).reshape(cond.shape)
    if op in ("Sum", "Mean"):
        total = sum(np.broadcast_arrays(*vals)[1:], np.broadcast_arrays(*vals)[0])
        return total / len(vals) if op == "Mean" else total
    if len(vals) != 2:
        return None
    a, b = np.broadcast_arrays(*vals)
    if op == "Div":
        int_div = dtype in INT_DTYPES
        fn = (lambda x, y: sympy.floor(x / y)) if int_div else (lambda x, y: x / y)
    else:
        fn = _BINARY_VALUE.get(op)
    if fn is None:
        return None
    out = np.frompyfunc(lambda x, y: fold(op, fn, x, y), 2, 1)(a, b)  # bounded: limits.py
    if op in BOOL_OUT and not all(isinstance(v, sympy.logic.boolalg.BooleanAtom) for v in out.ravel()):
        return None  # an undecidable comparison: contents unknown
    return out


@rule("Cast", "CastLike")
def _cast(c: Ctx):
    x = c.x
    dtype = dtype_name(c.attr("to")) if c.op == "Cast" else c.inp(1).dtype
    value = x.value
    if value is not None and dtype in INT_DTYPES:
        value = np.frompyfunc(lambda v: sympy.floor(v) if sympy.sympify(v).is_Number else v, 1, 1)(value)
    if value is not None and dtype == "bool":
        value = np.frompyfunc(lambda v: sympy.sympify(v) != 0, 1, 1)(value)
    return [with_value(x.shape, dtype, value)]


# ---- shape ops -------------------------------------------------------------------------


@rule("Shape")
def _shape(c: Ctx):
    dims = list(c.x.shape)
    start, end = c.attr("start", 0), c.attr("end", len(dims))
    dims = dims[slice(start, end if end < INT64_MAX else None)]
    return [with_value((len(dims),), "int64", obj_array(dims))]


@rule("Size")
def _size(c: Ctx):
    return [with_value((), "int64", obj_array(_numel(c.x.shape)))]


@rule("Constant")
def _constant(c: Ctx):
    for key, dtype in (("value_int", "int64"), ("value_float", "float32")):
        if key in c.attrs:
            return [with_value((), dtype, obj_array(sympy.sympify(c.attrs[key])))]
    for key, dtype in (("value_ints", "int64"), ("value_floats", "float32")):
        if key in c.attrs:
            vals = [sympy.sympify(v) for v in c.attrs[key]]
            return [with_value((len(vals),), dtype, obj_array(vals))]
    if "value" in c.attrs:
        return [tensor_info(c.attrs["value"])]
    return None


@rule("ConstantOfShape")
def _constant_of_shape(c: Ctx):
    dims = exprs(c.x)
    if dims is None:
        dims = list(c.fresh_shape(int(c.x.shape[0]))) if _concrete(c.x.shape) else [c.env.fresh()]
    fill = tensor_info(c.attrs["value"]) if "value" in c.attrs else TInfo((1,), "float32", obj_array([sympy.Integer(0)]))
    conc = _concrete(dims)
    value = None
    if conc is not None and _count(conc) <= MAX_VALUE_ELEMENTS and fill.value is not None:
        value = np.full(conc, fill.value.ravel()[0], dtype=object)
    return [with_value(dims, fill.dtype, value)]


def _resolve_reshape(c: Ctx, in_shape, target, allowzero):
    out, minus = [], None
    for i, t in enumerate(target):
        if t == -1:
            minus = i
            out.append(None)
        elif t == 0 and not allowzero:
            out.append(in_shape[i])
        else:
            out.append(t)
    if minus is not None:
        known = sympy.Mul(*(d for d in out if d is not None))
        out[minus] = _numel(in_shape) / known
    return tuple(out)


@rule("Reshape")
def _reshape(c: Ctx):
    x, tgt = c.x, c.inp(1)
    target = exprs(tgt) if tgt is not None else [sympy.Integer(v) for v in c.attr("shape", [])]
    if target is None:
        conc = _concrete(tgt.shape)
        return [TInfo(c.fresh_shape(conc[0]) if conc else (c.env.fresh(),), x.dtype)]
    shape = _resolve_reshape(c, x.shape, target, c.attr("allowzero", 0))
    return [with_value(shape, x.dtype, None if x.value is None else x.value.ravel())]


@rule("Flatten")
def _flatten(c: Ctx):
    axis = c.attr("axis", 1) % (c.x.rank + 1) if c.x.rank else 0
    shape = (_numel(c.x.shape[:axis]), _numel(c.x.shape[axis:]))
    return [with_value(shape, c.x.dtype, None if c.x.value is None else c.x.value.ravel())]


@rule("Transpose")
def _transpose(c: Ctx):
    perm = c.attr("perm") or list(range(c.x.rank))[::-1]
    value = None if c.x.value is None else np.transpose(c.x.value, perm)
    return [with_value(tuple(c.x.shape[p] for p in perm), c.x.dtype, value)]


@rule("Squeeze")
def _squeeze(c: Ctx):
    axes = c.from_attr_or_input("axes", 1)
    rank = c.x.rank
    if axes is None:
        axes = [i for i, d in enumerate(c.x.shape) if d == 1]
    axes = {a % rank for a in axes} if rank else set()
    shape = tuple(d for i, d in enumerate(c.x.shape) if i not in axes)
    return [with_value(shape, c.x.dtype, None if c.x.value is None else c.x.value.ravel())]


@rule("Unsqueeze")
def _unsqueeze(c: Ctx):
    axes = c.from_attr_or_input("axes", 1)
    rank = c.x.rank + len(axes)
    axes = sorted(a % rank for a in axes)
    shape = list(c.x.shape)
    for a in axes:
        shape.insert(a, ONE)
    return [with_value(shape, c.x.dtype, None if c.x.value is None else c.x.value.ravel())]


@rule("Concat")
def _concat(c: Ctx):
    present = [i for i in c.ins if i is not None and not (i.rank == 1 and i.shape[0] == 0)]
    present = present or [c.ins[0]]
    axis = c.attr("axis", 0) % present[0].rank
    shape = list(present[0].shape)
    shape[axis] = sympy.Add(*(i.shape[axis] for i in present))
    for i in range(len(shape)):
        if i != axis:
            for other in present[1:]:
                shape[i] = c.env.unify(shape[i], other.shape[i])
    value = None
    if all(i.value is not None for i in present):
        value = np.concatenate([i.value for i in present], axis=axis)
    return [with_value(shape, present[0].dtype, value)]


@rule("Split")
def _split(c: Ctx):
    axis = c.attr("axis", 0) % c.x.rank
    dim = c.x.shape[axis]
    sizes = c.from_attr_or_input("split", 1)
    n = c.attr("num_outputs", c.n_out)
    check_count("Split num_outputs", n, c.n_out)
    if sizes is None:
        chunk = sympy.ceiling(dim / n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    outs = []
    for s in sizes:
        shape = list(c.x.shape)
        shape[axis] = sympy.sympify(s)
        outs.append(TInfo(tuple(shape), c.x.dtype))
    return outs


def slice_len(dim, start, end, step):
    """Elements that ``x[start:end:step]`` keeps of a (symbolic) dim, as ONNX Slice clamps."""
    n, a, b = as_int(dim), as_int(start), as_int(end)
    if n is not None and a is not None and b is not None and n >= 0 and step:  # concrete: Python's slice clamps alike
        return integer(len(range(n)[a:b:step]))
    dim, start, end = sympy.sympify(dim), sympy.sympify(start), sympy.sympify(end)
    big = lambda v: v.is_Number and abs(v) >= INT64_MAX // 2  # noqa: E731
    if step > 0:
        s = 0 if start == 0 else (dim if big(start) and start > 0 else _clamp(start, dim, 0, dim))
        e = dim if big(end) and end > 0 else _clamp(end, dim, 0, dim)
        return sympy.Max(0, sympy.ceiling((e - s) / step)) if step != 1 else sympy.Max(0, e - s)
    s = dim - 1 if big(start) and start > 0 else _clamp(start, dim, -1, dim - 1)
    e = sympy.Integer(-1) if big(end) and end < 0 else _clamp(end, dim, -1, dim - 1)
    return sympy.Max(0, sympy.ceiling((s - e) / -step))


def _clamp(i, dim, lo, hi):
    if i.is_Number and i < 0:
        i = dim + i
    return sympy.Min(sympy.Max(i, lo), hi)


@rule("Slice")
def _slice(c: Ctx):
    x = c.x
    if "starts" in c.attrs:  # opset < 10
        starts, ends = c.attrs["starts"], c.attrs["ends"]
        axes, steps = c.attrs.get("axes"), None
    else:
        starts, ends = exprs(c.inp(1)), exprs(c.inp(2))
        axes, steps = c.from_attr_or_input("_", 3), ints(c.inp(4))
    if starts is None or ends is None or (c.inp(3) is not None and axes is None) or (c.inp(4) is not None and steps is None):
        return [TInfo(c.fresh_shape(x.rank), x.dtype)]
    axes = [a % x.rank for a in (axes if axes is not None else range(len(starts)))]
    steps = steps or [1] * len(axes)
    shape = list(x.shape)
    index = [slice(None)] * x.rank
    for a, s, e, st in zip(axes, starts, ends, steps):
        shape[a] = slice_len(x.shape[a], s, e, st)
        if sympy.sympify(s).is_Integer and sympy.sympify(e).is_Integer:
            index[a] = slice(int(s), int(e) if abs(int(e)) < INT64_MAX // 2 else (None if st > 0 else None), st)
    value = None
    if x.value is not None and all(isinstance(i, slice) for i in index):
        value = x.value[tuple(index)]
    return [with_value(shape, x.dtype, value)]


@rule("Gather")
def _gather(c: Ctx):
    x, idx = c.x, c.inp(1)
    axis = c.attr("axis", 0) % x.rank
    shape = x.shape[:axis] + idx.shape + x.shape[axis + 1:]
    value = None
    if x.value is not None and ints(idx) is not None:
        value = np.take(x.value, np.array(ints(idx)).reshape(_concrete(idx.shape)), axis=axis)
    return [with_value(shape, x.dtype, value)]


@rule("GatherElements")
def _gather_elements(c: Ctx):
    return [TInfo(c.inp(1).shape, c.x.dtype)]


@rule("GatherND")
def _gather_nd(c: Ctx):
    x, idx = c.x, c.inp(1)
    b = c.attr("batch_dims", 0)
    last = int(idx.shape[-1])
    return [TInfo(idx.shape[:-1] + x.shape[b + last:], x.dtype)]


@rule("ScatterND", "ScatterElements", "Scatter")
def _scatter(c: Ctx):
    return [TInfo(c.x.shape, c.x.dtype)]


@rule("Expand")
def _expand(c: Ctx):
    target = exprs(c.inp(1))
    if target is None:
        conc = _concrete(c.inp(1).shape)
        target = c.fresh_shape(conc[0] if conc else c.x.rank)
    shape = c.env.broadcast(c.x.shape, tuple(target))
    value = None
    if c.x.value is not None and _concrete(shape) is not None:
        value = np.broadcast_to(c.x.value, _concrete(shape))
    return [with_value(shape, c.x.dtype, value)]


@rule("Tile")
def _tile(c: Ctx):
    reps = exprs(c.inp(1))
    if reps is None:
        return [TInfo(c.fresh_shape(c.x.rank), c.x.dtype)]
    return [TInfo(tuple(d * r for d, r in zip(c.x.shape, reps)), c.x.dtype)]


@rule("Range")
def _range(c: Ctx):
    start, limit, delta = (exprs(c.inp(i)) for i in range(3))
    if start is None or limit is None or delta is None:
        return [TInfo((c.env.fresh(),), c.x.dtype)]
    start, limit, delta = start[0], limit[0], delta[0]
    n = sympy.Max(0, sympy.ceiling((limit - start) / delta))
    value = None
    if n.is_Integer and int(n) <= MAX_VALUE_ELEMENTS and start.is_Number and delta.is_Number:
        value = obj_array([start + i * delta for i in range(int(n))])
    return [with_value((n,), c.x.dtype, value)]


@rule("Pad")
def _pad(c: Ctx):
    pads = c.from_attr_or_input("pads", 1)
    axes = ints(c.inp(3)) if c.inp(3) is not None else list(range(c.x.rank))
    if pads is None:
        return [TInfo(c.fresh_shape(c.x.rank), c.x.dtype)]
    shape = list(c.x.shape)
    n = len(axes)
    for j, a in enumerate(axes):
        shape[a % c.x.rank] += pads[j] + pads[j + n]
    return [TInfo(tuple(shape), c.x.dtype)]

