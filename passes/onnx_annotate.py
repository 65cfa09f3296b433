"""ONNX-to-ONNX pass: write each node's symbolic costs into its ``metadata_props``.

Node keys: ``irtools.kind``, ``irtools.flops``, ``irtools.bytes_read``,
``irtools.bytes_written`` (formulas as strings; ``irtools.unsupported`` where no rule knows
the op). The model gets ``irtools.totals.*`` and ``irtools.dims``. Nodes are matched to
the IR by their output tensor names. Weights are never read: the model is loaded without
external data and each external data file is copied beside the output as is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import sympy

import irtools  # noqa: F401  (imports the IR before passes.costs: avoids an import cycle)
from irtools.capture.onnx_frontend import capture_onnx
from passes.annotate_costs import annotate_costs

COSTS = ("flops", "bytes_read", "bytes_written")


def _set(props, key: str, value: str) -> None:
    for p in props:
        if p.key == key:
            p.value = value
            return
    entry = props.add()
    entry.key, entry.value = key, value


def _external_files(model: onnx.ModelProto) -> set[str]:
    files = set()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            files |= {e.value for e in tensor.external_data if e.key == "location"}
    return files


def annotate_onnx(in_path: str | Path, out_path: str | Path) -> dict[str, sympy.Expr]:
    """Annotate ``in_path`` into ``out_path``; returns the model totals."""
    in_path, out_path = Path(in_path), Path(out_path)
    ir = annotate_costs(capture_onnx(str(in_path)))
    by_output: dict[str, dict] = {}
    for _, attrs in ir.nodes():
        for name in (attrs.get("tensor_names") or {}).get("outputs", []):
            if name:
                by_output[name] = attrs
    model = onnx.load(str(in_path), load_external_data=False)
    for node in model.graph.node:
        attrs = next((by_output[o] for o in node.output if o in by_output), None)
        if attrs is None:
            continue
        _set(node.metadata_props, "irtools.kind", str(attrs["kind"]))
        for c in COSTS:
            _set(node.metadata_props, f"irtools.{c}", str(attrs[c]))
        if attrs.get("unsupported"):
            _set(node.metadata_props, "irtools.unsupported", "true")
    totals = {c: sympy.expand(sympy.Add(*(a[c] for _, a in ir.nodes()))) for c in COSTS}
    for c, expr in totals.items():
        _set(model.metadata_props, f"irtools.totals.{c}", str(expr))
    _set(model.metadata_props, "irtools.dims", json.dumps(ir.dims))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for rel in _external_files(model):
        src, dst = in_path.parent / rel, out_path.parent / rel
        if src.resolve() != dst.resolve():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    onnx.save(model, str(out_path))
    return totals
