"""ONNX frontend: an ``.onnx`` file (or ModelProto) -> the irtools IR, with symbolic shapes.

Graph-input ``dim_param``s become standard symbols through ``irtools.ir.symbols`` aliases
(``batch`` -> batch_size, ``total_sequence_length`` -> kv_len stored as cache_len + seq_len);
``irtools.capture.onnx.shapes`` carries them through every node. Initializers are weights (shape and
dtype only); external data is never opened. Node ``op`` is the op type for the default
domain and ``domain.OpType`` otherwise (``com.microsoft.Attention``). Scopes and source
lines come from torch's dynamo-exporter metadata, else from ``/scoped/node/Names``.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import sympy

from irtools.capture.frames import parse_frames
from irtools.capture.onnx import layout
from irtools.capture.onnx import proto as onnx  # the message classes without onnx's import cost
from irtools.capture.onnx.bind import bind_sizes, covering_sizes
from irtools.capture.onnx.inference import infer
from irtools.capture.onnx.limits import check_outputs, check_scope_depth
from irtools.capture.onnx.load import KNOWN_DOMAINS, check_model, inline_functions, load_model, topo_order
from irtools.capture.onnx.shape_env import ShapeEnv
from irtools.capture.onnx.tensors import TInfo, dtype_name, integer, tensor_info
from irtools.ir import CaptureError, IRGraph, Scope, SourceLoc, TensorSpec, default_bytes, op_class
from irtools.ir.gcpause import gc_paused
from irtools.ir.symbols import canonical_name, sym

__all__ = ["CaptureError", "capture_onnx"]

KV_INPUT = re.compile(r"past_key_values|past_key|past_value|key_cache|value_cache")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VIEW_OPS = {"Transpose", "Squeeze", "Unsqueeze", "Identity", "Slice", "Split", "Dropout"}
RESHAPE_OPS = {"Reshape", "Flatten"}
CONTROL_OPS = {"If", "Loop", "Scan", "SequenceMap"}
SEQUENCE_OUT = {"SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceErase", "SplitToSequence", "SequenceMap"}
HOOK_SCOPE = "_empty_nn_module_stack_from_metadata_hook"


class Subgraphs(dict):
    """Sub-IRs of a control-flow node, keyed by attribute name (short repr for cache keys)."""

    def __repr__(self) -> str:
        return f"<subgraphs {id(self):x}>"


@gc_paused()  # a large graph makes many long-lived objects and no cycles (irtools/ir/gcpause.py)
def capture_onnx(path_or_model, dims: dict[str, int] | None = None, aliases: dict[str, str] | None = None,
                 name: str | None = None, progress: Callable[[int, int], None] | None = None,
                 bind: dict[str, float] | None = None) -> IRGraph:
    """Build the IR of an ONNX model; ``dims`` binds symbol names (aliases allowed) to sizes.

    ``progress(done, total)`` is called as top-level nodes are processed (about 100 times).
    ``bind`` (``--dim`` bindings): where its sizes cover every named dim of the graph inputs,
    they are written into every spec after symbolic inference, and costs are computed on
    numbers (bind.py); else the graph stays symbolic (a report keeps all its formulas or none)."""
    model, folder = load_model(path_or_model)
    where = str(path_or_model) if not isinstance(path_or_model, onnx.ModelProto) else (model.graph.name or "model")
    opsets = check_model(model, folder, where)
    model = inline_functions(model)
    builder = _Builder(opsets, aliases or {}, _LazyHints(model))
    builder.progress = progress
    default_name = Path(where).stem if not isinstance(path_or_model, onnx.ModelProto) else where
    ir = IRGraph(name=name or model.graph.name or default_name, frontend="onnx")
    for key, value in (dims or {}).items():
        if int(value) < 0:
            raise CaptureError(f"dim {key}={value} is negative")
        ir.dims[canonical_name(key, aliases)] = int(value)
    try:
        tensors = builder.graph_inputs(model.graph, ir)
        builder.build(model.graph, ir, tensors, outer=set(), where=where)
        builder.finalize(ir)
    except CaptureError as exc:
        text = str(exc)
        if text.startswith(where):
            raise
        node = f"node {builder.current!r}: " if builder.current else ""
        raise type(exc)(f"{where}: {node}{text}") from exc
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CaptureError(f"{where}: malformed ONNX model ({type(exc).__name__}: {first})") from exc
    ir.meta.update(
        opsets=opsets,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        unknown_domains=sorted({n.domain for n in model.graph.node} - KNOWN_DOMAINS),
        outputs={o.name: builder.spec_of(o.name) for o in model.graph.output},
        output_values=[o.name for o in model.graph.output],
        shape_equalities={str(k): str(v) for k, v in builder.env.replacements.items()},
    )
    ir.default_bindings = default_bytes(ir)
    _fill_root_class(ir)
    sizes = covering_sizes(model.graph, bind or {}, aliases)
    return bind_sizes(ir, sizes) if sizes else ir


class _LazyHints:
    """onnx.shape_inference's value_info (static facts only; symbols come from our inference),
    computed on first use -- only nodes without a shape rule need it -- over a copy of the
    graph without its weights (inference reads shapes, serializing weights costs seconds)."""

    def __init__(self, model: onnx.ModelProto):
        self.model, self.table = model, None

    def get(self, name: str) -> onnx.ValueInfoProto | None:
        if self.table is None:
            self.table = _static_hints(_skeleton(self.model))
        return self.table.get(name)


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with large inline initializers reduced to name, dtype and dims."""
    out = onnx.ModelProto(ir_version=model.ir_version)
    out.opset_import.extend(model.opset_import)
    g, src = out.graph, model.graph
    g.name = src.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(g, field).extend(getattr(src, field))
    for init in src.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL and math.prod(init.dims) <= 64:
            g.initializer.append(init)
        else:
            g.initializer.add(name=init.name, data_type=init.data_type, dims=init.dims)
    return out


