"""Cost rules of contractions written with indices: ``einsum``, ``tensordot``, ``inner``, ``outer``, ``bilinear``.

``einsum`` is costed by replaying the plan ATen executes (docs/conventions.md): operands are
aligned on one set of labels (diagonals, permutes and unsqueezes are views), then contracted
pairwise — left to right, or along the ``path`` argument when one was given. Labels that only
one operand still holds and no later operand needs are summed out first (a reduction: one
flop per element read); a pair with labels to contract becomes one ``bmm`` over
(shared kept, left-only, right-only, contracted) labels — 2 × the product of their sizes,
exactly what FlopCounterMode counts — and a pair with nothing to contract is an elementwise
product. Size-1 dims broadcast and are never contracted. ``Cost.matmul_flops`` holds the
``bmm`` part alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from passes.costs.registry import ZERO, Cost, OpCall, RuleSet, read_all, write_all

RULES = RuleSet()
cost_rule = RULES.rule

ONE = sympy.Integer(1)
ELLIPSIS = "..."


@dataclass
class EinsumPlan:
    """What einsum's execution costs: bmm flops, and the elementwise/reduction flops beside them."""

    matmul_flops: sympy.Expr = ZERO
    other_flops: sympy.Expr = ZERO
    steps: list[str] = field(default_factory=list)


def _terms(equation: str, n_operands: int) -> tuple[list[list[str]], list[str] | None]:
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = [_labels(t) for t in lhs.split(",")]
    if len(terms) != n_operands:
        raise ValueError(f"einsum {equation!r}: {len(terms)} operand terms for {n_operands} tensors")
    return terms, (_labels(rhs) if "->" in eq else None)


def _labels(term: str) -> list[str]:
    """``'b...ij'`` -> ``['b', '...', 'i', 'j']``."""
    out, i = [], 0
    while i < len(term):
        if term.startswith(ELLIPSIS, i):
            out.append(ELLIPSIS)
            i += 3
        elif term[i].isalpha():
            out.append(term[i])
            i += 1
        else:
            raise ValueError(f"einsum: invalid subscript {term[i]!r}")
    return out


def _present(size) -> bool:
    """A dim takes part unless it is size 1 (a symbolic size is assumed not 1, as ATen does)."""
    return sympy.sympify(size) != ONE


def aligned_operands(equation: str, shapes: list[tuple]) -> tuple[list[dict[str, sympy.Expr]], list[str], list[str]]:
    """Each operand as {label: size} over its non-size-1 dims (ellipsis dims named ``...0``,
    ``...1`` right-aligned, repeated labels taken once: a diagonal), the output labels, and
    the labels to contract."""
    terms, out = _terms(equation, len(shapes))
    ell = max((len(s) - (len(t) - 1) for t, s in zip(terms, shapes) if ELLIPSIS in t), default=0)
    ell_labels = [f"{ELLIPSIS}{k}" for k in range(ell)]
    occurrences: dict[str, int] = {}
    operands = []
    for term, shape in zip(terms, shapes):
        expanded: list[str] = []
        for label in term:
            if label == ELLIPSIS:
                n = len(shape) - (len(term) - 1)
                expanded.extend(ell_labels[ell - n:] if n else [])
            else:
                expanded.append(label)
                occurrences[label] = occurrences.get(label, 0) + 1
        if len(expanded) != len(shape):
            raise ValueError(f"einsum {equation!r}: term {''.join(term)!r} does not match a {len(shape)}-d operand")
        operands.append({lab: size for lab, size in zip(expanded, shape) if _present(size)})
    if out is None:  # implicit output: the ellipsis, then labels seen once, uppercase first
        out_labels = ell_labels + sorted((lab for lab, n in occurrences.items() if n == 1), key=lambda c: (c.islower(), c))
    else:
        out_labels = [x for lab in out for x in (ell_labels if lab == ELLIPSIS else [lab])]
    every = list(dict.fromkeys(ell_labels + [lab for t in terms for lab in t if lab != ELLIPSIS]))
    return operands, out_labels, [lab for lab in every if lab not in out_labels]


def _numel(op: dict) -> sympy.Expr:
    return sympy.Mul(*op.values()) if op else ONE


