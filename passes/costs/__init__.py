"""Op cost rules: pure functions of shapes, one registry (see ``registry``).

Each rule module holds its own :class:`RuleSet`; ``REGISTRY`` merges them here, and a clash
(an op registered twice) raises at import.
"""

from passes.costs import (
    aten_backward,
    aten_conv,
    aten_math,
    aten_misc,
    aten_pool,
    aten_rnn,
    collective,
    einsum,
    moe,
    onnx_attention,
    onnx_contrib,
    onnx_more,
    onnx_ops,
    onnx_quant,
    onnx_rnn,
    onnx_seq,
    optim,
    ssm,
    torch_ops,
)
from passes.costs.registry import Cost, OpCall, RuleEntry, RuleSet

REGISTRY: RuleSet = torch_ops.RULES.merged(
    aten_conv.RULES, aten_pool.RULES, aten_math.RULES, aten_misc.RULES, aten_rnn.RULES, aten_backward.RULES, einsum.RULES,
    onnx_ops.RULES, onnx_attention.RULES,
    moe.RULES, ssm.RULES, onnx_more.RULES, onnx_quant.RULES, onnx_rnn.RULES, onnx_seq.RULES, onnx_contrib.RULES,
    collective.RULES, optim.RULES,
)
lookup = REGISTRY.lookup
registered_ops = REGISTRY.ops

__all__ = ["REGISTRY", "Cost", "OpCall", "RuleEntry", "RuleSet", "lookup", "registered_ops"]
