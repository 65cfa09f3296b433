"""Cost rules of the ONNX sequence ops.

A sequence's spec is its elements stacked, ``(length, *element)`` (``irtools.capture.onnx.shape_seq``),
so its bytes are those of all its tensors. Sequences are values: onnxruntime copies the tensors
it puts into or takes out of one, so SequenceConstruct/Insert/Erase, SplitToSequence,
ConcatFromSequence and SequenceAt read their inputs and write their outputs (no flops; kind
``gather``, a data move that fuses like a copy). SequenceLength is free, SequenceEmpty writes
nothing, SequenceMap costs its body times the sequence length (as Loop).
"""

from __future__ import annotations

from passes.costs.onnx_attention import loop
from passes.costs.onnx_ops import onnx_rules
from passes.costs.registry import ZERO, Cost, OpCall, RuleSet, copy, free, produce

RULES = RuleSet()
onnx_rule = onnx_rules(RULES)

onnx_rule("SequenceConstruct", "SequenceInsert", "SequenceErase", "SplitToSequence", "ConcatFromSequence",
          kind="gather")(copy)


@onnx_rule("SequenceAt", kind="gather")
def sequence_at(call: OpCall) -> Cost:
    """One element copied out: read it (and the position), write it."""
    pos = call.inputs[1].nbytes if len(call.inputs) > 1 and call.inputs[1] is not None else ZERO
    return Cost(ZERO, call.out.nbytes + pos, call.out.nbytes)


onnx_rule("SequenceLength", kind="free")(free)
onnx_rule("SequenceEmpty", kind="factory")(produce)
onnx_rule("SequenceMap", kind="control")(loop)
