"""The cost-rule registry: one rule per op, kinds consistent with the IR's view/copy tables."""

from __future__ import annotations

import pytest
import sympy

from irtools.ir import TensorSpec
from irtools.ir.kinds import COPY_OPS, DROPOUT_OPS, VIEW_OPS, op_class
from passes.costs import REGISTRY, lookup
from passes.costs.registry import OpCall, RuleSet, copy, elementwise


def test_registering_an_op_twice_raises():
    rules = RuleSet()
    rules.rule("aten.my_op", kind="elementwise")(elementwise(1))
    with pytest.raises(ValueError, match="registered twice"):
        rules.rule("aten.my_op", kind="elementwise")(elementwise(2))


def test_merging_rule_sets_with_a_clash_raises():
    a, b = RuleSet(), RuleSet()
    a.rule("aten.x_op", kind="elementwise")(elementwise(1))
    b.rule("aten.x_op", kind="elementwise")(elementwise(1))
    with pytest.raises(ValueError, match="registered twice"):
        a.merged(b)


def test_a_view_rule_must_be_a_view_in_the_ir():
    with pytest.raises(ValueError, match="irtools.ir.kinds"):
        RuleSet().rule("aten.my_new_view", kind="view")(copy)
    with pytest.raises(ValueError, match="irtools.ir.kinds"):
        RuleSet().rule("aten.permute", kind="elementwise")(elementwise(1))


@pytest.mark.parametrize("op", sorted(VIEW_OPS | COPY_OPS | DROPOUT_OPS))
def test_every_ir_view_or_copy_op_has_a_rule_of_that_kind(op):
    assert lookup(op) is not None and lookup(op).kind == op_class(op)


def test_gelu_inplace_honours_the_tanh_approximation():
    """Formerly ``aten.gelu_`` was overridden by a second registration and lost the tanh form."""
    x = TensorSpec((sympy.Integer(4), sympy.Integer(8)))
    for op in ("aten.gelu.default", "aten.gelu_.default"):
        tanh = lookup(op).fn(OpCall(op, (x,), (x,), {"approximate": "tanh"}))
        erf = lookup(op).fn(OpCall(op, (x,), (x,), {}))
        assert (tanh.flops, erf.flops) == (8 * 32, 5 * 32)
    assert "aten.pow_" in REGISTRY and "aten.pow" in REGISTRY
