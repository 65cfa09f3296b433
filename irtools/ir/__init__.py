"""The IR every layer shares: graph and typed records, symbols, op kinds, errors.

Imports nothing from the rest of irtools; everything else imports it.
"""

from irtools.ir.errors import CaptureError, ExportError, IrtoolsError, LimitError, UsageError
from irtools.ir.graph import (
    DTYPE_BYTES,
    FLOAT_DTYPES,
    ROLE_BYTES,
    CollapseInfo,
    Frame,
    GraphMeta,
    IRGraph,
    OpGraph,
    OpNode,
    Scope,
    SourceLoc,
    TensorSpec,
    Value,
    default_bytes,
    is_layer_stack,
)
from irtools.ir.kinds import ALL_COSTS, COSTS, op_class

__all__ = [
    "ALL_COSTS", "COSTS", "DTYPE_BYTES", "FLOAT_DTYPES", "ROLE_BYTES", "CaptureError", "CollapseInfo", "ExportError", "Frame",
    "GraphMeta", "IRGraph", "IrtoolsError", "LimitError", "OpGraph", "OpNode", "Scope", "SourceLoc", "TensorSpec",
    "UsageError", "Value", "default_bytes", "is_layer_stack", "op_class",
]
