"""Bounds that keep the ONNX frontend fast and its figures finite on any file.

A small file can ask for unbounded work: ``Pow(10, 10**9)`` on constants, a shape tensor
claiming ``2**40`` entries, ``Split`` with ``num_outputs=10**7``, a rank-1000 input. Each
bound below is far above what real models use; crossing one is a :class:`LimitError`
(a CaptureError: one line, exit status 2). Shapes must also stay meaningful: a dim that
folds to a negative number, ``nan`` or infinity is refused rather than costed.
"""

from __future__ import annotations

import sympy

from irtools.capture.onnx import proto as onnx  # the message classes without onnx's import cost
from irtools.ir import CaptureError, LimitError
from irtools.ir.formula import MAX_DIGITS, MAX_EXPONENT, power_too_big, too_big

#: protobuf cannot parse a larger message anyway.
MAX_ONNX_BYTES = 2**31
#: tensor rank (numpy's own limit is 64).
MAX_RANK = 64
#: outputs an attribute may ask for (Split's num_outputs) beyond the node's own outputs.
MAX_OUTPUTS = 4096
#: module nesting taken from metadata (real models stay under 20).
MAX_SCOPE_DEPTH = 100
INT64_MAX = 2**63 - 1
_NON_FINITE = (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)


def _limit(what: str, op: str) -> LimitError:
    return LimitError(f"constant folding of {op} would give {what} (limits: {MAX_DIGITS} digits, "
                      f"exponent {MAX_EXPONENT})")


def fold(op: str, fn, a, b):
    """``fn(a, b)`` for constant folding, refused before it starts when the result would be huge."""
    a, b = sympy.sympify(a), sympy.sympify(b)
    if op == "Pow":
        why = power_too_big(a, b)
        if why is not None:
            raise _limit(why, op)
    out = fn(a, b)
    why = too_big(out)
    if why is not None:
        raise _limit(why, op)
    return out


def check_count(what: str, n, have: int) -> None:
    """An output count asked for by an attribute (``Split``'s num_outputs)."""
    if isinstance(n, int) and n > max(MAX_OUTPUTS, have):
        raise LimitError(f"{what} = {n} is over the limit of {MAX_OUTPUTS} outputs")


def check_scope_depth(depth: int) -> None:
    """Module nesting a node's metadata (name scopes, node-name paths) declares."""
    if depth > MAX_SCOPE_DEPTH:
        raise LimitError(f"its metadata nests {depth} modules, over the limit of {MAX_SCOPE_DEPTH}")


def check_rank(rank: int, what: str) -> None:
    if rank > MAX_RANK:
        raise LimitError(f"{what} has rank {rank}, over the limit of {MAX_RANK}")


def _digits(n: int) -> int:
    return int(n.bit_length() * 0.30103) + 1  # never str(n): a 4000-digit int is slow to print


def check_outputs(op: str, outs) -> None:
    """Output shapes of one node: bounded rank, no negative or non-finite dim, no huge number."""
    for k, info in enumerate(outs):
        if info is None:
            continue
        check_rank(len(info.shape), f"output {k} of {op}")
        for d in info.shape:
            if isinstance(d, int | sympy.Integer):  # the concrete fast path: plain integer tests
                n = int(d)
                if n < 0:
                    raise CaptureError(f"output {k} of {op} gets a negative dimension {n} from the model's constants")
                if n > INT64_MAX:
                    raise LimitError(f"output {k} of {op} gets a dimension of {_digits(n)} digits from the model's "
                                     f"constants, over int64 (the largest size ONNX can hold)")
                continue
            if not isinstance(d, sympy.Basic) or d.is_Symbol:
                continue
            if d.is_Number:
                if d.is_Integer and int(d) > INT64_MAX:
                    raise LimitError(f"output {k} of {op} gets a dimension of {_digits(int(d))} digits from the model's "
                                     f"constants, over int64 (the largest size ONNX can hold)")
                if d in _NON_FINITE or (d.is_extended_real and d < 0):
                    raise CaptureError(f"output {k} of {op} gets a {'negative' if d.is_extended_real and d < 0 else 'non-finite'} "
                                       f"dimension {d} from the model's constants")
            elif d.has(*_NON_FINITE):
                raise CaptureError(f"output {k} of {op} gets a non-finite dimension {d} from the model's constants")
            why = too_big(d)
            if why is not None:
                raise LimitError(f"output {k} of {op} has a dimension with {why} (limits: {MAX_DIGITS} digits, "
                                 f"exponent {MAX_EXPONENT})")


def _value_ranks(graph: onnx.GraphProto):
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            yield v.name, len(v.type.tensor_type.shape.dim)
    for t in graph.initializer:
        yield t.name, len(t.dims)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield f"{node.op_type} attribute {attr.name}", len(attr.t.dims)
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _value_ranks(g)


def check_model_limits(model: onnx.ModelProto, where: str) -> None:
    """Ranks the file declares (inputs, outputs, value_info, initializers, subgraphs)."""
    for name, rank in _value_ranks(model.graph):
        if rank > MAX_RANK:
            raise LimitError(f"{where}: {name!r} has rank {rank}, over the limit of {MAX_RANK}")


__all__ = ["MAX_DIGITS", "MAX_EXPONENT", "MAX_ONNX_BYTES", "MAX_OUTPUTS", "MAX_RANK", "check_count", "check_model_limits",
           "check_outputs", "check_rank", "check_scope_depth", "fold", "too_big"]
