"""Joint forward+backward capture: a module whose forward returns its loss -> the IR of a training step.

torch.export captures the forward with the named dims dynamic (:func:`capture_module`); the joint
graph is then traced with ``make_fx`` on the exported program's fake inputs, so the dims stay
symbolic: the forward runs node by node (``torch.fx.Interpreter`` under ``preserve_node_meta``,
so every op keeps its module stack and source line), then ``torch.autograd.grad(loss, params)``.
A pre-hook on every autograd node tags the ops it runs with that node's sequence number, which
is the sequence number the forward op that made the node carries: each backward node gets the
module scope and source line of the forward op it differentiates (``OpNode.grad_of``), so the
line and module tables show the backward cost of each forward line. A gradient sum the autograd
engine adds between nodes (for a tensor read by several ops) takes the first forward op that
reads that tensor, so every block of a layer stack sums the gradient of its own input.

Every node has ``phase`` "forward" or "backward"; the graph's outputs are the loss and one
gradient per trainable parameter (``GraphMeta.training``: a :class:`~irtools.ir.training.JointInfo`).
Modules the model's code runs under ``torch.utils.checkpoint`` (non-reentrant) are recorded
while exporting, for ``passes.recompute``.
"""

from __future__ import annotations

import contextlib
import operator
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.fx.traceback as fx_traceback
from torch.export.graph_signature import InputKind
from torch.fx.experimental.proxy_tensor import get_proxy_mode, get_proxy_slot, make_fx
from torch.utils import _pytree as pytree

from irtools.capture.torch.export import _path_str, bind_inputs, capture_module, placeholder_roles
from irtools.capture.torch.fx_nodes import TensorConverter, add_fx_node, graph_output_values, qualname
from irtools.ir import CaptureError, IRGraph, Scope, default_bytes
from irtools.ir.training import JointInfo


def _in_checkpoint() -> bool:
    hooks = torch._C._autograd._top_saved_tensors_default_hooks(True)
    return hooks is not None and "_checkpoint_hook" in getattr(hooks[0], "__qualname__", "")


@contextlib.contextmanager
def checkpoint_probe(module: torch.nn.Module, found: list[str]):
    """Record (in ``found``) the modules whose forward runs under a non-reentrant
    ``torch.utils.checkpoint`` (its saved-tensor hooks active) while the block runs: a module
    whose children all run checkpointed though its own hooks do not (transformers checkpoints
    ``forward``, not ``__call__``) is the region; otherwise the checkpointed children are."""
    names = {id(m): n for n, m in module.named_modules()}
    stack: list[dict] = []

    def pre_hook(mod, _args):
        inside = _in_checkpoint()
        entry = {"path": names.get(id(mod), ""), "inside": inside, "in": [], "out": 0}
        if stack and not stack[-1]["inside"]:
            if inside:
                stack[-1]["in"].append(entry["path"])
            else:
                stack[-1]["out"] += 1
        elif not stack and inside and entry["path"]:
            found.append(entry["path"])
        stack.append(entry)

    def post_hook(_mod, _args, _out):
        if not stack:
            return
        entry = stack.pop()
        regions = [entry["path"]] if entry["in"] and not entry["out"] and entry["path"] else entry["in"]
        found.extend(p for p in regions if p not in found)

    handles = [h for m in module.modules() for h in (m.register_forward_pre_hook(pre_hook), m.register_forward_hook(post_hook))]
    try:
        yield found
    finally:
        for h in handles:
            h.remove()
        found[:] = [p for p in found if not any(p.startswith(q + ".") for q in found if q)]


