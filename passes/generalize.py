"""Generalize pass: costs in config symbols (hidden_size, num_heads, ...) from probe traces.

Method: capture the model at probe configs whose free dims are distinct primes; in probe A
every static dim of every tensor is factored over those primes and rewritten as a monomial
in config symbols; the cost rules then run on the symbolic shapes. A node's formula is kept
only if it **verifies**: evaluated at probe B's and C's configs, and at the real config, it
equals those captures' numeric costs. Nodes that do not verify (sums of config dims,
data-dependent shapes) keep the real config's numeric costs and are listed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import sympy

from irtools.ir import IRGraph, TensorSpec
from irtools.ir.kinds import ALL_COSTS
from irtools.ir.symbols import sym
from irtools.recipes.config_symbols import ProbeSpace, probe_values
from passes.annotate_costs import annotate_costs

MAX_REMAINDER = 64  # a factored dim's leftover constant above this stays numeric


@dataclass
class Generalized:
    """The outcome: which nodes got config-symbolic formulas, and the config's values."""

    symbols: dict[str, int]  # config symbol -> value in the real config
    verified: list[str]
    numeric: list[str]


def _monomial(n: int, primes: dict[int, sympy.Expr]) -> sympy.Expr:
    """``n`` as remainder x product of prime meanings, or ``n`` itself when it does not factor."""
    rest, expr = n, sympy.Integer(1)
    for p, meaning in primes.items():
        while rest % p == 0 and rest > 0:
            rest //= p
            expr *= meaning
    if expr == 1 or rest > MAX_REMAINDER:
        return sympy.Integer(n)
    return sympy.expand(rest * expr)


def symbolize_shapes(ir: IRGraph, space: ProbeSpace, values: dict[str, int]) -> None:
    """Rewrite every static dim of probe ``ir`` as a monomial in config symbols (in place)."""
    primes = {values[name] // factor: meaning / factor for name, (factor, meaning) in space.variables.items()}
    memo: dict[int, TensorSpec] = {}

    def convert(spec: TensorSpec | None) -> TensorSpec | None:
        if spec is None:
            return None
        if id(spec) not in memo:
            shape = tuple(_monomial(int(d), primes) if d.is_Integer else d for d in spec.shape)
            memo[id(spec)] = dataclasses.replace(spec, shape=shape)
        return memo[id(spec)]

    for _, attrs in ir.nodes():
        attrs["inputs"] = [convert(s) for s in attrs["inputs"]]
        attrs["outputs"] = [convert(s) for s in attrs["outputs"]]
    ir.inputs = {k: convert(v) for k, v in ir.inputs.items()}


def canonicalize(expr: sympy.Expr, space: ProbeSpace, symbols: dict[str, int]) -> sympy.Expr:
    """num_heads*head_dim -> hidden_size where the real config says they are equal."""
    for product, name in space.canonical:
        value = product.subs({sym(k): v for k, v in symbols.items()})
        if value == name.subs({sym(k): v for k, v in symbols.items()}):
            expr = sympy.expand(expr.subs(product, name))
    return expr


def _equal(formula: sympy.Expr, numeric: sympy.Expr, config: dict[str, int]) -> bool:
    return sympy.expand(formula.subs({sym(k): v for k, v in config.items()}) - numeric) == 0


def generalize(
    real: IRGraph,
    capture_at: Callable[[dict[str, int]], IRGraph],
    space: ProbeSpace,
    real_symbols: dict[str, int],
) -> Generalized:
    """Give ``real`` (already annotated) config-symbolic node costs where they verify.

    ``capture_at(free_values)`` captures the model at a probe config (free variable values
    from :func:`probe_values`)."""
    probes = [probe_values(space, i) for i in range(3)]
    irs = [capture_at(v) for v in probes]
    symbolize_shapes(irs[0], space, probes[0])
    for ir in irs:
        ir.meta.kv_cache = real.meta.kv_cache
        annotate_costs(ir)

    # the config symbols' values at each verifying probe: solve meaning(prime) for symbols
    checks = [(_symbol_values(space, probes[i]), irs[i]) for i in (1, 2)]
    checks.append((real_symbols, real))
    memo: dict[int, TensorSpec | None] = {}

    def canonical_spec(spec: TensorSpec | None) -> TensorSpec | None:
        if spec is not None and id(spec) not in memo:
            shape = tuple(canonicalize(d, space, real_symbols) for d in spec.shape)
            memo[id(spec)] = dataclasses.replace(spec, shape=shape)
        return memo.get(id(spec)) if spec is not None else None

    verified, numeric = [], []
    probe_nodes = irs[0].graph.nodes
    for node_id, attrs in real.nodes():
        ok = node_id in probe_nodes and all(node_id in ir.graph.nodes for _, ir in checks)
        if ok:
            raw = {c: probe_nodes[node_id][c] for c in ALL_COSTS}
            ok = all(_equal(raw[c], ir.graph.nodes[node_id][c], cfg) for cfg, ir in checks for c in ALL_COSTS)
        if ok:
            attrs.update({c: canonicalize(raw[c], space, real_symbols) for c in ALL_COSTS})
            attrs["inputs"] = [canonical_spec(t) for t in probe_nodes[node_id]["inputs"]]
            attrs["outputs"] = [canonical_spec(t) for t in probe_nodes[node_id]["outputs"]]
            attrs["config_symbolic"] = True
            verified.append(node_id)
        else:
            attrs["config_symbolic"] = False
            numeric.append(node_id)
    real.meta.config_symbols = real_symbols
    return Generalized(real_symbols, verified, numeric)


def _symbol_values(space: ProbeSpace, values: dict[str, int]) -> dict[str, int]:
    """Config symbol values implied by free-variable values (solving each meaning)."""
    out: dict[str, int] = {}
    pending = dict(space.variables)
    for _ in range(len(pending) + 1):
        for name, (_factor, meaning) in list(pending.items()):
            unknown = [s for s in meaning.free_symbols if s.name not in out]
            if len(unknown) == 1:
                solved = sympy.solve(sympy.Eq(meaning.subs({sym(k): v for k, v in out.items()}), values[name]), unknown[0])
                out[unknown[0].name] = int(solved[0])
                pending.pop(name)
            elif not unknown:
                pending.pop(name)
    return out
