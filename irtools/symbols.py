"""Standard symbols, the alias table that renames frontend symbols to them, and sympy helpers.

Every cost in irtools is a sympy expression in these names, so one analysis answers many
shapes and precisions. Symbols are positive integers (byte sizes are positive reals, since
int4 weights take half a byte).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, lru_cache

import sympy

BYTE_SYMBOLS = ("w_bytes", "a_bytes", "kv_bytes")

#: Frontend names (ONNX dim_params, user spellings) and what they mean in standard names.
ALIASES: dict[str, str] = {
    "batch": "batch_size",
    "batch_size": "batch_size",
    "N": "batch_size",
    "bs": "batch_size",
    "sequence_length": "seq_len",
    "seq_len": "seq_len",
    "seq_length": "seq_len",
    "sequence": "seq_len",
    "past_sequence_length": "cache_len",
    "past_seq_len": "cache_len",
    "cache_len": "cache_len",
    "total_sequence_length": "kv_len",
    "kv_len": "kv_len",
}


@cache
def sym(name: str) -> sympy.Symbol:
    """The sympy symbol for a standard (or user) name; dims are positive integers."""
    if name in BYTE_SYMBOLS:
        return sympy.Symbol(name, positive=True)
    return sympy.Symbol(name, positive=True, integer=True)


def canonical_name(name: str, aliases: Mapping[str, str] | None = None) -> str:
    """Rename a frontend dim name through the alias table (user entries win)."""
    if aliases and name in aliases:
        return aliases[name]
    return ALIASES.get(name, name)


KV_LEN = sym("kv_len")


def expand(expr) -> sympy.Expr:
    """Keep cost expressions polynomial: expanded sums of monomials."""
    return sympy.expand(sympy.sympify(expr))


def parse(text: str) -> sympy.Expr:
    """Parse a formula string (never ``eval``): names become standard symbols."""
    expr = sympy.parse_expr(text, evaluate=True)
    return expr.subs({s: sym(s.name) for s in expr.free_symbols})


def pretty(expr, factor: bool = True) -> str:
    """A compact human form of a cost: factored (optional), and in ``kv_len`` where shorter."""
    expr = sympy.sympify(expr)
    if expr.is_Number:
        return str(expr)
    shape = sympy.factor if factor else sympy.expand
    best = str(shape(expr))
    cache, seq = sym("cache_len"), sym("seq_len")
    if cache in expr.free_symbols:
        in_kv = shape(sympy.expand(expr.subs(cache, KV_LEN - seq)))
        if len(str(in_kv)) < len(best):
            best = str(in_kv)
    return best


def from_kv_len(expr) -> sympy.Expr:
    """Rewrite ``kv_len`` as ``cache_len + seq_len`` (the form costs are stored in)."""
    return sympy.sympify(expr).xreplace({KV_LEN: sym("cache_len") + sym("seq_len")})


def evaluate(expr, bindings: Mapping[str, float]) -> float | None:
    """The number an expression takes under ``bindings``; None where symbols stay free."""
    expr = sympy.sympify(expr)
    if expr.is_Number:
        return int(expr) if expr.is_Integer else float(expr)
    if KV_LEN in expr.free_symbols:
        expr = from_kv_len(expr)
    names = {s.name: s for s in expr.free_symbols}
    value = expr.xreplace({names[k]: sympy.sympify(v) for k, v in bindings.items() if k in names})
    if value.free_symbols:
        return None
    value = sympy.nsimplify(value) if not value.is_Number else value
    return int(value) if value.is_Integer else float(value)


@lru_cache(maxsize=65536)
def evaluate_cached(expr, bindings: tuple[tuple[str, float], ...]) -> float | None:
    """:func:`evaluate` memoized on (expression, sorted binding items): reports evaluate the
    same few expressions thousands of times."""
    return evaluate(expr, dict(bindings))
