"""FX nodes -> IR nodes: the conversion shared by the torch.export frontend and the FX pass.

Shapes become sympy expressions through :class:`TensorConverter` (export's own symbols
renamed to standard names); each node's op name, tensor arguments in schema order, output
specs with roles and aliases, module scope (``nn_module_stack``) and source frames
(``stack_trace``) become the node attributes of ``irtools.ir``.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from typing import Any

import sympy
import torch

from irtools.capture.frames import parse_frames
from irtools.ir import IRGraph, Scope, SourceLoc, TensorSpec, op_class


def qualname(cls: Any) -> str:
    if isinstance(cls, str):
        return cls
    return f"{cls.__module__}.{cls.__qualname__}"


def node_scope(node: torch.fx.Node, root: Scope) -> list[Scope]:
    """Module nesting from ``nn_module_stack``: the root module first, innermost last."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(_scope_of(tuple((str(p), qualname(c)) for p, c in stack.values()), root))


@functools.lru_cache(maxsize=4096)
def _scope_of(stack: tuple[tuple[str, str], ...], root: Scope) -> tuple[Scope, ...]:
    scopes = [root]
    for path, cls in stack:
        cls = qualname(cls)
        if not re.match(r"^[\w.]+$", cls) or cls.startswith("_empty_nn_module_stack"):
            continue
        path = re.sub(r"^L\['self'\]\.?", "", str(path))
        path = re.sub(r"\._modules\['([^']+)'\]", r".\1", path)
        if path == "":
            continue
        scopes.append(Scope(path, cls))
    return tuple(scopes)


def _raw(size) -> sympy.Expr:
    return size.node.expr if isinstance(size, torch.SymInt) else sympy.Integer(size)


def is_contiguous(val: torch.Tensor) -> bool:
    """Row-major strides, decided on the symbolic expressions (no guards, unlike
    ``Tensor.is_contiguous`` on fake tensors, which is slow and may specialize)."""
    expected = 1
    for size, stride in reversed(list(zip(val.shape, val.stride()))):
        size = size.node.expr if isinstance(size, torch.SymInt) else size  # plain ints stay ints
        stride = stride.node.expr if isinstance(stride, torch.SymInt) else stride
        if size == 1:
            continue
        if stride != expected and (type(stride) is int and type(expected) is int
                                   or sympy.expand(stride - expected) != 0):
            return False
        expected = expected * size
    return True


class TensorConverter:
    """Turns fake values into TensorSpecs with shapes renamed to standard symbols."""

    def __init__(self, rename: dict[sympy.Symbol, sympy.Symbol]):
        self.rename = rename
        self._cache: dict[Any, sympy.Expr] = {}

    def expr(self, value) -> sympy.Expr:
        if isinstance(value, torch.SymInt | torch.SymFloat | torch.SymBool):
            raw = value.node.expr
            if raw not in self._cache:
                self._cache[raw] = sympy.expand(raw.xreplace(self.rename))
            return self._cache[raw]
        return sympy.sympify(value)

    def spec(self, val, role="activation", alias_of=None) -> TensorSpec | None:
        if not isinstance(val, torch.Tensor):
            return None
        contiguous = is_contiguous(val)
        shape = tuple(self.expr(d) for d in val.shape)
        broadcast = tuple(i for i, st in enumerate(val.stride()) if _raw(st) == 0 and _raw(val.shape[i]) != 1)
        return TensorSpec(
            shape=shape,
            dtype=str(val.dtype).removeprefix("torch."),
            role=role,
            alias_of=alias_of,
            contiguous=contiguous,
            broadcast_dims=broadcast,
        )