def _tag_backward(loss: torch.Tensor, fed: dict[str, int]) -> None:
    """Pre/post hooks on every autograd node reachable from ``loss``: ops traced while a node
    runs carry its sequence number (``seq_nr``) and ``autograd_backward``; ``fed`` gets, for
    each traced gradient a node receives, that node's sequence number (a sum the engine made
    belongs to the node whose input buffer it filled)."""
    tracer = get_proxy_mode().tracer

    def pre(seq):
        def hook(grad_outputs):
            for g in grad_outputs:
                slot = get_proxy_slot(g, tracer, None) if isinstance(g, torch.Tensor) else None
                if slot is not None:
                    fed.setdefault(slot.proxy.node.name, seq)
            fx_traceback.set_grad_fn_seq_nr(seq)
            fx_traceback._mark_autograd_backward()

        return hook

    def post(_grad_inputs, _grad_outputs):
        fx_traceback.reset_grad_fn_seq_nr()
        fx_traceback._reset_autograd_backward()

    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        node.register_prehook(pre(node._sequence_nr()))
        node.register_hook(post)
        todo.extend(fn for fn, _ in node.next_functions)


class _FusedAttention(torch.fx.Interpreter):
    """Runs the exported forward; on the meta device (a model built without weights),
    ``scaled_dot_product_attention`` stays one fused attention kernel, as a GPU runs it
    (FlashAttention: output and log-sum-exp saved, the scores recomputed in the backward),
    where the meta dispatch would pick the math form and save seq x seq probabilities.
    Grouped K/V heads are repeated first (repeat_kv's copy, which flash mode does not hold)."""

    def call_function(self, target, args, kwargs):
        if target is torch.ops.aten.scaled_dot_product_attention.default and args[0].device.type == "meta":
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
            bound = {**dict(zip(names, args)), **kwargs}
            q, k, v = bound["query"], bound["key"], bound["value"]
            if k.shape[-3] != q.shape[-3]:
                k, v = (_repeat_heads(t, q.shape[-3] // t.shape[-3]) for t in (k, v))
            out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default(
                q, k, v, bound.get("dropout_p", 0.0), bound.get("is_causal", False),
                attn_mask=bound.get("attn_mask"), scale=bound.get("scale"))
            return out[0]
        return super().call_function(target, args, kwargs)


def _repeat_heads(t: torch.Tensor, groups: int) -> torch.Tensor:
    b, h, s, d = t.shape
    return t[:, :, None].expand(b, h, groups, s, d).reshape(b, h * groups, s, d)


def _loss_of(out) -> int:
    """Index of the loss among the program's flat outputs: the first 0-dim floating tensor."""
    for i, t in enumerate(out):
        if isinstance(t, torch.Tensor) and t.dim() == 0 and t.is_floating_point():
            return i
    raise CaptureError("train: the module's forward returns no scalar loss (give it labels, or wrap it with a loss)")


def trace_joint(ep) -> tuple[torch.fx.GraphModule, dict[str, str], tuple[set[str], dict[str, int]], list[str]]:
    """The joint graph of ``ep`` (whose outputs hold a scalar loss): outputs (loss, *gradients).
    Returns the graph module, trainable placeholder name -> its parameter's name, (the names of
    the forward nodes, node -> sequence number of the autograd node it was fed to), and the
    placeholder names of the trainable parameters in output order."""
    from torch._guards import detect_fake_mode

    gm = ep.graph_module
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    targets = {s.arg.name: s.target for s in ep.graph_signature.input_specs if s.kind == InputKind.PARAMETER}
    state = ep.state_dict
    trainable = [
        i for i, n in enumerate(placeholders)
        if n.name in targets and n.users and getattr(state.get(targets[n.name]), "requires_grad", True)
    ]
    fake = [n.meta.get("val") for n in placeholders]
    fake_mode = detect_fake_mode([v for v in fake if isinstance(v, torch.Tensor)])
    with fake_mode or contextlib.nullcontext():
        args = [v.detach().requires_grad_(i in trainable) if isinstance(v, torch.Tensor) and v.is_floating_point()
                else v for i, v in enumerate(fake)]
    forward: set[str] = set()
    fed: dict[str, int] = {}
    used: list[int] = []

    def joint(*flat):
        with fx_traceback.preserve_node_meta():
            out = _FusedAttention(gm).run(*flat)
        outs = list(out) if isinstance(out, list | tuple) else [out]
        loss = outs[_loss_of(outs)]
        forward.update(n.name for n in get_proxy_mode().tracer.graph.nodes)
        _tag_backward(loss, fed)
        with fx_traceback.preserve_node_meta():
            grads = torch.autograd.grad(loss, [flat[i] for i in trainable], allow_unused=True)
        used.extend(i for i, g in zip(trainable, grads) if g is not None)
        return (loss, *(g for g in grads if g is not None))

    with fake_mode or contextlib.nullcontext():
        joint_gm = make_fx(joint)(*args)
    return joint_gm, {placeholders[i].name: targets[placeholders[i].name] for i in used}, (forward, fed), \
        [placeholders[i].name for i in used]


def _strip(path: str, prefix: str) -> str:
    if not prefix:
        return path
    return "" if path == prefix else path[len(prefix) + 1:] if path.startswith(prefix + ".") else path


def _annotate(joint_gm: torch.fx.GraphModule, traced: tuple[set[str], dict[str, int]], prefix: str
              ) -> dict[str, tuple[str, str | None]]:
    """Node name -> (phase, forward node it differentiates); backward nodes take the module
    stack and stack trace of that forward node; ``prefix`` (a wrapper's attribute) is stripped."""
    forward, fed = traced
    nodes = list(joint_gm.graph.nodes)
    creator: dict[int, torch.fx.Node] = {}
    out: dict[str, tuple[str, str | None]] = {}
    for n in nodes:
        if n.op != "call_function":
            continue
        stack = n.meta.get("nn_module_stack")
        if stack and prefix:
            n.meta["nn_module_stack"] = {key: (_strip(str(p), prefix), c) for key, (p, c) in stack.items()
                                         if _strip(str(p), prefix) != "" or str(p) == prefix}
        if n.name in forward:
            if "seq_nr" in n.meta:
                creator.setdefault(n.meta["seq_nr"], n)
            out[n.name] = ("forward", None)
    pending = []
    for n in nodes:
        if n.name in forward or n.op != "call_function":
            continue
        fwd = creator.get(n.meta.get("seq_nr")) if n.meta.get("autograd_backward") else None
        if fwd is None:
            pending.append(n)
            continue
        _take_meta(n, fwd)
        out[n.name] = ("backward", fwd.name)
    by_name = {m.name: m for m in nodes}
    position = {m.name: i for i, m in enumerate(nodes)}
    for n in reversed(pending):  # an engine-added sum of the gradients of a tensor read by several ops
        fwd = _summed_for(n, creator.get(fed.get(n.name)), out, by_name, position, forward)
        fwd_name = fwd.name if fwd is not None else None
        if fwd is not None:
            _take_meta(n, fwd)
        else:
            n.meta.pop("stack_trace", None)
            n.meta.pop("nn_module_stack", None)
        out[n.name] = ("backward", fwd_name)
    return out


def _summed_for(n, producer, out, by_name, position, forward) -> torch.fx.Node | None:
    """The forward op a gradient sum belongs to: the first forward reader of the tensor whose
    gradient it sums (``producer``, made that tensor: the sum filled the input buffer of its
    autograd node), so each block of a layer stack sums the gradient of its own input. A sum
    returned as a gradient (a tied weight) takes the forward op of its first addend."""
    if producer is None:
        addend = next((a for a in n.all_input_nodes if out.get(a.name, ("", None))[1]), None)
        return by_name.get(out[addend.name][1]) if addend is not None else None
    readers, todo = [], list(producer.users)
    while todo:
        u = todo.pop()
        if u.name not in forward:
            continue
        if u.target is operator.getitem:
            todo.extend(u.users)
        elif "_assert" not in str(u.target) and "sym_size" not in str(u.target):  # checks are not readers
            readers.append(u)
    return min(readers, key=lambda u: position[u.name]) if readers else producer


def _take_meta(node: torch.fx.Node, fwd: torch.fx.Node) -> None:
    for key in ("nn_module_stack", "stack_trace"):
        if key in fwd.meta:
            node.meta[key] = fwd.meta[key]
        else:
            node.meta.pop(key, None)


def capture_joint(
    module: torch.nn.Module,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    dims: Mapping[str, Mapping[int, str]] | None = None,
    name: str | None = None,
    model_attr: str = "",
    loss: str = "",
) -> IRGraph:
    """Export ``module`` (its forward returns the loss, or outputs holding one scalar loss) and
    build the IR of its forward and backward. ``model_attr``: the attribute of a loss wrapper
    holding the model; its path is stripped from module scopes and its class is the root.
    ``loss``: what the loss is, for the report."""
    kwargs = dict(kwargs or {})
    checkpointed: list[str] = []
    with checkpoint_probe(module, checkpointed):
        forward_ir = capture_module(module, args, kwargs, dims, name=name)
    ep = forward_ir.meta.exported_program
    loss = getattr(module, "irtools_loss", "") or loss  # a loss wrapper says which loss it took
    try:
        joint_gm, params, forward, order = trace_joint(ep)
    except CaptureError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failure to differentiate is reported in one line
        text = str(exc).strip().splitlines()
        raise CaptureError(f"train: tracing the backward failed: {text[0] if text else type(exc).__name__}") from exc
    phases = _annotate(joint_gm, forward, model_attr)
    inner = module.get_submodule(model_attr) if model_attr else module
    root = Scope("", qualname(type(inner)))
    inputs = bind_inputs(module, tuple(args), kwargs)
    paths = [_path_str(kp) for kp, _ in pytree.tree_flatten_with_path(inputs)[0]]
    ir = _build(ep, joint_gm, phases, forward_ir, paths, root)
    ir.name = forward_ir.name
    outs = ir.meta.output_values or []
    loss_value = outs[0] if outs else ""
    grads = dict(zip(order, outs[1:]))
    all_params = {s.arg.name: s.target for s in ep.graph_signature.input_specs if s.kind == InputKind.PARAMETER}
    ir.meta.training = JointInfo(
        loss=loss_value,
        description=loss,
        params={p: _strip(t, model_attr) for p, t in all_params.items() if p in ir.values},
        gradients=grads,
        frozen=[p for p in all_params if p in ir.values and p not in grads],
        checkpointed=[_strip(p, model_attr) for p in checkpointed],
    )
    ir.meta.scenario = "train"
    return ir


def _build(ep, joint_gm, phases, forward_ir: IRGraph, paths: list[str], root: Scope) -> IRGraph:
    """The IR of the joint graph: placeholders in the exported program's order (its names,
    roles and input paths), call_function nodes with their phase and ``grad_of``."""
    ir = IRGraph(name=forward_ir.name, frontend="torch", dims=dict(forward_ir.dims))
    ir.meta.root_class = root.cls
    ir.meta.rename = forward_ir.meta.rename
    ir.meta.exported_program = ep
    conv = TensorConverter(forward_ir.meta.rename)
    roles = placeholder_roles(ep)
    ep_names = [n.name for n in ep.graph.nodes if n.op == "placeholder"]
    user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    path_of = dict(zip(user, paths))
    specs: dict[str, list] = {}
    k = 0
    for node in joint_gm.graph.nodes:
        if node.op == "placeholder":
            ph = ep_names[k]
            k += 1
            node.name = ph  # the exported program's placeholder names (a parameter's p_... name)
            spec = conv.spec(node.meta.get("val"), roles.get(ph, "activation"))
            specs[ph] = [spec]
            ir.add_value(ph, spec)
            if spec is not None:
                ir.inputs[path_of.get(ph, ph)] = spec
        elif node.op == "call_function":
            phase, grad_of = phases.get(node.name, ("backward", None))
            add_fx_node(ir, conv, node, specs, root, phase=phase, grad_of=grad_of)
    ir.default_bindings = default_bytes(ir)
    ir.meta.output_values = graph_output_values(joint_gm.graph, specs)
    return ir


def loss_wrapper_prefix(module: torch.nn.Module) -> str:
    """The ``model_attr`` of a wrapper made by ``irtools.recipes.train`` (``""`` for any other module)."""
    attr = getattr(module, "irtools_model_attr", "")
    return attr if isinstance(attr, str) and re.fullmatch(r"[A-Za-z_]\w*", attr or "_") else ""
