"""The concrete fast path: size and cost arithmetic in plain ints where values are known.

A size or cost is an ``int`` (or a sympy ``Integer``) when every dim it depends on is bound
to a number, and a sympy expression where a symbol remains. The helpers below accept both
and do the integer part with Python ints, handing sympy only what is still symbolic, so
the same cost rules serve a fixed-shape file (ints all the way) and a symbolic model (one
definition per convention, docs/conventions.md). Results are sympy objects (an ``Integer``
for a number), equal to what ``sympy.Mul`` / ``sympy.Add`` / ``sympy.expand`` give.
"""

from __future__ import annotations

import math

import sympy

_Integer = sympy.Integer


def as_int(x) -> int | None:
    """``x`` as a Python int when it is an integer number (int or sympy Integer), else None."""
    if type(x) is int:
        return x
    if isinstance(x, _Integer):
        return int(x)
    return None


def product(factors) -> sympy.Expr:
    """``sympy.Mul(*factors)``, multiplying the integer factors as Python ints."""
    n, rest = 1, []
    for f in factors:
        v = as_int(f)
        if v is None:
            rest.append(f)
        else:
            n *= v
    if not rest:
        return _Integer(n)
    return sympy.Mul(_Integer(n), *rest) if n != 1 else sympy.Mul(*rest)


def total(terms) -> sympy.Expr:
    """``sympy.Add(*terms)``, collected here: numbers summed as ints, every other term split into
    coefficient and monomial (``802816*a_bytes`` -> 802816, ``a_bytes``) and the coefficients of
    equal monomials added, so that sympy builds one sum of distinct monomials (a model's total
    over ten thousand nodes has a dozen). Sums among the terms are opened first."""
    terms = list(terms)
    n, per_term, rest = 0, {}, []
    stack = terms[::-1]
    while stack:
        t = stack.pop()
        v = as_int(t)
        if v is not None:
            n += v
            continue
        if not isinstance(t, sympy.Basic) or not t.is_commutative:
            rest.append(sympy.sympify(t))
            continue
        if t.is_Add:
            stack.extend(reversed(t.args))
            continue
        k, m = t.as_coeff_Mul()
        if m.is_Number:  # a non-integer number: sympy's own rounding order decides the sum
            return sympy.Add(*terms)
        k = int(k) if isinstance(k, _Integer) else k
        key = m.args if m.is_Mul else m  # factors are cached symbols: tuples compare by identity
        slot = per_term.get(key)
        if slot is None:
            per_term[key] = [k, m]
        else:
            slot[0] += k
    parts = [m if k == 1 else k * m for k, m in per_term.values() if k != 0] + rest
    if not parts:
        return _Integer(n)
    if n:
        parts.append(_Integer(n))
    return parts[0] if len(parts) == 1 else sympy.Add(*parts)


def _is_factor(e) -> bool:
    return e.is_Number or e.is_Symbol or (e.is_Pow and e.base.is_Symbol and e.exp.is_Integer and e.exp > 0)


def _is_monomial(e) -> bool:
    return _is_factor(e) or (e.is_Mul and all(_is_factor(a) for a in e.args))


def is_expanded(expr) -> bool:
    """True when ``sympy.expand(expr)`` would give ``expr`` back: a number, or a sum of
    monomials (numbers times symbols and positive integer powers of symbols)."""
    if as_int(expr) is not None:
        return True
    if not isinstance(expr, sympy.Basic):
        return False
    if expr.is_Add:
        return all(_is_monomial(a) for a in expr.args)
    return _is_monomial(expr)


def expand(expr) -> sympy.Expr:
    """``sympy.expand(expr)``, skipped where it would change nothing (the common case)."""
    if type(expr) is int:
        return _Integer(expr)
    if is_expanded(expr):
        return expr
    return sympy.expand(expr)


def linear_terms(expr) -> tuple[int, tuple] | None:
    """``(constant, ((symbol, coefficient), ...))`` of an integer linear form (``802816*a_bytes
    + 3*w_bytes + 9``), or None for anything else."""
    v = as_int(expr)
    if v is not None:
        return v, ()
    if not isinstance(expr, sympy.Basic):
        return None
    const, out = 0, []
    for t in expr.args if expr.is_Add else (expr,):
        v = as_int(t)
        if v is not None:
            const += v
        elif t.is_Symbol:
            out.append((t, 1))
        elif t.is_Mul and len(t.args) == 2 and isinstance(t.args[0], _Integer) and t.args[1].is_Symbol:
            out.append((t.args[1], int(t.args[0])))
        else:
            return None
    return const, tuple(out)


def linear_value(expr, bindings) -> int | None:
    """The exact value of an integer linear form when ``bindings`` gives each of its symbols a
    Python int (what sympy would compute, without sympy); None otherwise."""
    lin = linear_terms(expr)
    if lin is None:
        return None
    const, terms = lin
    for s, k in terms:
        v = bindings.get(s.name)
        if type(v) is not int:
            return None
        const += k * v
    return const


def term_text(expr) -> str | None:
    """``str(expr)`` for an integer linear form (``802816*a_bytes + 3*w_bytes + 9``) written
    without sympy's printer, to the same text: terms by symbol name, the number last; None
    for anything else."""
    lin = linear_terms(expr)
    if lin is None:
        return None
    const, terms = lin
    parts = [(k, s.name) for s, k in sorted(terms, key=lambda t: t[0].name) if k] + ([(const, "")] if const else [])
    if not parts:
        return "0"
    if len(parts) == 2 and const > 0 and parts[0][0] < 0:  # sympy writes ``1 - x``, not ``-x + 1``
        parts.reverse()
    out = []
    for i, (k, name) in enumerate(parts):
        body = name if abs(k) == 1 and name else (f"{abs(k)}*{name}" if name else str(abs(k)))
        out.append(("-" if k < 0 else "") + body if i == 0 else (" - " if k < 0 else " + ") + body)
    return "".join(out)


def int_shape(shape) -> tuple[int, ...] | None:
    """The shape as Python ints when every dim is a number, else None."""
    out = []
    for d in shape:
        v = as_int(d)
        if v is None:
            return None
        out.append(v)
    return tuple(out)


def numel(shape) -> sympy.Expr:
    """Element count of a shape: an ``Integer`` computed with ints when every dim is known."""
    dims = int_shape(shape)
    if dims is not None:
        return _Integer(math.prod(dims))
    return sympy.Mul(*shape) if shape else _Integer(1)


__all__ = ["as_int", "expand", "int_shape", "is_expanded", "linear_terms", "linear_value", "numel", "product", "term_text",
           "total"]
