"""Shape rules of the ONNX sequence ops.

A sequence is described by its elements stacked: a TInfo of shape ``(length, *element)`` and
the elements' dtype, so its bytes are the bytes of all its tensors. Elements of different
sizes along a dim get a fresh symbol for that dim (their count stays exact).
"""

from __future__ import annotations

import sympy

from irtools.capture.onnx.shape_env import Ctx, RuleTable, exprs, with_value
from irtools.capture.onnx.shape_more import dtype_attr
from irtools.capture.onnx.tensors import TInfo, integer

RULES = RuleTable()
rule = RULES.rule

ZERO = sympy.Integer(0)


def is_empty(seq: TInfo) -> bool:
    return seq.rank == 1 and seq.shape[0] == 0


def element(seq: TInfo) -> tuple:
    return tuple(seq.shape[1:])


def merge(c: Ctx, a: tuple | None, b: tuple) -> tuple:
    """The element shape two elements share: equal dims kept, the others fresh."""
    if a is None:
        return tuple(b)
    if len(a) != len(b):
        return c.fresh_shape(len(b))
    return tuple(x if sympy.simplify(x - y) == 0 else c.env.fresh("seq_elem") for x, y in zip(a, b))


@rule("SequenceEmpty")
def _empty(c: Ctx):
    return [TInfo((ZERO,), dtype_attr(c, "dtype", "float32"))]


@rule("SequenceConstruct")
def _construct(c: Ctx):
    elem = None
    for t in c.ins:
        elem = merge(c, elem, t.shape)
    return [TInfo((integer(len(c.ins)),) + elem, c.x.dtype)]


@rule("SequenceInsert")
def _insert(c: Ctx):
    seq, t = c.x, c.inp(1)
    if is_empty(seq):
        return [TInfo((integer(1),) + tuple(t.shape), t.dtype)]
    return [TInfo((seq.shape[0] + 1,) + merge(c, element(seq), t.shape), seq.dtype)]


@rule("SequenceErase")
def _erase(c: Ctx):
    return [TInfo((c.x.shape[0] - 1,) + element(c.x), c.x.dtype)]


@rule("SequenceAt")
def _at(c: Ctx):
    return [TInfo(element(c.x), c.x.dtype)]


@rule("SequenceLength")
def _length(c: Ctx):
    return [with_value((), "int64", [c.x.shape[0]])]


def _chunks(c: Ctx, dim, split):
    """(number of pieces, piece size along the axis) for SplitToSequence."""
    if split is None:
        return dim, integer(1)
    sizes = exprs(split)
    if sizes is None:
        return c.env.fresh("pieces"), c.env.fresh("piece")
    if split.rank == 0:
        s = sizes[0]
        even = not (dim.is_Integer and s.is_Integer) or dim % s == 0
        return sympy.ceiling(dim / s), s if even else c.env.fresh("piece")
    equal = all(sympy.simplify(v - sizes[0]) == 0 for v in sizes)
    return integer(len(sizes)), sizes[0] if equal else c.env.fresh("piece")


@rule("SplitToSequence")
def _split_to_sequence(c: Ctx):
    x = c.x
    axis = c.attr("axis", 0) % x.rank
    dim = sympy.sympify(x.shape[axis])
    split = c.inp(1)
    n, size = _chunks(c, dim, split)
    shape = list(x.shape)
    if split is None and not c.attr("keepdims", 1):
        del shape[axis]
    else:
        shape[axis] = size
    return [TInfo((n,) + tuple(shape), x.dtype)]


@rule("ConcatFromSequence")
def _concat_from_sequence(c: Ctx):
    seq = c.x
    n, elem = seq.shape[0], list(element(seq))
    if c.attr("new_axis", 0):
        axis = c.attr("axis") % (len(elem) + 1)
        elem.insert(axis, n)
    else:
        axis = c.attr("axis") % len(elem)
        elem[axis] = n * elem[axis]
    return [TInfo(tuple(elem), seq.dtype)]
