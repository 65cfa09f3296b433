"""The IR: a networkx DiGraph of op nodes whose edges are tensors, shared by all frontends.

Node attributes (each pass reads and writes these by name):

- ``op``: the frontend's op name (``aten.addmm.default``, ``Gemm``)
- ``kind``: canonical kind the cost rules key on (written by the cost pass)
- ``inputs`` / ``outputs``: lists of :class:`TensorSpec` (None for non-tensor arguments)
- ``args``: non-tensor arguments by name or position (dims, scalars, shapes)
- ``scope``: list of :class:`Scope` from the root module down to the innermost one
- ``source``: :class:`SourceLoc` or None
- ``flops``, ``bytes_read``, ``bytes_written``: sympy expressions (written by the cost pass);
  ``matmul_flops`` the 2·M·N·K part alone, ``alias`` True for views
- ``unsupported``: True when no cost rule knows the op (its costs are zero)
- ``input_setup``: True for ops that only rebuild a structured input while exporting (free)
- ``module``: the innermost module path (written by the hierarchy pass)
- ``config_symbolic``: whether the costs are in config symbols (written by the generalize pass)

``IRGraph.meta`` holds what passes aggregate: ``modules`` (the module tree), ``lines`` (a
line table), ``config_symbols`` (config values), ``exported_program`` (torch frontend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import sympy

from irtools.symbols import sym

#: Tensor roles, and the byte-size symbol a floating-point tensor of that role uses.
ROLE_BYTES = {"weight": "w_bytes", "activation": "a_bytes", "kv_cache": "kv_bytes"}
FLOAT_DTYPES = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"}
DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1, "complex64": 8,
}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor flowing through the graph: symbolic shape, dtype, role, and what it aliases."""

    shape: tuple[sympy.Expr, ...]
    dtype: str = "float32"
    role: str = "activation"
    alias_of: str | None = None
    contiguous: bool = True
    #: dims a view broadcasts (stride 0, as ``expand`` makes): stored once in memory
    broadcast_dims: tuple[int, ...] = ()

    @property
    def numel(self) -> sympy.Expr:
        return sympy.Mul(*self.shape) if self.shape else sympy.Integer(1)

    @property
    def itemsize(self) -> sympy.Expr:
        """Bytes per element: a precision symbol for float tensors by role, else the dtype's size."""
        if self.dtype in FLOAT_DTYPES and self.role in ROLE_BYTES:
            return sym(ROLE_BYTES[self.role])
        return sympy.Integer(DTYPE_BYTES.get(self.dtype, 4))

    @property
    def nbytes(self) -> sympy.Expr:
        """Bytes a reader moves: the stored elements (a broadcast view reads its base once)."""
        if not self.broadcast_dims:
            return self.numel * self.itemsize
        stored = sympy.Mul(*(d for i, d in enumerate(self.shape) if i not in self.broadcast_dims))
        return stored * self.itemsize


@dataclass(frozen=True)
class Frame:
    """One Python frame of the call chain that produced a node."""

    file: str
    line: int
    function: str
    code: str = ""


@dataclass(frozen=True)
class SourceLoc:
    """Where a node came from: the innermost user frame and the whole chain (outermost first)."""

    file: str
    line: int
    code: str
    frames: tuple[Frame, ...] = ()


@dataclass(frozen=True)
class Scope:
    """One level of module nesting: the module's path (``h.0.attn``) and qualified class."""

    path: str
    cls: str


@dataclass
class IRGraph:
    """One captured graph: the op DiGraph plus what the frontend knew about it."""

    name: str
    frontend: str
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    inputs: dict[str, TensorSpec] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)  # example size used for each symbol
    default_bindings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def add_op(self, node_id: str, **attrs) -> None:
        attrs.setdefault("inputs", [])
        attrs.setdefault("outputs", [])
        attrs.setdefault("args", {})
        attrs.setdefault("scope", [])
        attrs.setdefault("source", None)
        self.graph.add_node(node_id, **attrs)

    def nodes(self):
        """(id, attributes) for every op node, in topological (capture) order."""
        return self.graph.nodes(data=True)

    def __len__(self) -> int:
        return self.graph.number_of_nodes()


def default_bytes(ir: IRGraph) -> dict[str, float]:
    """Precision bindings that reproduce the captured float dtypes (e.g. 4 for fp32 weights);
    integer inputs (token ids) do not count."""
    found: dict[str, float] = {}
    for spec in ir.inputs.values():
        if spec.role in ROLE_BYTES and spec.dtype in FLOAT_DTYPES:
            found.setdefault(ROLE_BYTES[spec.role], DTYPE_BYTES[spec.dtype])
    base = found.get("a_bytes", found.get("w_bytes", 4))
    return {"w_bytes": found.get("w_bytes", base), "a_bytes": base, "kv_bytes": found.get("kv_bytes", base)}
