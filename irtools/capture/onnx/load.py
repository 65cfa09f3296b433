"""Loading and checking ONNX files for the ONNX frontend: never reads weights or external data.

Every problem a user can cause (missing file, corrupt protobuf, not a model, unsupported
opset, negative dim, dangling input, cycle, external data outside the model's folder) is a
:class:`CaptureError` with one line of text.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from irtools.capture.onnx import proto as onnx  # the message classes without onnx's import cost
from irtools.capture.onnx.external import check_external
from irtools.capture.onnx.limits import MAX_ONNX_BYTES, check_model_limits
from irtools.files import read_bytes
from irtools.ir import CaptureError

KNOWN_DOMAINS = {
    "", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc", "ai.onnx.training",
    "ai.onnx.preview.training", "org.pytorch.aten", "com.microsoft.experimental", "pkg.onnxscript.torch_lib",
}


def load_model(path_or_model) -> tuple[onnx.ModelProto, Path | None]:
    """The ModelProto (weights untouched) and the folder external data would live in."""
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, None
    path = Path(path_or_model)
    if not path.exists():
        raise CaptureError(f"{path}: no such ONNX file")
    data = read_bytes(path, MAX_ONNX_BYTES, "ONNX file", CaptureError)  # a regular file, never a FIFO or device
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise CaptureError(f"{path}: not a valid ONNX model (cannot parse the protobuf: {type(exc).__name__})") from exc
    if not model.HasField("graph") or model.ir_version < 1:
        raise CaptureError(f"{path}: not an ONNX model (no graph or no IR version in the protobuf)")
    return model, path.parent


def check_model(model: onnx.ModelProto, folder: Path | None, where: str) -> dict[str, int]:
    """Opset/domain, dims and external-data checks; returns the opset per domain."""
    opsets = {(o.domain or ""): int(o.version) for o in model.opset_import}
    default = opsets.get("", opsets.get("ai.onnx"))
    if default is None:
        if any(n.domain in ("", "ai.onnx") for n in model.graph.node):
            raise CaptureError(f"{where}: the model imports no default-domain opset")
    elif not 1 <= default <= onnx.max_opset(default):
        raise CaptureError(f"{where}: unsupported opset ai.onnx {default} (irtools' onnx knows 1..{onnx.max_opset()})")
    _check_text(model.graph, where)
    _check_graph_dims(model.graph, where)
    check_model_limits(model, where)
    check_external(model, folder, where)  # every tensor, subgraphs and Constant attributes included
    return opsets


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs held by a node's attributes (If/Loop/Scan bodies); [] for almost every node."""
    out = []
    for attr in node.attribute:
        if attr.HasField("g"):
            out.append(attr.g)
        if attr.graphs:
            out.extend(attr.graphs)
    return out


def _check_text(graph: onnx.GraphProto, where: str) -> None:
    """Names must be text: protobuf hands back bytes for strings that are not valid UTF-8."""
    ok = all(isinstance(v.name, str) for v in graph.input) and all(isinstance(v.name, str) for v in graph.output)
    ok = ok and all(isinstance(t.name, str) for t in graph.initializer)
    for node in graph.node if ok else ():
        if not (isinstance(node.name, str) and isinstance(node.op_type, str) and isinstance(node.domain, str)
                and all(isinstance(n, str) for n in node.input) and all(isinstance(n, str) for n in node.output)
                and all(isinstance(a.name, str) for a in node.attribute)):
            ok = False
            break
    if ok:
        for v in list(graph.input) + list(graph.output):
            if not all(isinstance(d.dim_param, str) for d in v.type.tensor_type.shape.dim):
                ok = False
                break
    if not ok:
        raise CaptureError(f"{where}: not a valid ONNX model (a name is not valid UTF-8 text)")


def _check_graph_dims(graph: onnx.GraphProto, where: str) -> None:
    for tensor in graph.initializer:
        if any(d < 0 for d in tensor.dims):
            raise CaptureError(f"{where}: initializer {tensor.name!r} has a negative dimension {list(tensor.dims)}")
    for value in list(graph.input) + list(graph.output):
        if value.type.HasField("tensor_type"):
            for d in value.type.tensor_type.shape.dim:
                if d.HasField("dim_value") and d.dim_value < 0:
                    raise CaptureError(f"{where}: {value.name!r} has a negative dimension {d.dim_value}")


def topo_order(graph: onnx.GraphProto, outer: set[str], where: str) -> list[onnx.NodeProto]:
    """Nodes in dependency order; a dangling input or a cycle is a CaptureError."""
    available = set(outer) | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    available |= {t.values.name for t in graph.sparse_initializer}
    nodes = list(graph.node)
    producer: dict[str, int] = {}
    for idx, node in enumerate(nodes):
        for out in node.output:
            if out:
                producer[out] = idx
    indeg = [0] * len(nodes)
    users: dict[int, list[int]] = {}
    for idx, node in enumerate(nodes):
        for name in set(_node_reads(node)):
            if name in producer:
                if producer[name] == idx:
                    raise CaptureError(f"{where}: node {node.name or node.op_type!r} reads its own output {name!r} (a cycle)")
                indeg[idx] += 1
                users.setdefault(producer[name], []).append(idx)
            elif name not in available:
                raise CaptureError(f"{where}: node {node.name or node.op_type!r} reads {name!r}, which no input, initializer or node produces")
    ready = deque(i for i, d in enumerate(indeg) if d == 0)
    order = []
    while ready:
        idx = ready.popleft()
        order.append(nodes[idx])
        for user in users.get(idx, ()):
            indeg[user] -= 1
            if indeg[user] == 0:
                ready.append(user)
    if len(order) != len(graph.node):
        stuck = next(graph.node[i] for i, d in enumerate(indeg) if d > 0)
        raise CaptureError(f"{where}: the graph has a cycle through node {stuck.name or stuck.op_type!r}")
    return order


def _node_reads(node: onnx.NodeProto):
    """Input names, plus outer-scope names that the node's subgraphs read."""
    yield from (n for n in node.input if n)
    for sub in _subgraphs(node):
        yield from _outer_reads(sub)


def _outer_reads(graph: onnx.GraphProto):
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        local |= set(node.output)
    for node in graph.node:
        for name in _node_reads(node):
            if name not in local:
                yield name


def inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inline model-local functions (torch's exporter may emit them) so every node is an op."""
    if not model.functions:
        return model
    try:
        import onnx.inliner

        return onnx.inliner.inline_local_functions(model)
    except Exception:  # noqa: BLE001 - leave calls as (unsupported) nodes
        return model
