"""Op cost rules: one registry of pure functions of shapes (see ``registry``).

Importing this package registers every frontend's rules.
"""

from passes.costs import onnx_ops as _onnx_ops  # noqa: F401  (registers ONNX rules)
from passes.costs import torch_ops as _torch_ops  # noqa: F401  (registers ATen rules)
from passes.costs.registry import Cost, OpCall, RuleEntry, cost_rule, lookup, registered_ops

__all__ = ["Cost", "OpCall", "RuleEntry", "cost_rule", "lookup", "registered_ops"]
