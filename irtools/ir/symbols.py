"""Standard symbols, the alias table that renames frontend symbols to them, and sympy helpers.

Every cost in irtools is a sympy expression in these names, so one analysis answers many
shapes and precisions. Symbols are positive integers (byte sizes are positive reals, since
int4 weights take half a byte).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache, lru_cache

import sympy

from irtools.ir.formula import parse_formula
from irtools.ir.numeric import linear_value

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
    return sympy.expand(as_expr(expr))


def parse(text: str) -> sympy.Expr:
    """Parse a formula string with the restricted parser of ``formula.py`` (never ``eval``):
    names become standard symbols (``oo`` or ``nan`` too), only arithmetic is accepted."""
    return parse_formula(text, sym)


def as_expr(value) -> sympy.Expr:
    """A sympy expression from a number, an expression, or a formula *string* (parsed by
    :func:`parse`; ``sympy.sympify`` would ``eval`` it)."""
    if isinstance(value, str):
        return parse(value)
    return sympy.sympify(value)


def pretty(expr, factor: bool = True) -> str:
    """A compact human form of a cost: factored (optional), and in ``kv_len`` where shorter."""
    expr = as_expr(expr)
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
    return as_expr(expr).xreplace({KV_LEN: sym("cache_len") + sym("seq_len")})


def normalize_bindings(bindings: Mapping[str, float] | None) -> dict[str, float]:
    """Bindings in the stored symbols: a ``kv_len`` binding becomes ``cache_len = kv_len - seq_len``."""
    out = dict(bindings or {})
    if "kv_len" in out and "seq_len" in out:
        kv = out.pop("kv_len")
        out.setdefault("cache_len", kv - out["seq_len"])
    return out


def evaluate(expr, bindings: Mapping[str, float]) -> float | None:
    """The number an expression takes under ``bindings``; None where symbols stay free, and
    None where the value is not finite (``zoo``, ``nan``, ``oo``): reports never carry NaN."""
    expr = as_expr(expr)
    if expr.is_Number:
        return _finite(expr)
    fast = linear_value(expr, bindings)  # k*a_bytes + ... at int bindings: exact, without sympy
    if fast is not None and KV_LEN not in expr.free_symbols:
        return fast
    if KV_LEN in expr.free_symbols:
        expr = from_kv_len(expr)
    names = {s.name: s for s in expr.free_symbols}
    if not names.keys() <= bindings.keys():
        return None  # a symbol stays free: no value (and no partial substitution, which can be slow:
        # a Max of 50 sums in unbound symbols takes sympy minutes to re-simplify)
    value = expr.xreplace({names[k]: as_expr(v) for k, v in bindings.items() if k in names})
    if value.free_symbols:
        return None
    value = sympy.nsimplify(value) if not value.is_Number else value
    return _finite(value)


def _finite(value) -> float | int | None:
    if not value.is_Number or value in (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return None
    if value.is_Integer:
        out = int(value)
        return out if abs(out).bit_length() <= 1023 else None  # past float range: no value, like oo
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


@lru_cache(maxsize=65536)
def evaluate_cached(expr, bindings: tuple[tuple[str, float], ...]) -> float | None:
    """:func:`evaluate` memoized on (expression, sorted binding items): reports evaluate the
    same few expressions thousands of times."""
    return evaluate(expr, dict(bindings))
