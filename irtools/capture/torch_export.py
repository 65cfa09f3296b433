"""torch.export frontend: a module + example inputs + named dims -> the irtools IR.

Dims the user names are exported as ``Dim.DYNAMIC``; the symbols torch invents for them
(``s47``...) are found through the placeholders they were given for and renamed to the
user's names, never by their generated names. Helper-method frames (``_attn``) are kept in
each node's stack trace by registering the model's functions as stack-trace anchors.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
import sys
import traceback
from collections.abc import Mapping
from typing import Any

import sympy
import torch
from torch.export import Dim
from torch.utils import _pytree as pytree

from irtools.ir import Frame, IRGraph, Scope, SourceLoc, TensorSpec
from irtools.symbols import sym
from passes.costs import lookup

ALIAS_KINDS = {"view", "dropout", "copy"}
_FRAME_RE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)\n(?P<code>[^\n]*)')
_SKIP_FRAMES = ("torch/nn/modules/module.py", "torch/fx/", "torch/_", "torch/export/", "torch/utils/")


class CaptureError(Exception):
    """A module could not be captured; the message is one line meant for the user."""


def _path_str(keypath) -> str:
    parts = []
    for k in keypath:
        key = getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))
        parts.append(str(key))
    return ".".join(parts)


def _register_anchors(module: torch.nn.Module) -> None:
    """Keep frames of every function defined beside the model's classes in stack traces."""
    try:
        from torch.fx.proxy import _register_stack_trace_anchor
    except ImportError:  # older/newer torch: lines fall back to forward frames only
        return
    seen = set()
    for sub in module.modules():
        py_module = sys.modules.get(type(sub).__module__)
        if py_module is None or py_module in seen or py_module.__name__.startswith("torch."):
            continue
        seen.add(py_module)
        for obj in vars(py_module).values():
            if inspect.isfunction(obj):
                _register_stack_trace_anchor(obj)
            elif inspect.isclass(obj):
                for member in vars(obj).values():
                    if inspect.isfunction(member):
                        _register_stack_trace_anchor(member)


def _user_line(exc: BaseException) -> str:
    """The innermost model-code frame of an exception chain, as ``file:line: code``."""
    best = None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for fs in traceback.extract_tb(exc.__traceback__):
            if "site-packages/torch" in fs.filename or "/irtools/" in fs.filename:
                continue
            best = fs
        exc = exc.__cause__ or exc.__context__
    if best is None:
        return ""
    return f"{best.filename}:{best.lineno}: {(best.line or '').strip()}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@functools.lru_cache(maxsize=4096)
def _frames(stack_trace: str | None) -> tuple[Frame, ...]:
    if not stack_trace:
        return ()
    frames = []
    for m in _FRAME_RE.finditer(stack_trace):
        file = m["file"]
        if any(s in file for s in _SKIP_FRAMES) and "torch/nn/modules/module.py" not in file:
            if not file.endswith(("torch/nn/functional.py",)) and "/torch/nn/modules/" not in file:
                continue
        if "torch/nn/modules/module.py" in file:
            continue
        frames.append(Frame(file, int(m["line"]), m["func"], m["code"].strip()))
    return tuple(frames)


def _qualname(cls: Any) -> str:
    if isinstance(cls, str):
        return cls
    return f"{cls.__module__}.{cls.__qualname__}"


