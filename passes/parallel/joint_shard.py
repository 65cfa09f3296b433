"""Tensor parallelism over a joint training graph (forward + backward + optimizer nodes).

:func:`joint_tensor_parallel` finds the Megatron splits on the forward nodes (``passes.parallel.tp``,
the loss left out: the logits are gathered whole for it, as ``ColwiseParallel(output_layouts=
Replicate())`` does) and carries them through the backward and optimizer nodes in program order:

- views, pointwise ops, reductions over other dims, softmax over other dims: as in the forward
  (``passes.parallel.dims``); the ``*_backward`` pointwise ops (``silu_backward``,
  ``threshold_backward``, ``_softmax_backward_data`` ...) and ``slice_backward`` likewise;
- a matmul contracting over the split dim (the input gradient of a column projection) and a
  sum over the split dim make a **partial sum**: whole-sized, all-reduced (``shard`` inserts it);
- a matmul with one operand split along a kept dim keeps it (the weight gradient of a column
  or row projection); an unsplit operand whole along the split dim is read as a slice;
- a parameter's gradient is split like its parameter (the vocab-parallel embedding's
  ``embedding_dense_backward``, the LM head's weight gradient computed from the gathered
  logits' gradient: the dims are traced back through views to the op that makes it);
- optimizer states and master weights are split like their parameter.

:func:`shard_joint` builds one rank's joint graph (``passes.parallel.shard``), on which
``passes.train_memory.training_memory`` gives the per-device training memory as a formula in
``tp`` (docs/parallel.md, "Training memory").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irtools.ir import IRGraph
from passes.parallel.dims import Conflict, Propagator, Step, _name, _norm, equal, stateful_values
from passes.parallel.shard import TP, shard
from passes.parallel.sp import SPPlan
from passes.parallel.tp import TPPlan, projections, tensor_parallel

POINTWISE_BACKWARD = {"silu_backward", "threshold_backward", "gelu_backward", "tanh_backward", "sigmoid_backward",
                      "hardtanh_backward", "leaky_relu_backward", "elu_backward", "hardswish_backward",
                      "hardsigmoid_backward", "mish_backward", "softplus_backward", "native_dropout_backward",
                      "_softmax_backward_data", "_log_softmax_backward_data"}
MATMULS = {"mm", "bmm", "matmul"}
VIEWS = {"t", "transpose", "view", "_unsafe_view", "reshape", "permute", "detach", "alias", "clone",
         "contiguous", "expand", "squeeze", "unsqueeze"}


@dataclass
class JointPlan:
    """The splits of a joint graph: ``tp`` (forward and backward), the gathered logits (``sp.gathers``)."""

    tp: TPPlan
    sp: SPPlan
    loss_nodes: set[str] = field(default_factory=set)  # forward nodes of the loss, run on whole logits
    unknown: dict[str, str] = field(default_factory=dict)  # backward node left whole -> why


class _Backward(Propagator):
    """Split propagation for backward ops: an unsplit operand is read as a slice."""

    def _outside(self, node, pos, dim, why):
        spec = node.inputs[pos]
        if spec is None or dim is None or dim < 0 or dim >= len(spec.shape) or equal(spec.shape[dim], 1):
            return None
        return dim

    def step(self, node, split: dict[int, int]) -> tuple[Step, bool]:
        """(split dims of the outputs and slices read, whether the output is a partial sum)."""
        name = _name(node.op)
        if name in MATMULS and node.kind == "matmul" or name in ("slice_backward", "cat", "concat") or \
                name in POINTWISE_BACKWARD or node.kind == "attention":
            step, partial = self._backward(node, name, split)
            self.carry(node, split, step)
            return step, partial
        return self._backward(node, name, split)

    def _backward(self, node, name: str, split: dict[int, int]) -> tuple[Step, bool]:
        if name in MATMULS and node.kind == "matmul":
            return self._matmul(node, split)
        if name in ("sum", "mean") and node.kind == "reduction":
            src = node.inputs[0]
            d = split.get(0)
            dims = node.args.get("dim")
            dims = list(range(len(src.shape))) if dims in (None, [], ()) else (
                [_norm(x, len(src.shape)) for x in (dims if isinstance(dims, list | tuple) else [dims])])
            if d is not None and d in dims:
                return Step({}, {}), True
        if node.kind == "attention" and name.endswith("_backward"):  # SDPA / flash backward: by heads
            for pos, d in split.items():
                if node.inputs[pos] is not None and len(node.inputs[pos].shape) >= 3 and \
                        d != len(node.inputs[pos].shape) - 3:
                    raise Conflict("attention backward split elsewhere than its heads")
            return Step({i: len(o.shape) - 3 for i, o in enumerate(node.outputs)
                         if o is not None and len(o.shape) >= 3}, {}), False
        if name in ("cat", "concat"):  # the gradients of equal parts of a split dim (fused QKV): interleaved
            dim = _norm(node.args.get("dim", 0), len(node.outputs[0].shape))
            tensors = [p for p, s in enumerate(node.inputs) if s is not None]
            if set(split) == set(tensors) and set(split.values()) == {dim}:
                return Step({0: dim}, {}), False
        if name == "slice_backward":
            d = split.get(0)
            if d is None or _norm(node.args.get("dim", 0), len(node.outputs[0].shape)) == d:
                raise Conflict("slice_backward along the split dim")
            return Step({0: d}, {}), False
        if name in POINTWISE_BACKWARD:
            dim = node.args.get("dim")
            if dim is not None and any(_norm(dim, len(node.inputs[p].shape)) == d for p, d in split.items()):
                raise Conflict(f"{name} over the split dim")
            return self._pointwise(node, split), False
        return self.propagate(node, split), False

    def _matmul(self, node, split: dict[int, int]) -> tuple[Step, bool]:
        a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
        ra, rb, ro = len(a.shape), len(b.shape), len(out.shape)
        k_a, k_b = ra - 1, rb - 2
        out_d, partial, adopted = None, False, {}
        for pos, d in split.items():
            if pos == 0:
                od = None if d == k_a else (ro - 2 if d == ra - 2 else d + ro - ra)
            elif pos == 1:
                od = None if d == k_b else (ro - 1 if d == rb - 1 else d + ro - rb)
            else:
                raise Conflict("matmul with a third operand")
            if od is None:
                partial = True
                other, k_other = (1, k_b) if pos == 0 else (0, k_a)
                if other not in split and self._outside(node, other, k_other, "matmul") is not None:
                    adopted[other] = k_other
            elif out_d is not None and od != out_d:
                raise Conflict("matmul operands split along different dims")
            else:
                out_d = od
        if partial and out_d is not None:
            raise Conflict("matmul both contracted over and split along the split dim")
        return Step({} if partial else {0: out_d}, adopted), partial


def loss_nodes(ir: IRGraph) -> tuple[set[str], set[str]]:
    """(forward nodes of the loss, the projections making the logits): the forward nodes that
    the logits projections (found walking back from the loss to the first projections) reach."""
    info = ir.meta.training
    projs = projections(ir)
    heads, seen, stack = set(), set(), [info.loss]
    while stack:
        v = stack.pop()
        val = ir.values.get(v)
        if val is None or val.producer is None or val.producer in seen:
            continue
        n = val.producer
        seen.add(n)
        if n in projs:
            heads.add(n)
            continue
        stack.extend(x for x in ir.node(n).input_values if x is not None)
    region, front = set(), [v for n in heads for v in ir.node(n).output_values if v]
    uses = ir.uses()
    while front:
        v = front.pop()
        for consumer, _pos in uses.get(v, ()):
            c = ir.node(consumer)
            if consumer in region or (c.phase or "forward") != "forward":
                continue
            region.add(consumer)
            front.extend(x for x in c.output_values if x)
    return region, heads


def joint_tensor_parallel(ir: IRGraph) -> JointPlan:
    """The tensor-parallel splits of a joint training graph (see the module docstring)."""
    loss, _heads = loss_nodes(ir)
    forward = {n for n, a in ir.nodes() if (a.phase or "forward") == "forward" and n not in loss}
    tp = tensor_parallel(ir, only=forward)
    sp = SPPlan()
    for n in loss:  # a split value the loss reads is gathered whole for it
        for v in ir.node(n).input_values:
            if v in tp.splits and ir.values[v].producer is not None:
                sp.gathers.setdefault(v, set()).add(n)
    tp.gathers = [v for v in tp.gathers if v not in sp.gathers]
    plan = JointPlan(tp, sp, loss)
    prop = _Backward(ir, stateful_values(ir))
    prop.factors = dict(tp.factors)
    splits, partial = tp.splits, tp.partial
    for n, a in ir.nodes():
        weight_view = a.kind == "view" and n in forward and n not in tp.region and \
            any(v in splits and v not in tp.factors for v in a.input_values) and \
            not any(v in splits for v in a.output_values)  # a view of a split parameter (``t(W)``)
        if a.phase not in ("backward", "recompute") and not weight_view:
            continue
        split = {pos: splits[v] for pos, v in enumerate(a.input_values) if v in splits and v not in partial}
        if not split or not a.outputs or a.outputs[0] is None:
            continue
        try:
            step, is_partial = prop.step(a, split)
        except Conflict as exc:
            plan.unknown[n] = str(exc)
            continue
        tp.region.add(n)
        if is_partial:
            partial[a.output_values[0]] = n
        for _i, v, d in step.split_outputs(a):
            splits[v] = d
        for pos, d in step.adopted.items():
            tp.node_inputs.setdefault(n, {})[pos] = d
    _gradients(ir, plan)
    for _n, a in ir.nodes():  # optimizer states and master weights: split like their parameter
        if a.phase == "optimizer" and a.input_values and a.input_values[0] in splits:
            d = splits[a.input_values[0]]
            for v, spec in zip(a.input_values[1:], a.inputs[1:]):
                if v is not None and spec is not None and len(spec.shape) > d:
                    splits[v] = d
    return plan


def _gradients(ir: IRGraph, plan: JointPlan) -> None:
    """A split parameter's gradient made whole (from whole operands): split like the
    parameter, traced back through views to the op computing it, which reads slices."""
    splits, info = plan.tp.splits, ir.meta.training
    for param, grad in info.gradients.items():
        if param not in splits or grad in splits:
            continue
        v, d = grad, splits[param]
        for _ in range(8):
            splits[v] = d
            prod = ir.values[v].producer
            if prod is None:
                break
            a = ir.node(prod)
            name = _name(a.op)
            src = next((x for x in a.input_values if x is not None), None)
            if name in ("t", "transpose") and src is not None:
                d = 1 - d if name == "t" else _swap(a, d)
                v = src
                continue
            if name in ("view", "_unsafe_view", "reshape", "clone", "detach") and src is not None and \
                    len(ir.values[src].spec.shape) == len(a.outputs[0].shape):
                v = src
                continue
            if name == "mm":  # rows of the output come from operand 0's dim 0, columns from operand 1's dim 1
                plan.tp.node_inputs.setdefault(prod, {})[0 if d == 0 else 1] = d
            break


def _swap(a, d: int) -> int:
    rank = len(a.outputs[0].shape)
    x, y = _norm(a.args.get("dim0", 0), rank), _norm(a.args.get("dim1", 1), rank)
    return y if d == x else x if d == y else d


def shard_joint(ir: IRGraph, plan: JointPlan | None = None, degree=TP) -> IRGraph:
    """One rank's joint graph (annotated), with the all-reduces of the partial sums and the
    all-gather of the logits as collective nodes."""
    plan = plan or joint_tensor_parallel(ir)
    return shard(ir, plan.tp, plan.sp, degree)


__all__ = ["JointPlan", "joint_tensor_parallel", "loss_nodes", "shard_joint"]
