"""The IR: typed op nodes in a networkx DiGraph, the tensor values between them, and graph meta.

Both frontends produce it bare (:class:`OpNode` capture fields only); the passes fill in
the rest, each writing the fields it owns. A node's attributes are an :class:`OpNode`
record, a tensor is a :class:`TensorSpec`, and each input of a node names the
:class:`Value` that feeds it, so producers, consumers and lifetimes are read straight off
the graph.
"""

from __future__ import annotations

import functools
import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any

import networkx as nx
import sympy

from irtools.ir import numeric
from irtools.ir.symbols import sym

#: Tensor roles, and the byte-size symbol a floating-point tensor of that role uses.
ROLE_BYTES = {"weight": "w_bytes", "activation": "a_bytes", "kv_cache": "kv_bytes"}
FLOAT_DTYPES = {"float64", "float32", "float16", "bfloat16"}
#: Stored bytes per element (quantized dtypes, fp8 included, always cost their stored width).
DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1, "float8_e8m0": 1, "float4_e2m1": 0.5, "float6_e2m3": 0.75,
    "float6_e3m2": 0.75, "int4": 0.5, "uint4": 0.5,
    "int2": 0.25, "uint2": 0.25, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint64": 8, "uint32": 4,
    "uint16": 2, "uint8": 1, "bool": 1, "complex64": 8, "complex128": 16,
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

    @functools.cached_property
    def numel(self) -> sympy.Expr:
        """Element count: an Integer computed with plain ints when every dim is known (irtools.ir.numeric)."""
        return numeric.numel(self.shape)

    @property
    def itemsize(self) -> sympy.Expr:
        """Bytes per element: a precision symbol for float tensors by role, else the dtype's size."""
        if self.dtype in FLOAT_DTYPES and self.role in ROLE_BYTES:
            return sym(ROLE_BYTES[self.role])
        return sympy.Rational(DTYPE_BYTES.get(self.dtype, 4))

    @functools.cached_property
    def nbytes(self) -> sympy.Expr:
        """Bytes a reader moves: the stored elements (a broadcast view reads its base once)."""
        if not self.broadcast_dims:
            return self.numel * self.itemsize
        stored = numeric.product(d for i, d in enumerate(self.shape) if i not in self.broadcast_dims)
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


def is_layer_stack(paths: list[str]) -> bool:
    """``h.0``, ``h.1``, …: the members of one ModuleList, in order (not ln_1 and ln_2)."""
    matches = [re.fullmatch(r"(.*)\.(\d+)", p) for p in paths]
    return (
        len(paths) > 1
        and all(matches)
        and len({m.group(1) for m in matches}) == 1
        and [int(m.group(2)) for m in matches] == list(range(len(paths)))
    )


@dataclass(frozen=True)
class Value:
    """One tensor value: produced by output ``index`` of op ``producer`` (None for a graph
    input, parameter or initializer), read by ``(consumer, input position)`` uses."""

    id: str
    spec: TensorSpec | None
    producer: str | None = None
    index: int = 0


_FIELD_NAMES: dict[type, frozenset[str]] = {}


class _Record(MutableMapping):
    """A typed record that also reads and writes by field name (``node["flops"]``), so
    networkx can hold it as a node's attribute dict. Unknown names raise: the schema is
    the dataclass's fields, nothing else."""

    __slots__ = ()

    def _names(self) -> frozenset[str]:
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = frozenset(f.name for f in fields(self))
        return names

    def __getitem__(self, key: str):
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value) -> None:
        if key not in self._names():
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"{type(self).__name__} fields cannot be deleted")

    def update(self, other=(), /, **kwargs) -> None:
        """``dict.update`` with the schema check, in one loop (networkx fills every node so)."""
        names = self._names()
        items = other.items() if hasattr(other, "items") else other
        for pairs in (items, kwargs.items()):
            for key, value in pairs:
                if key not in names:
                    raise KeyError(f"{type(self).__name__} has no field {key!r}")
                setattr(self, key, value)

    def __iter__(self):
        return iter(f.name for f in fields(self))

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, key) -> bool:  # a field counts once it has been written
        return key in self._names() and getattr(self, key) is not None

    def get(self, key, default=None):
        value = getattr(self, key, None) if key in self._names() else None
        return default if value is None else value


@dataclass(eq=False)
class OpNode(_Record):
    """One operation of the IR, from capture to report. Capture writes the first block;
    each pass writes the fields named beside it (docs/architecture.md follows one node)."""

    # -- capture (irtools.capture) --
    op: str = ""                                     # frontend op name: aten.addmm.default, Gemm
    inputs: list = field(default_factory=list)       # TensorSpec | None per input position
    outputs: list = field(default_factory=list)      # TensorSpec | None per output
    input_values: list = field(default_factory=list)   # value id (IRGraph.values) per input, or None
    output_values: list = field(default_factory=list)  # value id per output, or None
    args: dict = field(default_factory=dict)         # non-tensor arguments (dims, scalars, subgraphs)
    scope: list = field(default_factory=list)        # Scope per nesting level, root first
    source: SourceLoc | None = None
    input_setup: bool | None = None                  # only rebuilds a structured input (free)
    onnx_name: str | None = None                     # ONNX node name (ONNX frontend)
    tensor_names: dict | None = None                 # ONNX tensor names of inputs / outputs
    flags: list | None = None                        # capture notes (an If's chosen branch ...)
    phase: str | None = None                         # forward | backward | recompute | optimizer (train)
    grad_of: str | None = None                       # train: the forward node a backward node differentiates
    missing_shape: bool | None = None                # FX pass: the node carries no shape (meta val)
    not_aten: bool | None = None                     # FX pass: not a call_function node (flagged)
    # -- passes.annotate_costs --
    kind: str | None = None                          # canonical kind (irtools.ir.kinds)
    flops: sympy.Expr | None = None
    bytes_read: sympy.Expr | None = None
    bytes_written: sympy.Expr | None = None
    matmul_flops: sympy.Expr | None = None           # the 2·M·N·K part alone
    alias: bool | None = None                        # output is a view of an input
    unsupported: bool | None = None                  # no rule: costs are zero, reported
    cost_error: str | None = None                    # a rule failed on this node's shapes
    # -- passes.generalize / passes.hierarchy --
    config_symbolic: bool | None = None              # costs verified in config symbols
    module: str | None = None                        # innermost module path


