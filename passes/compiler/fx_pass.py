"""FX pass: annotate a ``torch.fx.GraphModule`` in place with irtools' symbolic costs.

Each node gets ``node.meta["custom"]["irtools"] = {"kind", "flops", "bytes_read",
"bytes_written", "matmul_flops"}`` (formulas as strings), plus ``"unsupported": True`` where
no rule knows the op or the node has no shape (``meta["val"]``). torch.export keeps
``meta["custom"]`` through ``run_decompositions``: every node a decomposition creates inherits
the whole dict of the op it came from, so per-node costs there describe the *source* op;
re-run the pass on the decomposed graph for costs of the new nodes.

Works on aten-level graphs (``ExportedProgram.graph_module``, ``make_fx``, AOT graphs).
Torch-level graphs (``symbolic_trace``) carry no shapes unless ``ShapeProp`` ran, and their
targets are not aten ops: such nodes are flagged, never raised on.

Dims: ``dims`` maps placeholder names to ``{axis: standard name}``; by default the first
activation placeholder's axes 0 and 1 become ``batch_size`` and ``seq_len`` (when they are
distinct symbols); other sizes keep torch's names (``s47``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import sympy
import torch
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from irtools.capture.torch.export import placeholder_roles
from irtools.capture.torch.fx_nodes import TensorConverter, add_fx_node
from irtools.ir import IRGraph, Scope, default_bytes
from irtools.ir.kinds import ALL_COSTS
from irtools.ir.symbols import as_expr, sym
from irtools.pipeline import Options, run_ir
from passes.annotate_costs import annotate_costs

KEY = "irtools"
DEFAULT_AXES = {0: "batch_size", 1: "seq_len"}
_ZERO = sympy.Integer(0)


def guess_role(node: torch.fx.Node) -> str:
    """weight / constant / kv_cache / activation from a placeholder's name or dynamo source."""
    arg = node.meta.get("grapharg")
    source = getattr(getattr(arg, "source", None), "name", "")
    source = source() if callable(source) else str(source or "")
    name = node.name
    if "_parameters[" in source or re.match(r"p_|l_self_modules_.*_parameters_|l_self_parameters_", name):
        return "weight"
    if "_buffers[" in source or source.startswith(("L['self']", "G[")) or re.match(r"[bc]_|l_self_modules_.*_buffers_|l_self_buffers_", name):
        return "constant"
    if re.search(r"past|cache", name):
        return "kv_cache"
    return "activation"


def _symbol_of(size) -> sympy.Symbol | None:
    if isinstance(size, torch.SymInt) and isinstance(size.node.expr, sympy.Symbol):
        return size.node.expr
    return None


def default_dims(placeholders, roles: Mapping[str, str]) -> dict[str, dict[int, str]]:
    """Axes 0/1 of the first activation placeholder with symbolic sizes -> batch_size/seq_len."""
    for node in placeholders:
        val = node.meta.get("val", node.meta.get("example_value"))
        if roles.get(node.name) != "activation" or not isinstance(val, torch.Tensor):
            continue
        if any(_symbol_of(s) is not None for s in val.shape):
            return {node.name: {a: n for a, n in DEFAULT_AXES.items() if a < val.dim()}}
    return {}


def _rename(placeholders, dims) -> tuple[dict, dict[str, int]]:
    rename: dict[sympy.Symbol, sympy.Symbol] = {}
    example: dict[str, int] = {}
    for node in placeholders:
        val = node.meta.get("val")
        for axis, name in dims.get(node.name, {}).items():
            raw = _symbol_of(val.shape[axis]) if isinstance(val, torch.Tensor) and axis < val.dim() else None
            if raw is None or raw in rename or sym(name) in rename.values():
                continue  # specialized, or already named: keep it as torch left it
            rename[raw] = sym(name)
            hint = val.shape[axis].node.hint
            example[name] = int(hint) if hint is not None else 0
    return rename, example


def ir_from_graph_module(
    gm: torch.fx.GraphModule,
    name: str | None = None,
    dims: Mapping[str, Mapping[int, str]] | None = None,
    roles: Mapping[str, str] | None = None,
    root: Scope | None = None,
) -> IRGraph:
    """The IR of a GraphModule (mirrors ``build_ir`` without an ExportedProgram).

    Nodes without a shape or that are not ``call_function`` get ``missing_shape`` /
    ``unsupported`` attributes instead of raising.
    """
    root = root or Scope("", "")
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    roles = {n.name: (roles or {}).get(n.name) or guess_role(n) for n in placeholders}
    dims = dict(dims) if dims is not None else default_dims(placeholders, roles)
    rename, example = _rename(placeholders, dims)
    conv = TensorConverter(rename)
    ir = IRGraph(name=name or type(gm).__name__, frontend="torch", dims=example)
    ir.meta.update(root_class=root.cls, rename=rename)
    specs: dict[str, list] = {}
    for node in gm.graph.nodes:
        if node.op in ("output", "get_attr"):
            continue
        if node.op == "placeholder":
            spec = _safe(lambda n=node: conv.spec(n.meta.get("val"), roles[n.name]))
            specs[node.name] = [spec]
            if spec is not None:
                ir.inputs[node.name] = spec
            continue
        _add_node(ir, conv, node, specs, root)
    ir.default_bindings = default_bytes(ir)
    return ir


