"""External data of ONNX tensors: where it may live.

A tensor's ``location`` is chosen by the model's author, so it is data to check, never a
path to trust: it must be relative, name no parent folder, and -- symlinks followed -- lie
inside the model's folder (and, when ``irtools annotate`` copies it, inside the output's).
Every tensor is checked wherever it sits: graph initializers, sparse initializers,
``Constant`` and other node attributes (tensors, sparse tensors), subgraphs at any depth,
and model-local functions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from irtools.capture.onnx import proto as onnx  # the message classes without onnx's import cost
from irtools.ir import CaptureError

EXTERNAL = onnx.TensorProto.EXTERNAL
_DRIVE = re.compile(r"^[A-Za-z]:")  # C:\\x or C:x: absolute on Windows


def _sparse(sp: onnx.SparseTensorProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    yield f"{where} (sparse values)", sp.values
    yield f"{where} (sparse indices)", sp.indices


def _node_tensors(nodes, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    for node in nodes:
        label = f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node"
        for attr in node.attribute:
            at = f"{label} attribute {attr.name!r}"
            if attr.HasField("t"):
                yield at, attr.t
            for t in attr.tensors:
                yield at, t
            if attr.HasField("sparse_tensor"):
                yield from _sparse(attr.sparse_tensor, at)
            for sp in attr.sparse_tensors:
                yield from _sparse(sp, at)
            if attr.HasField("g"):
                yield from graph_tensors(attr.g)
            for g in attr.graphs:
                yield from graph_tensors(g)


def graph_tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """(description, tensor) of every tensor a graph holds, its subgraphs' included."""
    for t in graph.initializer:
        yield f"initializer {t.name!r}", t
    for sp in graph.sparse_initializer:
        yield from _sparse(sp, f"sparse initializer {sp.values.name!r}")
    yield from _node_tensors(graph.node, "graph")


def model_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """(description, tensor) of every tensor in a model: graph, subgraphs and local functions."""
    yield from graph_tensors(model.graph)
    for fn in model.functions:
        yield from _node_tensors(fn.node, f"function {fn.name!r}")


def external_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    return ((what, t) for what, t in model_tensors(model) if t.data_location == EXTERNAL)


def relative_location(tensor: onnx.TensorProto, what: str, where: str) -> str:
    """The tensor's external-data location, normalized; CaptureError unless it is a plain
    relative path below the model's folder."""
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    if not isinstance(location, str):
        location = ""
    norm = os.path.normpath(location) if location else ""
    parts = Path(norm).parts
    if (not location or "\x00" in location or os.path.isabs(location) or location.startswith(("/", "\\"))
            or norm in (".", "") or ".." in parts or _DRIVE.match(location)):
        raise CaptureError(f"{where}: {what} points its external data outside the model folder ({location!r})")
    return norm


def inside(folder: Path, rel: str) -> Path | None:
    """``folder / rel`` with symlinks resolved, if it lies inside ``folder`` (resolved); else None."""
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, target]) != root or target == root:
        return None
    return Path(target)


def check_external(model: onnx.ModelProto, folder: Path | None, where: str) -> list[tuple[str, str]]:
    """Check every external-data location; returns (description, normalized location) pairs.
    With ``folder``, the real path (symlinks followed) must lie inside it too. Nothing is opened."""
    found = []
    for what, tensor in external_tensors(model):
        rel = relative_location(tensor, what, where)
        if folder is not None and inside(folder, rel) is None:
            raise CaptureError(f"{where}: {what} points its external data outside the model folder "
                               f"({rel!r} resolves elsewhere through a symbolic link)")
        found.append((what, rel))
    return found


__all__ = ["check_external", "external_tensors", "graph_tensors", "inside", "model_tensors", "relative_location"]
