"""Formula strings -> sympy expressions, without ``eval``.

Formulas come back from files a user may not have written (a report JSON, a module-analysis
document, a ``.pt2``'s node metadata), and ``sympy.sympify`` / ``parse_expr`` evaluate
Python. :func:`parse_formula` instead walks Python's own syntax tree and accepts only:
numbers, names (each a size symbol -- ``oo``, ``nan``, ``E``, ``I``, ``pi`` included, which
stay symbols), ``+ - * / **``, parentheses, unary minus, the comparisons and ``&``/``|``
that a ``Piecewise`` condition needs, ``True``/``False``, and calls of :data:`FUNCTIONS`.
Anything else (attributes, subscripts, strings, lambdas, keywords, other names called) is a
:class:`FormulaError` with one line. Sizes are bounded too (:data:`MAX_DIGITS`,
:data:`MAX_EXPONENT`, :data:`MAX_FORMULA_CHARS`), so ``10**10**9`` is refused at once.
"""

from __future__ import annotations

import ast
import math

import sympy

from irtools.ir.errors import IrtoolsError

#: decimal digits of any number a formula (or ONNX constant folding) may produce.
MAX_DIGITS = 4000
MAX_BITS = int(MAX_DIGITS * math.log2(10))
#: |exponent| of a power of a non-number (expanded costs: (s + 1)**n has n + 1 terms).
MAX_EXPONENT = 64
MAX_FORMULA_CHARS = 200_000
FUNCTIONS = {
    "Max": sympy.Max, "Min": sympy.Min, "ceiling": sympy.ceiling, "floor": sympy.floor, "log": sympy.log,
    "sqrt": sympy.sqrt, "Abs": sympy.Abs, "Mod": sympy.Mod, "Piecewise": sympy.Piecewise,
}
_ARITY = {"Max": (1, None), "Min": (1, None), "log": (1, 2), "Mod": (2, 2), "Piecewise": (1, None)}
_BIN = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b, ast.BitAnd: sympy.And, ast.BitOr: sympy.Or}
_CMP = {ast.Lt: sympy.Lt, ast.LtE: sympy.Le, ast.Gt: sympy.Gt, ast.GtE: sympy.Ge}


class FormulaError(IrtoolsError, ValueError):
    """A formula string that is not a plain arithmetic formula (or is too large)."""


def number_bits(v) -> int:
    """Binary magnitude of a sympy number (0 for small ones and non-numbers)."""
    if not isinstance(v, sympy.Basic) or not v.is_Number:
        return 0
    if v.is_Integer:
        return int(v).bit_length()
    if v.is_Rational:
        return max(int(v.p).bit_length(), int(v.q).bit_length())
    if v.is_Float:
        _, man, exp, bc = v._mpf_
        return max(0, exp + bc) if man else 0
    return 0


def _digits(bits: int) -> int:
    return int(bits / math.log2(10))


def too_big(expr) -> str | None:
    """Why ``expr`` is too large to keep (a huge number, a huge power of a size), or None."""
    if not isinstance(expr, sympy.Basic):
        return None
    if expr.is_Number:
        bits = number_bits(expr)
        return f"a number of about {_digits(bits)} digits" if bits > MAX_BITS else None
    if expr.is_Atom:
        return None
    for atom in expr.atoms(sympy.Number):
        if number_bits(atom) > MAX_BITS:
            return f"a number of about {_digits(number_bits(atom))} digits"
    for p in expr.atoms(sympy.Pow):
        if p.exp.is_Number and not p.base.is_Number and abs(p.exp) > MAX_EXPONENT:
            return f"a power {p.exp} of a size"
    return None


def power_too_big(base, exp) -> str | None:
    """Why ``base**exp`` would be too large, decided before computing it (or None)."""
    if not exp.is_Number:
        return None
    if base.is_Rational and exp.is_Integer and base not in (0, 1, -1):
        bits = number_bits(base) * abs(int(exp))
        return f"a number of about {_digits(bits)} digits" if bits > MAX_BITS else None
    if not base.is_Number and abs(exp) > MAX_EXPONENT:
        return f"a power {exp} of a size"
    return None


