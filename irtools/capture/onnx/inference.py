"""Shape inference of one ONNX node: the merged rule tables, with onnx's own inference and
fresh symbols as fallbacks."""

from __future__ import annotations

from irtools.capture.onnx import shape_contrib, shape_more, shape_quant, shape_rules, shape_seq, shapes
from irtools.capture.onnx.shape_env import Ctx, ShapeEnv
from irtools.capture.onnx.tensors import TInfo

RULES = (shapes.RULES.merged(shape_rules.RULES).merged(shape_more.RULES).merged(shape_seq.RULES)
         .merged(shape_quant.RULES).merged(shape_contrib.RULES))

SAME_SHAPE_FALLBACK = {"FastGelu", "BiasGelu", "Gelu", "QuickGelu", "BiasAdd", "RotaryEmbedding", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization"}


def infer(op: str, ins: list, attrs: dict, env: ShapeEnv, n_out: int, opset: int = 18, hints=None) -> list[TInfo]:
    """Output TInfos of one node (``op`` domain-qualified, ``ins`` None for absent inputs).

    ``hints`` are onnx.shape_inference's outputs (static facts) used where no rule applies: a
    list, or a callable returning it (called only then, so that it can be computed lazily)."""
    ins = [None if i is None else env.apply_info(i) for i in ins]
    fn = RULES.get(op)
    outs = None
    if fn is not None:
        try:
            outs = fn(Ctx(op, ins, attrs, env, n_out, opset))
        except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
            outs = None  # malformed node: fall back to hints / fresh symbols
    outs = list(outs or [])
    for i in range(n_out):
        if i >= len(outs) or outs[i] is None:
            if callable(hints):
                hints = hints()
            hints = hints or []
            hint = hints[i] if i < len(hints) else None
            if hint is not None:
                fallback = hint
            elif ins and ins[0] is not None and op.split(".")[-1] in SAME_SHAPE_FALLBACK:
                fallback = TInfo(ins[0].shape, ins[0].dtype)
            else:
                fallback = TInfo((env.fresh(),), ins[0].dtype if ins and ins[0] is not None else "float32")
            outs[i:i + 1] = [fallback] if i < len(outs) else [fallback]
    return [env.apply_info(o) for o in outs[:n_out]]
