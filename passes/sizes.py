"""Sizes as polynomials: ``{monomial: coefficient}`` over expanded terms, so that the live
bytes of thousands of program steps add up quickly (passes/memory.py), with a dominance test
that holds for every positive value of the dims."""

from __future__ import annotations

from functools import lru_cache

import sympy

from irtools.ir.symbols import from_kv_len, sym

Poly = dict  # monomial (sympy expression) -> coefficient


@lru_cache(maxsize=16384)
def poly(expr) -> tuple:
    """An expression as ((monomial, coefficient), ...) over its expanded terms."""
    expr = sympy.expand(from_kv_len(sympy.sympify(expr)))
    # integer coefficients as Python ints: adding thousands of steps is then int arithmetic
    return tuple((m, int(c) if c.is_Integer else c) for m, c in expr.as_coefficients_dict().items())


def add_to(acc: Poly, terms, scale=1) -> None:
    for m, c in terms.items() if isinstance(terms, dict) else terms:
        v = acc.get(m, 0) + c * scale
        if v == 0:
            acc.pop(m, None)
        else:
            acc[m] = v


def to_expr(p: Poly) -> sympy.Expr:
    return sympy.Add(*(c * m for m, c in p.items())) if p else sympy.Integer(0)


@lru_cache(maxsize=4096)
def _positive(m) -> bool:
    return m == 1 or bool(m.is_positive)


def dominates(a: Poly, b: Poly) -> bool:
    """a >= b for every positive value of the symbols (coefficient-wise, positive monomials)."""
    for m in set(a) | set(b):
        d = a.get(m, 0) - b.get(m, 0)
        if d != 0 and (d < 0 or not _positive(m)):
            return False
    return True


def monomial_values(monomials, bindings) -> dict | None:
    subs = {sym(k): sympy.sympify(v) for k, v in bindings.items()}
    out = {}
    for m in monomials:
        v = m.xreplace(subs) if m != 1 else sympy.Integer(1)
        if v.free_symbols:
            return None
        out[m] = float(v)
    return out


def poly_value(p: Poly, known: dict) -> float:
    return float(sum(float(c) * known[m] for m, c in p.items()))


__all__ = ["Poly", "add_to", "dominates", "monomial_values", "poly", "poly_value", "to_expr"]
