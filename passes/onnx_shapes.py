"""Symbolic shape (and small-value) inference over ONNX nodes, with sympy.

Every tensor gets a :class:`TInfo`: a shape of sympy expressions, a dtype, and — for small
tensors whose contents follow from shapes and constants (``Shape -> Gather -> Unsqueeze ->
Concat``) — its ``value`` as a numpy object array of sympy expressions. Values are what keep
``Reshape``/``Expand``/``Slice``/``Range``/``ConstantOfShape`` outputs symbolic. Nodes whose
outputs are all known values are *shape computation* (they cost nothing).

ONNX broadcasting demands equal sizes at run time, so when two different non-1 sizes meet
(``Min(1024, seq_len)`` from a slice of a 1024-long mask against ``seq_len``) the simpler one
wins and :class:`ShapeEnv` records the other as equal to it, like torch's guards do.
Unknown sizes get fresh symbols (``unk_3``), never an exception.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from irtools.symbols import sym
from passes.onnx_tensors import dtype_name, tensor_info

ONE = sympy.Integer(1)
INT64_MAX = 2**63 - 1
MAX_VALUE_ELEMENTS = 64  # contents are tracked only for tensors this small
INT_DTYPES = {"int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64"}

_UNARY_VALUE = {
    "Neg": lambda x: -x, "Abs": sympy.Abs, "Sqrt": sympy.sqrt, "Floor": sympy.floor,
    "Ceil": sympy.ceiling, "Reciprocal": lambda x: 1 / x, "Identity": lambda x: x,
    "Not": lambda x: sympy.Not(x),
}
_BINARY_VALUE = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
    "Pow": lambda a, b: a**b, "Mod": sympy.Mod, "Min": sympy.Min, "Max": sympy.Max,
    "Equal": sympy.Eq, "Less": sympy.Lt, "Greater": sympy.Gt, "LessOrEqual": sympy.Le,
    "GreaterOrEqual": sympy.Ge, "And": sympy.And, "Or": sympy.Or,
}
BOOL_OUT = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Not", "Xor", "IsNaN", "IsInf"}


@dataclass(frozen=True)
class TInfo:
    """What is known of one tensor: symbolic shape, dtype, and small contents if known."""

    shape: tuple
    dtype: str = "float32"
    value: Any = None  # numpy object array (shape == concrete ``shape``) or None

    @property
    def rank(self) -> int:
        return len(self.shape)


class ShapeEnv:
    """Fresh symbols and the equalities that broadcasting proved (loser -> winner)."""

    def __init__(self):
        self.replacements: dict[sympy.Expr, sympy.Expr] = {}
        self.version = 0  # bumped whenever an equality is recorded
        self._count = itertools.count()
        self._applied: dict = {}

    def fresh(self, hint: str = "unk") -> sympy.Symbol:
        return sym(f"{hint}_{next(self._count)}")

    def apply(self, expr):
        if not isinstance(expr, sympy.Basic):
            expr = sympy.sympify(expr)
        if not self.replacements or expr.is_Number:
            return expr
        out = self._applied.get(expr)
        if out is None:
            out = self._applied[expr] = expr.xreplace(self.replacements)
        return out

    def apply_info(self, info: TInfo) -> TInfo:
        if not self.replacements:
            return info
        value = None if info.value is None else obj_array(np.vectorize(self.apply, otypes=[object])(info.value))
        return TInfo(tuple(self.apply(d) for d in info.shape), info.dtype, value)

    def unify(self, a, b):
        """The size two dims that must be equal share; records the equality."""
        a, b = self.apply(a), self.apply(b)
        if a == b:
            return a
        win, lose = sorted((a, b), key=_complexity)
        if not lose.is_Number and (not lose.is_Symbol or lose.name.startswith("unk_")):
            self.replacements[lose] = win
            for k, v in list(self.replacements.items()):
                self.replacements[k] = v.xreplace({lose: win})
            self.version += 1
            self._applied.clear()
        return win

    def broadcast(self, *shapes) -> tuple:
        """Multidirectional (numpy) broadcasting of symbolic shapes."""
        n = max((len(s) for s in shapes), default=0)
        out = []
        for i in range(n):
            dims = [s[len(s) - n + i] for s in shapes if len(s) - n + i >= 0]
            dims = [self.apply(d) for d in dims if d != 1] or [ONE]
            size = dims[0]
            for d in dims[1:]:
                size = self.unify(size, d)
            out.append(size)
        return tuple(out)


def _complexity(e):
    return (0 if e.is_Number else 1 if e.is_Symbol and not e.name.startswith("unk_") else 2, sympy.count_ops(e), str(e))


def obj_array(array) -> np.ndarray:
    return np.asarray(array, dtype=object)


def _concrete(shape) -> tuple[int, ...] | None:
    out = []
    for d in shape:
        if type(d) is int or isinstance(d, sympy.Integer):
            out.append(int(d))
        elif sympy.sympify(d).is_Integer:
            out.append(int(d))
        else:
            return None
    return tuple(out)


def _count(conc) -> int:
    """Element count of a concrete shape; negative dims count as huge (nothing is tracked)."""
    return math.prod(conc) if all(d >= 0 for d in conc) else MAX_VALUE_ELEMENTS + 1


def _numel(shape):
    return sympy.Mul(*shape) if shape else ONE


def ints(info: TInfo | None) -> list[int] | None:
    """The contents of a known integer tensor as Python ints, else None."""
    if info is None or info.value is None:
        return None
    out = []
    for v in info.value.ravel():
        if not isinstance(v, sympy.Integer):
            v = sympy.sympify(v)
            if not v.is_Integer:
                return None
        out.append(int(v))
    return out


def exprs(info: TInfo | None) -> list | None:
    if info is None or info.value is None:
        return None
    return [v if isinstance(v, sympy.Basic) else sympy.sympify(v) for v in info.value.ravel()]


def with_value(shape, dtype, value) -> TInfo:
    """A TInfo whose contents are kept only when small and of concrete shape."""
    conc = _concrete(shape)
    if value is None or conc is None or _count(conc) > MAX_VALUE_ELEMENTS:
        return TInfo(tuple(shape), dtype)
    return TInfo(tuple(shape), dtype, obj_array(value).reshape(conc))


class Ctx:
    """One node under inference: its inputs, attributes, env and opset."""

    def __init__(self, op, ins, attrs, env, n_out, opset):
        self.op, self.ins, self.attrs, self.env, self.n_out, self.opset = op, ins, attrs, env, n_out, opset

    def inp(self, i) -> TInfo | None:
        return self.ins[i] if i < len(self.ins) else None

    def attr(self, name, default=None):
        return self.attrs.get(name, default)

    def from_attr_or_input(self, name, index):
        """An int-list parameter given as an attribute (old opsets) or an input (new)."""
        if name in self.attrs:
            return list(self.attrs[name])
        info = self.inp(index)
        return None if info is None else ints(info)

    def fresh_shape(self, rank) -> tuple:
        return tuple(self.env.fresh() for _ in range(rank))

    @property
    def x(self) -> TInfo:
        return self.ins[0]


_RULES: dict[str, Any] = {}


def rule(*ops):
    def register(fn):
        for op in ops:
            _RULES[op] = fn
        return fn

    return register


def infer(op: str, ins: list, attrs: dict, env: ShapeEnv, n_out: int, opset: int = 18, hints=None) -> list[TInfo]:
    """Output TInfos of one node (``op`` domain-qualified, ``ins`` None for absent inputs).

    ``hints`` are onnx.shape_inference's outputs (static facts) used where no rule applies: a
    list, or a callable returning it (called only then, so that it can be computed lazily)."""
    ins = [None if i is None else env.apply_info(i) for i in ins]
    fn = _RULES.get(op)
    outs = None
    if fn is not None:
        try:
            outs = fn(Ctx(op, ins, attrs, env, n_out, opset))
        except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
            outs = None  # malformed node: fall back to hints / fresh symbols
    outs = list(outs or [])
    for i in range(n_out):
        if i >= len(outs) or outs[i] is None:
            if callable(hints):
                hints = hints()
            hints = hints or []
            hint = hints[i] if i < len(hints) else None
            if hint is not None:
                fallback = hint
            elif ins and ins[0] is not None and op.split(".")[-1] in SAME_SHAPE_FALLBACK:
                fallback = TInfo(ins[0].shape, ins[0].dtype)
            else:
                fallback = TInfo((env.fresh(),), ins[0].dtype if ins and ins[0] is not None else "float32")
            outs[i:i + 1] = [fallback] if i < len(outs) else [fallback]
    return [env.apply_info(o) for o in outs[:n_out]]


SAME_SHAPE_FALLBACK = {"FastGelu", "BiasGelu", "Gelu", "QuickGelu", "BiasAdd", "RotaryEmbedding", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization"}

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
    out = np.frompyfunc(lambda x, y: fn(sympy.sympify(x), sympy.sympify(y)), 2, 1)(a, b)
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


from passes import onnx_shape_rules as _more_rules  # noqa: E402,F401  (registers the remaining rules)