def _safe(fn, default=None):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a pass inside a user's pipeline never raises
        return default


def _add_node(ir, conv, node, specs, root) -> None:
    if node.op != "call_function":  # not an ATen-level op: flagged, never costed
        specs[node.name] = [None]
        ir.add_op(node.name, op=f"{node.op}:{node.target}", missing_shape=node.meta.get("val") is None, not_aten=True)
        return
    add_fx_node(ir, conv, node, specs, root, guard=_safe, missing_shape=node.meta.get("val") is None)


def annotate_safely(ir: IRGraph) -> IRGraph:
    """The pipeline's passes (``irtools.pipeline.run_ir``), then flag nodes without shapes; one
    bad node never stops the rest (the cost pass alone, node by node, as a fallback)."""
    try:
        run_ir(ir, Options())
    except Exception:  # noqa: BLE001 - fall back to node by node
        for node_id, attrs in list(ir.nodes()):
            one = IRGraph(name=ir.name, frontend=ir.frontend)
            one.add_op(node_id, **attrs)
            try:
                annotate_costs(one)
                attrs.update(one.graph.nodes[node_id])
            except Exception as exc:  # noqa: BLE001
                attrs.update(kind="unknown", unsupported=True, cost_error=f"{type(exc).__name__}: {exc}", alias=False)
                attrs.update({c: _ZERO for c in ALL_COSTS})
    for _, attrs in ir.nodes():
        if attrs.get("missing_shape") or attrs.get("not_aten"):
            if attrs.get("not_aten") or attrs.get("kind") != "free":
                attrs["unsupported"] = True
    return ir


def totals_of(ir: IRGraph) -> dict[str, sympy.Expr]:
    return {c: sympy.expand(sympy.Add(*(a.get(c, _ZERO) for _, a in ir.nodes()))) for c in ALL_COSTS}


class IrtoolsCostPass(PassBase):
    """Annotate every node's ``meta["custom"]["irtools"]``; keeps ``.ir``, ``.totals``, ``.unsupported``.

    The graph itself is left unchanged (``PassResult.modified`` is False).
    """

    def __init__(self, dims=None, roles=None, name: str | None = None):
        super().__init__()
        self.dims, self.roles, self.name = dims, roles, name
        self.ir: IRGraph | None = None
        self.totals: dict[str, sympy.Expr] = {c: _ZERO for c in ALL_COSTS}
        self.unsupported: list[str] = []

    def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
        ir = _safe(lambda: ir_from_graph_module(graph_module, self.name, self.dims, self.roles))
        if ir is None:  # nothing could be read: flag every op node
            ir = IRGraph(name=self.name or "graph", frontend="torch")
        else:
            annotate_safely(ir)
        self.ir, self.totals = ir, totals_of(ir)
        self.unsupported = []
        for node in graph_module.graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                continue
            attrs = ir.graph.nodes[node.name] if node.name in ir.graph else None
            node.meta.setdefault("custom", {})[KEY] = _entry(attrs)
            if attrs is None or attrs.get("unsupported"):
                self.unsupported.append(node.name)
        return PassResult(graph_module, False)


def _entry(attrs) -> dict:
    if attrs is None:
        return {"kind": "unknown", **{c: "0" for c in ALL_COSTS}, "unsupported": True}
    out = {"kind": attrs.get("kind", "unknown"), **{c: str(attrs.get(c, _ZERO)) for c in ALL_COSTS}}
    if attrs.get("unsupported"):
        out["unsupported"] = True
    return out


def roles_from_signature(ep) -> dict[str, str]:
    """Placeholder roles of an ExportedProgram from its graph signature."""
    return placeholder_roles(ep)


def annotate_exported(ep, dims=None) -> IrtoolsCostPass:
    """Run the pass over ``ep.graph_module`` with roles from the signature; returns the pass."""
    cost_pass = IrtoolsCostPass(dims=dims, roles=roles_from_signature(ep))
    cost_pass(ep.graph_module)
    return cost_pass


def costs_from_meta(gm: torch.fx.GraphModule) -> dict[str, sympy.Expr]:
    """Sum the annotations a graph carries (e.g. after a round trip through other passes)."""
    sums = {c: [] for c in ALL_COSTS}
    for node in gm.graph.nodes:
        entry = node.meta.get("custom", {}).get(KEY)
        if entry:
            for c in ALL_COSTS:
                sums[c].append(as_expr(entry.get(c, "0")))  # restricted parser: metadata is data, never code
    return {c: sympy.expand(sympy.Add(*v)) for c, v in sums.items()}