def _pair(a: dict, b: dict, sum_dims: list[str], plan: EinsumPlan) -> dict:
    """``(a * b).sum(sum_dims)``: a bmm when there is something to contract, else a product."""
    union = {**b, **a}
    if not sum_dims:
        plan.other_flops += _numel(union)
        plan.steps.append("mul")
        return union
    flops = 2 * _numel(union)  # lro · lo · ro · contracted, each label once
    plan.matmul_flops += flops
    plan.steps.append("bmm")
    return {lab: s for lab, s in union.items() if lab not in sum_dims}


def einsum_plan(equation: str, shapes: list[tuple], path: list[int] | None = None) -> EinsumPlan:
    """The kernels ATen's einsum runs for ``equation`` on operands of ``shapes``, with their flops."""
    ops, _out, contract = aligned_operands(equation, shapes)
    plan = EinsumPlan()
    counts = {lab: sum(lab in op for op in ops) for lab in contract}
    steps = list(path or [])
    while len(ops) > 1:
        i, j = (0, 1) if not steps else sorted(steps[:2])
        steps = steps[2:]
        a, b = ops[i], ops[j]
        del ops[j], ops[i]
        sum_dims, a_sum, b_sum = [], [], []
        for lab in contract:
            in_a, in_b = lab in a, lab in b
            if in_a and in_b:
                counts[lab] -= 1
                if counts[lab] == 1:
                    sum_dims.append(lab)
                    counts[lab] = 0
            elif counts[lab] == 1 and (in_a or in_b):
                (a_sum if in_a else b_sum).append(lab)
                counts[lab] = 0
        for side, labs in ((a, a_sum), (b, b_sum)):
            if labs:  # summed out before the product (a reduction reads every element once)
                plan.other_flops += _numel(side)
                plan.steps.append("sum")
                for lab in labs:
                    del side[lab]
        result = _pair(a, b, sum_dims, plan)
        if path:
            ops.append(result)
        else:
            ops.insert(0, result)
    if len(shapes) == 1 and any(lab in ops[0] for lab in contract):  # a lone operand's contraction is a sum
        plan.other_flops += _numel(ops[0])
        plan.steps.append("sum")
    return plan


@cost_rule("aten.einsum", kind="matmul")
def einsum(call: OpCall) -> Cost:
    plan = einsum_plan(call.arg("equation"), [t.shape for t in call.tensors_in], call.arg("path"))
    return Cost(plan.matmul_flops + plan.other_flops, read_all(call), write_all(call), matmul_flops=plan.matmul_flops)


@cost_rule("aten.tensordot", kind="matmul")
def tensordot(call: OpCall) -> Cost:
    """One mm: 2 · (a's kept dims) · (b's kept dims) · (contracted dims)."""
    a, b = call.tensors_in[:2]
    dims_a = call.arg("dims_self", call.arg("dims_a", []))
    k = sympy.Mul(*(a.shape[d] for d in dims_a)) if dims_a else ONE
    mm = 2 * a.numel * b.numel / k
    return Cost(mm, read_all(call), write_all(call), matmul_flops=mm)


@cost_rule("aten.inner", kind="matmul")
def inner(call: OpCall) -> Cost:
    """A contraction over the last dim of both (a product when either is a scalar)."""
    a, b = call.tensors_in[:2]
    if not a.shape or not b.shape:
        return Cost(call.out.numel, read_all(call), write_all(call))
    mm = 2 * a.numel * b.numel / a.shape[-1]
    return Cost(mm, read_all(call), write_all(call), matmul_flops=mm)


@cost_rule("aten.outer", "aten.ger", kind="elementwise")
def outer(call: OpCall) -> Cost:
    """An outer product multiplies once per output element (nothing is contracted)."""
    return Cost(call.out.numel, read_all(call), write_all(call))


@cost_rule("aten.bilinear", kind="matmul")
def bilinear(call: OpCall) -> Cost:
    """x1ᵀ·W·x2 per output feature: contract x1 with W (2·B·O·n1·n2), then x2 (2·B·O·n2); a bias
    adds one flop per output element."""
    x1, x2, w = call.tensors_in[:3]
    batch = x1.numel / x1.shape[-1]
    out_f, n1, n2 = w.shape
    mm = 2 * batch * out_f * n1 * n2 + 2 * batch * out_f * n2
    bias = call.out.numel if len(call.tensors_in) > 3 else ZERO
    return Cost(mm + bias, read_all(call), write_all(call), matmul_flops=mm)


__all__ = ["RULES", "EinsumPlan", "aligned_operands", "einsum_plan"]