def op_name(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    if target is operator.getitem:
        return "getitem"
    if getattr(target, "__module__", "") in ("_operator", "operator", "math") or target in (
        torch.sym_max, torch.sym_min, torch.sym_float, torch.sym_int, torch.sym_not, torch.sym_sqrt
    ):
        return "sym." + target.__name__
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__name__', str(target))}"


def tensor_args(node: torch.fx.Node) -> tuple[list[torch.fx.Node | None], dict[str, Any]]:
    """Tensor-valued arguments in schema order (lists flattened) and the others by name."""
    target = node.target
    inputs: list = []
    others: dict[str, Any] = {}
    if isinstance(target, torch._ops.OpOverload):
        names = [a.name for a in target._schema.arguments]
        bound = dict(zip(names, node.args))
        bound.update(node.kwargs)
        items = [(n, bound[n]) for n in names if n in bound]
    else:
        items = [(str(i), a) for i, a in enumerate(node.args)] + list(node.kwargs.items())
    for name, value in items:
        leaves = value if isinstance(value, list | tuple) else [value]
        tensor_leaves = [
            v for v in leaves if isinstance(v, torch.fx.Node) and isinstance(v.meta.get("val"), torch.Tensor | tuple | list)
        ]
        if tensor_leaves:
            inputs.extend(tensor_leaves)
        else:
            others[name] = value
    return inputs, others


ROLE_PRIORITY = ("kv_cache", "activation", "weight", "constant")


def output_specs(conv, op, val, in_specs, in_nodes) -> list[TensorSpec | None]:
    """Output specs: a view keeps its input's role and aliases it; a copy (cat, clone,
    contiguous) takes the most specific role among its same-dtype inputs (a KV cache
    concatenated with new keys stays KV cache); anything else produces activations."""
    vals = val if isinstance(val, list | tuple) else [val]
    cls = op_class(op)
    first = next((s for s in in_specs if s is not None), None)
    first_node = next((n for n, s in zip(in_nodes, in_specs) if s is not None), None)
    out = []
    for v in vals:
        role, alias_of = "activation", None
        if first is not None and cls is not None and isinstance(v, torch.Tensor):
            dtype = str(v.dtype).removeprefix("torch.")
            same = [s.role for s in in_specs if s is not None and s.dtype == dtype]
            if cls == "view":
                role = first.role if first.dtype == dtype else "activation"
                alias_of = first.alias_of or first_node.name
            elif same:
                role = min(same, key=ROLE_PRIORITY.index)
        out.append(conv.spec(v, role, alias_of))
    return out


def plain_arg(conv, value):
    if isinstance(value, torch.fx.Node):
        return plain_arg(conv, value.meta.get("val"))
    if isinstance(value, torch.SymInt | torch.SymFloat | torch.SymBool):
        return conv.expr(value)
    if isinstance(value, list | tuple):
        return type(value)(plain_arg(conv, v) for v in value)
    if isinstance(value, torch.dtype | torch.device | torch.layout | torch.memory_format):
        return str(value)
    return value


def is_input_setup(source: SourceLoc | None) -> bool:
    """Ops traced while export rebuilt a structured input (a DynamicCache filled through
    ``update()``) run outside any forward: they stand for the input itself and cost nothing."""
    return bool(source and source.frames and not any(f.function == "forward" for f in source.frames))


def node_source(node: torch.fx.Node) -> SourceLoc | None:
    frames = parse_frames(node.meta.get("stack_trace"))
    if not frames:
        return None
    inner = frames[-1]
    return SourceLoc(inner.file, inner.line, inner.code, frames)


def value_id(node: torch.fx.Node, index, n_outputs: int) -> str:
    """The IR value id of output ``index`` of an FX node: its name when it has one output."""
    return node.name if n_outputs <= 1 else f"{node.name}.{index}"


def _direct(fn: Callable, default=None):
    return fn()


def add_fx_node(ir: IRGraph, conv: TensorConverter, node: torch.fx.Node, specs: dict, root: Scope,
                guard: Callable = _direct, module_forward: bool = False, **extra) -> None:
    """Add one ``call_function`` node (``guard(fn, default)`` may turn failures into defaults).

    ``module_forward``: the graph traces a module's ``forward`` (torch.export), so ops traced
    outside any ``forward`` frame only rebuild inputs (see :func:`is_input_setup`)."""
    val = node.meta.get("val")
    op = guard(lambda: op_name(node.target), str(node.target))
    in_nodes, others = guard(lambda: tensor_args(node), ([], {}))
    if op == "getitem":
        src = specs.get(in_nodes[0].name, []) if in_nodes else []
        idx = node.args[1]
        out = src[idx] if isinstance(idx, int) and idx < len(src) else guard(lambda: conv.spec(val))
        in_specs, out_specs = [out], [out]
        in_values = [value_id(in_nodes[0], idx, len(src))] if in_nodes else []
    else:
        in_specs = [specs.get(n.name, [None])[0] if n is not None else None for n in in_nodes]
        out_specs = guard(lambda: output_specs(conv, op, val, in_specs, in_nodes), [None])
        in_values = [n.name if n is not None else None for n in in_nodes]
    specs[node.name] = out_specs
    out_values = [value_id(node, k, len(out_specs)) if s is not None else None for k, s in enumerate(out_specs)]
    source = guard(lambda: node_source(node))
    ir.add_op(
        node.name,
        op=op,
        inputs=in_specs,
        outputs=out_specs,
        args=guard(lambda: {k: plain_arg(conv, v) for k, v in others.items()}, {}),
        scope=guard(lambda: node_scope(node, root), [root]),
        source=source,
        input_setup=module_forward and is_input_setup(source),
        input_values=in_values,
        output_values=out_values,
        **extra,
    )


def graph_output_values(graph: torch.fx.Graph, specs: dict) -> list[str]:
    """Value ids of a graph's tensor outputs (the ``output`` node's arguments, flattened)."""
    out: list[str] = []
    for node in graph.nodes:
        if node.op != "output":
            continue
        leaves = torch.utils._pytree.tree_leaves(node.args)
        for leaf in leaves:
            if isinstance(leaf, torch.fx.Node) and specs.get(leaf.name, [None])[0] is not None:
                out.append(leaf.name)
    return out