def parse_formula(text: str, symbol=None) -> sympy.Expr:
    """The sympy expression of a formula string; names become ``symbol(name)`` (a positive symbol)."""
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, got {type(text).__name__}")
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula of {len(text)} characters is over the limit of {MAX_FORMULA_CHARS}")
    make = symbol or (lambda name: sympy.Symbol(name, positive=True))
    try:
        tree = ast.parse(text.strip(), mode="eval")
        out = _Walker(text.strip(), make).eval(tree.body)
    except FormulaError:
        raise
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, OverflowError, ZeroDivisionError) as exc:
        first = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise FormulaError(f"not a formula: {_show(text)} ({first})") from None
    why = too_big(out)
    if why is not None:
        raise FormulaError(f"formula {_show(text)} gives {why} (limits: {MAX_DIGITS} digits, exponent {MAX_EXPONENT})")
    if isinstance(out, sympy.Basic) and out.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise FormulaError(f"formula {_show(text)} is not finite")
    return out


def _show(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 80 else text[:77] + "...")


class _Walker:
    def __init__(self, text: str, make):
        self.text, self.make = text, make

    def reject(self, node: ast.AST, what: str | None = None):
        raise FormulaError(f"not a formula: {_show(self.text)} ({what or type(node).__name__} is not allowed)")

    def eval(self, node: ast.AST):
        if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Div):
            return self._chain(node)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                base, exp = self.eval(node.left), self.eval(node.right)
                why = power_too_big(sympy.sympify(base), sympy.sympify(exp))
                if why is not None:
                    raise FormulaError(f"formula {_show(self.text)} gives {why} (limits: {MAX_DIGITS} digits, "
                                       f"exponent {MAX_EXPONENT})")
                return base**exp
            if type(node.op) in _BIN:
                return _BIN[type(node.op)](self.eval(node.left), self.eval(node.right))
            return self.reject(node, f"operator {type(node.op).__name__}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self.eval(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self.make(node.id)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
            return _CMP[type(node.ops[0])](self.eval(node.left), self.eval(node.comparators[0]))
        return self.reject(node)

    def _chain(self, node: ast.BinOp):
        """``a + b - c ...`` iteratively along the left spine (long sums do not recurse deeply)."""
        ops = []
        while isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Div):
            ops.append((node.op, node.right))
            node = node.left
        value = self.eval(node)
        for op, right in reversed(ops):
            value = _BIN[type(op)](value, self.eval(right))
            why = too_big(value) if isinstance(value, sympy.Basic) and value.is_Number else None
            if why is not None:
                raise FormulaError(f"formula {_show(self.text)} gives {why} (limit: {MAX_DIGITS} digits)")
        return value

    def _constant(self, node: ast.Constant):
        v = node.value
        if isinstance(v, bool):
            return sympy.true if v else sympy.false
        if isinstance(v, int):
            return sympy.Integer(v)
        if isinstance(v, float):
            if not math.isfinite(v):
                self.reject(node, f"the non-finite number {v}")
            literal = ast.get_source_segment(self.text, node) or repr(v)
            return sympy.Float(literal.replace("_", ""))
        return self.reject(node, f"a {type(v).__name__} constant")

    def _call(self, node: ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            return self.reject(node, "calling anything but " + ", ".join(FUNCTIONS))
        name = node.func.id
        if node.keywords:
            return self.reject(node, f"keyword arguments to {name}")
        lo, hi = _ARITY.get(name, (1, 1))
        if len(node.args) < lo or (hi is not None and len(node.args) > hi):
            return self.reject(node, f"{name} with {len(node.args)} arguments")
        if name == "Piecewise":
            pieces = []
            for arg in node.args:
                if not isinstance(arg, ast.Tuple) or len(arg.elts) != 2:
                    return self.reject(arg, "a Piecewise piece that is not (value, condition)")
                pieces.append((self.eval(arg.elts[0]), self.eval(arg.elts[1])))
            return sympy.Piecewise(*pieces)
        return FUNCTIONS[name](*(self.eval(a) for a in node.args))


__all__ = ["FUNCTIONS", "MAX_DIGITS", "MAX_EXPONENT", "FormulaError", "number_bits", "parse_formula", "power_too_big",
           "too_big"]