def _scope(node: torch.fx.Node, root: Scope) -> list[Scope]:
    """Module nesting from ``nn_module_stack``: the root module first, innermost last."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(_scope_of(tuple((str(p), _qualname(c)) for p, c in stack.values()), root))


@functools.lru_cache(maxsize=4096)
def _scope_of(stack: tuple[tuple[str, str], ...], root: Scope) -> tuple[Scope, ...]:
    scopes = [root]
    for path, cls in stack:
        cls = _qualname(cls)
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


def _is_contiguous(val: torch.Tensor) -> bool:
    """Row-major strides, decided on the symbolic expressions (no guards, unlike
    ``Tensor.is_contiguous`` on fake tensors, which is slow and may specialize)."""
    expected = sympy.Integer(1)
    for size, stride in reversed(list(zip(val.shape, val.stride()))):
        size = _raw(size)
        if size == 1:
            continue
        if sympy.expand(_raw(stride) - expected) != 0:
            return False
        expected = expected * size
    return True


class _Converter:
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
        contiguous = _is_contiguous(val)
        return TensorSpec(
            shape=tuple(self.expr(d) for d in val.shape),
            dtype=str(val.dtype).removeprefix("torch."),
            role=role,
            alias_of=alias_of,
            contiguous=contiguous,
        )


def _op_name(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    if target is operator.getitem:
        return "getitem"
    if getattr(target, "__module__", "") in ("_operator", "operator", "math") or target in (
        torch.sym_max, torch.sym_min, torch.sym_float, torch.sym_int, torch.sym_not, torch.sym_sqrt
    ):
        return "sym." + target.__name__
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__name__', str(target))}"


def _tensor_args(node: torch.fx.Node) -> tuple[list[torch.fx.Node | None], dict[str, Any]]:
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


def _bind_inputs(module: torch.nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Inputs by parameter name (``**kwargs`` members flattened in), as export takes them."""
    signature = inspect.signature(module.forward)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise CaptureError(f"inputs do not match {type(module).__name__}.forward: {exc}") from None
    inputs: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            inputs.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            raise CaptureError(f"{type(module).__name__}.forward takes *{name}: pass those inputs by keyword")
        else:
            inputs[name] = value
    return inputs


def _dynamic_spec(value: Any, path: str, dims: Mapping[str, Mapping[int, str]]):
    """The ``dynamic_shapes`` entry of one input: Dim.DYNAMIC for named axes, mirroring the
    input's pytree (custom containers such as transformers' DynamicCache by their children)."""
    if isinstance(value, torch.Tensor):
        return {axis % value.dim(): Dim.DYNAMIC for axis in dims.get(path, {})} or None
    if isinstance(value, list | tuple):
        return type(value)(_dynamic_spec(v, f"{path}.{i}", dims) for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _dynamic_spec(v, f"{path}.{k}", dims) for k, v in value.items()}
    if type(value) in pytree.SUPPORTED_NODES:
        children, _ = pytree.SUPPORTED_NODES[type(value)].flatten_fn(value)
        keyed = pytree.SUPPORTED_NODES[type(value)].flatten_with_keys_fn
        keys = [_path_str([k]) for k, _ in keyed(value)[0]] if keyed else [str(i) for i in range(len(children))]
        return [_dynamic_spec(c, f"{path}.{k}", dims) for k, c in zip(keys, children)]
    return None