@dataclass
class CollapseInfo:
    """A model analyzed from ``traced_layers`` blocks of its ``stack`` that repeat ``num_layers`` times."""

    traced_layers: int
    num_layers: int
    stack: str

    @property
    def repeat(self) -> int:
        return self.num_layers


@dataclass(eq=False)
class GraphMeta(_Record):
    """Graph-level facts, the same fields for every frontend."""

    # -- capture --
    root_class: str | None = None                    # qualified class of the captured module
    rename: dict | None = None                       # export symbol -> standard symbol
    exported_program: Any = None                     # torch.export's program (torch frontend)
    outputs: dict | None = None                      # graph output name -> TensorSpec
    output_values: list | None = None                # value ids of the graph's outputs
    scenario: str | None = None                      # prefill | decode | train, when known
    kv_cache: str | None = None                      # copy | static: how decode writes the cache
    opsets: dict | None = None                       # ONNX: domain -> opset version
    producer: str | None = None                      # ONNX: the exporter that wrote the file
    unknown_domains: list | None = None              # ONNX: op domains no rule set knows
    shape_equalities: dict | None = None             # ONNX: sizes shape inference found equal
    # -- recipes / pipeline --
    config_symbols: dict | None = None               # config symbol -> its value in this model
    collapse: CollapseInfo | None = None             # set when blocks were traced once and repeated
    logits: str | None = None                        # LM head on the "last" position or "all"; None: no LM head
    notes: list | None = None                        # what the recipe assumed (shown in the report)
    sliding_windows: dict | None = None              # layer module path -> its sliding window (passes.sliding_window)
    training: Any = None                             # train: irtools.ir.training.JointInfo (params, gradients, loss)
    # -- passes --
    generalized: Any = None                          # passes.generalize result
    modules: Any = None                              # passes.hierarchy: the module tree
    lines: Any = None                                # passes.lines: the line table
    templates: dict | None = None                    # passes.compose: one template per class


class OpGraph(nx.DiGraph):
    """The op DiGraph: every node's attribute dict is an :class:`OpNode`."""

    node_attr_dict_factory = OpNode


@dataclass
class IRGraph:
    """One captured graph: op nodes, the tensor values between them, and graph meta.

    Edges run producer -> consumer; ``graph.edges[u, v]["values"]`` lists the value ids
    that flow along it (``OpNode.input_values`` says at which input position)."""

    name: str
    frontend: str
    graph: OpGraph = field(default_factory=OpGraph)
    inputs: dict[str, TensorSpec] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)  # example size used for each symbol
    default_bindings: dict[str, float] = field(default_factory=dict)
    meta: GraphMeta = field(default_factory=GraphMeta)

    def add_value(self, value_id: str, spec: TensorSpec | None, producer: str | None = None, index: int = 0) -> None:
        """Declare a tensor value (a graph input when ``producer`` is None)."""
        self.values[value_id] = Value(value_id, spec, producer, index)

    def add_op(self, node_id: str, **attrs) -> None:
        """Add an op node; its ``output_values`` are declared, and an edge joins it to the
        producer of each of its ``input_values``."""
        self.graph.add_node(node_id, **attrs)
        node = self.graph.nodes[node_id]
        for k, value_id in enumerate(node.output_values):
            if value_id is not None:
                spec = node.outputs[k] if k < len(node.outputs) else None
                self.values[value_id] = Value(value_id, spec, node_id, k)
        for pos, value_id in enumerate(node.input_values):
            if value_id is not None and value_id not in self.values:  # a graph input, parameter or constant
                spec = node.inputs[pos] if pos < len(node.inputs) else None
                self.values[value_id] = Value(value_id, spec)
            value = self.values.get(value_id) if value_id is not None else None
            if value is not None and value.producer is not None and value.producer in self.graph:
                if self.graph.has_edge(value.producer, node_id):
                    self.graph.edges[value.producer, node_id]["values"].append(value_id)
                else:
                    self.graph.add_edge(value.producer, node_id, values=[value_id])

    def node(self, node_id: str) -> OpNode:
        return self.graph.nodes[node_id]

    def nodes(self):
        """(id, OpNode) for every op node, in topological (capture) order."""
        return self.graph.nodes(data=True)

    def uses(self) -> dict[str, list[tuple[str, int]]]:
        """Value id -> every (consumer node, input position) that reads it, in program order."""
        out: dict[str, list[tuple[str, int]]] = {v: [] for v in self.values}
        for node_id, node in self.nodes():
            for pos, value_id in enumerate(node.input_values):
                if value_id is not None:
                    out.setdefault(value_id, []).append((node_id, pos))
        return out

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
