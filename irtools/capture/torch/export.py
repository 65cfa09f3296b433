"""torch.export frontend: a module + example inputs + named dims -> the irtools IR.

Dims the user names are exported as ``Dim.DYNAMIC``; the symbols torch invents for them
(``s47``...) are found through the placeholders they were given for and renamed to the
user's names, never by their generated names. Helper-method frames (``_attn``) are kept in
each node's stack trace by registering the model's functions as stack-trace anchors.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import traceback
from collections.abc import Mapping
from typing import Any

import sympy
import torch
from torch.export import Dim
from torch.utils import _pytree as pytree

from irtools.capture.torch.fx_nodes import TensorConverter, add_fx_node, graph_output_values, qualname
from irtools.ir import CaptureError, IRGraph, Scope, TensorSpec, default_bytes
from irtools.ir.errors import user_code
from irtools.ir.symbols import sym


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


#: Package folders whose frames are never model code: torch's and irtools' own (by identity,
#: never by a substring of a path, so a checkout in a folder named ``irtools`` is model code too).
_LIBRARY_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.realpath(path)), "")
    for path in (torch.__file__, os.path.join(os.path.dirname(__file__), "..", "..", "__init__.py"))
)


def _is_library_frame(filename: str) -> bool:
    return os.path.realpath(filename).startswith(_LIBRARY_DIRS)


def _user_line(exc: BaseException) -> str:
    """The innermost model-code frame of an exception chain, as ``file:line: code``."""
    best = None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for fs in traceback.extract_tb(exc.__traceback__):
            if _is_library_frame(fs.filename):
                continue
            best = fs
        exc = exc.__cause__ or exc.__context__
    if best is None:
        return ""
    return f"{best.filename}:{best.lineno}: {(best.line or '').strip()}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def bind_inputs(module: torch.nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
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


def dynamic_spec(value: Any, path: str, dims: Mapping[str, Mapping[int, str]]):
    """The ``dynamic_shapes`` entry of one input: Dim.DYNAMIC for named axes, mirroring the
    input's pytree (custom containers such as transformers' DynamicCache by their children)."""
    if isinstance(value, torch.Tensor):
        return {axis % value.dim(): Dim.DYNAMIC for axis in dims.get(path, {})} or None
    if isinstance(value, list | tuple):
        return type(value)(dynamic_spec(v, f"{path}.{i}", dims) for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: dynamic_spec(v, f"{path}.{k}", dims) for k, v in value.items()}
    if type(value) in pytree.SUPPORTED_NODES:
        children, _ = pytree.SUPPORTED_NODES[type(value)].flatten_fn(value)
        keyed = pytree.SUPPORTED_NODES[type(value)].flatten_with_keys_fn
        keys = [_path_str([k]) for k, _ in keyed(value)[0]] if keyed else [str(i) for i in range(len(children))]
        return [dynamic_spec(c, f"{path}.{k}", dims) for k, c in zip(keys, children)]
    return None


def nest_var_keyword(module: torch.nn.Module, flat: dict[str, Any]) -> dict[str, Any]:
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
    inputs = bind_inputs(module, args, kwargs)
    leaves, _ = pytree.tree_flatten_with_path(inputs)
    paths = [_path_str(kp) for kp, _ in leaves]
    unknown = sorted(set(dims) - set(paths))
    if unknown:
        raise CaptureError(f"no input named {unknown[0]!r} to name dims of (inputs: {', '.join(paths)})")
    for path, leaf in zip(paths, [v for _, v in leaves]):
        for axis, dim_name in dims.get(path, {}).items():
            if not isinstance(leaf, torch.Tensor) or not -leaf.dim() <= axis < leaf.dim():
                raise CaptureError(f"input {path!r} has no dimension {axis}")
            if leaf.shape[axis] < 2:
                raise CaptureError(
                    f"dimension {dim_name!r} (input {path!r}, axis {axis}) has example size {leaf.shape[axis]}: "
                    "torch.export fixes sizes 0 and 1, so use an example of size >= 2 (the formulas hold for 1 too)"
                )

    dynamic = nest_var_keyword(module, {k: dynamic_spec(v, k, dims) for k, v in inputs.items()})
    _register_anchors(module)
    try:
        with user_code(f"the forward of {type(module).__name__}"):
            ep = torch.export.export(module, (), inputs, dynamic_shapes=dynamic, strict=False)
    except CaptureError:
        raise
    except Exception as exc:  # noqa: BLE001 - any export failure is reported in one line
        where = _user_line(exc)
        raise CaptureError(
            f"torch.export failed{' at ' + where if where else ''}: {_first_line(exc)}"
        ) from exc
    return build_ir(ep, paths, dims, name or type(module).__name__, kv_inputs, root=Scope("", qualname(type(module))))


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

    conv = TensorConverter(rename)
    ir = IRGraph(name=name, frontend="torch", dims=example)
    ir.meta.root_class = root.cls
    ir.meta.rename = rename
    roles = placeholder_roles(ep, {name for name, path in path_of.items() if path in kv_paths})

    specs: dict[str, list[TensorSpec | None]] = {}
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = conv.spec(node.meta.get("val"), roles.get(node.name, "activation"))
            specs[node.name] = [spec]
            ir.add_value(node.name, spec)
            if spec is not None:
                ir.inputs[path_of.get(node.name, node.name)] = spec
            continue
        if node.op == "call_function":
            add_fx_node(ir, conv, node, specs, root, module_forward=True)
    ir.default_bindings = default_bytes(ir)
    ir.meta.exported_program = ep
    ir.meta.output_values = graph_output_values(ep.graph, specs)
    return ir




def placeholder_roles(ep, kv_cache: set[str] = frozenset()) -> dict[str, str]:
    """The tensor role of each placeholder of an ExportedProgram, from its graph signature:
    parameters are weights, buffers and constants constants, user inputs activations (or
    KV cache for the placeholders named in ``kv_cache``)."""
    from torch.export.graph_signature import InputKind

    kinds = {InputKind.PARAMETER: "weight", InputKind.BUFFER: "constant", InputKind.CONSTANT_TENSOR: "constant"}
    roles = {}
    for spec in ep.graph_signature.input_specs:
        name = getattr(spec.arg, "name", None)
        if name is not None:
            roles[name] = kinds.get(spec.kind, "kv_cache" if name in kv_cache else "activation")
    return roles