def _nest_var_keyword(module: torch.nn.Module, flat: dict[str, Any]) -> dict[str, Any]:
    """export wants ``dynamic_shapes`` keyed like the signature: ``**kwargs`` members nested."""
    params = inspect.signature(module.forward).parameters
    var_kw = next((n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    named = {k: v for k, v in flat.items() if k in params and k != var_kw}
    extra = {k: v for k, v in flat.items() if k not in named}
    if var_kw and extra:
        named[var_kw] = extra
    return named


def capture_module(
    module: torch.nn.Module,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    dims: Mapping[str, Mapping[int, str]] | None = None,
    name: str | None = None,
    kv_inputs: tuple[str, ...] | None = None,
) -> IRGraph:
    """Export ``module`` and build its IR.

    ``dims`` names the dynamic dimensions per input path (``{"hidden_states": {0:
    "batch_size", 1: "seq_len"}, "layer_past.0": {...}}``; tuple members by index).
    ``kv_inputs`` lists input paths holding a KV cache (default: paths naming past/cache).
    """
    dims = dict(dims or {})
    kwargs = dict(kwargs or {})
    inputs = _bind_inputs(module, args, kwargs)
    leaves, _ = pytree.tree_flatten_with_path(inputs)
    paths = [_path_str(kp) for kp, _ in leaves]
    unknown = sorted(set(dims) - set(paths))
    if unknown:
        raise CaptureError(f"no input named {unknown[0]!r} to name dims of (inputs: {', '.join(paths)})")
    for path, leaf in zip(paths, [v for _, v in leaves]):
        for axis in dims.get(path, {}):
            if not isinstance(leaf, torch.Tensor) or not -leaf.dim() <= axis < leaf.dim():
                raise CaptureError(f"input {path!r} has no dimension {axis}")

    dynamic = _nest_var_keyword(module, {k: _dynamic_spec(v, k, dims) for k, v in inputs.items()})
    _register_anchors(module)
    try:
        ep = torch.export.export(module, (), inputs, dynamic_shapes=dynamic, strict=False)
    except Exception as exc:  # noqa: BLE001 - any export failure is reported in one line
        where = _user_line(exc)
        raise CaptureError(
            f"torch.export failed{' at ' + where if where else ''}: {_first_line(exc)}"
        ) from exc
    return build_ir(ep, paths, dims, name or type(module).__name__, kv_inputs, root=Scope("", _qualname(type(module))))


def build_ir(ep, paths, dims, name, kv_inputs=None, root: Scope | None = None) -> IRGraph:
    """The IR of an ExportedProgram whose user inputs flatten to ``paths``."""
    from torch.export.graph_signature import InputKind

    root = root or Scope("", "")
    sig = ep.graph_signature
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    user_specs = [s for s in sig.input_specs if s.kind == InputKind.USER_INPUT]
    rename: dict[sympy.Symbol, sympy.Symbol] = {}
    example: dict[str, int] = {}
    kv_paths = set(kv_inputs if kv_inputs is not None else [p for p in paths if re.search(r"past|cache", p)])
    path_of: dict[str, str] = {}
    for spec, path in zip(user_specs, paths):
        path_of[spec.arg.name] = path
        val = placeholders[spec.arg.name].meta.get("val") if spec.arg.name in placeholders else None
        for axis, dim_name in dims.get(path, {}).items():
            size = val.shape[axis]
            if not isinstance(size, torch.SymInt):
                raise CaptureError(
                    f"dimension {dim_name!r} (input {path!r}, axis {axis}) was specialized to {size} by torch.export"
                )
            raw = size.node.expr
            if raw in rename and rename[raw] != sym(dim_name):
                raise CaptureError(f"dims {rename[raw]} and {dim_name} are the same dimension in this model")
            rename[raw] = sym(dim_name)
            example[dim_name] = int(size.node.hint) if size.node.hint is not None else 0

    conv = _Converter(rename)
    ir = IRGraph(name=name, frontend="torch", dims=example)
    ir.meta["root_class"] = root.cls
    ir.meta["rename"] = rename
    roles = {}
    for spec in sig.input_specs:
        if spec.kind == InputKind.PARAMETER:
            roles[spec.arg.name] = "weight"
        elif spec.kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            roles[spec.arg.name] = "constant"
        elif spec.kind == InputKind.USER_INPUT:
            roles[spec.arg.name] = "kv_cache" if path_of.get(spec.arg.name) in kv_paths else "activation"

    specs: dict[str, list[TensorSpec | None]] = {}
    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if node.op == "placeholder":
            spec = conv.spec(val, roles.get(node.name, "activation"))
            specs[node.name] = [spec]
            if spec is not None:
                ir.inputs[path_of.get(node.name, node.name)] = spec
            continue
        if node.op != "call_function":
            continue
        op = _op_name(node.target)
        in_nodes, others = _tensor_args(node)
        if op == "getitem":
            src = specs.get(in_nodes[0].name, []) if in_nodes else []
            idx = node.args[1]
            out = src[idx] if isinstance(idx, int) and idx < len(src) else conv.spec(val)
            in_specs = [out]
            out_specs = [out]
        else:
            in_specs = [specs.get(n.name, [None])[0] if n is not None else None for n in in_nodes]
            out_specs = _output_specs(conv, op, val, in_specs, in_nodes)
        specs[node.name] = out_specs
        source = _source(node)
        ir.add_op(
            node.name,
            op=op,
            inputs=in_specs,
            outputs=out_specs,
            args={k: _plain(conv, v) for k, v in others.items()},
            scope=_scope(node, root),
            source=source,
            input_setup=_is_input_setup(source),
        )
        for producer in in_nodes:
            if producer is not None and producer.op == "call_function":
                ir.graph.add_edge(producer.name, node.name)
    ir.default_bindings = _default_bytes(ir)
    ir.meta["exported_program"] = ep
    return ir


ROLE_PRIORITY = ("kv_cache", "activation", "weight", "constant")


def _output_specs(conv, op, val, in_specs, in_nodes) -> list[TensorSpec | None]:
    """Output specs: a view keeps its input's role and aliases it; a copy (cat, clone,
    contiguous) takes the most specific role among its same-dtype inputs (a KV cache
    concatenated with new keys stays KV cache); anything else produces activations."""
    vals = val if isinstance(val, list | tuple) else [val]
    entry = lookup(op)
    first = next((s for s in in_specs if s is not None), None)
    first_node = next((n for n, s in zip(in_nodes, in_specs) if s is not None), None)
    out = []
    for v in vals:
        role, alias_of = "activation", None
        if first is not None and entry is not None and entry.kind in ALIAS_KINDS and isinstance(v, torch.Tensor):
            dtype = str(v.dtype).removeprefix("torch.")
            same = [s.role for s in in_specs if s is not None and s.dtype == dtype]
            if entry.kind == "view":
                role = first.role if first.dtype == dtype else "activation"
                alias_of = first.alias_of or first_node.name
            elif same:
                role = min(same, key=ROLE_PRIORITY.index)
        out.append(conv.spec(v, role, alias_of))
    return out


def _plain(conv, value):
    if isinstance(value, torch.fx.Node):
        return _plain(conv, value.meta.get("val"))
    if isinstance(value, torch.SymInt | torch.SymFloat | torch.SymBool):
        return conv.expr(value)
    if isinstance(value, list | tuple):
        return type(value)(_plain(conv, v) for v in value)
    if isinstance(value, torch.dtype | torch.device | torch.layout | torch.memory_format):
        return str(value)
    return value


def _is_input_setup(source: SourceLoc | None) -> bool:
    """Ops traced while export rebuilt a structured input (a DynamicCache filled through
    ``update()``) run outside any forward: they stand for the input itself and cost nothing."""
    return bool(source and source.frames and not any(f.function == "forward" for f in source.frames))


def _source(node: torch.fx.Node) -> SourceLoc | None:
    frames = _frames(node.meta.get("stack_trace"))
    if not frames:
        return None
    inner = frames[-1]
    return SourceLoc(inner.file, inner.line, inner.code, frames)


def _default_bytes(ir: IRGraph) -> dict[str, float]:
    """Precision bindings that reproduce the captured dtypes (e.g. 4 for fp32 weights)."""
    from irtools.ir import DTYPE_BYTES, FLOAT_DTYPES, ROLE_BYTES

    found: dict[str, float] = {}
    for spec in ir.inputs.values():
        if spec.role in ROLE_BYTES and spec.dtype in FLOAT_DTYPES:
            found.setdefault(ROLE_BYTES[spec.role], DTYPE_BYTES[spec.dtype])
    base = found.get("a_bytes", found.get("w_bytes", 4))
    return {"w_bytes": found.get("w_bytes", base), "a_bytes": found.get("a_bytes", base), "kv_bytes": found.get("kv_bytes", found.get("a_bytes", base))}
