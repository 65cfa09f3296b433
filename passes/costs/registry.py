"""The cost-rule registry: ``@cost_rule("aten.mm", kind="matmul")`` on a pure function.

A rule receives an :class:`OpCall` (tensor specs in argument order, non-tensor arguments by
name) and returns a :class:`Cost` of sympy expressions. Rules compose by calling each other
and are built by the handle factories below instead of being copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy

from irtools.ir import TensorSpec
from irtools.ir.kinds import KINDS, op_class, op_packet
from irtools.ir.numeric import total

ZERO = sympy.Integer(0)


@dataclass(frozen=True)
class OpCall:
    """What a rule sees of one node: input and output tensor specs, and other arguments."""

    op: str
    inputs: tuple[TensorSpec | None, ...]
    outputs: tuple[TensorSpec | None, ...]
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def tensors_in(self) -> list[TensorSpec]:
        return [t for t in self.inputs if t is not None]

    @property
    def tensors_out(self) -> list[TensorSpec]:
        return [t for t in self.outputs if t is not None]

    @property
    def out(self) -> TensorSpec:
        return self.tensors_out[0]

    def arg(self, name: str, default=None):
        return self.args.get(name, default)


@dataclass(frozen=True)
class Cost:
    """Symbolic costs of one op. ``matmul_flops`` is the 2·M·N·K part alone (what
    FlopCounterMode counts); ``alias`` marks ops whose output is a view of an input."""

    flops: sympy.Expr = ZERO
    bytes_read: sympy.Expr = ZERO
    bytes_written: sympy.Expr = ZERO
    matmul_flops: sympy.Expr = ZERO
    alias: bool = False


FREE = Cost()
ALIAS = Cost(alias=True)

Rule = Callable[[OpCall], Cost]


@dataclass(frozen=True)
class RuleEntry:
    """A registered rule: the canonical kind it gives its ops, and the function."""

    kind: str
    fn: Rule


class RuleSet:
    """Cost rules by op name. Registering an op twice raises, as torch's flop registry does;
    rules of kind view, copy or dropout must cover exactly the ops ``irtools.ir.kinds`` lists."""

    def __init__(self, entries: dict[str, RuleEntry] | None = None):
        self._entries: dict[str, RuleEntry] = dict(entries or {})

    def rule(self, *ops: str, kind: str) -> Callable[[Rule], Rule]:
        """Decorator: register ``fn`` as the cost rule of ``ops`` (names without overload)."""

        def register(fn: Rule) -> Rule:
            for op in ops:
                self._add(op, RuleEntry(kind, fn))
            return fn

        return register

    def handle(self, ops: tuple[str, ...], kind: str, fn: Rule) -> None:
        """Register a rule built by a handle factory for several ops at once."""
        self.rule(*ops, kind=kind)(fn)

    def _add(self, op: str, entry: RuleEntry) -> None:
        if op in self._entries:
            raise ValueError(f"cost rule for {op!r} registered twice")
        if entry.kind not in KINDS:
            raise ValueError(f"{op!r}: unknown kind {entry.kind!r}")
        moves = op_class(op)
        if (entry.kind in ("view", "copy", "dropout") or moves is not None) and moves != entry.kind:
            raise ValueError(f"{op!r} is registered as {entry.kind!r} but irtools.ir.kinds says {moves!r}")
        self._entries[op] = entry

    def merged(self, *others: RuleSet) -> RuleSet:
        """One set holding every rule of ``self`` and ``others`` (a clash raises)."""
        out = RuleSet(self._entries)
        for other in others:
            for op, entry in other._entries.items():
                out._add(op, entry)
        return out

    def lookup(self, op: str) -> RuleEntry | None:
        """The rule for a frontend op name (exact, then its packet), or None when unknown."""
        return self._entries.get(op) or self._entries.get(op_packet(op))

    def ops(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, op: str) -> bool:
        return op in self._entries


# ---- handle factories: shared shapes of rules -------------------------------------------


def aten_ops(*names: str) -> tuple[str, ...]:
    """``("mm", "bmm")`` -> ``("aten.mm", "aten.bmm")``: the op names ATen rules register."""
    return tuple("aten." + n for n in names)


def read_all(call: OpCall) -> sympy.Expr:
    return total(t.nbytes for t in call.tensors_in)  # ints added as ints (irtools.ir.numeric)


def write_all(call: OpCall) -> sympy.Expr:
    return total(t.nbytes for t in call.tensors_out)


def elementwise(flops_per_element: int) -> Rule:
    """n flops per output element; read every input, write every output."""

    def rule(call: OpCall) -> Cost:
        return Cost(flops_per_element * call.out.numel, read_all(call), write_all(call))

    return rule


def per_input_element(flops_per_element: int) -> Rule:
    """n flops per element of the first input (reductions, norms, softmax)."""

    def rule(call: OpCall) -> Cost:
        return Cost(flops_per_element * call.tensors_in[0].numel, read_all(call), write_all(call))

    return rule


def copy(call: OpCall) -> Cost:
    """A data copy: no flops, read the inputs, write the outputs."""
    return Cost(ZERO, read_all(call), write_all(call))


def produce(call: OpCall) -> Cost:
    """A factory (full, arange, zeros): write the output, read nothing."""
    return Cost(ZERO, ZERO, write_all(call))


def free(call: OpCall) -> Cost:
    return FREE


def alias(call: OpCall) -> Cost:
    return ALIAS
