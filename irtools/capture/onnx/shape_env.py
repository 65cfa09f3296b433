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

import numpy as np
import sympy

from irtools.capture.onnx.limits import check_rank
from irtools.capture.onnx.tensors import LazyTInfo, TInfo
from irtools.ir.symbols import sym

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
        """``info`` under the recorded equalities: the same object where nothing changes, and a
        file's own tensor contents (numbers, read lazily) are never read for it."""
        if not self.replacements or isinstance(info, LazyTInfo):
            return info
        apply, integer = self.apply, sympy.Integer
        shape = tuple(d if isinstance(d, integer) else apply(d) for d in info.shape)  # numbers never change
        value = info.value
        if value is not None:
            flat = value.ravel()
            new = [self.apply(v) for v in flat]
            if any(a is not b for a, b in zip(new, flat)):
                value = obj_array(new).reshape(value.shape)
        if value is info.value and all(a is b for a, b in zip(shape, info.shape)):
            return info
        return TInfo(shape, info.dtype, value)

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
        check_rank(int(rank), f"the shape {self.op} computes")  # a shape tensor of 2**40 entries
        return tuple(self.env.fresh() for _ in range(rank))

    @property
    def x(self) -> TInfo:
        return self.ins[0]


class RuleTable(dict):
    """Shape rules by op name; registering an op twice is an error."""

    def rule(self, *ops):
        def register(fn):
            for op in ops:
                if op in self:
                    raise ValueError(f"shape rule for {op!r} registered twice")
                self[op] = fn
            return fn

        return register

    def merged(self, other: RuleTable) -> RuleTable:
        clash = set(self) & set(other)
        if clash:
            raise ValueError(f"shape rules registered twice: {sorted(clash)}")
        return RuleTable({**self, **other})