def _static_hints(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=False)
    except Exception:  # noqa: BLE001 - malformed or custom-op models: no hints
        return {}
    return {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}


def op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


class _Builder:
    """Walks one ONNX graph (and its subgraphs) and adds op nodes to an IRGraph."""

    def __init__(self, opsets, aliases, hints):
        self.opset = opsets.get("", opsets.get("ai.onnx", 18))
        self.aliases, self.hints = aliases, hints
        self.env = ShapeEnv()
        self.infos: dict[str, TInfo] = {}
        self.roles: dict[str, str] = {}
        self.alias_root: dict[str, str | None] = {}
        self.strides: dict[str, tuple | None] = {}  # None: row-major for its shape (computed when a view needs it)
        self.specs: dict[str, tuple[int, TensorSpec]] = {}
        self.flags: dict[str, list[str]] = {}
        self.current = ""
        self.progress: Callable[[int, int], None] | None = None
        self.depth = 0
        self.sequences: set[str] = set()  # names of sequence values (SequenceMap iterates them)

    # ---- inputs ---------------------------------------------------------------------------

    def dim(self, d: onnx.TensorShapeProto.Dimension):
        if d.HasField("dim_value"):
            return integer(d.dim_value)
        if d.HasField("dim_param") and _IDENT.match(d.dim_param):
            name = canonical_name(d.dim_param, self.aliases)
            if name == "kv_len":
                return sym("cache_len") + sym("seq_len")
            return sym(name)
        return self.env.fresh()

    def value_info(self, v: onnx.ValueInfoProto) -> TInfo | None:
        if not v.type.HasField("tensor_type"):
            return None
        t = v.type.tensor_type
        if not t.HasField("shape"):
            return None
        return TInfo(tuple(self.dim(d) for d in t.shape.dim), dtype_name(t.elem_type))

    def graph_inputs(self, graph: onnx.GraphProto, ir: IRGraph) -> dict[str, TInfo]:
        for init in graph.initializer:
            info = tensor_info(init)
            self._set(init.name, info, "constant" if len(init.dims) == 0 or info.shape == (1,) else "weight")
            ir.inputs[init.name] = self.spec_of(init.name)
        for sparse in graph.sparse_initializer:
            self._set(sparse.values.name, TInfo(tuple(sympy.Integer(d) for d in sparse.dims), dtype_name(sparse.values.data_type)), "weight")
        for value in graph.input:
            if value.name in self.infos:
                continue  # old IR versions list initializers among the inputs
            info = self.value_info(value) or TInfo((self.env.fresh(),), "float32")
            self._set(value.name, info, "kv_cache" if KV_INPUT.search(value.name) else "activation")
            ir.inputs[value.name] = self.spec_of(value.name)
        return self.infos

    def _set(self, name, info, role, alias_of=None, strides=None):
        self.infos[name] = info
        self.roles[name] = role
        self.alias_root[name] = alias_of
        self.strides[name] = strides
        self.specs.pop(name, None)

    def spec_of(self, name: str) -> TensorSpec | None:
        """The tensor's spec under the equalities known now (cached until a new one is recorded)."""
        cached = self.specs.get(name)
        if cached is not None and cached[0] == self.env.version:
            return cached[1]
        info = self.infos.get(name)
        if info is None:
            return None
        apply = self.env.apply
        shape = tuple(apply(d) for d in info.shape)
        strides = self.strides[name]
        contiguous = strides is None or layout.is_contiguous(shape, tuple(apply(s) for s in strides))
        spec = TensorSpec(shape, info.dtype, self.roles[name], self.alias_root[name], contiguous)
        self.specs[name] = (self.env.version, spec)
        return spec

    def node_hints(self, node: onnx.NodeProto) -> list[TInfo | None]:
        found = [self.hints.get(o) for o in node.output]
        return [None if v is None else self.value_info(v) for v in found]

    # ---- nodes ----------------------------------------------------------------------------

    def build(self, graph: onnx.GraphProto, ir: IRGraph, tensors, outer: set[str], where: str) -> None:
        report = self.progress if self.depth == 0 else None  # the top-level graph only
        total = len(graph.node)
        every = max(1, total // 100)
        for done, node in enumerate(topo_order(graph, outer | set(self.infos), where), 1):
            if report is not None and (done % every == 0 or done == total):
                report(done, total)
            node_id = self.current = self._node_id(node, ir)
            op = op_name(node)
            attrs = {a.name: onnx.attribute_value(a) for a in node.attribute}
            in_names, out_names = list(node.input), list(node.output)  # protobuf fields, read once
            ins = [self.infos.get(n) if n else None for n in in_names]
            args = {k: v for k, v in ((k, _plain(v)) for k, v in attrs.items()) if v is not None}
            if op in CONTROL_OPS:
                outs = self._control(node, op, ins, attrs, args, ir, where)
            else:
                outs = infer(op, ins, attrs, self.env, len(out_names), self.opset, lambda node=node: self.node_hints(node))
            check_outputs(op, outs)  # rank, negative / non-finite dims, huge numbers (limits.py)
            if op in SEQUENCE_OUT:
                self.sequences.update(node.output)
            shape_comp = self._is_shape_computation(op, ins, outs)
            if shape_comp:
                args["shape_computation"] = True
            self._outputs(node, op, ins, outs, args, shape_comp)
            if op == "ConstantOfShape" and not shape_comp:
                args["constant_shape"] = bool(ins and ins[0] is not None and ins[0].value is not None
                                              and all(sympy.sympify(v).is_Integer for v in ins[0].value.ravel()))
            ir.add_op(
                node_id, op=op, onnx_name=node.name, inputs=[self.spec_of(n) if n else None for n in in_names],
                outputs=[self.spec_of(o) if o else None for o in out_names], args=args,
                tensor_names={"inputs": in_names, "outputs": out_names},
                input_values=[n or None for n in in_names], output_values=[o or None for o in out_names],
                **_scope_source(node),
            )
            if self.flags.get(node_id):
                ir.graph.nodes[node_id]["flags"] = self.flags[node_id]

    def _node_id(self, node, ir) -> str:
        base = node.name or f"{node.op_type}_{len(ir)}"
        node_id, k = base, 1
        while node_id in ir.graph:
            node_id, k = f"{base}_{k}", k + 1
        return node_id

    @staticmethod
    def _is_shape_computation(op, ins, outs) -> bool:
        if op in ("Shape", "Size"):
            return True
        present = [i for i in ins if i is not None]
        return bool(outs) and all(o.value is not None for o in outs) and all(i.value is not None for i in present)

    def _outputs(self, node, op, ins, outs, args, shape_comp) -> None:
        """Record output infos with role, alias root and strides (the view convention)."""
        first_name = next((n for n in node.input if n), None)
        first = self.infos.get(first_name) if first_name else None
        cls = op_class(op)
        for k, (name, info) in enumerate(zip(node.output, outs, strict=False)):
            if not name:
                continue
            role, alias_of, strides = "activation", None, None
            if shape_comp or op == "Constant":
                role = "constant"
            elif op == "ConstantOfShape" and all(sympy.sympify(d).is_Integer for d in info.shape):
                role = "weight" if info.dtype.startswith("float") else "constant"  # stripped-weight stand-ins
            if first is not None and not shape_comp and op != "Constant":
                is_view, strides = self._view(op, node, first_name, first, info, k, args)
                if is_view or cls in ("copy", "dropout"):  # as the torch frontend does
                    if info.dtype == first.dtype:
                        role = self.roles.get(first_name, "activation")
                if is_view:
                    alias_of = self.alias_root.get(first_name) or first_name
            self._set(name, info, role, alias_of, strides)

    def _view(self, op, node, first_name, first, info, k, args):
        """(is a view?, output strides) for view-class ops; Reshape views only where torch could."""
        old = self.strides.get(first_name) or layout.contiguous_strides(first.shape)
        if op == "Transpose":
            perm = args.get("perm") or list(range(first.rank))[::-1]
            return True, layout.permute(old, perm)
        if op in ("Slice", "Split") and info.rank == first.rank:
            return True, old
        if op in ("Identity", "Dropout") and k == 0:
            return True, old
        if op == "Squeeze":
            axes = {i for i, d in enumerate(first.shape) if d == 1} if info.rank < first.rank else set()
            if len(axes) == first.rank - info.rank:
                return True, layout.squeeze(old, axes)
            return True, layout.contiguous_strides(info.shape)
        if op == "Unsqueeze" and info.rank >= first.rank:
            new = layout.view_strides(first.shape, old, info.shape)
            return True, new if new is not None else layout.contiguous_strides(info.shape)
        if op in RESHAPE_OPS:
            new = layout.view_strides(tuple(self.env.apply(d) for d in first.shape), tuple(self.env.apply(s) for s in old),
                                      tuple(self.env.apply(d) for d in info.shape))
            args["view"] = new is not None
            return new is not None, new
        return False, None

    # ---- control flow ---------------------------------------------------------------------

    def _control(self, node, op, ins, attrs, args, ir, where):
        """Sub-IRs for If/Loop/Scan bodies; outputs from the bodies' outputs."""
        subs, me = Subgraphs(), self.current
        n_out = len(node.output)
        if op == "If":
            outs_by_branch = []
            for key in ("then_branch", "else_branch"):
                sub_ir, outs = self._subgraph(attrs[key], [], ir, where)
                subs[key] = sub_ir
                outs_by_branch.append(outs)
            outs = [a if a is not None and b is not None and a.shape == b.shape else (a or b)
                    for a, b in zip(*outs_by_branch, strict=False)]
            self.flags.setdefault(me, []).append("if: cost of the larger branch")
        elif op == "Loop":
            trip = ins[0].value.ravel()[0] if ins and ins[0] is not None and ins[0].value is not None else None
            if trip is not None and sympy.sympify(trip).is_Number and trip < 0:
                trip = sympy.Integer(0)  # a negative trip count runs the body no time
            carried = [i for i in ins[2:]]
            body_ins = [TInfo((), "int64"), TInfo((), "bool")] + carried
            sub_ir, body_outs = self._subgraph(attrs["body"], body_ins, ir, where)
            subs["body"] = sub_ir
            if trip is None:
                trip = self.env.fresh("loop_trips")
                self.flags.setdefault(me, []).append("loop: trip count unknown (symbol)")
            n_carried = len(carried)
            outs = list(body_outs[1:1 + n_carried]) + [
                TInfo((trip,) + o.shape, o.dtype) if o is not None else None for o in body_outs[1 + n_carried:]]
            args["trip_count"] = sympy.sympify(trip)
        elif op == "SequenceMap":  # the body once per element of the first input (a sequence)
            trip = ins[0].shape[0]
            body_ins = [TInfo(i.shape[1:], i.dtype) if i is not None and (k == 0 or name in self.sequences) else i
                        for k, (name, i) in enumerate(zip(node.input, ins, strict=False))]
            sub_ir, body_outs = self._subgraph(attrs["body"], body_ins, ir, where)
            subs["body"] = sub_ir
            outs = [TInfo((trip,) + o.shape, o.dtype) if o is not None else None for o in body_outs]
            args["trip_count"] = trip
        else:  # Scan
            n_scan = attrs.get("num_scan_inputs", 0)
            states, scans = ins[:len(ins) - n_scan], ins[len(ins) - n_scan:]
            axes = attrs.get("scan_input_axes") or [0] * n_scan
            trip = scans[0].shape[axes[0]] if scans else sympy.Integer(1)
            body_ins = states + [TInfo(s.shape[:a] + s.shape[a + 1:], s.dtype) for s, a in zip(scans, axes, strict=False)]
            sub_ir, body_outs = self._subgraph(attrs["body"], body_ins, ir, where)
            subs["body"] = sub_ir
            outs = list(body_outs[:len(states)]) + [TInfo((trip,) + o.shape, o.dtype) if o is not None else None
                                                     for o in body_outs[len(states):]]
            args["trip_count"] = trip
        args["subgraphs"] = subs
        outs = [o if o is not None else TInfo((self.env.fresh(),)) for o in outs]
        return (outs + [TInfo((self.env.fresh(),))] * n_out)[:n_out]

    def _subgraph(self, graph: onnx.GraphProto, body_ins, ir, where):
        sub_ir = IRGraph(name=f"{ir.name}/{graph.name or 'body'}", frontend="onnx")
        for value, info in zip(graph.input, body_ins, strict=False):
            self._set(value.name, info or self.value_info(value) or TInfo((self.env.fresh(),)), "activation")
        for value in list(graph.input)[len(body_ins):]:
            self._set(value.name, self.value_info(value) or TInfo((self.env.fresh(),)), "activation")
        for init in graph.initializer:
            self._set(init.name, tensor_info(init), "weight")
        self.depth += 1
        try:
            self.build(graph, sub_ir, self.infos, outer=set(self.infos), where=where)
        finally:
            self.depth -= 1
        self.finalize(sub_ir)
        return sub_ir, [self.infos.get(o.name) for o in graph.output]

    # ---- finish ---------------------------------------------------------------------------

    def finalize(self, ir: IRGraph) -> None:
        """Apply the equalities broadcasting proved to every spec recorded so far."""
        if not self.env.replacements:
            return
        done: dict[int, TensorSpec] = {}  # specs are shared by producer and consumers: rewrite each once
        for _, attrs in ir.nodes():
            for key in ("inputs", "outputs"):
                attrs[key] = [None if s is None else _apply_spec(self.env, s, done) for s in attrs[key]]
        for key, spec in list(ir.inputs.items()):
            ir.inputs[key] = _apply_spec(self.env, spec, done)


def _apply_spec(env: ShapeEnv, spec: TensorSpec, done: dict | None = None) -> TensorSpec:
    """``spec`` under the env's equalities; the same object where no dim changes."""
    seen = done.get(id(spec)) if done is not None else None
    if seen is not None:
        return seen[1]
    shape = tuple(env.apply(d) for d in spec.shape)
    out = spec
    if any(a is not b for a, b in zip(shape, spec.shape)):
        out = TensorSpec(shape, spec.dtype, spec.role, spec.alias_of, spec.contiguous)
    if done is not None:
        done[id(spec)] = (spec, out)  # holding ``spec`` keeps its id from being reused
    return out


def _plain(value):
    """Attribute values as plain Python (tensors and graphs are left out of ``args``)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, int | float | str):
        return value
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return None if any(v is None for v in items) else list(items)
    return None


# ---- scopes and source lines -------------------------------------------------------------


def _literal_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return [str(v) for v in value] if isinstance(value, list | tuple) else None


def _scope_source(node: onnx.NodeProto) -> dict:
    meta = {p.key: p.value for p in node.metadata_props}
    names = _literal_list(meta.get("pkg.torch.onnx.name_scopes"))
    classes = _literal_list(meta.get("pkg.torch.onnx.class_hierarchy")) or []
    scope = [Scope("", "")]
    if names is not None:
        names, classes = names[:-1], classes[:-1]  # the last entry is the op itself
        classes += [""] * (len(names) - len(classes))
        for path, cls in zip(names, classes, strict=False):
            if path == HOOK_SCOPE:
                continue
            if path == "":
                scope[0] = Scope("", cls)
                continue
            parent = scope[-1].path
            if parent and not path.startswith(parent + "."):
                path = f"{parent}.{path}"
            scope.append(Scope(path, cls))
    elif node.name.startswith("/"):
        parts = [p for p in node.name.strip("/").split("/")[:-1] if p]
        for i in range(len(parts)):
            scope.append(Scope(".".join(parts[: i + 1]), ""))
    check_scope_depth(len(scope) - 1)  # metadata is data: 1000 nested modules would only hang the reports
    source = None
    frames = parse_frames(meta.get("pkg.torch.onnx.stack_trace"))
    if frames:
        inner = frames[-1]
        source = SourceLoc(inner.file, inner.line, inner.code, frames)
    return {"scope": scope, "source": source}


def _fill_root_class(ir: IRGraph) -> None:
    """Nodes the exporter left without a module (size queries) get the root module's class."""
    roots = Counter(a["scope"][0].cls for _, a in ir.nodes() if a["scope"] and a["scope"][0].cls)
    if not roots:
        return
    root = roots.most_common(1)[0][0]
    for _, attrs in ir.nodes():
        if attrs["scope"] and not attrs["scope"][0].cls:
            attrs["scope"] = [Scope("", root)] + list(attrs["scope"][1:])
